"""handlers.authentication on its own: a token checked against its signature, the clock, a logged-out
session and the account, with the principal read from PostgreSQL when no cache has it."""

from __future__ import annotations

import uuid

import pytest

from handlers.authentication import authenticate, bearer_token
from handlers.deps import Deps
from infra.errors import Unauthenticated
from tests.builders import FakeClock, make_world


async def test_a_valid_token_gives_the_callers_principal(deps: Deps) -> None:
    w = await make_world(deps)
    actor = w.actors["school_admin_a"]
    caller = await authenticate(deps, actor.token)
    assert caller.user_id == str(actor.user_id)
    assert [s.id for s in caller.principal.schools] == [w.school_a.id]


async def test_expiry_follows_the_services_clock(deps: Deps) -> None:
    w = await make_world(deps)
    token = w.token("parent_a")
    clock = FakeClock(deps.clock())
    deps.clock = clock
    clock.tick(deps.settings.access_token_ttl + 1)
    with pytest.raises(Unauthenticated) as refused:
        await authenticate(deps, token)
    assert refused.value.code == "invalid_token"


async def test_a_logged_out_session_and_an_unknown_user_are_refused(deps: Deps) -> None:
    w = await make_world(deps)
    actor = w.actors["parent_a"]
    await deps.redis.set(deps.keys.revoked_session(actor.session_id), b"1")
    with pytest.raises(Unauthenticated) as revoked:
        await authenticate(deps, actor.token)
    assert revoked.value.code == "session_revoked"
    stranger = deps.signer.issue(str(uuid.uuid4()), str(uuid.uuid4()), now=deps.clock().timestamp())
    with pytest.raises(Unauthenticated):
        await authenticate(deps, stranger)


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer   ", "Basic abc", "token"])
def test_a_missing_bearer_token(header: str) -> None:
    with pytest.raises(Unauthenticated) as refused:
        bearer_token(header)
    assert refused.value.code == "missing_token"
