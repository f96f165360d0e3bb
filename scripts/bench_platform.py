"""Benchmark GET /api/v1/me on the real service against a bare Tornado handler returning the same JSON.

    .venv/bin/python -m scripts.bench_platform [--seconds 15] [--warmup 3] [--clients 64] [--json]

What it does, in one run:
1. Starts the service (`python -m server`) with PROCESSES=2 on a free port, with its own embedded
   PostgreSQL and Redis under var/bench (so it never touches a developer's `make run` data), waits for
   /readyz, logs in the demo parent through the WeChat sandbox and fetches /api/v1/me once.
2. Starts a bare Tornado server with the same fork model (bind_sockets + fork_processes(2)) whose only
   handler returns exactly those /me bytes, without auth, Redis or database.
3. Drives each target in turn from one load-generator process on 127.0.0.1: N keep-alive HTTP/1.1
   clients (raw asyncio protocol, one request in flight per connection, the same request bytes for both
   targets), a warm-up, then a fixed measurement window in which every latency is recorded.
4. Samples RSS and CPU time of every server process every 0.5 s during the measurement window.
5. Prints requests/s, p50/p99/max latency, errors, peak RSS per process, and the verdict against the goal:
   /me at >= 60 % of the bare handler's requests/s, with p99 < 50 ms.

Caveat: servers and load generator share the machine's cores, so absolute figures are lower than with a
separate client machine; the ratio is the figure to watch. The CPU column shows who used the cores.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "var" / "bench"
ME_PATH = "/api/v1/me"
DEMO_LOGIN_CODE = "demo-parent-a"
PROCESSES = 2
SAMPLE_INTERVAL = 0.5
READY_TIMEOUT = 180.0  # the first run initialises a PostgreSQL cluster and migrates it
GOAL_RATIO = 0.60
GOAL_P99_MS = 50.0
MIB = 1024 * 1024
CLIENT_SIDE = ("load generator", "bench driver")


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# ==== bare server (`--bare-server PORT JSONFILE`) ====================================================


def run_bare_server(port: int, body_file: Path, processes: int) -> None:
    import tornado.httpserver
    import tornado.netutil
    import tornado.process
    import tornado.web

    body = body_file.read_bytes()

    class BareHandler(tornado.web.RequestHandler):
        def get(self) -> None:
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish(body)

    async def serve(sockets: list[socket.socket]) -> None:
        app = tornado.web.Application([(ME_PATH, BareHandler)])
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets(sockets)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        server.stop()
        await server.close_all_connections()

    sockets = tornado.netutil.bind_sockets(port, "127.0.0.1")
    try:
        if processes != 1:
            tornado.process.fork_processes(processes)
        asyncio.run(serve(sockets))
    except KeyboardInterrupt:
        pass


# ==== load generator (`--load-gen PORT`) =============================================================


class _Client(asyncio.Protocol):
    """One keep-alive connection with one request in flight; the next request leaves on the response."""

    def __init__(self, run: _LoadRun) -> None:
        self.run = run
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
        self.transport.write(self.run.request)

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
    request: bytes
    expected: bytes
    clients: int
    t0: float = math.inf  # measurement window, perf_counter seconds
    t1: float = math.inf
    latencies: array.array[float] = field(default_factory=lambda: array.array("d"))
    statuses: Counter[int] = field(default_factory=Counter)
    bad_bodies: int = 0
    connection_errors: int = 0
    protocol_errors: int = 0
    open: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    reconnects: set[asyncio.Task[None]] = field(default_factory=set)

    def reconnect(self) -> None:
        task = asyncio.get_running_loop().create_task(self.connect())
        self.reconnects.add(task)
        task.add_done_callback(self.reconnects.discard)

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        self.open += 1
        try:
            await loop.create_connection(lambda: _Client(self), "127.0.0.1", self.port)
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
            if client.status == 200 and body != self.expected:
                self.bad_bodies += 1
        if now < self.t1:
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


def run_load_gen(args: argparse.Namespace) -> None:
    token = os.environ.get("BENCH_TOKEN", "")
    request = (
        f"GET {args.path} HTTP/1.1\r\nHost: 127.0.0.1:{args.load_gen}\r\n"
        f"Authorization: Bearer {token}\r\nUser-Agent: bench-platform\r\nAccept: */*\r\n\r\n"
    ).encode()
    run = _LoadRun(args.load_gen, request, Path(args.expected).read_bytes(), args.clients)
    summary = asyncio.run(_drive(run, args.warmup, args.seconds))
    with open(args.latencies_out, "wb") as out:
        run.latencies.tofile(out)
    print(json.dumps(summary), flush=True)


# ==== driver ==========================================================================================


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


def start_service(port: int) -> tuple[subprocess.Popen[bytes], Path]:
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


def start_bare(port: int, body_file: Path) -> tuple[subprocess.Popen[bytes], Path]:
    logfile = DATA_DIR / "bare.log"
    with open(logfile, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scripts.bench_platform", "--bare-server", str(port), str(body_file)],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, logfile


def login(port: int) -> tuple[str, bytes]:
    status, raw = request(
        port,
        "POST",
        "/api/v1/auth/wechat-login",
        body=json.dumps({"code": DEMO_LOGIN_CODE}).encode(),
        headers={"Content-Type": "application/json"},
    )
    if status != 200:
        raise RuntimeError(f"demo login failed: {status} {raw[:500]!r}")
    token: str = json.loads(raw)["access_token"]
    status, me = request(port, "GET", ME_PATH, headers={"Authorization": f"Bearer {token}"})
    if status != 200:
        raise RuntimeError(f"GET {ME_PATH} failed: {status} {me[:500]!r}")
    return token, me


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
            groups["postgres (all processes)"] = [pg, *pg.children(recursive=True)]
    groups[CLIENT_SIDE[0]] = [psutil.Process(loadgen_pid)]
    groups[CLIENT_SIDE[1]] = [psutil.Process()]
    return groups


def sample(groups: dict[str, list[psutil.Process]], port: int, count_connections: bool) -> Sample:
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
                if key.startswith("tornado"):
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
    expected_file: Path,
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
            "scripts.bench_platform",
            "--load-gen",
            str(port),
            "--path",
            ME_PATH,
            "--clients",
            str(clients),
            "--warmup",
            str(warmup),
            "--seconds",
            str(seconds),
            "--expected",
            str(expected_file),
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
    cpu_time: Counter[str] = Counter()
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
        "other_processes_cpu_percent": round(100.0 * (busy - sum(cpu_time.values())) / span, 1),
        "steal_cpu_percent": round(100.0 * steal / span, 1),
    }


def report(results: dict[str, Any]) -> None:
    bare, me = results["targets"]["bare"], results["targets"]["me"]
    cfg = results["config"]
    print()
    print(
        f"GET {ME_PATH}, {cfg['clients']} keep-alive clients, {cfg['seconds']:g} s measured per target "
        f"in {cfg['rounds']} alternating round(s) after {cfg['warmup']:g} s warm-up;\n"
        f"{cfg['server_processes']} Tornado processes per server; {cfg['cpu_count']} CPUs shared by servers, "
        "Redis and the load generator (one Python process)"
    )
    print()
    header = (
        f"{'target':<26}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'requests':>10}{'errors':>8}"
        f"{'server CPU µs/req':>19}"
    )
    print(header)
    print("-" * len(header))
    for label, r in (("bare Tornado handler", bare), (f"service {ME_PATH}", me)):
        print(
            f"{label:<26}{r['requests_per_second']:>10.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
            f"{r['max_ms']:>9.2f}{r['requests']:>10}{r['errors']:>8}{r['server_cpu_us_per_request']:>19.0f}"
        )
    if cfg["rounds"] > 1:
        for label, r in (("bare", bare), ("/me", me)):
            rounds = " / ".join(f"{x:.0f}" for x in r["requests_per_second_by_round"])
            print(f"  req/s by round, {label}: {rounds}")
    print()
    header = f"{'target':<10}{'process':<34}{'peak RSS MiB':>13}{'USS MiB':>9}{'CPU %':>8}{'conns':>7}"
    print(header)
    print("-" * len(header))
    for label, r in (("bare", bare), ("/me", me)):
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
    busy_elsewhere = max(r["other_processes_cpu_percent"] + r["steal_cpu_percent"] for r in (bare, me))
    if busy_elsewhere > 10:
        print(
            f"WARNING: other processes (and hypervisor steal) took up to {busy_elsewhere:.0f} % of a core: "
            "figures are disturbed; compare server CPU µs/req"
        )
    print()
    goal = results["goal"]
    print(
        f"throughput ratio /me ÷ bare: {goal['ratio']:.1%} (goal ≥ {GOAL_RATIO:.0%}) "
        f"{'PASS' if goal['ratio_ok'] else 'FAIL'}"
    )
    print(
        f"/me p99: {me['p99_ms']:.2f} ms (goal < {GOAL_P99_MS:g} ms) {'PASS' if goal['p99_ok'] else 'FAIL'}"
    )
    print(f"overall: {'PASS' if goal['passed'] else 'FAIL'}")
    if bare["errors"] or me["errors"]:
        print(f"errors: bare {bare['statuses']} / me {me['statuses']} (see --json for the breakdown)")


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    body_file = DATA_DIR / "me.json"
    service: subprocess.Popen[bytes] | None = None
    bare: subprocess.Popen[bytes] | None = None
    try:
        service_port = free_port()
        log(
            f"starting service: python -m server, PROCESSES={PROCESSES}, PORT={service_port}, "
            f"DATA_DIR={DATA_DIR.relative_to(ROOT)}"
        )
        began = time.monotonic()
        service, service_log = start_service(service_port)
        wait_until_ready(service, service_port, "/readyz", "service", service_log)
        log(f"service ready in {time.monotonic() - began:.1f} s")
        token, me_body = login(service_port)
        body_file.write_bytes(me_body)
        log(f"logged in as {DEMO_LOGIN_CODE}; /me is {len(me_body)} bytes")

        bare_port = free_port()
        bare, bare_log = start_bare(bare_port, body_file)
        wait_until_ready(bare, bare_port, ME_PATH, "bare server", bare_log)
        _, bare_body = request(bare_port, "GET", ME_PATH)
        if bare_body != me_body:
            raise RuntimeError("bare server does not return the /me bytes")
        log(f"bare Tornado server ready on port {bare_port}")

        servers = {"bare": (bare, bare_port, False), "me": (service, service_port, True)}
        segments: dict[str, list[Segment]] = {"bare": [], "me": []}
        per_round = args.seconds / args.rounds
        for index in range(args.rounds):
            # the servers stay warm between rounds; a short warm-up re-opens the connections
            warmup = args.warmup if index == 0 else min(args.warmup, 1.0)
            for name, (proc, port, with_postgres) in servers.items():
                log(
                    f"round {index + 1}/{args.rounds}, {name}: {args.clients} clients, "
                    f"{warmup:g} s warm-up + {per_round:g} s measurement"
                )
                segments[name].append(
                    run_segment(
                        name, proc, port, token, body_file, args.clients, warmup, per_round, with_postgres
                    )
                )
        targets = {name: aggregate(name, segs) for name, segs in segments.items()}
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip clean-up
        try:
            for proc, what in ((bare, "bare server"), (service, "service")):
                if proc is not None:
                    log(f"stopping {what}")
                    stop_server(proc, what)
        finally:
            signal.signal(signal.SIGINT, previous)
    ratio = targets["me"]["requests_per_second"] / max(targets["bare"]["requests_per_second"], 1e-9)
    ratio_ok = ratio >= GOAL_RATIO
    p99_ok = targets["me"]["p99_ms"] < GOAL_P99_MS
    return {
        "config": {
            "clients": args.clients,
            "warmup": args.warmup,
            "seconds": args.seconds,
            "rounds": args.rounds,
            "server_processes": PROCESSES,
            "cpu_count": os.cpu_count(),
            "load_generator": "one Python process (asyncio protocol, keep-alive HTTP/1.1)",
        },
        "targets": targets,
        "goal": {
            "ratio": round(ratio, 4),
            "ratio_min": GOAL_RATIO,
            "ratio_ok": ratio_ok,
            "p99_max_ms": GOAL_P99_MS,
            "p99_ok": p99_ok,
            "passed": ratio_ok and p99_ok,
        },
    }


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="measurement window per target")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up per target, not measured")
    parser.add_argument("--clients", type=int, default=64, help="concurrent keep-alive clients")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="split each target's measurement into this many alternating rounds (bare, /me, bare, ...), "
        "so both see the same background load",
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    # internal modes: the bare server and the load generator run as subprocesses of this script
    parser.add_argument("--bare-server", nargs=2, metavar=("PORT", "JSONFILE"), help=argparse.SUPPRESS)
    parser.add_argument("--load-gen", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--path", default=ME_PATH, help=argparse.SUPPRESS)
    parser.add_argument("--expected", help=argparse.SUPPRESS)
    parser.add_argument("--latencies-out", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.bare_server:
        run_bare_server(int(args.bare_server[0]), Path(args.bare_server[1]), PROCESSES)
        return
    if args.load_gen:
        run_load_gen(args)
        return
    # Ctrl-C and `kill` both unwind through the clean-up that stops the servers (SIGINT is set explicitly:
    # a shell without job control starts background commands with it ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        results = run_benchmark(args)
    except KeyboardInterrupt:
        log("interrupted; servers stopped")
        sys.exit(130)
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    else:
        report(results)


if __name__ == "__main__":
    main()
