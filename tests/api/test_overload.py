"""A process sheds load with 429 once too many transactions wait for a database connection."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from handlers.deps import Deps
from infra.config import Settings
from server.app import API
from tests.builders import make_course, make_evening_class, make_world
from tests.client import Api


async def test_queued_transactions_beyond_the_limit_get_429_with_retry_after(
    api: Api, deps: Deps, settings: Settings
) -> None:
    world = await make_world(deps)
    token = world.token("parent_a")
    settings.max_queued_transactions = 0
    refused = await api.get(f"{API}/me/learning", token=token)
    assert refused.status == 429 and refused.code == "overloaded"
    assert refused.headers["Retry-After"] == "1"
    settings.max_queued_transactions = 200
    assert (await api.get(f"{API}/me/learning", token=token)).status == 200


async def test_a_burst_within_the_limit_is_served(api: Api, deps: Deps, settings: Settings) -> None:
    world = await make_world(deps)
    token = world.token("parent_a")
    responses = await asyncio.gather(*(api.get(f"{API}/me/learning", token=token) for _ in range(100)))
    assert {r.status for r in responses} == {200}
    assert deps.db_gate.queued == 0


async def test_sign_ups_beyond_the_waiting_limit_get_429_and_are_not_written(
    api: Api, deps: Deps, settings: Settings
) -> None:
    world = await make_world(deps)
    async with deps.sessions() as s, s.begin():
        course = await make_course(s, tier="general")
        now = deps.clock()
        evening = await make_evening_class(
            s,
            world.school_a,
            course,
            starts_at=now + timedelta(days=3),
            signup_opens_at=now - timedelta(hours=1),
        )
    path = f"{API}/evening-classes/{evening.id}/signups"
    token = world.token("parent_a")
    settings.max_queued_signups = 0
    refused = await api.post(path, {}, token=token)
    assert refused.status == 429 and refused.code == "overloaded"
    assert refused.headers["Retry-After"] == "1"
    detail = await api.get(f"{API}/evening-classes/{evening.id}", token=token)
    assert detail.json()["my_signup"] is None
    settings.max_queued_signups = 2000
    assert (await api.post(path, {}, token=token)).status == 201
