"""`python -m server`: settings → embedded servers (if no URLs) → migrations → demo data → listen."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from contextlib import ExitStack, closing

import tornado.httpserver
import tornado.netutil
import tornado.process
from pydantic import SecretStr

from course_catalog.loader import load_catalogue
from models.catalog.service import sync_catalogue
from models.demo import load_demo
from server.app import make_app
from server.config import Settings
from server.deps import Deps
from server.embedded import EmbeddedServers
from server.migrate import upgrade
from server.wechat_sandbox import SANDBOX_APPID, SANDBOX_SECRET

log = logging.getLogger("server")


def owned_by_this_process(fn: Callable[[], object]) -> Callable[[], None]:
    """Clean-up that only the starting process may run: forked workers exit through the same code."""
    owner = os.getpid()

    def run() -> None:
        if os.getpid() == owner:
            fn()

    return run


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_sandbox(stack: ExitStack) -> str:
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603 - our own module
        [sys.executable, "-m", "server.wechat_sandbox", "--port", str(port)], stdout=subprocess.PIPE
    )
    stack.callback(owned_by_this_process(proc.terminate))
    assert proc.stdout is not None
    base = proc.stdout.readline().decode().strip()
    log.info("WeChat sandbox on %s: any login code X logs in the WeChat user with openid X", base)
    return base


def prepare(settings: Settings, stack: ExitStack) -> Settings:
    """Resolve URLs (starting what is embedded), migrate, load demo data. Runs before forking."""
    updates: dict[str, object] = {}
    if not settings.database_url or not settings.redis_url:
        embedded = EmbeddedServers(settings.data_dir)
        stack.callback(owned_by_this_process(embedded.stop))
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
            log.info("demo data loaded (see README for the demo accounts)")
        await deps.redis.incr(deps.keys.catalogue_version())
    finally:
        await deps.close()


def serve(settings: Settings) -> None:
    sockets = tornado.netutil.bind_sockets(settings.port)
    if settings.processes != 1:
        tornado.process.fork_processes(settings.processes)
    asyncio.run(_serve(settings, sockets))


async def _serve(settings: Settings, sockets: list[socket.socket]) -> None:
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
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()
    await server.close_all_connections()
    await flusher  # one last flush of lesson progress before the clients close
    await deps.close()


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    settings = Settings()
    with ExitStack() as stack:
        settings = prepare(settings, stack)
        try:
            serve(settings)
        except KeyboardInterrupt:
            pass
    log.info("stopped")


if __name__ == "__main__":
    main()
