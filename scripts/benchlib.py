"""Machinery shared by the benchmark scripts (bench_platform, bench_catalogue, bench_heartbeats).

- the service under test (`python -m server`, PROCESSES=2, embedded PostgreSQL and Redis under var/bench)
  and a bare Tornado server with the same fork model, started and stopped cleanly;
- a closed-loop load generator (raw asyncio protocol, N keep-alive HTTP/1.1 clients, one request in
  flight per connection), run as a separate process;
- RSS/USS/CPU sampling of every process involved (psutil), aggregation and report tables.

The bare server and the load generator run as subprocesses of this module:

    python -m scripts.benchlib bare-server PORT ROUTES.json
    python -m scripts.benchlib load-gen PORT --targets TARGETS.json --clients N --warmup S --seconds S
                                        --latencies-out FILE          (token in $BENCH_TOKEN)
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import contextlib
import fcntl
import http.client
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "var" / "bench"
DEMO_LOGIN_CODE = "demo-parent-a"
PROCESSES = 2
SAMPLE_INTERVAL = 0.5
READY_TIMEOUT = 180.0  # the first run initialises a PostgreSQL cluster and migrates it
MIB = 1024 * 1024
CLIENT_SIDE = ("load generator", "bench driver")
POSTGRES = "postgres (all processes)"
OTHER_CPU_WARNING_PERCENT = 10


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# ==== bare server (`bare-server PORT ROUTES.json`) ===================================================


def write_routes(path: Path, routes: dict[str, bytes]) -> None:
    """Save the bare server's routes: exact request path → the bytes it answers with."""
    path.write_text(json.dumps({p: base64.b64encode(body).decode() for p, body in routes.items()}))


def read_routes(path: Path) -> dict[str, bytes]:
    return {p: base64.b64decode(body) for p, body in json.loads(path.read_text()).items()}


def run_bare_server(port: int, routes: dict[str, bytes], processes: int) -> None:
    """Tornado with the service's fork model; each route answers its fixed JSON, nothing else."""
    import re

    import tornado.httpserver
    import tornado.netutil
    import tornado.process
    import tornado.web
    import uvloop

    class BareHandler(tornado.web.RequestHandler):
        def initialize(self, body: bytes) -> None:
            self.body = body

        def get(self) -> None:
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish(self.body)

    async def serve(sockets: list[socket.socket]) -> None:
        app = tornado.web.Application(
            [(re.escape(path), BareHandler, {"body": body}) for path, body in routes.items()]
        )
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets(sockets)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        server.stop()
        await server.close_all_connections()

    try:
        if processes != 1:
            tornado.process.fork_processes(processes)
        # Each process its own SO_REUSEPORT listener, as the service's workers have (server/__main__.py)
        sockets = tornado.netutil.bind_sockets(port, "127.0.0.1", reuse_port=processes != 1)
        uvloop.run(serve(sockets))  # the service's event loop: the comparison is of the handlers alone
    except KeyboardInterrupt:
        pass


# ==== closed-loop load generator (`load-gen PORT ...`) ===============================================


class _Client(asyncio.Protocol):
    """One keep-alive connection with one request in flight; the next request leaves on the response.
    With several targets, each connection cycles through them, starting at its own offset."""

    def __init__(self, run: _LoadRun, index: int) -> None:
        self.run = run
        self.index = index % len(run.requests)
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.need = -1  # bytes of the current response (head + body) once the head is parsed
        self.head_end = 0
        self.status = 0
        self.sent_at = 0.0
        self.finished = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.send()

    def send(self) -> None:
        assert self.transport is not None
        self.sent_at = time.perf_counter()
        self.transport.write(self.run.requests[self.index])

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if self.need < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            start = head.find(b"\r\ncontent-length:")
            if start < 0 or not head.startswith(b"http/1.1 "):
                self.run.protocol_errors += 1
                self.close()  # reconnects while the run lasts
                return
            stop = head.find(b"\r\n", start + 2)
            self.status = int(head[9:12])
            self.head_end = end + 4
            self.need = self.head_end + int(head[start + 17 : stop if stop >= 0 else None])
        if len(buf) < self.need:
            return
        now = time.perf_counter()
        body = bytes(buf[self.head_end : self.need])
        del buf[: self.need]
        self.need = -1
        self.run.completed(self, now, body)

    def close(self) -> None:
        self.finished = True
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.run.lost(self)


@dataclass
class _LoadRun:
    port: int
    requests: list[bytes]
    expected: list[bytes]
    clients: int
    t0: float = math.inf  # measurement window, perf_counter seconds
    t1: float = math.inf
    latencies: array.array[float] = field(default_factory=lambda: array.array("d"))
    statuses: Counter[int] = field(default_factory=Counter)
    bad_bodies: int = 0
    connection_errors: int = 0
    protocol_errors: int = 0
    open: int = 0
    started: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    reconnects: set[asyncio.Task[None]] = field(default_factory=set)

    def reconnect(self) -> None:
        task = asyncio.get_running_loop().create_task(self.connect())
        self.reconnects.add(task)
        task.add_done_callback(self.reconnects.discard)

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        self.open += 1
        index = self.started
        self.started += 1
        try:
            await loop.create_connection(lambda: _Client(self, index), "127.0.0.1", self.port)
        except OSError:
            self.open -= 1
            self.connection_errors += 1
            if time.perf_counter() < self.t1:
                await asyncio.sleep(0.05)
                self.reconnect()
            elif self.open == 0:
                self.done.set()

    def completed(self, client: _Client, now: float, body: bytes) -> None:
        if self.t0 <= now < self.t1:
            self.latencies.append(now - client.sent_at)
            self.statuses[client.status] += 1
            if client.status == 200 and body != self.expected[client.index]:
                self.bad_bodies += 1
        if now < self.t1:
            client.index += 1
            if client.index == len(self.requests):
                client.index = 0
            client.send()
        else:
            client.close()

    def lost(self, client: _Client) -> None:
        self.open -= 1
        if time.perf_counter() < self.t1:
            if not client.finished:
                self.connection_errors += 1
            self.reconnect()
        elif self.open == 0:
            self.done.set()


async def _drive(run: _LoadRun, warmup: float, seconds: float) -> dict[str, Any]:
    await asyncio.gather(*(run.connect() for _ in range(run.clients)))
    start = time.perf_counter()
    mono_start = time.monotonic()
    run.t0 = start + warmup
    run.t1 = run.t0 + seconds
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(run.done.wait(), warmup + seconds + 10.0)
    return {
        "window_monotonic": [mono_start + warmup, mono_start + warmup + seconds],
        "seconds": seconds,
        "statuses": {str(k): v for k, v in sorted(run.statuses.items())},
        "bad_bodies": run.bad_bodies,
        "connection_errors": run.connection_errors,
        "protocol_errors": run.protocol_errors,
        "unfinished_connections": run.open,
    }


def write_targets(path: Path, targets: list[tuple[str, bytes]]) -> None:
    """Save what the load generator requests: (path with query, expected 200 body), in rotation order."""
    path.write_text(
        json.dumps([{"path": p, "expected": base64.b64encode(body).decode()} for p, body in targets])
    )


def run_load_gen(args: argparse.Namespace) -> None:
    token = os.environ.get("BENCH_TOKEN", "")
    targets = json.loads(Path(args.targets).read_text())
    requests = [
        (
            f"GET {t['path']} HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\n"
            f"Authorization: Bearer {token}\r\nUser-Agent: bench-platform\r\nAccept: */*\r\n\r\n"
        ).encode()
        for t in targets
    ]
    expected = [base64.b64decode(t["expected"]) for t in targets]
    run = _LoadRun(args.port, requests, expected, args.clients)
    summary = asyncio.run(_drive(run, args.warmup, args.seconds))
    with open(args.latencies_out, "wb") as out:
        run.latencies.tofile(out)
    print(json.dumps(summary), flush=True)


# ==== driver: servers ===============================================================================


def request(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def get_ok(port: int, path: str, token: str) -> bytes:
    """GET with the token; anything but 200 stops the benchmark."""
    status, body = request(port, "GET", path, headers={"Authorization": f"Bearer {token}"})
    if status != 200:
        raise RuntimeError(f"GET {path} failed: {status} {body[:500]!r}")
    return body


def wait_until_ready(proc: subprocess.Popen[bytes], port: int, path: str, what: str, logfile: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}; see {logfile}:\n{tail(logfile)}")
        try:
            status, _ = request(port, "GET", path)
            if status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{what} not ready after {READY_TIMEOUT:.0f} s; see {logfile}:\n{tail(logfile)}"
            )
        time.sleep(0.25)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_service(port: int, extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], Path]:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    logfile = DATA_DIR / "service.log"
    env = {
        **os.environ,
        "PROCESSES": str(PROCESSES),
        "PORT": str(port),
        "DATA_DIR": str(DATA_DIR),
        "LOG_LEVEL": "WARNING",
        "APP_ENV": "development",
        "LOAD_DEMO_DATA": "true",
        # empty means "embedded" / "sandbox", whatever a developer's .env says
        "DATABASE_URL": "",
        "REDIS_URL": "",
        "WECHAT_APPID": "",
        # the metrics listener on a port of its own, not 9100 (a developer's `make run` may hold it)
        "METRICS_PORT": str(free_port()),
        **(extra_env or {}),
    }
    with open(logfile, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal reaches us only; we stop it in order
        )
    return proc, logfile


def start_bare(port: int, routes_file: Path) -> tuple[subprocess.Popen[bytes], Path]:
    logfile = DATA_DIR / "bare.log"
    with open(logfile, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scripts.benchlib", "bare-server", str(port), str(routes_file)],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, logfile


_data_dir_lock: int | None = None


def lock_data_dir(timeout: float = 1800.0) -> None:
    """Hold var/bench for this process's lifetime: two benchmarks at once would share one embedded
    PostgreSQL and Redis (and disturb each other's figures), so a second one waits for the first."""
    global _data_dir_lock
    if _data_dir_lock is not None:
        return
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    fd = os.open(DATA_DIR / ".bench.lock", os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout
    waiting = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise RuntimeError(f"another benchmark held {DATA_DIR} for {timeout:.0f} s") from None
            if not waiting:
                log(f"another benchmark is using {DATA_DIR.relative_to(ROOT)}; waiting for it to finish")
                waiting = True
            time.sleep(1.0)
    _data_dir_lock = fd


def start_and_wait_service(
    extra_env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], int]:
    """Start the service on a free port and wait for /readyz. Stop it with stop_server() in a finally."""
    lock_data_dir()
    port = free_port()
    log(
        f"starting service: python -m server, PROCESSES={PROCESSES}, PORT={port}, "
        f"DATA_DIR={DATA_DIR.relative_to(ROOT)}"
    )
    began = time.monotonic()
    for attempt in (1, 2):
        proc, logfile = start_service(port, extra_env)
        try:
            wait_until_ready(proc, port, "/readyz", "service", logfile)
            break
        except RuntimeError:
            stop_server(proc, "service")
            # The embedded Redis answers "loading" while it replays a large append-only file, and the
            # service does not wait for that at start-up: once more, the file is then in the page cache.
            if attempt == 2 or "Redis is loading" not in tail(logfile, 200):
                raise
            log("service start-up met Redis still loading its data; starting it again")
            time.sleep(2.0)
        except BaseException:
            stop_server(proc, "service")
            raise
    log(f"service ready in {time.monotonic() - began:.1f} s")
    return proc, port


def start_and_wait_bare(routes: dict[str, bytes]) -> tuple[subprocess.Popen[bytes], int]:
    """Start the bare server for these routes and check it answers the first one with its bytes."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    routes_file = DATA_DIR / "bare-routes.json"
    write_routes(routes_file, routes)
    port = free_port()
    proc, logfile = start_bare(port, routes_file)
    try:
        first, body = next(iter(routes.items()))
        wait_until_ready(proc, port, first, "bare server", logfile)
        for path, body in routes.items():
            if request(port, "GET", path)[1] != body:
                raise RuntimeError(f"bare server does not return the bytes of {path}")
    except BaseException:
        stop_server(proc, "bare server")
        raise
    log(f"bare Tornado server ready on port {port}")
    return proc, port


def login(port: int, code: str = DEMO_LOGIN_CODE) -> str:
    """Log a WeChat user in through the sandbox; returns the access token."""
    status, raw = request(
        port,
        "POST",
        "/api/v1/auth/wechat-login",
        body=json.dumps({"code": code}).encode(),
        headers={"Content-Type": "application/json"},
    )
    if status != 200:
        raise RuntimeError(f"demo login failed: {status} {raw[:500]!r}")
    token: str = json.loads(raw)["access_token"]
    return token


def stop_server(proc: subprocess.Popen[bytes], what: str) -> None:
    """SIGINT the forked workers (they drain and exit 0), so the parent leaves fork_processes normally
    and runs its clean-up (embedded Redis and PostgreSQL, WeChat sandbox). Escalate if that stalls."""
    session = proc.pid
    workers = 0
    with contextlib.suppress(psutil.Error):
        parent = psutil.Process(proc.pid)
        for child in parent.children():
            if child.cmdline() == parent.cmdline():
                child.send_signal(signal.SIGINT)
                workers += 1
    # Not forked yet (still starting): SIGINT the parent at once, its ExitStack stops what it started.
    steps = [(signal.SIGINT, 20.0), (signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)]
    for sig, wait in [(None, 20.0), *steps] if workers else steps:
        if sig == signal.SIGKILL:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(session, sig)
        elif sig is not None:
            proc.send_signal(sig)
        try:
            proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            log(f"{what} still running, escalating")
    # Anything left in the server's session (e.g. a PostgreSQL the clean-up could not stop).
    leftovers = []
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if p.pid != os.getpid() and os.getsid(p.pid) == session:
                leftovers.append(p)
    for p in leftovers:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(leftovers, timeout=10)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    if leftovers:
        log(f"{what}: terminated {len(leftovers)} leftover process(es)")


@contextlib.contextmanager
def stopping(started: list[tuple[subprocess.Popen[bytes], str]]) -> Iterator[None]:
    """Stop every server appended to `started`, last first, however the block ends; a second Ctrl-C
    during the clean-up cannot skip it."""
    try:
        yield
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for proc, what in reversed(started):
                log(f"stopping {what}")
                stop_server(proc, what)
        finally:
            signal.signal(signal.SIGINT, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def install_signal_handlers() -> None:
    """Ctrl-C and `kill` both unwind through the clean-up that stops the servers (SIGINT is set
    explicitly: a shell without job control starts background commands with it ignored)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)


# ==== driver: sampling ==============================================================================


@dataclass
class Sample:
    at: float
    rss: dict[str, int]
    uss: dict[str, int]  # private memory, Tornado processes only (reading smaps is slower)
    cpu: dict[str, float]
    conns: dict[str, int]
    busy: float  # CPU seconds all cores spent running processes (user, nice, system, irq)
    steal: float  # CPU seconds the hypervisor gave to other guests


def label_processes(
    server_pid: int, loadgen_pid: int, with_postgres: bool
) -> dict[str, list[psutil.Process]]:
    """Group the processes to sample: one key per Tornado process, the rest by role."""
    groups: dict[str, list[psutil.Process]] = {}
    parent = psutil.Process(server_pid)
    groups[f"tornado master ({parent.pid})"] = [parent]
    workers = 0
    for child in parent.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            cmdline = child.cmdline()
            if cmdline == parent.cmdline():
                workers += 1
                groups[f"tornado worker {workers} ({child.pid})"] = [child]
            elif "redis-server" in child.name():
                groups.setdefault("redis-server", []).append(child)
            elif any("wechat_sandbox" in part for part in cmdline):
                groups.setdefault("wechat sandbox", []).append(child)
            elif "postgres" not in child.name():
                groups.setdefault(child.name(), []).append(child)
    if with_postgres:
        postmaster = DATA_DIR / "pg" / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, psutil.Error):
            pg = psutil.Process(int(postmaster.read_text().split()[0]))
            groups[POSTGRES] = [pg, *pg.children(recursive=True)]
    groups[CLIENT_SIDE[0]] = [psutil.Process(loadgen_pid)]
    groups[CLIENT_SIDE[1]] = [psutil.Process()]
    return groups


def refresh_postgres(groups: dict[str, list[psutil.Process]]) -> None:
    """PostgreSQL starts backends (and autovacuum workers) as it goes: pick up the new ones."""
    procs = groups.get(POSTGRES)
    if procs:
        with contextlib.suppress(psutil.Error):
            known = {p.pid for p in procs}
            procs += [c for c in procs[0].children(recursive=True) if c.pid not in known]


def sample(
    groups: dict[str, list[psutil.Process]], port: int, count_connections: bool, private_memory: bool = True
) -> Sample:
    """CPU and memory of each group now. Reading private memory (smaps) costs the sampler, and the
    sampled process, several ms each time: a benchmark that reports none passes private_memory=False."""
    rss: dict[str, int] = {}
    uss: dict[str, int] = {}
    cpu: dict[str, float] = {}
    conns: dict[str, int] = {}
    for key, procs in groups.items():
        total_rss = 0
        total_cpu = 0.0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                with p.oneshot():
                    total_rss += p.memory_info().rss
                    times = p.cpu_times()
                    total_cpu += times.user + times.system
                    if key == POSTGRES and p is procs[0]:
                        # backends that exited: the postmaster reaped them, their CPU is its children's
                        total_cpu += times.children_user + times.children_system
                if private_memory and key.startswith("tornado"):
                    uss[key] = p.memory_full_info().uss
                if count_connections and key.startswith("tornado worker"):
                    conns[key] = sum(
                        1
                        for c in p.net_connections(kind="tcp")
                        if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port
                    )
        rss[key] = total_rss
        cpu[key] = total_cpu
    times = psutil.cpu_times()
    # softirq (mostly our own loopback traffic) is charged to no process, so it stays out of "busy"
    busy = times.user + times.nice + times.system + getattr(times, "irq", 0.0)
    return Sample(time.monotonic(), rss, uss, cpu, conns, busy, getattr(times, "steal", 0.0))


def percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def cpu_shares(first: Sample, last: Sample) -> tuple[dict[str, float], float, float]:
    """CPU % of one core per process group between two samples, plus the rest of the machine and steal
    (approximate: process and machine counters tick separately, hence never below zero)."""
    span = max(last.at - first.at, 1e-9)
    used = {k: 100.0 * (last.cpu.get(k, 0.0) - first.cpu.get(k, 0.0)) / span for k in first.cpu}
    others = max(0.0, 100.0 * (last.busy - first.busy) / span - sum(used.values()))
    return used, others, 100.0 * (last.steal - first.steal) / span


# ==== driver: closed-loop segments ==================================================================


@dataclass
class Segment:
    """One load-generator run against one target: its latencies and the process samples of its window."""

    seconds: float
    latencies: array.array[float]
    summary: dict[str, Any]
    window: list[Sample]


def run_segment(
    name: str,
    server: subprocess.Popen[bytes],
    port: int,
    token: str,
    targets_file: Path,
    clients: int,
    warmup: float,
    seconds: float,
    with_postgres: bool,
) -> Segment:
    latencies_file = DATA_DIR / f"latencies-{name}.bin"
    loadgen = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scripts.benchlib",
            "load-gen",
            str(port),
            "--targets",
            str(targets_file),
            "--clients",
            str(clients),
            "--warmup",
            str(warmup),
            "--seconds",
            str(seconds),
            "--latencies-out",
            str(latencies_file),
        ],
        cwd=ROOT,
        env={**os.environ, "BENCH_TOKEN": token},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    samples: list[Sample] = []
    try:
        groups = label_processes(server.pid, loadgen.pid, with_postgres)
        began = time.monotonic()
        deadline = began + warmup + seconds + 60
        counted = False
        while loadgen.poll() is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: load generator did not finish")
            # counting connections is costly (it scans every socket), so once, a second into the window
            count = not counted and time.monotonic() > began + warmup + 1.0
            samples.append(sample(groups, port, count_connections=count))
            counted = counted or count
            time.sleep(SAMPLE_INTERVAL)
        out, _ = loadgen.communicate()
    finally:
        if loadgen.poll() is None:
            loadgen.kill()
            loadgen.wait()
    if loadgen.returncode != 0:
        raise RuntimeError(f"{name}: load generator failed with code {loadgen.returncode}")
    summary = json.loads(out)
    latencies = array.array("d")
    with open(latencies_file, "rb") as f:
        latencies.frombytes(f.read())
    latencies_file.unlink()
    start, end = summary["window_monotonic"]
    window = [s for s in samples if start <= s.at <= end] or samples[-2:]
    return Segment(seconds, latencies, summary, window)


def aggregate(name: str, segments: list[Segment]) -> dict[str, Any]:
    """Merge the segments of one target: all latencies, total time, peak RSS, CPU over all windows."""
    ordered = sorted(x for seg in segments for x in seg.latencies)
    seconds = sum(seg.seconds for seg in segments)
    keys: list[str] = []
    for seg in segments:
        keys += [k for k in seg.window[0].rss if k not in keys]
    cpu_time: dict[str, float] = dict.fromkeys(keys, 0.0)
    busy = steal = span = 0.0
    for seg in segments:
        first, last = seg.window[0], seg.window[-1]
        span += last.at - first.at
        busy += last.busy - first.busy
        steal += last.steal - first.steal
        for key in keys:
            cpu_time[key] += last.cpu.get(key, 0.0) - first.cpu.get(key, 0.0)
    span = max(span, 1e-9)
    processes = []
    for key in keys:
        conns = [s.conns[key] for seg in segments for s in seg.window if key in s.conns]
        uss = [s.uss[key] for seg in segments for s in seg.window if key in s.uss]
        processes.append(
            {
                "process": key,
                "peak_rss_mib": round(
                    max(s.rss.get(key, 0) for seg in segments for s in seg.window) / MIB, 1
                ),
                "peak_uss_mib": round(max(uss) / MIB, 1) if uss else None,
                "cpu_percent": round(100.0 * cpu_time[key] / span, 1),
                "connections": conns[-1] if conns else None,
            }
        )
    statuses: Counter[str] = Counter()
    for seg in segments:
        statuses.update(seg.summary["statuses"])
    bad_bodies = sum(seg.summary["bad_bodies"] for seg in segments)
    connection_errors = sum(seg.summary["connection_errors"] for seg in segments)
    protocol_errors = sum(seg.summary["protocol_errors"] for seg in segments)
    ok = statuses.get("200", 0) - bad_bodies
    total = len(ordered)
    # CPU the server side (Tornado processes, Redis, PostgreSQL) spent per request: robust to neighbours
    server_cpu = sum(v for k, v in cpu_time.items() if k not in CLIENT_SIDE)
    requests_in_span = total / seconds * span
    return {
        "target": name,
        "requests": total,
        "requests_per_second": round(total / seconds, 1),
        "requests_per_second_by_round": [round(len(seg.latencies) / seg.seconds, 1) for seg in segments],
        "p50_ms": round(1000 * percentile(ordered, 0.50), 2),
        "p99_ms": round(1000 * percentile(ordered, 0.99), 2),
        "max_ms": round(1000 * (ordered[-1] if ordered else math.nan), 2),
        "server_cpu_us_per_request": round(1e6 * server_cpu / max(requests_in_span, 1.0), 1),
        "ok": ok,
        "errors": total - ok + connection_errors + protocol_errors,
        "statuses": dict(sorted(statuses.items())),
        "bad_bodies": bad_bodies,
        "connection_errors": connection_errors,
        "protocol_errors": protocol_errors,
        "processes": processes,
        # approximate (process and machine counters tick separately), hence never below zero
        "other_processes_cpu_percent": max(0.0, round(100.0 * (busy - sum(cpu_time.values())) / span, 1)),
        "steal_cpu_percent": round(100.0 * steal / span, 1),
    }


@dataclass
class Target:
    """One server to drive in the alternating rounds, and what to request from it."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    with_postgres: bool
    requests: list[tuple[str, bytes]]  # (path with query, expected body)


def run_rounds(
    targets: list[Target], token: str, clients: int, warmup: float, seconds: float, rounds: int
) -> dict[str, dict[str, Any]]:
    """Drive every target for `seconds` in total, split into `rounds` alternating rounds (so all see the
    same background load); returns aggregate() per target name."""
    segments: dict[str, list[Segment]] = {t.name: [] for t in targets}
    files = {}
    for t in targets:
        files[t.name] = DATA_DIR / f"targets-{t.name}.json"
        write_targets(files[t.name], t.requests)
    per_round = seconds / rounds
    for index in range(rounds):
        # the servers stay warm between rounds; a short warm-up re-opens the connections
        round_warmup = warmup if index == 0 else min(warmup, 1.0)
        for t in targets:
            log(
                f"round {index + 1}/{rounds}, {t.name}: {clients} clients, "
                f"{round_warmup:g} s warm-up + {per_round:g} s measurement"
            )
            segments[t.name].append(
                run_segment(
                    t.name,
                    t.proc,
                    t.port,
                    token,
                    files[t.name],
                    clients,
                    round_warmup,
                    per_round,
                    t.with_postgres,
                )
            )
    for f in files.values():
        f.unlink(missing_ok=True)
    return {name: aggregate(name, segs) for name, segs in segments.items()}


# ==== report ========================================================================================


def print_latency_table(rows: list[tuple[str, dict[str, Any]]]) -> None:
    header = (
        f"{'target':<26}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'requests':>10}{'errors':>8}"
        f"{'server CPU µs/req':>19}"
    )
    print(header)
    print("-" * len(header))
    for label, r in rows:
        print(
            f"{label:<26}{r['requests_per_second']:>10.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
            f"{r['max_ms']:>9.2f}{r['requests']:>10}{r['errors']:>8}{r['server_cpu_us_per_request']:>19.0f}"
        )


def print_rounds(rows: list[tuple[str, dict[str, Any]]]) -> None:
    for label, r in rows:
        rounds = " / ".join(f"{x:.0f}" for x in r["requests_per_second_by_round"])
        print(f"  req/s by round, {label}: {rounds}")


def print_process_table(rows: list[tuple[str, dict[str, Any]]]) -> None:
    """Peak memory and CPU per process for each target, and the warning when the machine was busy."""
    header = f"{'target':<10}{'process':<34}{'peak RSS MiB':>13}{'USS MiB':>9}{'CPU %':>8}{'conns':>7}"
    print(header)
    print("-" * len(header))
    for label, r in rows:
        for p in r["processes"]:
            conns = "" if p["connections"] is None else str(p["connections"])
            uss = "" if p["peak_uss_mib"] is None else f"{p['peak_uss_mib']:.1f}"
            print(
                f"{label:<10}{p['process']:<34}{p['peak_rss_mib']:>13.1f}{uss:>9}"
                f"{p['cpu_percent']:>8.1f}{conns:>7}"
            )
            label = ""
        blank = f"{'':<10}"
        print(f"{blank}{'other processes on the machine':<56}{r['other_processes_cpu_percent']:>8.1f}")
        print(f"{blank}{'hypervisor steal':<56}{r['steal_cpu_percent']:>8.1f}")
    print("(peak over the measurement window; RSS of forked workers counts pages shared with the master,")
    print(
        " USS only the process's private pages; CPU % is of one core; conns = client connections per worker)"
    )
    warn_if_busy(max(r["other_processes_cpu_percent"] + r["steal_cpu_percent"] for _, r in rows))


def warn_if_busy(busy_elsewhere: float, advice: str = "compare server CPU µs/req") -> None:
    if busy_elsewhere > OTHER_CPU_WARNING_PERCENT:
        print(
            f"WARNING: other processes (and hypervisor steal) took up to {busy_elsewhere:.0f} % of a core: "
            f"figures are disturbed; {advice}"
        )


def verdict(label: str, ok: bool) -> str:
    return f"{label} {'PASS' if ok else 'FAIL'}"


# ==== entry point for the subprocesses ==============================================================


def main() -> None:
    parser = argparse.ArgumentParser(description="internal: the bare server and the load generator")
    sub = parser.add_subparsers(dest="mode", required=True)
    bare = sub.add_parser("bare-server")
    bare.add_argument("port", type=int)
    bare.add_argument("routes")
    gen = sub.add_parser("load-gen")
    gen.add_argument("port", type=int)
    gen.add_argument("--targets", required=True)
    gen.add_argument("--clients", type=int, required=True)
    gen.add_argument("--warmup", type=float, required=True)
    gen.add_argument("--seconds", type=float, required=True)
    gen.add_argument("--latencies-out", required=True)
    args = parser.parse_args()
    if args.mode == "bare-server":
        run_bare_server(args.port, read_routes(Path(args.routes)), PROCESSES)
    else:
        run_load_gen(args)


if __name__ == "__main__":
    main()
