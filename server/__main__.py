"""`python -m server`: settings → embedded servers (if no URLs) → migrations → demo data → listen."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
from contextlib import ExitStack, closing, suppress

import tornado.httpserver
import tornado.netutil
import tornado.process
import uvloop
from pydantic import SecretStr

from course_catalog.loader import load_catalogue
from handlers.deps import Deps
from infra.config import Settings
from infra.embedded import EmbeddedServers
from models.catalog.service import sync_catalogue
from models.demo import load_demo, load_demo_evening_classes
from models.surveys.demo import load_demo_surveys
from server.app import make_app
from server.migrate import upgrade
from server.wechat_sandbox import SANDBOX_APPID, SANDBOX_SECRET

log = logging.getLogger("server")
LISTEN_BACKLOG = 4096
DRAIN_SECONDS = 20  # how long a stopping worker waits for the requests it has taken in
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
    are still there for the workers' last flush."""
    workers = settings.processes or tornado.process.cpu_count()
    if workers == 1:
        uvloop.run(_serve(settings, listen(settings.port, shared=False)))
        return
    # Each worker listens on its own SO_REUSEPORT socket and the kernel spreads new connections evenly
    # over them. With one socket shared by all, whichever worker woke first accepted a whole burst:
    # in scripts.bench_platform one worker held 63 of the 64 keep-alive connections and did all the
    # work while the other idled. The parent binds first, so that a port in use fails here, once; and it
    # looks for a listener that would let it bind beside (another instance of this service, say), since
    # the two would then share the connections.
    probe = listen(settings.port, shared=True)
    port = probe[0].getsockname()[1]
    for sock in probe:
        sock.close()
    if _listened_on(port):
        raise OSError(
            errno.EADDRINUSE, f"{os.strerror(errno.EADDRINUSE)}: another process serves port {port}"
        )
    stopping = False
    children: set[int] = set()

    def spawn() -> None:
        pid = os.fork()
        if pid == 0:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_DFL)
            uvloop.run(_serve(settings, listen(port, shared=True)))
            os._exit(0)
        children.add(pid)

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    # Everything imported so far is shared by the workers copy-on-write; frozen, the collector never
    # walks (or writes to) it again: full collections drop from ~120 ms to a few ms, and less memory.
    gc.freeze()
    for _ in range(workers):
        spawn()
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        children.discard(pid)
        if not stopping and os.waitstatus_to_exitcode(status) != 0:
            log.error(
                "worker %d exited with status %d; starting another", pid, os.waitstatus_to_exitcode(status)
            )
            spawn()


def _listened_on(port: int) -> bool:
    with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def listen(port: int, *, shared: bool) -> list[socket.socket]:
    # A deep accept queue: a sign-up rush opens thousands of connections at once, and the default (128)
    # makes the kernel reset the overflow before we could answer even a 429.
    return tornado.netutil.bind_sockets(port, backlog=LISTEN_BACKLOG, reuse_port=shared)


async def _serve(settings: Settings, sockets: list[socket.socket]) -> None:
    # Hundreds of requests in flight keep many young objects alive at once; at Python's default (a young
    # collection every 700 net allocations) the collector runs all the time. In the sign-up rush
    # (scripts.bench_signups, two runs each) this took about 4% off the server CPU per sign-up, of the
    # order of that machine's run-to-run noise; GET /me (scripts.bench_platform) showed no difference.
    gc.set_threshold(YOUNG_COLLECTION_EVERY, *gc.get_threshold()[1:])
    deps = Deps.build(settings)
    server = tornado.httpserver.HTTPServer(
        make_app(deps),
        xheaders=settings.trust_proxy_headers,
        max_body_size=settings.max_upload_bytes + 64 * 1024,
    )
    server.add_sockets(sockets)
    log.info("serving on port %d (pid %d)", settings.port, os.getpid())
    stop = asyncio.Event()
    flusher = asyncio.create_task(deps.progress.run(stop))
    notifier = asyncio.create_task(deps.notifications.run(stop))
    text_checker = asyncio.create_task(deps.texts.run(stop))
    listener = asyncio.create_task(deps.local.listen())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()
    # Requests already taken in are answered (a sign-up cut off would leave its parent not knowing
    # whether they hold a seat); then the idle connections are closed.
    running = await deps.in_flight.drain(DRAIN_SECONDS)
    if running:
        log.warning("stopping with %d requests still running after %d s", running, DRAIN_SECONDS)
    await server.close_all_connections()
    await flusher  # one last flush of lesson progress before the clients close
    await notifier  # lets the batch in flight record its outcomes (no message left half-sent)
    await text_checker
    listener.cancel()
    with suppress(asyncio.CancelledError):
        await listener
    await deps.close()


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    settings = Settings()
    with ExitStack() as stack:
        settings = prepare(settings, stack)
        serve(settings)
    log.info("stopped")


if __name__ == "__main__":
    main()
