"""The closed loop through HTTP: a 三带回 item answered, confirmed, reopened; illegal steps 409; the 14-day
auto-close under a controlled clock; the parent's mailbox; who reaches which item."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from handlers.deps import Deps
from models.home_visits.tables import Followup, FollowupEvent
from models.notifications.tables import NotificationJob
from server.app import API
from tests.builders import FakeClock, World, make_world
from tests.client import Api


async def visit_with_items(api: Api, deps: Deps, w: World) -> list[dict[str, Any]]:
    created = await api.post(
        f"{API}/home-visits",
        {
            "student_ids": [str(w.student_a.id)],
            "visited_at": (deps.clock() - timedelta(hours=1)).isoformat(),
            "mode": "home",
            "three_back": [
                {"kind": "demand", "text": "希望增加课后托管"},
                {"kind": "feedback", "text": "食堂很好"},
            ],
        },
        token=w.token("teacher_a"),
    )
    assert created.status == 201, created.body
    return list(created.json()["three_back"])


async def test_an_item_goes_round_the_loop_and_the_parent_sees_the_answer(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    demand, feedback = await visit_with_items(api, deps, w)
    fid = demand["followup_id"]

    queue = await api.get(f"{API}/schools/{w.school_a.id}/followups", token=w.token("teacher_a"))
    assert queue.status == 200
    items = queue.json()["items"]
    assert [i["text"] for i in items] == ["希望增加课后托管", "食堂很好"]  # the demand is due first (7 days)
    assert items[0]["owner_teacher_id"] == str(w.teacher_a.id) and items[0]["source"] == "home_visit"

    confirm_early = await api.post(f"{API}/followups/{fid}/confirm", {}, token=w.token("parent_a"))
    assert confirm_early.status == 409 and confirm_early.code == "illegal_transition"

    answered = await api.post(
        f"{API}/followups/{fid}/answer", {"answer": "下学期起开设托管班"}, token=w.token("teacher_a")
    )
    assert answered.status == 200, answered.body
    assert answered.json()["state"] == "answered"

    async with deps.sessions() as s:
        [job] = (await s.execute(select(NotificationJob))).scalars()
    assert (job.kind, job.user_id, job.template_id) == (
        "followup_answered",
        w.actors["parent_a"].user_id,
        deps.settings.wechat_template_followup_answered,
    )
    assert job.data["thing1"] == "希望增加课后托管" and job.data["thing2"] == "下学期起开设托管班"

    mine = (await api.get(f"{API}/me/followups", token=w.token("parent_a"))).json()["items"]
    assert {i["text"]: i["answer"] for i in mine}["希望增加课后托管"] == "下学期起开设托管班"
    assert (await api.get(f"{API}/me/followups", token=w.token("parent_b"))).json()["items"] == []

    reopened = await api.post(
        f"{API}/followups/{fid}/reopen", {"reason": "时间太晚"}, token=w.token("parent_a")
    )
    assert reopened.status == 200 and reopened.json()["state"] == "in_progress"
    assert reopened.json()["reopen_count"] == 1
    await api.post(f"{API}/followups/{fid}/answer", {"answer": "改为 17:30 结束"}, token=w.token("teacher_a"))
    bad_rating = await api.post(f"{API}/followups/{fid}/confirm", {"rating": 6}, token=w.token("parent_a"))
    assert bad_rating.status == 422
    closed = await api.post(f"{API}/followups/{fid}/confirm", {"rating": 4}, token=w.token("parent_a"))
    assert closed.status == 200 and closed.json()["state"] == "closed" and closed.json()["rating"] == 4
    async with deps.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(NotificationJob)) == 2  # each answer told
    assert [s["action"] for s in closed.json()["history"]] == [
        "raise",
        "answer",
        "reopen",
        "answer",
        "confirm",
    ]

    late = await api.post(f"{API}/followups/{fid}/answer", {"answer": "补充"}, token=w.token("teacher_a"))
    assert late.status == 409
    again = await api.post(f"{API}/followups/{fid}/reopen", {"reason": "x"}, token=w.token("parent_a"))
    assert again.status == 409
    assert feedback["state"] == "open"


async def test_who_reaches_an_item(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    [demand, _] = await visit_with_items(api, deps, w)
    fid = demand["followup_id"]
    answer = {"answer": "已答复"}
    for outsider in ("teacher_b", "school_admin_b", "other_district_admin"):
        assert (
            await api.post(f"{API}/followups/{fid}/answer", answer, token=w.token(outsider))
        ).status == 404
    # The district sees an item only once the school escalates it.
    assert (
        await api.post(f"{API}/followups/{fid}/answer", answer, token=w.token("district_admin"))
    ).status == 404
    assert (
        await api.post(f"{API}/followups/{uuid.uuid4()}/answer", answer, token=w.token("teacher_a"))
    ).status == 404
    assert (await api.post(f"{API}/followups/{fid}/confirm", {}, token=w.token("parent_b"))).status == 404
    escalated = await api.post(
        f"{API}/followups/{fid}/escalate", {"reason": "涉及区里政策"}, token=w.token("teacher_a")
    )
    assert escalated.status == 200 and escalated.json()["escalated"] is True
    queue = await api.get(f"{API}/schools/{w.school_a.id}/followups", token=w.token("district_admin"))
    assert [i["id"] for i in queue.json()["items"]] == [fid]
    by_district = await api.post(f"{API}/followups/{fid}/answer", answer, token=w.token("district_admin"))
    assert by_district.status == 200 and by_district.json()["state"] == "answered"

    # Handed to the school's admins: the teacher no longer has it in their queue.
    [_, other] = (
        await api.get(f"{API}/schools/{w.school_a.id}/followups", token=w.token("school_admin_a"))
    ).json()["items"]
    handed = await api.post(f"{API}/followups/{other['id']}/assign", {}, token=w.token("teacher_a"))
    assert handed.status == 200 and handed.json()["owner_teacher_id"] is None
    mine = (await api.get(f"{API}/schools/{w.school_a.id}/followups", token=w.token("teacher_a"))).json()[
        "items"
    ]
    assert other["id"] not in [i["id"] for i in mine]
    unknown = await api.post(
        f"{API}/followups/{fid}/escalate", {"reason": "x", "extra": 1}, token=w.token("teacher_a")
    )
    assert unknown.status == 422


async def test_an_answer_left_alone_closes_itself_after_14_days(api: Api, deps: Deps) -> None:
    clock = FakeClock(deps.clock())
    deps.clock = clock
    w = await make_world(deps)
    [demand, feedback] = await visit_with_items(api, deps, w)
    await api.post(
        f"{API}/followups/{demand['followup_id']}/answer", {"answer": "已安排"}, token=w.token("teacher_a")
    )
    clock.tick(13 * 86400)
    queue = (await api.get(f"{API}/schools/{w.school_a.id}/followups", token=w.token("teacher_a"))).json()[
        "items"
    ]
    assert {i["id"]: i["state"] for i in queue}[demand["followup_id"]] == "answered"
    overdue = await api.get(
        f"{API}/schools/{w.school_a.id}/followups?overdue=true", token=w.token("teacher_a")
    )
    assert overdue.json()["items"] == []  # feedback is due after 14 days
    clock.tick(2 * 86400)
    queue = (await api.get(f"{API}/schools/{w.school_a.id}/followups", token=w.token("teacher_a"))).json()[
        "items"
    ]
    states = {i["id"]: (i["state"], i["overdue"]) for i in queue}
    assert states[demand["followup_id"]] == ("closed_without_reply", False)
    assert states[feedback["followup_id"]] == ("open", True)
    assert queue[0]["id"] == feedback["followup_id"]  # overdue first
    late = await api.post(
        f"{API}/followups/{demand['followup_id']}/confirm", {"rating": 5}, token=w.token("parent_a")
    )
    assert late.status == 409


async def test_the_principals_mailbox_and_a_hotline_call(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    raised = await api.post(
        f"{API}/me/followups",
        {"student_id": str(w.student_a.id), "kind": "suggestion", "text": "建议开设心理讲座"},
        token=w.token("parent_a"),
    )
    assert raised.status == 201, raised.body
    assert raised.json()["source"] == "mailbox" and raised.json()["owner_teacher_id"] == str(w.teacher_a.id)
    other_family = await api.post(
        f"{API}/me/followups",
        {"student_id": str(w.student_b.id), "kind": "suggestion", "text": "x"},
        token=w.token("parent_a"),
    )
    assert other_family.status == 404
    empty = await api.post(
        f"{API}/me/followups",
        {"student_id": str(w.student_a.id), "kind": "demand", "text": " "},
        token=w.token("parent_a"),
    )
    assert empty.status == 422
    call = await api.post(
        f"{API}/schools/{w.school_a.id}/followups",
        {"student_id": str(w.student_a.id), "source": "hotline", "kind": "demand", "text": "校车时间"},
        token=w.token("school_admin_a"),
    )
    assert call.status == 201 and call.json()["source"] == "hotline"
    foreign = await api.post(
        f"{API}/schools/{w.school_a.id}/followups",
        {"student_id": str(w.student_b.id), "source": "hotline", "kind": "demand", "text": "x"},
        token=w.token("school_admin_a"),
    )
    assert foreign.status == 404
    async with deps.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Followup)) == 2
        assert await s.scalar(select(func.count()).select_from(FollowupEvent)) == 2
