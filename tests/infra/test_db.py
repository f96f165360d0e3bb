"""infra.db: a connection lent in autocommit goes back to the pool transactional again."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from infra.db import autocommit_connection, make_engine, make_session_factory


async def test_a_connection_lent_in_autocommit_is_transactional_again_for_the_next_user(
    infra_urls: tuple[str, str],
) -> None:
    engine = make_engine(infra_urls[0], pool_size=1)  # one connection: the next user gets the same one
    table = f"autocommit_probe_{uuid.uuid4().hex[:8]}"
    try:
        async with autocommit_connection(engine) as driver:
            await driver.execute(f"CREATE TABLE {table} (v int)")
            await driver.execute(f"INSERT INTO {table} VALUES (1)")  # noqa: S608 - committed at once
            pid = await driver.fetchval("SELECT pg_backend_pid()")
        async with make_session_factory(engine)() as session:
            assert await session.scalar(text("SELECT pg_backend_pid()")) == pid  # the same connection
            await session.execute(text(f"INSERT INTO {table} VALUES (2)"))  # noqa: S608
            await session.rollback()
        async with engine.connect() as conn:
            rows = await conn.execute(text(f"SELECT v FROM {table}"))  # noqa: S608
            assert list(rows.scalars()) == [1]
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
        await engine.dispose()
