"""Group commit on the real database: requests that arrive together share one statement, a request's
own error leaves the others written, and a failed statement writes nothing and fails every request."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import closing

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from handlers.problems import status_of
from infra.db import make_engine
from infra.errors import AppError, Conflict, RateLimited
from infra.group_commit import BatchFailed, GroupCommit, Write


@pytest.fixture
async def table(engine: AsyncEngine) -> AsyncIterator[str]:
    name = f"group_commit_probe_{uuid.uuid4().hex[:8]}"
    async with engine.begin() as conn:
        await conn.execute(text(f"CREATE TABLE {name} (value int PRIMARY KEY)"))
    yield name
    async with engine.begin() as conn:
        await conn.execute(text(f"DROP TABLE {name}"))


async def stored(engine: AsyncEngine, table: str) -> list[int]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(f"SELECT value FROM {table} ORDER BY value"))).scalars())  # noqa: S608


def writer(table: str) -> Write[int, int]:
    """Stores the values in one statement; odd values are refused (their own error); 13 breaks the
    whole statement."""

    async def write(connection: asyncpg.Connection, values: Sequence[int]) -> list[int | AppError]:
        stored = [None if v == 13 else v for v in values if v % 2 == 0 or v == 13]  # NULL: refused
        await connection.execute(f"INSERT INTO {table} SELECT unnest($1::int[])", stored)
        return [Conflict(f"{v} is odd") if v % 2 else v * 10 for v in values]

    return write


async def answers_of(batcher: GroupCommit[int, int], values: list[int]) -> list[int | BaseException]:
    return list(await asyncio.gather(*(batcher.submit(v) for v in values), return_exceptions=True))


async def test_requests_arriving_together_share_statements(engine: AsyncEngine, table: str) -> None:
    batcher: GroupCommit[int, int] = GroupCommit(
        engine, writer(table), max_waiting=lambda: 1000, max_batch=20
    )
    values = list(range(2, 102, 2))  # 50 requests
    assert await answers_of(batcher, values) == [v * 10 for v in values]
    assert batcher.batches == 3  # 20 + 20 + 10, not 50
    assert await stored(engine, table) == values
    # A lone request goes at once, in a statement of its own.
    assert await batcher.submit(200) == 2000
    assert batcher.batches == 4


async def test_a_request_refused_on_its_own_leaves_the_others_written(
    engine: AsyncEngine, table: str
) -> None:
    batcher: GroupCommit[int, int] = GroupCommit(engine, writer(table), max_waiting=lambda: 1000)
    answers = await answers_of(batcher, [2, 3, 4, 5])
    assert answers[0::2] == [20, 40]
    assert all(isinstance(a, Conflict) for a in answers[1::2])
    assert batcher.batches == 1
    assert await stored(engine, table) == [2, 4]


async def test_a_failed_statement_writes_nothing_and_fails_every_request_of_its_batch(
    engine: AsyncEngine, table: str
) -> None:
    batcher: GroupCommit[int, int] = GroupCommit(engine, writer(table), max_waiting=lambda: 1000)
    answers = await answers_of(batcher, [12, 13, 14])
    assert all(isinstance(a, BatchFailed) for a in answers), answers
    assert await stored(engine, table) == []
    # The next request is written as usual.
    assert await batcher.submit(16) == 160
    assert await stored(engine, table) == [16]


async def test_too_many_waiting_requests_are_refused_at_once(engine: AsyncEngine, table: str) -> None:
    limit = 0
    batcher: GroupCommit[int, int] = GroupCommit(engine, writer(table), max_waiting=lambda: limit)
    with pytest.raises(RateLimited) as refused:
        await batcher.submit(2)
    assert status_of(refused.value) == 429 and refused.value.retry_after == 1
    limit = 10
    assert await batcher.submit(2) == 20


async def test_without_a_database_connection_waiting_requests_fail_rather_than_hang(table: str) -> None:
    with closing(socket.socket()) as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    unreachable = make_engine(f"postgresql://nobody@127.0.0.1:{port}/nothing")
    batcher: GroupCommit[int, int] = GroupCommit(unreachable, writer(table), max_waiting=lambda: 1000)
    try:
        for _ in range(2):  # and again: the writer is not left stuck
            answers = await asyncio.wait_for(answers_of(batcher, [2, 4, 6]), 10)
            assert all(isinstance(a, BatchFailed) for a in answers), answers
    finally:
        await unreachable.dispose()
