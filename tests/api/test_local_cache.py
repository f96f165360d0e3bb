"""Per-process caches: a change made in one process reaches the others' memory through Redis pub/sub."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import suppress

import pytest

from handlers.deps import Deps
from infra.local_cache import LocalCache


@pytest.fixture
async def other_process(deps: Deps) -> AsyncIterator[LocalCache]:
    """A second process's cache: same Redis, same channel, its own memory."""
    cache = LocalCache(deps.redis, deps.keys)
    task = asyncio.create_task(cache.listen())
    for _ in range(200):
        if cache.healthy:
            break
        await asyncio.sleep(0.01)
    yield cache
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task


async def wait_for(predicate: object, seconds: float = 2.0) -> bool:
    for _ in range(int(seconds / 0.01)):
        if callable(predicate) and predicate():
            return True
        await asyncio.sleep(0.01)
    return False


async def test_an_announcement_reaches_another_process(deps: Deps, other_process: LocalCache) -> None:
    other_process.remember(other_process.generation, "sid-1", "user-1", b'{"id": "user-1"}')
    assert other_process.principal("sid-1", "user-1") == b'{"id": "user-1"}'
    await deps.local.announce(["session:sid-1"])  # a logout in "this" process
    assert await wait_for(lambda: other_process.principal("sid-1", "user-1") is None)


async def test_nothing_is_served_from_memory_without_the_channel(deps: Deps) -> None:
    cache = LocalCache(deps.redis, deps.keys)  # never subscribed
    cache.remember(cache.generation, "sid", "user", b"{}")
    assert cache.principal("sid", "user") is None


async def test_a_read_overtaken_by_an_announcement_is_not_kept(deps: Deps, other_process: LocalCache) -> None:
    generation = other_process.generation  # a request starts reading Redis...
    await deps.local.announce(["user:user-2"])  # ...a change is announced meanwhile...
    assert await wait_for(lambda: other_process.generation != generation)
    other_process.remember(generation, "sid-2", "user-2", b"stale")  # ...so what it read is dropped
    assert other_process.principal("sid-2", "user-2") is None


async def test_losing_the_channel_forgets_everything(deps: Deps) -> None:
    cache = LocalCache(deps.redis, deps.keys)
    task = asyncio.create_task(cache.listen())
    assert await wait_for(lambda: cache.healthy)
    cache.remember(cache.generation, "sid-3", "user-3", b"{}")
    assert cache.principal("sid-3", "user-3") == b"{}"
    # Kill our subscription's connection from the server side, as a Redis restart would.
    clients = await deps.redis.client_list(_type="pubsub")
    for client in clients:
        await deps.redis.client_kill_filter(_id=client["id"])
    assert await wait_for(lambda: cache.principal("sid-3", "user-3") is None)
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task
