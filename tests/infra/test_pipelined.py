"""Commands issued together through Pipelined share round trips, and each still gets its own reply."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError, ResponseError

from infra.redis import Pipelined


async def reads_processed(redis: Redis) -> int:
    """How many reads the Redis server has made from its clients' sockets so far."""
    return int((await redis.info("stats"))["total_reads_processed"])


async def test_commands_issued_together_share_a_round_trip(redis: Redis) -> None:
    prefix = f"test:pipelined:{uuid.uuid4().hex}:"
    pipelined = Pipelined(redis)
    before = await reads_processed(redis)
    replies = await asyncio.gather(*(pipelined.execute("SET", f"{prefix}{i}", i) for i in range(100)))
    together = await reads_processed(redis) - before
    assert replies == [b"OK"] * 100
    assert [int(v) for v in await redis.mget([f"{prefix}{i}" for i in range(100)])] == list(range(100))
    # 100 commands came in a handful of reads (the pipeline, plus the INFO and MGET around it) ...
    assert together <= 5, together
    # ... where sending them one by one costs a read each.
    before = await reads_processed(redis)
    for i in range(100):
        await pipelined.execute("GET", f"{prefix}{i}")
    assert await reads_processed(redis) - before >= 100
    await redis.delete(*(f"{prefix}{i}" for i in range(100)))


async def test_each_command_gets_its_own_reply_or_error(redis: Redis) -> None:
    key = f"test:pipelined:{uuid.uuid4().hex}"
    pipelined = Pipelined(redis)
    claimed, again, wrong, value = await asyncio.gather(
        pipelined.execute("SET", key, "v", "NX", "EX", 60),
        pipelined.execute("SET", key, "w", "NX", "EX", 60),
        pipelined.execute("INCR", key),  # not a number: this command alone fails
        pipelined.execute("GET", key),
        return_exceptions=True,
    )
    assert (claimed, again, value) == (b"OK", None, b"v")
    assert isinstance(wrong, ResponseError)
    with pytest.raises(ResponseError):
        await pipelined.execute("INCR", key)  # alone, too
    assert await pipelined.execute("DEL", key) == 1


async def test_a_broken_round_trip_fails_its_commands_and_the_next_goes_on_a_sound_connection(
    redis: Redis,
) -> None:
    key = f"test:pipelined:{uuid.uuid4().hex}"
    pipelined = Pipelined(redis)
    # QUIT: the server answers it, then closes the connection before the GET behind it is read.
    quit_, lost = await asyncio.gather(
        pipelined.execute("QUIT"), pipelined.execute("GET", key), return_exceptions=True
    )
    assert isinstance(quit_, ConnectionError) and isinstance(lost, ConnectionError), (quit_, lost)
    assert await pipelined.execute("SET", key, "v", "EX", 60) == b"OK"
    assert await pipelined.execute("GET", key) == b"v"
    assert await pipelined.execute("DEL", key) == 1
