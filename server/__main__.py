"""`python -m server`: settings → embedded servers (if no URLs) → migrations → demo data → listen.

With PROCESSES > 1 the process forks its workers and one metrics process (GET /metrics on
METRICS_HOST:METRICS_PORT, reading what every worker counted) and supervises them."""

from __future__ import annotations

from infra.config import Settings
from server import metrics_dir

if __name__ == "__main__":
    # Before the imports below reach prometheus_client: it chooses its multiprocess mode when first
    # imported, from this variable.
    metrics_dir.claim(Settings().data_dir)

import asyncio
import errno
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from contextlib import ExitStack, closing, suppress

import tornado.httpserver
import tornado.netutil
import tornado.process
import uvloop
from prometheus_client import multiprocess
from pydantic import SecretStr

from course_catalog.loader import load_catalogue
from handlers.deps import Deps
from handlers.metrics import Exporter, sample_every
from infra import logs
from infra.config import Settings, with_installation_secrets
from infra.embedded import EmbeddedServers
from infra.metrics import multiprocess_dir
from models.catalog.service import sync_catalogue
from models.demo import load_demo, load_demo_evening_classes
from models.surveys.demo import load_demo_surveys
from server.app import make_app, make_metrics_app
from server.migrate import upgrade
from server.wechat_sandbox import SANDBOX_APPID, SANDBOX_SECRET

log = logging.getLogger("server")
LISTEN_BACKLOG = 4096
YOUNG_COLLECTION_EVERY = 20_000  # net allocations between young-generation collections (default 700)


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_sandbox(stack: ExitStack) -> str:
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603 - our own module
        [sys.executable, "-m", "server.wechat_sandbox", "--port", str(port)],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    stack.callback(proc.terminate)
    assert proc.stdout is not None
    base = proc.stdout.readline().decode().strip()
    log.info("WeChat sandbox on %s: any login code X logs in the WeChat user with openid X", base)
    return base


def prepare(settings: Settings, stack: ExitStack) -> Settings:
    """Resolve URLs (starting what is embedded), migrate, load demo data. Runs before forking."""
    updates: dict[str, object] = {}
    if not settings.database_url or not settings.redis_url:
        embedded = EmbeddedServers(settings.data_dir)
        stack.callback(embedded.stop)
        if not settings.database_url:
            updates["database_url"] = embedded.start_postgres()
        if not settings.redis_url:
            updates["redis_url"] = embedded.start_redis()
    if not settings.wechat_appid:
        updates.update(
            wechat_appid=SANDBOX_APPID,
            wechat_secret=SecretStr(SANDBOX_SECRET),
            wechat_api_base=start_sandbox(stack),
        )
    settings = settings.model_copy(update=updates)
    assert settings.database_url
    upgrade(settings.database_url)
    asyncio.run(_load_data(settings))
    return settings


async def _load_data(settings: Settings) -> None:
    """The shipped course catalogue, always; the demo data outside production."""
    deps = Deps.build(settings, pool_size=1)
    try:
        async with deps.sessions() as session, session.begin():
            report = await sync_catalogue(session, load_catalogue())
        log.info("course catalogue synced: %s", report.model_dump())
        if settings.demo_data_allowed:
            async with deps.sessions() as session, session.begin():
                await load_demo(session, deps.clock(), settings.privacy_policy_version)
                await load_demo_evening_classes(session, deps.clock())
                await load_demo_surveys(session, deps.clock())
            log.info("demo data loaded (see README for the demo accounts)")
        await deps.redis.incr(deps.keys.catalogue_version())
    finally:
        await deps.close()


def serve(settings: Settings) -> None:
    """Serve in this process, or in N forked workers, each with its own listening socket on the port.

    The parent only supervises: it passes SIGINT/SIGTERM on, replaces a worker that crashed, and
    returns once every worker has finished its graceful stop, so the embedded servers it then stops
    are still there for the workers' last flush.

    The metrics listener is bound here, once, so that a port in use fails the start. With one process,
    that process serves it beside the API. With several, a process of its own serves it (forked like
    the workers, replaced like them if it crashes): the supervisor stays single-threaded, with nothing
    to share with what it forks; a scrape never waits behind requests in a busy worker's event loop;
    and what is read at scrape time for the whole service (the outbox backlog, the probes) is read
    once, not once per worker. It stops after the last worker, so scrapes go on during a drain."""
    workers = settings.processes or tornado.process.cpu_count()
    if workers == 1:
        metrics_sockets = listen_metrics(settings)
        uvloop.run(_serve(settings, listen(settings, settings.port, shared=False), metrics_sockets))
        return
    # Each worker listens on its own SO_REUSEPORT socket and the kernel spreads new connections evenly
    # over them. With one socket shared by all, whichever worker woke first accepted a whole burst:
    # in scripts.bench_platform one worker held 63 of the 64 keep-alive connections and did all the
    # work while the other idled. The parent binds first, so that a port in use fails here, once; and it
    # looks for a listener that would let it bind beside (another instance of this service, say), since
    # the two would then share the connections.
    probe = listen(settings, settings.port, shared=True)
    port = probe[0].getsockname()[1]
    for sock in probe:
        sock.close()
    if _listened_on(settings.listen_host or "127.0.0.1", port):
        raise OSError(
            errno.EADDRINUSE, f"{os.strerror(errno.EADDRINUSE)}: another process serves port {port}"
        )
    metrics_sockets = listen_metrics(settings)
    stopping = False
    workers_running: set[int] = set()
    metrics_process: int | None = None

    def fork(run: Callable[[], None]) -> int:
        pid = os.fork()
        if pid == 0:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_DFL)
            try:
                run()
            except BaseException:
                # Never back into the supervisor's stack: its clean-up (the embedded servers) is not ours.
                log.exception("process %d failed", os.getpid())
                os._exit(1)
            os._exit(0)
        return pid

    def spawn_worker() -> None:
        def run() -> None:
            for sock in metrics_sockets:
                sock.close()
            uvloop.run(_serve(settings, listen(settings, port, shared=True), []))

        workers_running.add(fork(run))

    def spawn_metrics_process() -> None:
        nonlocal metrics_process
        if metrics_sockets:
            metrics_process = fork(lambda: uvloop.run(_serve_metrics(settings, metrics_sockets)))

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in workers_running:
            with suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    # Everything imported so far is shared by the workers copy-on-write; frozen, the collector never
    # walks (or writes to) it again: full collections drop from ~120 ms to a few ms, and less memory.
    gc.freeze()
    spawn_metrics_process()
    for _ in range(workers):
        spawn_worker()
    while workers_running or metrics_process is not None:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        code = os.waitstatus_to_exitcode(status)
        if multiprocess_dir():
            # Its live gauges (connections in use...) stop counting; its counters stay in the totals.
            multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
        if pid == metrics_process:
            metrics_process = None
            if not stopping:
                log.error("metrics process %d exited with status %d; starting another", pid, code)
                spawn_metrics_process()
        elif pid in workers_running:
            workers_running.discard(pid)
            if not stopping and code != 0:
                log.error("worker %d exited with status %d; starting another", pid, code)
                spawn_worker()
        if not workers_running and metrics_process is not None:
            stopping = True  # the last worker is gone (stopped, or exited of itself): so is the service
            with suppress(ProcessLookupError):
                os.kill(metrics_process, signal.SIGTERM)


def listen_metrics(settings: Settings) -> list[socket.socket]:
    """The metrics listener's sockets (none with METRICS_PORT=0)."""
    if not settings.metrics_port:
        return []
    try:
        return tornado.netutil.bind_sockets(settings.metrics_port, settings.metrics_host)
    except OSError as exc:
        raise OSError(
            exc.errno, f"{exc.strerror}: metrics port {settings.metrics_host}:{settings.metrics_port}"
        ) from exc


def _listened_on(host: str, port: int) -> bool:
    with suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def listen(settings: Settings, port: int, *, shared: bool) -> list[socket.socket]:
    # A deep accept queue: a sign-up rush opens thousands of connections at once, and the default (128)
    # makes the kernel reset the overflow before we could answer even a 429.
    return tornado.netutil.bind_sockets(port, settings.listen_host, backlog=LISTEN_BACKLOG, reuse_port=shared)


async def _serve(
    settings: Settings, sockets: list[socket.socket], metrics_sockets: list[socket.socket]
) -> None:
    # Hundreds of requests in flight keep many young objects alive at once; at Python's default (a young
    # collection every 700 net allocations) the collector runs all the time. In the sign-up rush
    # (scripts.bench_signups, two runs each) this took about 4% off the server CPU per sign-up, of the
    # order of that machine's run-to-run noise; GET /me (scripts.bench_platform) showed no difference.
    gc.set_threshold(YOUNG_COLLECTION_EVERY, *gc.get_threshold()[1:])
    deps = Deps.build(settings)
    server = tornado.httpserver.HTTPServer(
        make_app(deps),
        xheaders=settings.trust_proxy_headers,
        max_body_size=settings.max_body_bytes,  # upload routes raise it for themselves (handlers.uploads)
    )
    server.add_sockets(sockets)
    log.info("serving on %s:%d (pid %d)", settings.listen_host or "*", settings.port, os.getpid())
    exporter = metrics_server = None
    if metrics_sockets:  # the only process: it serves the metrics listener too
        exporter = Exporter(settings, local=deps)
        metrics_server = tornado.httpserver.HTTPServer(make_metrics_app(exporter))
        metrics_server.add_sockets(metrics_sockets)
        _log_metrics_listener(settings)
    stop = asyncio.Event()
    flusher = asyncio.create_task(deps.progress.run(stop))
    notifier = asyncio.create_task(deps.notifications.run(stop))
    sampler = asyncio.create_task(sample_every(deps, stop))
    text_checker = asyncio.create_task(deps.texts.run(stop))
    listener = asyncio.create_task(deps.local.listen())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()
    # Requests already taken in are answered (a sign-up cut off would leave its parent not knowing
    # whether they hold a seat); then the idle connections are closed.
    running = await deps.in_flight.drain(settings.drain_seconds)
    if running:
        log.warning("stopping with %d requests still running after %g s", running, settings.drain_seconds)
    await server.close_all_connections()
    await flusher  # one last flush of lesson progress before the clients close
    await notifier  # lets the batch in flight record its outcomes (no message left half-sent)
    await sampler
    await text_checker
    listener.cancel()
    with suppress(asyncio.CancelledError):
        await listener
    if metrics_server is not None and exporter is not None:
        metrics_server.stop()
        await metrics_server.close_all_connections()
        await exporter.close()
    await deps.close()


def configure() -> Settings:
    """Settings from the environment; in development, this installation's own secrets."""
    return with_installation_secrets(Settings())


async def _serve_metrics(settings: Settings, sockets: list[socket.socket]) -> None:
    """The metrics process: GET /metrics, from the workers' files and the scrape-time figures."""
    exporter = Exporter(settings)
    server = tornado.httpserver.HTTPServer(make_metrics_app(exporter))
    server.add_sockets(sockets)
    _log_metrics_listener(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Ctrl-C reaches the whole process group; the supervisor stops this process after the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.stop()
    await server.close_all_connections()
    await exporter.close()


def _log_metrics_listener(settings: Settings) -> None:
    log.info(
        "metrics on http://%s:%d/metrics (pid %d)", settings.metrics_host, settings.metrics_port, os.getpid()
    )


def main() -> None:
    settings = configure()
    logs.configure(os.environ.get("LOG_LEVEL", "INFO"), settings.log_format)
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    try:
        with ExitStack() as stack:
            settings = prepare(settings, stack)
            serve(settings)
    finally:
        metrics_dir.release()
    log.info("stopped")


if __name__ == "__main__":
    main()
