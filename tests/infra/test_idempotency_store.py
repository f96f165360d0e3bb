"""handlers.idempotency on its own, against the real Redis and PostgreSQL: claim, record, complete,
replay, release — the parts a new handler gets by declaring `idempotent=True`."""

from __future__ import annotations

import pytest

from handlers.deps import Deps
from handlers.idempotency import Claim, Replay
from infra.errors import Conflict, ValidationFailed
from models.idempotency.service import AlreadyCarriedOut


async def test_a_claim_is_replayed_once_completed(deps: Deps) -> None:
    store = deps.idempotency
    claim = await store.claim("u1", "POST", "/x", "k1", b'{"a":1}')
    assert isinstance(claim, Claim)
    with pytest.raises(Conflict):  # still running
        await store.claim("u1", "POST", "/x", "k1", b'{"a":1}')
    await store.complete(claim, 201, b'{"id":"1"}')
    assert await store.claim("u1", "POST", "/x", "k1", b'{"a":1}') == Replay(201, b'{"id":"1"}')


async def test_the_same_key_with_another_body_or_owner(deps: Deps) -> None:
    store = deps.idempotency
    claim = await store.claim("u1", "POST", "/x", "k1", b"{}")
    assert isinstance(claim, Claim)
    with pytest.raises(ValidationFailed) as refused:
        await store.claim("u1", "POST", "/x", "k1", b'{"other":1}')
    assert refused.value.code == "idempotency_key_reused"
    assert isinstance(await store.claim("u2", "POST", "/x", "k1", b"{}"), Claim)  # another caller's key


async def test_a_released_claim_frees_the_key(deps: Deps) -> None:
    store = deps.idempotency
    claim = await store.claim("u1", "POST", "/x", "k1", b"{}")
    assert isinstance(claim, Claim)
    await store.release(claim)
    assert isinstance(await store.claim("u1", "POST", "/x", "k1", b"{}"), Claim)


async def test_postgresql_remembers_what_redis_forgot(deps: Deps) -> None:
    store = deps.idempotency
    claim = await store.claim("u1", "POST", "/x", "k1", b"{}")
    assert isinstance(claim, Claim)
    async with deps.sessions() as session, session.begin():
        await store.record(session, claim)
    await store.complete(claim, 201, b'{"id":"1"}')
    await deps.redis.delete(claim.redis_key)  # Redis restarted without persistence
    again = await store.claim("u1", "POST", "/x", "k1", b"{}")
    assert isinstance(again, Claim)
    with pytest.raises(AlreadyCarriedOut):
        async with deps.sessions() as session, session.begin():
            await store.record(session, again)
    assert await store.recorded_answer(again) == Replay(201, b'{"id":"1"}')


async def test_an_overlong_key_is_refused(deps: Deps) -> None:
    with pytest.raises(ValidationFailed):
        await deps.idempotency.claim("u1", "POST", "/x", "k" * 129, b"{}")
