"""Evening classes (家长夜校) over HTTP: scheduling, who sees what, sign-up with seats and a waitlist,
cancellation with promotion, reminders through the outbox to the WeChat sandbox, rotating check-in
tokens, the roster, and the per-term counts. Time is a settable deps.clock; tokens are issued before it
is set (they are checked against real time)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import socket
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select, update
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from handlers.deps import Deps
from infra.clock import SHANGHAI
from infra.config import Settings
from models.accounts.principal import load_principal
from models.catalog.tables import Course
from models.evening_classes.errors import AlreadySignedUp, ClassCancelled
from models.evening_classes.rules import checkin_token
from models.evening_classes.schemas import SignupOut
from models.evening_classes.signups import SignupRequest
from models.evening_classes.tables import EveningClass, Signup
from models.notifications.allowance import Templates
from models.notifications.tables import NotificationJob
from server.app import make_app
from server.wechat_sandbox import SandboxState
from tests.builders import (
    Actor,
    FakeClock,
    World,
    make_classroom,
    make_course,
    make_evening_class,
    make_parents,
    make_world,
    until_a_statement_waits_for_a_lock,
)
from tests.client import Api, Response

API = "/api/v1"
NOW = datetime(2025, 10, 13, 12, 0, tzinfo=SHANGHAI)  # a Monday noon, autumn term 2025-2026-1
EVENING = datetime(2025, 10, 16, 19, 0, tzinfo=SHANGHAI)  # Thursday evening of the same week
TERM = "2025-2026-1"
Sandbox = tuple[SandboxState, str]
TEMPLATES = Templates("class-reminder", "waitlist-promoted")


@dataclass
class Scene:
    world: World
    clock: FakeClock
    course: Course  # a catalogue general course worth 2 class hours

    def token(self, label: str) -> str:
        return self.world.token(label)

    def user(self, label: str) -> uuid.UUID:
        return self.world.actors[label].user_id


@pytest.fixture
async def scene(deps: Deps) -> Scene:
    world = await make_world(deps)
    async with deps.sessions() as s, s.begin():
        course = await make_course(s, tier="general", title="亲子沟通的艺术", class_hours="2")
    clock = FakeClock(NOW)
    deps.clock = clock
    return Scene(world, clock, course)


async def new_class(
    deps: Deps, scene: Scene, *, school: Any = None, starts_at: datetime = EVENING, **kw: Any
) -> uuid.UUID:
    """A class at school A (by default) whose sign-up is open from a day before NOW until it starts."""
    kw.setdefault("signup_opens_at", NOW - timedelta(days=1))
    kw.setdefault("signup_closes_at", starts_at)
    kw.setdefault("cancel_deadline", starts_at - timedelta(hours=24))
    async with deps.sessions() as s, s.begin():
        evening = await make_evening_class(
            s, school or scene.world.school_a, kw.pop("course", scene.course), starts_at=starts_at, **kw
        )
    return evening.id


def class_body(course_id: uuid.UUID, starts_at: datetime = EVENING, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "course_id": str(course_id),
        "starts_at": starts_at.isoformat(),
        "ends_at": (starts_at + timedelta(minutes=90)).isoformat(),
        "place": "学校报告厅",
        "capacity": 40,
    }
    body.update(extra)
    return body


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def sign_up(api: Api, token: str, class_id: uuid.UUID, **kw: Any) -> Response:
    return await api.post(f"{API}/evening-classes/{class_id}/signups", {}, token=token, **kw)


async def accept_messages(api: Api, token: str, *template_ids: str) -> None:
    """The parent taps "allow" in the mini-program's subscription prompt for these templates."""
    response = await api.post(f"{API}/me/subscriptions", {"accepted": list(template_ids)}, token=token)
    assert response.status == 200, response.body


async def cancel(api: Api, token: str, class_id: uuid.UUID) -> Response:
    return await api.delete(f"{API}/evening-classes/{class_id}/signups/me", token=token)


async def detail(api: Api, token: str, class_id: uuid.UUID) -> dict[str, Any]:
    response = await api.get(f"{API}/evening-classes/{class_id}", token=token)
    assert response.status == 200, response.body
    return dict(response.json())


async def roster(api: Api, token: str, class_id: uuid.UUID) -> dict[str, Any]:
    response = await api.get(f"{API}/evening-classes/{class_id}/roster", token=token)
    assert response.status == 200, response.body
    return dict(response.json())


async def visible_ids(api: Api, token: str, query: str = "") -> list[str]:
    response = await api.get(f"{API}/evening-classes{query}", token=token)
    assert response.status == 200, response.body
    return [item["id"] for item in response.json()["items"]]


async def jobs(deps: Deps, kind: str, user_id: uuid.UUID | None = None) -> list[NotificationJob]:
    async with deps.sessions() as s:
        stmt = select(NotificationJob).where(NotificationJob.kind == kind)
        if user_id is not None:
            stmt = stmt.where(NotificationJob.user_id == user_id)
        return list((await s.execute(stmt)).scalars())


async def confirmed_count(deps: Deps, class_id: uuid.UUID) -> int:
    return (await counters(deps, class_id))[0]


async def counters(deps: Deps, class_id: uuid.UUID) -> tuple[int, int]:
    """The seats taken and the parents waiting, as the class row counts them."""
    async with deps.sessions() as s:
        evening = await s.get(EveningClass, class_id)
        assert evening is not None
        return evening.confirmed_count, evening.waitlisted_count


async def openid_of(deps: Deps, user_id: uuid.UUID) -> str:
    from models.accounts.tables import User

    async with deps.sessions() as s:
        user = await s.get(User, user_id)
        assert user is not None and user.wechat_openid
        return user.wechat_openid


# ---- scheduling --------------------------------------------------------------------------------
async def test_a_school_admin_schedules_a_class_with_the_default_windows(
    api: Api, deps: Deps, scene: Scene
) -> None:
    school = scene.world.school_a.id
    response = await api.post(
        f"{API}/schools/{school}/evening-classes",
        class_body(scene.course.id),
        token=scene.token("school_admin_a"),
    )
    assert response.status == 201, response.body
    created = response.json()
    assert created["school_id"] == str(school) and created["course_id"] == str(scene.course.id)
    assert created["title"] == "亲子沟通的艺术" and created["tier"] == "general"
    assert created["class_hours"] == 2 and created["term"] == TERM
    assert created["capacity"] == 40 and created["seats_left"] == 40 and created["cancelled"] is False
    assert created["audience"] == "school" and created["grades"] is None and created["classroom_ids"] is None
    # Sign-up opens now and closes when the class starts; cancelling is possible until 24 h before.
    assert at(created["signup_opens_at"]) == NOW
    assert at(created["signup_closes_at"]) == EVENING
    assert at(created["cancel_deadline"]) == EVENING - timedelta(hours=24)
    assert at(created["starts_at"]) == EVENING and at(created["ends_at"]) == EVENING + timedelta(minutes=90)

    # The parents of the school see it at once; so do its detail page and the admin's list.
    assert await visible_ids(api, scene.token("parent_a")) == [created["id"]]
    assert (await detail(api, scene.token("parent_a"), created["id"]))["my_signup"] is None
    assert await visible_ids(api, scene.token("school_admin_a")) == [created["id"]]
    assert await visible_ids(api, scene.token("parent_b")) == []

    # A class sooner than a day away can be cancelled until sign-up opens, i.e. not at all.
    soon = await api.post(
        f"{API}/schools/{school}/evening-classes",
        class_body(scene.course.id, starts_at=NOW + timedelta(hours=10)),
        token=scene.token("school_admin_a"),
    )
    assert soon.status == 201, soon.body
    assert at(soon.json()["cancel_deadline"]) == NOW == at(soon.json()["signup_opens_at"])


async def test_a_teacher_schedules_an_online_meeting_with_explicit_windows(
    api: Api, deps: Deps, scene: Scene
) -> None:
    opens, closes = NOW + timedelta(hours=2), EVENING - timedelta(hours=2)
    deadline = EVENING - timedelta(hours=6)
    body = class_body(
        scene.course.id,
        title="线上家长会",
        place=None,
        meeting_url="https://meeting.tencent.com/dm/abc",
        capacity=300,
        signup_opens_at=opens.isoformat(),
        signup_closes_at=closes.isoformat(),
        cancel_deadline=deadline.isoformat(),
    )
    response = await api.post(
        f"{API}/schools/{scene.world.school_a.id}/evening-classes", body, token=scene.token("teacher_a")
    )
    assert response.status == 201, response.body
    created = response.json()
    assert created["title"] == "线上家长会" and created["place"] is None
    assert created["meeting_url"] == "https://meeting.tencent.com/dm/abc"
    assert (at(created["signup_opens_at"]), at(created["signup_closes_at"])) == (opens, closes)
    assert at(created["cancel_deadline"]) == deadline
    # Not open yet: a parent who tries now is told so.
    refused = await sign_up(api, scene.token("parent_a"), created["id"])
    assert refused.status == 409 and refused.code == "signup_closed"


async def test_the_audience_decides_which_parents_see_a_class(api: Api, deps: Deps, scene: Scene) -> None:
    world = scene.world
    async with deps.sessions() as s, s.begin():
        grade5 = await make_classroom(s, world.school_a, "五年级1班", 5)
        other_grade3 = await make_classroom(s, world.school_a, "三年级2班", 3)
        custom = await make_course(s, tier="custom", title="单亲家庭沟通", school=world.school_a)
    [fifth] = await make_parents(deps, grade5, 1)
    [neighbour] = await make_parents(deps, other_grade3, 1)
    url = f"{API}/schools/{world.school_a.id}/evening-classes"
    admin = scene.token("school_admin_a")

    async def schedule(**extra: Any) -> str:
        response = await api.post(url, class_body(scene.course.id, **extra), token=admin)
        assert response.status == 201, response.body
        return str(response.json()["id"])

    whole = await schedule()
    grade3 = await schedule(audience="grades", grades=[3, 4], starts_at=EVENING + timedelta(days=1))
    room = await schedule(
        audience="classrooms",
        classroom_ids=[str(world.classroom_a.id)],
        starts_at=EVENING + timedelta(days=2),
    )
    invited_response = await api.post(
        url,
        class_body(custom.id, audience="invited", starts_at=EVENING + timedelta(days=3)),
        token=admin,
    )
    assert invited_response.status == 201, invited_response.body
    invited = invited_response.json()
    assert invited["audience"] == "invited" and invited["tier"] == "custom"

    assert await visible_ids(api, scene.token("parent_a")) == [whole, grade3, room]
    assert await visible_ids(api, neighbour.token) == [whole, grade3]
    assert await visible_ids(api, fifth.token) == [whole]
    assert await visible_ids(api, scene.token("parent_b")) == []
    # Outside the audience a class does not exist for the parent, and cannot be signed up for.
    assert (await api.get(f"{API}/evening-classes/{grade3}", token=fifth.token)).status == 404
    assert (await sign_up(api, fifth.token, uuid.UUID(room))).status == 404
    assert (await sign_up(api, fifth.token, uuid.UUID(grade3))).status == 404
    assert (await sign_up(api, neighbour.token, uuid.UUID(room))).status == 404
    assert (await sign_up(api, scene.token("parent_b"), uuid.UUID(whole))).status == 404
    assert (await sign_up(api, scene.token("parent_a"), invited["id"])).status == 404
    # Inside it, the same rule lets them in.
    assert (await sign_up(api, neighbour.token, uuid.UUID(grade3))).status == 201
    assert (await sign_up(api, fifth.token, uuid.UUID(whole))).status == 201

    # The custom course is assigned to parent_a's child: the family is invited.
    assigned = await api.post(
        f"{API}/schools/{world.school_a.id}/course-assignments",
        {"course_id": str(custom.id), "student_ids": [str(world.student_a.id)]},
        token=admin,
    )
    assert assigned.status == 201, assigned.body
    assert await visible_ids(api, scene.token("parent_a")) == [whole, grade3, room, invited["id"]]
    assert await visible_ids(api, neighbour.token) == [whole, grade3]
    joined = await sign_up(api, scene.token("parent_a"), invited["id"])
    assert joined.status == 201 and joined.json()["status"] == "confirmed"
    # Staff see every class of their school, whoever it is for.
    assert await visible_ids(api, scene.token("teacher_a")) == [whole, grade3, room, invited["id"]]
    assert await visible_ids(api, scene.token("teacher_b")) == []


async def test_scheduling_refuses_what_cannot_be_held(api: Api, deps: Deps, scene: Scene) -> None:
    world = scene.world
    async with deps.sessions() as s, s.begin():
        online = await make_course(s, tier="online", title="网络课")
    url = f"{API}/schools/{world.school_a.id}/evening-classes"
    admin = scene.token("school_admin_a")
    course = scene.course.id
    ends = EVENING + timedelta(minutes=90)
    bad = {
        "online course": class_body(online.id),
        "another school's classroom": class_body(
            course,
            audience="classrooms",
            classroom_ids=[str(world.classroom_a.id), str(world.classroom_b.id)],
        ),
        "invited without a custom course": class_body(course, audience="invited"),
        "grades without the grades audience": class_body(course, grades=[3]),
        "grades audience without grades": class_body(course, audience="grades"),
        "ends before it starts": class_body(course, ends_at=(EVENING - timedelta(minutes=1)).isoformat()),
        "neither place nor link": class_body(course, place=None),
        "sign-up closing after the end": class_body(
            course, signup_closes_at=(ends + timedelta(minutes=1)).isoformat()
        ),
        "sign-up opening after it closes": class_body(
            course,
            signup_opens_at=(EVENING - timedelta(hours=1)).isoformat(),
            signup_closes_at=(EVENING - timedelta(hours=2)).isoformat(),
        ),
        "cancel deadline after the start": class_body(
            course, cancel_deadline=(EVENING + timedelta(minutes=1)).isoformat()
        ),
        "a class already begun (sign-up would close before it opens)": class_body(
            course, starts_at=NOW - timedelta(hours=1)
        ),
        "no seats": class_body(course, capacity=0),
    }
    for reason, body in bad.items():
        response = await api.post(url, body, token=admin)
        assert response.status == 422, (reason, response.body)
    refused = await api.post(url, class_body(online.id), token=admin)
    assert refused.json()["errors"][0]["loc"] == ["body", "course_id"]
    foreign = await api.post(url, bad["another school's classroom"], token=admin)
    assert foreign.json()["errors"][0]["loc"] == ["body", "classroom_ids"]
    # Nothing was scheduled.
    assert await visible_ids(api, admin, "?from=2025-10-01&to=2025-12-31") == []


# ---- listing --------------------------------------------------------------------------------------
async def test_parents_see_seats_and_their_own_sign_up_staff_see_their_school(
    api: Api, deps: Deps, scene: Scene
) -> None:
    world = scene.world
    small = await new_class(deps, scene, capacity=1)
    big = await new_class(deps, scene, starts_at=EVENING + timedelta(days=1), capacity=30)
    at_b = await new_class(deps, scene, school=world.school_b, starts_at=EVENING + timedelta(hours=1))
    [other] = await make_parents(deps, world.classroom_a, 1)
    assert (await sign_up(api, other.token, small)).json()["status"] == "confirmed"
    assert (await sign_up(api, scene.token("parent_a"), small)).json()["status"] == "waitlisted"
    assert (await sign_up(api, scene.token("parent_a"), big)).json()["status"] == "confirmed"

    listed = await api.get(f"{API}/evening-classes", token=scene.token("parent_a"))
    assert listed.status == 200
    items = {item["id"]: item for item in listed.json()["items"]}
    assert list(items) == [str(small), str(big)]
    assert items[str(small)]["seats_left"] == 0
    assert items[str(small)]["my_signup"] == {"status": "waitlisted", "position": 1, "present": False}
    assert items[str(big)]["seats_left"] == 29
    assert items[str(big)]["my_signup"] == {"status": "confirmed", "position": None, "present": False}

    assert await visible_ids(api, scene.token("parent_b")) == [str(at_b)]
    assert await visible_ids(api, scene.token("teacher_a")) == [str(small), str(big)]
    assert await visible_ids(api, scene.token("teacher_b")) == [str(at_b)]
    assert await visible_ids(api, scene.token("district_admin")) == [str(small), str(at_b), str(big)]
    staff = (await api.get(f"{API}/evening-classes", token=scene.token("teacher_a"))).json()["items"]
    assert [item["my_signup"] for item in staff] == [None, None]


async def test_my_sign_ups_list_the_classes_i_hold_a_place_in(api: Api, deps: Deps, scene: Scene) -> None:
    """我的报名: confirmed and waitlisted places, not cancelled ones nor classes merely open to me."""
    classroom_a = scene.world.classroom_a.id
    seated = await new_class(deps, scene, audience="classrooms", classroom_ids=[classroom_a])
    waiting = await new_class(deps, scene, starts_at=EVENING + timedelta(days=1), capacity=1)
    left = await new_class(deps, scene, starts_at=EVENING + timedelta(days=2))
    await new_class(deps, scene, starts_at=EVENING + timedelta(days=3))  # open to me, not signed up
    token = scene.token("parent_a")
    [first] = await make_parents(deps, scene.world.classroom_a, 1)
    assert (await sign_up(api, first.token, waiting)).json()["status"] == "confirmed"
    for class_id in (seated, waiting, left):
        assert (await sign_up(api, token, class_id)).status == 201
    assert (await cancel(api, token, left)).status == 204

    mine = (await api.get(f"{API}/evening-classes?mine=true", token=token)).json()["items"]
    assert [(item["id"], item["my_signup"]) for item in mine] == [
        (str(seated), {"status": "confirmed", "position": None, "present": False}),
        (str(waiting), {"status": "waitlisted", "position": 1, "present": False}),
    ]
    # My place stays mine to see when the class is no longer for my child's classroom.
    async with deps.sessions() as s, s.begin():
        await s.execute(
            update(EveningClass)
            .where(EveningClass.id == seated)
            .values(audience_classroom_ids=[scene.world.classroom_b.id])
        )
    assert str(seated) not in await visible_ids(api, token)
    assert await visible_ids(api, token, "?mine=true") == [str(seated), str(waiting)]
    # Staff hold no places; the filter is a yes or no.
    assert await visible_ids(api, scene.token("teacher_a"), "?mine=true") == []
    assert (await api.get(f"{API}/evening-classes?mine=perhaps", token=token)).status == 422


async def test_listing_by_date_range_and_pages(api: Api, deps: Deps, scene: Scene) -> None:
    day = EVENING.replace(hour=19)
    ids = [await new_class(deps, scene, starts_at=day + timedelta(days=n)) for n in range(7)]
    past = await new_class(
        deps, scene, starts_at=NOW - timedelta(days=2), signup_opens_at=NOW - timedelta(days=5)
    )
    far = await new_class(deps, scene, starts_at=NOW + timedelta(days=90))
    token = scene.token("parent_a")

    # By default: from today, 60 days ahead.
    assert await visible_ids(api, token, "?limit=100") == [str(i) for i in ids]
    # Both ends are dates in Shanghai, inclusive.
    assert await visible_ids(api, token, "?from=2025-10-17&to=2025-10-19") == [str(i) for i in ids[1:4]]
    assert await visible_ids(api, token, "?from=2025-10-11&to=2025-10-11") == [str(past)]
    assert await visible_ids(api, token, "?from=2026-01-11") == [str(far)]
    bad = await api.get(f"{API}/evening-classes?from=2025-10-20&to=2025-10-19", token=token)
    assert bad.status == 422

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = (await api.get(f"{API}/evening-classes{query}", token=token)).json()
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and seen == [str(i) for i in ids]


# ---- signing up -------------------------------------------------------------------------------------
async def test_sign_up_confirms_then_waitlists_in_order(api: Api, deps: Deps, scene: Scene) -> None:
    class_id = await new_class(deps, scene, capacity=2)
    parents = await make_parents(deps, scene.world.classroom_a, 5)
    answers = [await sign_up(api, p.token, class_id) for p in parents]
    assert [r.status for r in answers] == [201] * 5
    assert [r.json() for r in answers] == [
        {"class_id": str(class_id), "status": "confirmed", "position": None},
        {"class_id": str(class_id), "status": "confirmed", "position": None},
        {"class_id": str(class_id), "status": "waitlisted", "position": 1},
        {"class_id": str(class_id), "status": "waitlisted", "position": 2},
        {"class_id": str(class_id), "status": "waitlisted", "position": 3},
    ]
    shown = await detail(api, parents[3].token, class_id)
    assert shown["seats_left"] == 0 and shown["my_signup"]["position"] == 2

    again = await sign_up(api, parents[0].token, class_id)
    assert again.status == 409 and again.code == "already_signed_up"
    again = await sign_up(api, parents[4].token, class_id)
    assert again.status == 409 and again.code == "already_signed_up"
    listed = await roster(api, scene.token("teacher_a"), class_id)
    assert (listed["confirmed"], listed["waitlisted"]) == (2, 3)
    assert [(e["parent_id"], e["status"], e["position"]) for e in listed["items"]] == [
        (str(parents[0].user_id), "confirmed", None),
        (str(parents[1].user_id), "confirmed", None),
        (str(parents[2].user_id), "waitlisted", 1),
        (str(parents[3].user_id), "waitlisted", 2),
        (str(parents[4].user_id), "waitlisted", 3),
    ]


async def test_sign_up_only_within_the_window_and_the_audience(api: Api, deps: Deps, scene: Scene) -> None:
    opens, closes = NOW + timedelta(hours=1), EVENING - timedelta(hours=3)
    class_id = await new_class(deps, scene, signup_opens_at=opens, signup_closes_at=closes)
    early = await sign_up(api, scene.token("parent_a"), class_id)
    assert early.status == 409 and early.code == "signup_closed"
    scene.clock.now = opens
    assert (await sign_up(api, scene.token("parent_a"), class_id)).status == 201
    [late] = await make_parents(deps, scene.world.classroom_a, 1)
    scene.clock.now = closes
    refused = await sign_up(api, late.token, class_id)
    assert refused.status == 409 and refused.code == "signup_closed"
    scene.clock.now = closes - timedelta(seconds=1)
    assert (await sign_up(api, late.token, class_id)).status == 201

    outsider = await sign_up(api, scene.token("parent_b"), class_id)
    assert outsider.status == 404
    assert (await sign_up(api, scene.token("parent_a"), uuid.uuid4())).status == 404
    assert (await detail(api, scene.token("teacher_a"), class_id))["seats_left"] == 28


async def test_a_cancelled_class_takes_no_sign_ups(api: Api, deps: Deps, scene: Scene) -> None:
    class_id = await new_class(deps, scene)
    async with deps.sessions() as s, s.begin():
        row = await s.get(EveningClass, class_id)
        assert row is not None
        row.cancelled_at = NOW
    shown = await detail(api, scene.token("parent_a"), class_id)
    assert shown["cancelled"] is True
    refused = await sign_up(api, scene.token("parent_a"), class_id)
    assert refused.status == 409 and refused.code == "class_cancelled"


async def test_an_idempotency_key_replays_the_first_sign_up(api: Api, deps: Deps, scene: Scene) -> None:
    class_id = await new_class(deps, scene, capacity=1)
    [first, second] = await make_parents(deps, scene.world.classroom_a, 2)
    assert (await sign_up(api, first.token, class_id)).status == 201
    key = {"Idempotency-Key": f"signup-{uuid.uuid4()}"}
    original = await sign_up(api, second.token, class_id, headers=key)
    assert original.status == 201 and original.json()["status"] == "waitlisted"
    assert "Idempotent-Replayed" not in original.headers
    replay = await sign_up(api, second.token, class_id, headers=key)
    assert replay.status == 201 and replay.body == original.body
    assert replay.headers["Idempotent-Replayed"] == "true"
    # Without the key, the same request is a second sign-up, refused.
    repeat = await sign_up(api, second.token, class_id)
    assert repeat.status == 409 and repeat.code == "already_signed_up"
    listed = await roster(api, scene.token("teacher_a"), class_id)
    assert [e["parent_id"] for e in listed["items"]] == [str(first.user_id), str(second.user_id)]


# ---- cancelling ----------------------------------------------------------------------------------
async def test_cancelling_promotes_the_first_on_the_waitlist_and_tells_them(
    api: Api, deps: Deps, scene: Scene, wechat: Sandbox
) -> None:
    state, _ = wechat
    class_id = await new_class(deps, scene, capacity=2)
    a, b, c, d = await make_parents(deps, scene.world.classroom_a, 4)
    for parent in (a, b, c, d):
        assert (await sign_up(api, parent.token, class_id)).status == 201
        await accept_messages(api, parent.token, deps.settings.wechat_template_waitlist_promoted)

    response = await cancel(api, a.token, class_id)
    assert response.status == 204
    assert (await detail(api, a.token, class_id))["my_signup"] is None
    promoted = await detail(api, c.token, class_id)
    assert promoted["my_signup"] == {"status": "confirmed", "position": None, "present": False}
    assert promoted["seats_left"] == 0
    assert (await detail(api, d.token, class_id))["my_signup"]["position"] == 1
    assert await counters(deps, class_id) == (2, 1)

    [job] = await jobs(deps, "waitlist_promoted")
    assert job.user_id == c.user_id and job.status == "pending" and job.due_at == NOW
    # The promoted parent is now also reminded the day before, like any confirmed seat.
    [reminder] = await jobs(deps, "class_reminder", c.user_id)
    assert reminder.status == "pending" and reminder.due_at == EVENING - timedelta(hours=24)
    assert job.template_id == deps.settings.wechat_template_waitlist_promoted
    assert await deps.notifications.run_once() >= 1
    sent = [m for m in state.messages if m["template_id"] == deps.settings.wechat_template_waitlist_promoted]
    assert [m["touser"] for m in sent] == [await openid_of(deps, c.user_id)]
    assert sent[0]["page"] == f"pages/evening-class/detail?id={class_id}"
    await deps.notifications.run_once()  # once told is enough; the day-before reminder is not due yet
    assert [m["touser"] for m in state.messages] == [sent[0]["touser"]]

    # Cancelling a waitlisted place promotes nobody.
    assert (await cancel(api, d.token, class_id)).status == 204
    listed = await roster(api, scene.token("teacher_a"), class_id)
    assert [(e["parent_id"], e["status"]) for e in listed["items"]] == [
        (str(b.user_id), "confirmed"),
        (str(c.user_id), "confirmed"),
    ]
    assert await counters(deps, class_id) == (2, 0)
    assert len(await jobs(deps, "waitlist_promoted")) == 1

    # Signing up again after cancelling is a new place at the end of the queue.
    again = await sign_up(api, a.token, class_id)
    assert again.status == 201 and again.json()["status"] == "waitlisted" and again.json()["position"] == 1
    # Cancelling a confirmed seat with nobody waiting frees it.
    assert (await cancel(api, a.token, class_id)).status == 204
    assert (await cancel(api, b.token, class_id)).status == 204
    assert (await detail(api, c.token, class_id))["seats_left"] == 1
    assert await confirmed_count(deps, class_id) == 1
    missing = await cancel(api, b.token, class_id)
    assert missing.status == 404 and missing.code == "not_signed_up"


async def test_a_promotion_missed_for_want_of_an_allowance_goes_once_the_parent_allows(
    api: Api, deps: Deps, scene: Scene, wechat: Sandbox
) -> None:
    state, _ = wechat
    promoted_template = deps.settings.wechat_template_waitlist_promoted
    later = await new_class(deps, scene, capacity=1)
    soon = await new_class(
        deps, scene, capacity=1, starts_at=NOW + timedelta(hours=3), cancel_deadline=NOW + timedelta(hours=2)
    )
    holder, waiting = await make_parents(deps, scene.world.classroom_a, 2)
    for class_id in (later, soon):
        for parent in (holder, waiting):
            assert (await sign_up(api, parent.token, class_id)).status == 201
        assert (await cancel(api, holder.token, class_id)).status == 204
    await deps.notifications.run_once()
    assert state.messages == []  # the promoted parent never allowed the message
    assert {j.status for j in await jobs(deps, "waitlist_promoted")} == {"no_allowance"}

    scene.clock.now = NOW + timedelta(hours=4)  # `soon` has begun: its news is stale
    await accept_messages(api, waiting.token, promoted_template)
    await deps.notifications.run_once()
    [sent] = state.messages
    assert sent["touser"] == await openid_of(deps, waiting.user_id)
    assert sent["page"] == f"pages/evening-class/detail?id={later}"
    statuses = {j.page: j.status for j in await jobs(deps, "waitlist_promoted")}
    assert statuses == {
        f"pages/evening-class/detail?id={later}": "sent",
        f"pages/evening-class/detail?id={soon}": "no_allowance",
    }


async def test_no_cancelling_after_the_deadline(api: Api, deps: Deps, scene: Scene) -> None:
    class_id = await new_class(deps, scene, capacity=1)
    holder, waiting, leaving = await make_parents(deps, scene.world.classroom_a, 3)
    for parent in (holder, waiting, leaving):
        assert (await sign_up(api, parent.token, class_id)).status == 201
    scene.clock.now = EVENING - timedelta(hours=24)  # the deadline itself is still in time
    assert (await cancel(api, leaving.token, class_id)).status == 204
    scene.clock.tick(1)
    for parent in (holder, waiting):
        refused = await cancel(api, parent.token, class_id)
        assert refused.status == 409 and refused.code == "cancel_closed"
    assert (await detail(api, holder.token, class_id))["my_signup"]["status"] == "confirmed"
    assert (await detail(api, waiting.token, class_id))["my_signup"]["position"] == 1
    assert await jobs(deps, "waitlist_promoted") == []


# ---- reminders ----------------------------------------------------------------------------------------
async def test_a_confirmed_seat_is_reminded_the_day_before_exactly_once(
    api: Api, deps: Deps, scene: Scene, wechat: Sandbox
) -> None:
    state, _ = wechat
    class_id = await new_class(deps, scene, capacity=1)
    parent = scene.user("parent_a")
    token = scene.token("parent_a")
    [waiting] = await make_parents(deps, scene.world.classroom_a, 1)
    await accept_messages(api, token, deps.settings.wechat_template_class_reminder)
    assert (await sign_up(api, token, class_id)).json()["status"] == "confirmed"
    assert (await sign_up(api, waiting.token, class_id)).json()["status"] == "waitlisted"

    [job] = await jobs(deps, "class_reminder")
    assert (job.user_id, job.subject_id, job.status) == (parent, class_id, "pending")
    assert job.due_at == EVENING - timedelta(hours=24)
    assert job.expires_at == EVENING  # never after the class has begun
    assert job.template_id == deps.settings.wechat_template_class_reminder
    assert job.data["thing1"] == "亲子沟通的艺术" and job.data["thing3"] == "学校报告厅"

    # Cancelling drops it; signing up again brings it back (the seat went to the waitlisted parent, so
    # parent_a waits now and is reminded only if promoted).
    assert (await cancel(api, token, class_id)).status == 204
    assert {(j.user_id, j.status) for j in await jobs(deps, "class_reminder")} == {
        (parent, "cancelled"),
        (waiting.user_id, "pending"),
    }
    assert (await cancel(api, waiting.token, class_id)).status == 204
    assert (await sign_up(api, token, class_id)).json()["status"] == "confirmed"
    assert {(j.user_id, j.status) for j in await jobs(deps, "class_reminder")} == {
        (parent, "pending"),
        (waiting.user_id, "cancelled"),
    }

    # Not due yet: nothing goes out.
    await deps.notifications.run_once()
    assert [m for m in state.messages if m["template_id"] == job.template_id] == []
    scene.clock.now = EVENING - timedelta(hours=24)
    await deps.notifications.run_once()
    scene.clock.tick(60)
    await deps.notifications.run_once()
    reminders = [m for m in state.messages if m["template_id"] == job.template_id]
    assert [m["touser"] for m in reminders] == [await openid_of(deps, parent)]
    assert reminders[0]["data"]["thing1"]["value"] == "亲子沟通的艺术"
    [sent] = [j for j in await jobs(deps, "class_reminder") if j.user_id == parent]
    assert sent.status == "sent"


async def test_a_reminder_that_could_not_go_out_before_the_class_began_is_dropped(
    api: Api, deps: Deps, scene: Scene, wechat: Sandbox
) -> None:
    """WeChat unreachable (or the service down) until the class has started: the parent must not get a
    "tomorrow evening" reminder for a class that is already under way."""
    state, _ = wechat
    class_id = await new_class(deps, scene)
    assert (await sign_up(api, scene.token("parent_a"), class_id)).json()["status"] == "confirmed"
    scene.clock.now = EVENING + timedelta(minutes=5)
    assert await deps.notifications.run_once() == 0
    assert state.messages == []
    [job] = await jobs(deps, "class_reminder")
    assert (job.subject_id, job.status) == (class_id, "expired")


# ---- invariants under concurrency ---------------------------------------------------------------------
@pytest.fixture
async def crowd_api(api: Api, deps: Deps) -> AsyncIterator[Api]:
    """The service (beside `api`, which runs the cache invalidation listener) on a socket whose accept
    queue holds a crowd: with the default backlog of 128, 500 phones connecting at once overflow it and
    the kernel resets some of the connections."""
    sockets = bind_sockets(0, "127.0.0.1", family=socket.AF_INET, backlog=2048)
    server = HTTPServer(make_app(deps))
    server.add_sockets(sockets)
    client = Api(f"http://127.0.0.1:{sockets[0].getsockname()[1]}")
    yield client
    client.http.close()
    server.stop()
    await server.close_all_connections()


async def test_a_rush_of_500_sign_ups_for_50_seats(
    crowd_api: Api, deps: Deps, scene: Scene, settings: Settings
) -> None:
    api = crowd_api
    settings.max_queued_transactions = 10_000  # every request in flight at once, none shed
    class_id = await new_class(deps, scene, capacity=50)
    parents = await make_parents(deps, scene.world.classroom_a, 500)
    # Everyone has the mini-program open and signed in when sign-up opens (in batches: a process's
    # Redis pool refuses, rather than queues, more than 200 first requests at once).
    for batch in range(0, 500, 125):
        opened = await asyncio.gather(
            *(api.get(f"{API}/me", token=p.token) for p in parents[batch : batch + 125])
        )
        assert {r.status for r in opened} == {200}
    responses = await asyncio.gather(*(sign_up(api, p.token, class_id) for p in parents))
    assert Counter(r.status for r in responses) == {201: 500}
    by_parent = {p.user_id: r.json() for p, r in zip(parents, responses, strict=True)}
    statuses = Counter(out["status"] for out in by_parent.values())
    assert statuses == {"confirmed": 50, "waitlisted": 450}
    told = {uid: out["position"] for uid, out in by_parent.items() if out["status"] == "waitlisted"}
    assert sorted(told.values()) == list(range(1, 451))
    assert await counters(deps, class_id) == (50, 450)
    async with deps.sessions() as s:
        rows = (
            await s.execute(select(Signup.parent_user_id, Signup.status).where(Signup.class_id == class_id))
        ).all()
    assert len(rows) == 500 and len({r.parent_user_id for r in rows}) == 500
    assert Counter(r.status for r in rows) == {"confirmed": 50, "waitlisted": 450}

    # The roster's waitlist is the order parents were told.
    teacher = scene.token("teacher_a")
    listed = await roster(api, teacher, class_id)
    queue = [uuid.UUID(e["parent_id"]) for e in listed["items"] if e["status"] == "waitlisted"]
    assert [told[uid] for uid in queue] == list(range(1, 451))
    confirmed = [uuid.UUID(e["parent_id"]) for e in listed["items"] if e["status"] == "confirmed"]
    assert set(confirmed) == {uid for uid, out in by_parent.items() if out["status"] == "confirmed"}

    # Twenty confirmed parents cancel at once: the twenty first in the queue get their seats.
    tokens = {p.user_id: p.token for p in parents}
    leaving = confirmed[:20]
    cancelled = await asyncio.gather(*(cancel(api, tokens[uid], class_id) for uid in leaving))
    assert [r.status for r in cancelled] == [204] * 20
    after = await roster(api, teacher, class_id)
    now_confirmed = {uuid.UUID(e["parent_id"]) for e in after["items"] if e["status"] == "confirmed"}
    assert after["confirmed"] == 50 and after["waitlisted"] == 430
    assert now_confirmed == (set(confirmed) - set(leaving)) | set(queue[:20])
    still_waiting = [uuid.UUID(e["parent_id"]) for e in after["items"] if e["status"] == "waitlisted"]
    assert still_waiting == queue[20:]
    assert [e["position"] for e in after["items"] if e["status"] == "waitlisted"] == list(range(1, 431))
    assert await counters(deps, class_id) == (50, 430)
    promoted_jobs = await jobs(deps, "waitlist_promoted")
    assert sorted(j.user_id for j in promoted_jobs) == sorted(queue[:20])
    first = await detail(api, tokens[queue[0]], class_id)
    assert first["my_signup"]["status"] == "confirmed" and first["seats_left"] == 0


async def test_sign_ups_arriving_together_get_each_their_own_answer(
    api: Api, deps: Deps, scene: Scene
) -> None:
    """Sign-ups are written in batches: one batch then mixes classes, seats, waitlists and refusals,
    and each parent must still get exactly the answer they would have got alone."""
    small = await new_class(deps, scene, capacity=2)
    medium = await new_class(deps, scene, capacity=3)
    closed = await new_class(deps, scene, signup_closes_at=NOW - timedelta(hours=1))
    elsewhere = await new_class(deps, scene, school=scene.world.school_b)
    parents = await make_parents(deps, scene.world.classroom_a, 12)
    early = parents[0]
    assert (await sign_up(api, early.token, small)).json()["status"] == "confirmed"
    batches_before = deps.signups.batches

    asks = (
        [(p, small) for p in parents]  # early again: already signed up
        + [(p, medium) for p in parents[:8]]
        + [(parents[1], medium)]  # a double tap, in the same rush
        + [(p, closed) for p in parents[8:11]]
        + [(p, elsewhere) for p in parents[:2]]
    )
    responses = await asyncio.gather(*(sign_up(api, p.token, c) for p, c in asks))
    answers = [
        (p.user_id, c, r.status, r.code or r.json()["status"])
        for (p, c), r in zip(asks, responses, strict=True)
    ]

    def outcome(class_id: uuid.UUID) -> Counter[tuple[int, str]]:
        return Counter((status, what) for _, c, status, what in answers if c == class_id)

    assert outcome(small) == {(409, "already_signed_up"): 1, (201, "confirmed"): 1, (201, "waitlisted"): 10}
    assert outcome(medium) == {(201, "confirmed"): 3, (201, "waitlisted"): 5, (409, "already_signed_up"): 1}
    assert outcome(closed) == {(409, "signup_closed"): 3}
    assert outcome(elsewhere) == {(404, "not_found"): 2}
    assert deps.signups.batches - batches_before < len(asks)

    # Each class's waitlist is numbered from 1 in the order the roster keeps, and the counters agree.
    teacher = scene.token("teacher_a")
    for class_id, seats, waiting in ((small, 2, 10), (medium, 3, 5)):
        told = {
            p.user_id: r.json()["position"]
            for (p, c), r in zip(asks, responses, strict=True)
            if c == class_id and r.status == 201 and r.json()["status"] == "waitlisted"
        }
        listed = await roster(api, teacher, class_id)
        assert (listed["confirmed"], listed["waitlisted"]) == (seats, waiting)
        queue = [uuid.UUID(e["parent_id"]) for e in listed["items"] if e["status"] == "waitlisted"]
        assert [told[uid] for uid in queue] == list(range(1, waiting + 1))
        assert await counters(deps, class_id) == (seats, waiting)
    reminded = Counter(j.subject_id for j in await jobs(deps, "class_reminder"))
    assert reminded == {small: 2, medium: 3}


async def test_a_parent_signed_up_by_another_process_meanwhile_does_not_cost_anyone_a_seat(
    deps: Deps, scene: Scene
) -> None:
    """Another process signs a parent up and holds the class while this process's batch (that parent
    again, and a newcomer) starts: the batch, having read before the lock was free, counts a seat for the
    parent that is not taken. It must notice and run again, so that the newcomer gets the free seat."""
    class_id = await new_class(deps, scene, capacity=2)
    first, newcomer = await make_parents(deps, scene.world.classroom_a, 2)
    async with deps.sessions() as s:
        principals = [await load_principal(s, p.user_id) for p in (first, newcomer)]
    async with deps.engine.connect() as other:
        transaction = await other.begin()
        await other.execute(
            update(EveningClass)
            .where(EveningClass.id == class_id)
            .values(confirmed_count=EveningClass.confirmed_count + 1)
        )
        await other.execute(
            insert(Signup).values(
                id=uuid.uuid4(),
                class_id=class_id,
                parent_user_id=first.user_id,
                status="confirmed",
                waitlist_seq=0,
            )
        )
        answers = asyncio.gather(
            *(
                deps.signups.submit(SignupRequest(p, class_id, NOW, TEMPLATES))
                for p in principals
                if p is not None
            ),
            return_exceptions=True,
        )
        await until_a_statement_waits_for_a_lock(deps)
        await transaction.commit()
    again, seated = await answers
    assert isinstance(again, AlreadySignedUp)
    assert isinstance(seated, SignupOut) and seated.status == "confirmed"
    assert deps.signups.retries == 1
    assert await confirmed_count(deps, class_id) == 2


async def test_a_class_cancelled_while_a_sign_up_waits_for_it_takes_no_place(
    deps: Deps, scene: Scene
) -> None:
    """The batch reads the class (not cancelled yet), then waits for its lock while the school cancels
    it: what decides is the class as the lock finds it."""
    class_id = await new_class(deps, scene)
    [parent] = await make_parents(deps, scene.world.classroom_a, 1)
    async with deps.sessions() as s:
        principal = await load_principal(s, parent.user_id)
    assert principal is not None
    async with deps.engine.connect() as other:
        transaction = await other.begin()
        await other.execute(update(EveningClass).where(EveningClass.id == class_id).values(cancelled_at=NOW))
        answer = asyncio.ensure_future(
            deps.signups.submit(SignupRequest(principal, class_id, NOW, TEMPLATES))
        )
        await until_a_statement_waits_for_a_lock(deps)
        await transaction.commit()
    with pytest.raises(ClassCancelled):
        await answer
    assert await counters(deps, class_id) == (0, 0)
    assert await jobs(deps, "class_reminder") == []


async def test_concurrent_cancellations_with_nobody_waiting_free_every_seat(
    api: Api, deps: Deps, scene: Scene
) -> None:
    class_id = await new_class(deps, scene, capacity=30)
    parents = await make_parents(deps, scene.world.classroom_a, 30)
    for parent in parents:
        assert (await sign_up(api, parent.token, class_id)).json()["status"] == "confirmed"
    cancelled = await asyncio.gather(*(cancel(api, p.token, class_id) for p in parents[:20]))
    assert [r.status for r in cancelled] == [204] * 20
    assert (await detail(api, parents[25].token, class_id))["seats_left"] == 20
    assert await confirmed_count(deps, class_id) == 10
    # The freed seats really are free: twenty newcomers are all confirmed, the next one waits.
    newcomers = await make_parents(deps, scene.world.classroom_a, 21)
    answers = [(await sign_up(api, p.token, class_id)).json()["status"] for p in newcomers]
    assert answers == ["confirmed"] * 20 + ["waitlisted"]


async def test_one_parent_tapping_twenty_times_at_once_gets_one_place(
    api: Api, deps: Deps, scene: Scene
) -> None:
    class_id = await new_class(deps, scene, capacity=5)
    token = scene.token("parent_a")
    responses = await asyncio.gather(*(sign_up(api, token, class_id) for _ in range(20)))
    assert Counter(r.status for r in responses) == {201: 1, 409: 19}
    assert {r.code for r in responses if r.status == 409} == {"already_signed_up"}
    assert (await detail(api, token, class_id))["seats_left"] == 4
    assert await confirmed_count(deps, class_id) == 1
    assert len(await jobs(deps, "class_reminder")) == 1


# ---- check-in ---------------------------------------------------------------------------------------
def checkin_key(deps: Deps) -> bytes:
    """The key the service signs check-in tokens with (derived from the JWT secret)."""
    secret = deps.settings.jwt_secret.get_secret_value().encode()
    return hmac.new(secret, b"evening-class-checkin", hashlib.sha256).digest()


async def checkin_code(api: Api, token: str, class_id: uuid.UUID) -> Response:
    return await api.get(f"{API}/evening-classes/{class_id}/checkin-code", token=token)


async def check_in(api: Api, token: str, class_id: uuid.UUID, code: str) -> Response:
    return await api.post(f"{API}/evening-classes/{class_id}/checkins", {"token": code}, token=token)


async def evening_credits(api: Api, token: str) -> list[dict[str, Any]]:
    response = await api.get(f"{API}/me/learning", token=token)
    assert response.status == 200, response.body
    return [c for c in response.json()["credits"] if c["source"] == "evening_class"]


async def test_scanning_the_rotating_code_marks_present_and_credits_once(
    api: Api, deps: Deps, scene: Scene
) -> None:
    class_id = await new_class(deps, scene)
    assert (await sign_up(api, scene.token("parent_a"), class_id)).status == 201
    scene.clock.now = EVENING - timedelta(minutes=10)

    shown = await checkin_code(api, scene.token("teacher_a"), class_id)
    assert shown.status == 200 and shown.headers["Cache-Control"] == "no-store"
    code = shown.json()
    assert code["period_seconds"] == 30
    assert at(code["next_token_at"]) == scene.clock.now + timedelta(seconds=30)
    scene.clock.tick(30)
    rotated = (await checkin_code(api, scene.token("teacher_a"), class_id)).json()
    assert rotated["token"] != code["token"]
    assert (await checkin_code(api, scene.token("teacher_a"), class_id)).json()["token"] == rotated["token"]

    # The code shown just before the change still works (a parent scanning as it changes).
    present = await check_in(api, scene.token("parent_a"), class_id, code["token"])
    assert present.status == 201, present.body
    assert present.json() == {
        "class_id": str(class_id),
        "parent_id": str(scene.user("parent_a")),
        "present": True,
        "method": "qr",
        "already_recorded": False,
    }
    [credit] = await evening_credits(api, scene.token("parent_a"))
    assert (credit["tier"], credit["class_hours"], credit["course_id"]) == (
        "general",
        2,
        str(scene.course.id),
    )
    assert credit["course_title"] == "亲子沟通的艺术"

    again = await check_in(api, scene.token("parent_a"), class_id, rotated["token"])
    assert again.status == 200 and again.json()["already_recorded"] is True
    assert len(await evening_credits(api, scene.token("parent_a"))) == 1
    assert (await detail(api, scene.token("parent_a"), class_id))["my_signup"]["present"] is True


async def test_expired_forged_and_foreign_check_in_tokens(api: Api, deps: Deps, scene: Scene) -> None:
    class_id = await new_class(deps, scene)
    other_id = await new_class(deps, scene, starts_at=EVENING + timedelta(minutes=15))
    assert (await sign_up(api, scene.token("parent_a"), class_id)).status == 201
    scene.clock.now = EVENING - timedelta(minutes=5)
    old = (await checkin_code(api, scene.token("teacher_a"), class_id)).json()["token"]
    foreign = (await checkin_code(api, scene.token("teacher_a"), other_id)).json()["token"]
    scene.clock.tick(60)  # two periods later: a photo of the screen from a minute ago

    expired = await check_in(api, scene.token("parent_a"), class_id, old)
    assert expired.status == 409 and expired.code == "checkin_token_expired"
    raw = base64.urlsafe_b64decode(old + "=" * (-len(old) % 4))
    period = int.from_bytes(raw[:8], "big")
    forged_mac = base64.urlsafe_b64encode((period + 2).to_bytes(8, "big") + os.urandom(12)).decode()
    guessed_key, _ = checkin_token(b"not the key", str(class_id), scene.clock.now)
    for bad in (forged_mac.rstrip("="), guessed_key, "garbled!!", "签到码", "A" * 64, foreign):
        response = await check_in(api, scene.token("parent_a"), class_id, bad)
        assert response.status == 422 and response.code == "invalid_checkin_token", (bad, response.body)
    assert await evening_credits(api, scene.token("parent_a")) == []

    current = (await checkin_code(api, scene.token("teacher_a"), class_id)).json()["token"]
    assert (await check_in(api, scene.token("parent_a"), class_id, current)).status == 201


async def test_check_in_only_around_the_class_and_only_with_a_confirmed_seat(
    api: Api, deps: Deps, scene: Scene
) -> None:
    class_id = await new_class(deps, scene, capacity=1)
    [waiting] = await make_parents(deps, scene.world.classroom_a, 1)
    assert (await sign_up(api, scene.token("parent_a"), class_id)).json()["status"] == "confirmed"
    assert (await sign_up(api, waiting.token, class_id)).json()["status"] == "waitlisted"

    scene.clock.now = EVENING - timedelta(minutes=31)
    early = await checkin_code(api, scene.token("teacher_a"), class_id)
    assert early.status == 409 and early.code == "checkin_closed"
    genuine, _ = checkin_token(checkin_key(deps), str(class_id), scene.clock.now)
    refused = await check_in(api, scene.token("parent_a"), class_id, genuine)
    assert refused.status == 409 and refused.code == "checkin_closed"
    too_soon = await api.request(
        "PUT",
        f"{API}/evening-classes/{class_id}/attendance/{scene.user('parent_a')}",
        json_body={},
        token=scene.token("teacher_a"),
    )
    assert too_soon.status == 409 and too_soon.code == "checkin_closed"

    scene.clock.now = EVENING - timedelta(minutes=30)
    code = (await checkin_code(api, scene.token("teacher_a"), class_id)).json()["token"]
    waitlisted = await check_in(api, waiting.token, class_id, code)
    assert waitlisted.status == 409 and waitlisted.code == "not_confirmed"
    [stranger] = await make_parents(deps, scene.world.classroom_a, 1)
    unknown = await check_in(api, stranger.token, class_id, code)
    assert unknown.status == 404 and unknown.code == "not_signed_up"

    # Half an hour after the end the code still shows; a second later it is over.
    scene.clock.now = EVENING + timedelta(minutes=90 + 30)
    last = await checkin_code(api, scene.token("teacher_a"), class_id)
    assert last.status == 200
    scene.clock.tick(1)
    late = await check_in(api, scene.token("parent_a"), class_id, last.json()["token"])
    assert late.status == 409 and late.code == "checkin_closed"
    assert (await checkin_code(api, scene.token("teacher_a"), class_id)).code == "checkin_closed"
    assert await evening_credits(api, scene.token("parent_a")) == []


async def test_the_teacher_marks_attendance_on_the_roster(api: Api, deps: Deps, scene: Scene) -> None:
    class_id = await new_class(deps, scene, capacity=2)
    a, b, c = await make_parents(deps, scene.world.classroom_a, 3)
    for parent in (a, b, c):
        assert (await sign_up(api, parent.token, class_id)).status == 201
    scene.clock.now = EVENING + timedelta(minutes=5)

    url = f"{API}/evening-classes/{class_id}/attendance"
    marked = await api.request("PUT", f"{url}/{a.user_id}", json_body={}, token=scene.token("teacher_a"))
    assert marked.status == 200, marked.body
    assert marked.json() == {
        "class_id": str(class_id),
        "parent_id": str(a.user_id),
        "present": True,
        "method": "roster",
        "already_recorded": False,
    }
    again = await api.request("PUT", f"{url}/{a.user_id}", json_body={}, token=scene.token("teacher_a"))
    assert again.status == 200 and again.json()["already_recorded"] is True
    # The parent's phone works after all: scanning too changes nothing.
    code = (await checkin_code(api, scene.token("teacher_a"), class_id)).json()["token"]
    scanned = await check_in(api, a.token, class_id, code)
    assert scanned.status == 200 and scanned.json() == {**marked.json(), "already_recorded": True}
    assert len(await evening_credits(api, a.token)) == 1

    assert (await check_in(api, b.token, class_id, code)).status == 201
    [credit] = await evening_credits(api, b.token)
    assert credit["class_hours"] == 2
    nobody = await api.request("PUT", f"{url}/{uuid.uuid4()}", json_body={}, token=scene.token("teacher_a"))
    assert nobody.status == 404

    listed = await roster(api, scene.token("teacher_a"), class_id)
    assert (listed["capacity"], listed["confirmed"], listed["waitlisted"], listed["present"]) == (2, 2, 1, 2)
    assert [(e["parent_id"], e["status"], e["position"], e["present"]) for e in listed["items"]] == [
        (str(a.user_id), "confirmed", None, True),
        (str(b.user_id), "confirmed", None, True),
        (str(c.user_id), "waitlisted", 1, False),
    ]
    assert [e["display_name"] for e in listed["items"]] == ["家长0", "家长1", "家长2"]


# ---- per-term counts -------------------------------------------------------------------------------
async def held_class(
    api: Api, deps: Deps, scene: Scene, school: Any, starts_at: datetime, parents: list[Actor], present: int
) -> uuid.UUID:
    """A class of `school` that `parents` signed up for, `present` of them marked present after it."""
    class_id = await new_class(
        deps,
        scene,
        school=school,
        starts_at=starts_at,
        capacity=10,
        signup_opens_at=starts_at - timedelta(days=3),
    )
    scene.clock.now = starts_at - timedelta(days=1)
    for parent in parents:
        assert (await sign_up(api, parent.token, class_id)).json()["status"] == "confirmed"
    scene.clock.now = starts_at + timedelta(hours=2)
    teacher = scene.token("teacher_a" if school.id == scene.world.school_a.id else "teacher_b")
    for parent in parents[:present]:
        marked = await api.request(
            "PUT",
            f"{API}/evening-classes/{class_id}/attendance/{parent.user_id}",
            json_body={},
            token=teacher,
        )
        assert marked.status == 200, marked.body
    return class_id


async def test_term_counts_per_school_and_per_district(api: Api, deps: Deps, scene: Scene) -> None:
    world = scene.world
    at_a = await make_parents(deps, world.classroom_a, 4)
    at_b = await make_parents(deps, world.classroom_b, 2)
    # School A: one class held (2 of 4 present), one ended with nobody marked, one still to come,
    # one cancelled, one in the spring term.
    await held_class(api, deps, scene, world.school_a, datetime(2025, 9, 20, 19, tzinfo=SHANGHAI), at_a, 2)
    await held_class(
        api, deps, scene, world.school_a, datetime(2025, 9, 27, 19, tzinfo=SHANGHAI), at_a[:2], 0
    )
    # School B: two classes held.
    for day in (21, 28):
        await held_class(
            api, deps, scene, world.school_b, datetime(2025, 9, day, 19, tzinfo=SHANGHAI), at_b, 1
        )
    scene.clock.now = NOW
    await new_class(deps, scene, starts_at=datetime(2025, 12, 18, 19, tzinfo=SHANGHAI), capacity=20)
    dropped = await new_class(deps, scene, starts_at=datetime(2025, 11, 6, 19, tzinfo=SHANGHAI))
    async with deps.sessions() as s, s.begin():
        row = await s.get(EveningClass, dropped)
        assert row is not None
        row.cancelled_at = NOW
    await new_class(deps, scene, starts_at=datetime(2026, 3, 12, 19, tzinfo=SHANGHAI))

    admin = scene.token("school_admin_a")
    response = await api.get(
        f"{API}/schools/{world.school_a.id}/terms/{TERM}/evening-classes/summary", token=admin
    )
    assert response.status == 200, response.body
    summary = response.json()
    assert summary["school_id"] == str(world.school_a.id) and summary["school_name"] == "甲小学"
    assert summary["term"] == TERM and summary["required"] == 5
    assert (summary["scheduled"], summary["held"], summary["meets_requirement"]) == (3, 1, False)
    assert (summary["seats"], summary["confirmed_signups"], summary["attended"]) == (40, 6, 2)
    assert summary["signup_rate"] == pytest.approx(6 / 40)
    assert summary["attendance_rate"] == pytest.approx(2 / 4)
    spring = await api.get(
        f"{API}/schools/{world.school_a.id}/terms/2025-2026-2/evening-classes/summary", token=admin
    )
    assert (spring.json()["scheduled"], spring.json()["held"]) == (1, 0)
    assert spring.json()["attendance_rate"] == 0 and spring.json()["signup_rate"] == 0

    district = f"{API}/districts/{world.district.id}/terms/{TERM}/evening-classes"
    overview = await api.get(f"{district}/summary", token=scene.token("evaluator"))
    assert overview.status == 200, overview.body
    rows = overview.json()
    assert rows["required"] == 5 and rows["schools_below_requirement"] == 2
    assert [(r["school_name"], r["held"], r["scheduled"]) for r in rows["items"]] == [
        ("甲小学", 1, 3),
        ("乙中学", 2, 2),
    ]
    assert rows["items"][1]["attendance_rate"] == pytest.approx(2 / 4)

    # The district asks for two per term: school B meets it, school A (below) still comes first.
    changed = await api.request(
        "PUT", f"{district}/requirement", json_body={"required": 2}, token=scene.token("district_admin")
    )
    assert changed.status == 200, changed.body
    assert changed.json()["required"] == 2 and changed.json()["schools_below_requirement"] == 1
    assert [(r["school_name"], r["meets_requirement"]) for r in changed.json()["items"]] == [
        ("甲小学", False),
        ("乙中学", True),
    ]
    assert (
        await api.get(f"{API}/schools/{world.school_a.id}/terms/{TERM}/evening-classes/summary", token=admin)
    ).json()["required"] == 2
    # Another term keeps the default.
    other_term = await api.get(
        f"{API}/districts/{world.district.id}/terms/2025-2026-2/evening-classes/summary",
        token=scene.token("district_admin"),
    )
    assert other_term.json()["required"] == 5

    # No requirement at all this term: every school meets it.
    none = await api.request(
        "PUT", f"{district}/requirement", json_body={"required": 0}, token=scene.token("district_admin")
    )
    assert none.status == 200
    assert none.json()["required"] == 0 and none.json()["schools_below_requirement"] == 0
    reread = await api.get(f"{district}/summary", token=scene.token("district_admin"))
    assert reread.json()["required"] == 0
    assert all(r["meets_requirement"] for r in reread.json()["items"])


async def test_an_invalid_term_is_not_found(api: Api, deps: Deps, scene: Scene) -> None:
    world = scene.world
    admin, district_admin = scene.token("school_admin_a"), scene.token("district_admin")
    for term in ("2025-2026-3", "2025-2027-1", "2025-2026", "autumn", "2025-2026-1x"):
        school = await api.get(
            f"{API}/schools/{world.school_a.id}/terms/{term}/evening-classes/summary", token=admin
        )
        assert school.status == 404, term
        district = await api.get(
            f"{API}/districts/{world.district.id}/terms/{term}/evening-classes/summary", token=district_admin
        )
        assert district.status == 404, term
        put = await api.request(
            "PUT",
            f"{API}/districts/{world.district.id}/terms/{term}/evening-classes/requirement",
            json_body={"required": 3},
            token=district_admin,
        )
        assert put.status == 404, term
