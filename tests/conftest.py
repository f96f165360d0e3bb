"""Test infrastructure: a real PostgreSQL (migrated by Alembic) and a real Redis, a fake WeChat API over
real HTTP on 127.0.0.1, and the service itself listening on a free port.

PostgreSQL and Redis are the embedded ones under var/test/, or TEST_DATABASE_URL / TEST_REDIS_URL when
set (the database named there is wiped). Each test gets empty tables and its own Redis key prefix.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import suppress
from pathlib import Path

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from handlers.deps import Deps
from infra.config import Settings
from infra.db import make_engine, make_session_factory
from infra.embedded import EmbeddedServers
from infra.redis import Keys, make_redis
from models.base import Base
from server.app import make_app
from server.migrate import upgrade
from server.wechat_sandbox import SandboxState, start_sandbox
from tests.client import Api

ROOT = Path(__file__).resolve().parent.parent
# Per pytest process, so that several runs (a developer's and CI's, say) can share one embedded cluster.
TEST_DB = f"parent_school_test_{os.getpid()}"


@pytest.fixture(scope="session")
def infra_urls() -> Iterator[tuple[str, str]]:
    embedded = EmbeddedServers(ROOT / "var" / "test")
    redis_dir = f"redis-{os.getpid()}"
    admin_url = None
    try:
        db_url = os.environ.get("TEST_DATABASE_URL")
        if db_url:
            asyncio.run(_run(db_url, "DROP SCHEMA public CASCADE", "CREATE SCHEMA public"))
        else:
            admin_url = embedded.start_postgres()
            asyncio.run(
                _run(
                    admin_url,
                    f'DROP DATABASE IF EXISTS "{TEST_DB}" WITH (FORCE)',
                    f'CREATE DATABASE "{TEST_DB}"',
                )
            )
            db_url = admin_url.replace("/postgres?", f"/{TEST_DB}?")
        redis_url = os.environ.get("TEST_REDIS_URL") or embedded.start_redis(redis_dir)
        upgrade(db_url)
        yield db_url, redis_url
    finally:
        if admin_url:
            asyncio.run(_run(admin_url, f'DROP DATABASE IF EXISTS "{TEST_DB}" WITH (FORCE)'))
        embedded.stop()
        shutil.rmtree(ROOT / "var" / "test" / redis_dir, ignore_errors=True)


async def _run(url: str, *statements: str) -> None:
    """Run statements outside a transaction (CREATE/DROP DATABASE need that)."""
    engine = make_engine(url, pool_size=1).execution_options(isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        for statement in statements:
            await conn.execute(text(statement))
    await engine.dispose()


@pytest.fixture(scope="session")
async def engine(infra_urls: tuple[str, str]) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(infra_urls[0], pool_size=20)
    yield eng
    await eng.dispose()


@pytest.fixture(scope="session")
async def redis(infra_urls: tuple[str, str]) -> AsyncIterator[Redis]:
    client = make_redis(infra_urls[1], max_connections=Settings().redis_max_connections)
    yield client
    await client.aclose()


@pytest.fixture(autouse=True)
async def _empty_tables(request: pytest.FixtureRequest) -> None:
    if "engine" not in request.fixturenames:
        return
    engine: AsyncEngine = request.getfixturevalue("engine")
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture
async def wechat() -> AsyncIterator[tuple[SandboxState, str]]:
    state = SandboxState()
    server, base = start_sandbox(state)
    yield state, base
    server.stop()


@pytest.fixture
def settings(infra_urls: tuple[str, str], wechat: tuple[SandboxState, str]) -> Settings:
    state, base = wechat
    return Settings(
        app_env="test",
        database_url=infra_urls[0],
        redis_url=infra_urls[1],
        redis_prefix=f"test:{uuid.uuid4().hex[:12]}:",
        wechat_appid=state.appid,
        wechat_secret=SecretStr(state.secret),
        wechat_api_base=base,
        wechat_timeout=1.0,
        load_demo_data=False,
    )


@pytest.fixture
async def deps(settings: Settings, engine: AsyncEngine, redis: Redis) -> AsyncIterator[Deps]:
    yield Deps(
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
        redis=redis,
        keys=Keys(settings.redis_prefix),
    )
    async for key in redis.scan_iter(match=f"{settings.redis_prefix}*", count=500):
        await redis.delete(key)


@pytest.fixture
async def api(deps: Deps) -> AsyncIterator[Api]:
    # The per-process cache and its invalidation channel run as in production.
    listener = asyncio.create_task(deps.local.listen())
    for _ in range(200):
        if deps.local.healthy:
            break
        await asyncio.sleep(0.01)
    assert deps.local.healthy, "invalidation channel did not come up"
    sockets = bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    server = HTTPServer(make_app(deps), max_body_size=deps.settings.max_body_bytes)
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    client = Api(f"http://127.0.0.1:{port}")
    yield client
    client.http.close()
    server.stop()
    await server.close_all_connections()
    listener.cancel()
    with suppress(asyncio.CancelledError):
        await listener
