"""School admins correct a parent's hours: audited, append-only, for their own school's families."""

from __future__ import annotations

from sqlalchemy import select

from handlers.deps import Deps
from models.accounts.tables import AuditLog
from server.app import API
from tests.builders import make_world
from tests.client import Api


async def test_admin_finds_the_guardians_and_adjusts_their_hours(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    admin = world.token("school_admin_a")
    guardians = await api.get(
        f"{API}/schools/{world.school_a.id}/students/{world.student_a.id}/guardians", token=admin
    )
    assert guardians.status == 200
    [guardian] = guardians.json()["items"]
    assert guardian["parent_id"] == str(world.actors["parent_a"].user_id)
    assert guardian["relation"] == "mother" and guardian["consent_policy_version"] == "2025-09"

    body = {
        "parent_id": guardian["parent_id"],
        "tier": "foundation",
        "class_hours": 2,
        "reason": "纸质签到补录",
    }
    created = await api.post(f"{API}/schools/{world.school_a.id}/hour-adjustments", json=body, token=admin)
    assert created.status == 201, created.body
    correction = {**body, "class_hours": -0.5, "reason": "多记了半课时"}
    assert (
        await api.post(f"{API}/schools/{world.school_a.id}/hour-adjustments", json=correction, token=admin)
    ).status == 201

    learning = (await api.get(f"{API}/me/learning", token=world.token("parent_a"))).json()
    foundation = next(t for t in learning["tiers"] if t["tier"] == "foundation")
    assert foundation["earned"] == 1.5
    assert [(c["source"], c["reason"]) for c in learning["credits"]] == [
        ("adjustment", "纸质签到补录"),
        ("adjustment", "多记了半课时"),
    ]
    async with deps.sessions() as s:
        actions = list(
            (await s.execute(select(AuditLog.action).where(AuditLog.action == "hours.adjusted"))).scalars()
        )
    assert len(actions) == 2


async def test_adjustments_need_a_reason_and_a_parent_of_this_school(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    admin = world.token("school_admin_a")
    url = f"{API}/schools/{world.school_a.id}/hour-adjustments"
    other_parent = str(world.actors["parent_b"].user_id)
    no_reason = await api.post(
        url, json={"parent_id": other_parent, "tier": "foundation", "class_hours": 2}, token=admin
    )
    assert no_reason.status == 422
    foreign = await api.post(
        url,
        json={"parent_id": other_parent, "tier": "foundation", "class_hours": 2, "reason": "补录"},
        token=admin,
    )
    assert foreign.status == 422 and foreign.json()["errors"][0]["loc"] == ["body", "parent_id"]
    learning = (await api.get(f"{API}/me/learning", token=world.token("parent_b"))).json()
    assert learning["credits"] == []
    stranger_child = await api.get(
        f"{API}/schools/{world.school_a.id}/students/{world.student_b.id}/guardians", token=admin
    )
    assert stranger_child.status == 404
