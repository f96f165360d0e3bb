"""Findings of the penetration test on evening classes: an invitation-only class's roster is not for every
teacher of the school, and a waitlisted parent cannot be marked present."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import func, select

from handlers.deps import Deps
from models.catalog.tables import CourseAssignment
from models.learning.tables import HourCredit
from tests.api.test_evening_classes import (
    API,
    EVENING,
    Scene,
    class_body,
    make_parents,
    new_class,
    scene,
    sign_up,
)
from tests.builders import make_course, make_teacher, make_wechat_user, signed_in
from tests.client import Api

__all__ = ["scene"]  # the fixture, used by name


async def test_only_those_who_run_an_invited_class_may_read_its_roster(
    api: Api, deps: Deps, scene: Scene
) -> None:
    world = scene.world
    async with deps.sessions() as s, s.begin():
        custom = await make_course(s, tier="custom", title="危机干预后的亲子陪伴", school=world.school_a)
        s.add(CourseAssignment(course_id=custom.id, student_id=world.student_a.id))
        other_user = await make_wechat_user(s)
        await make_teacher(s, world.school_a, other_user, name="丁老师")  # teaches at A, not 甲同学's class
    other_teacher = await signed_in(deps, other_user.id)
    scheduled = await api.post(
        f"{API}/schools/{world.school_a.id}/evening-classes",
        class_body(custom.id, audience="invited", capacity=5),
        token=scene.token("school_admin_a"),
    )
    assert scheduled.status == 201, scheduled.body
    class_id = scheduled.json()["id"]
    assert (await sign_up(api, scene.token("parent_a"), uuid.UUID(class_id))).status == 201
    scene.clock.now = EVENING + timedelta(minutes=5)

    roster = f"{API}/evening-classes/{class_id}/roster"
    for label in ("school_admin_a", "district_admin", "teacher_a"):  # teacher_a heads 甲同学's classroom
        allowed = await api.get(roster, token=scene.token(label))
        assert allowed.status == 200, (label, allowed.body)
        assert [e["parent_id"] for e in allowed.json()["items"]] == [str(scene.user("parent_a"))]
    # Another teacher of the same school learns nothing: not the names, not that the roster exists.
    refused = await api.get(roster, token=other_teacher.token)
    assert refused.status == 404 and refused.code == "not_found"
    assert "家长" not in refused.body.decode()
    code = await api.get(f"{API}/evening-classes/{class_id}/checkin-code", token=other_teacher.token)
    assert code.status == 404
    mark = await api.request(
        "PUT",
        f"{API}/evening-classes/{class_id}/attendance/{scene.user('parent_a')}",
        json_body={},
        token=other_teacher.token,
    )
    assert mark.status == 404
    # Teachers of other schools, as before, see nothing.
    assert (await api.get(roster, token=scene.token("teacher_b"))).status == 404

    # The organiser of an invited class reads its roster even without heading an invited classroom.
    own = await api.post(
        f"{API}/schools/{world.school_a.id}/evening-classes",
        class_body(custom.id, audience="invited", starts_at=EVENING + timedelta(days=7)),
        token=other_teacher.token,
    )
    assert own.status == 201, own.body
    assert (
        await api.get(f"{API}/evening-classes/{own.json()['id']}/roster", token=other_teacher.token)
    ).status == 200
    # A class for the whole school stays every teacher's to run.
    open_class = await new_class(deps, scene)
    assert (
        await api.get(f"{API}/evening-classes/{open_class}/roster", token=other_teacher.token)
    ).status == 200


async def test_a_waitlisted_parent_cannot_be_marked_present_on_the_roster(
    api: Api, deps: Deps, scene: Scene
) -> None:
    class_id = await new_class(deps, scene, capacity=1)
    seated, waiting = await make_parents(deps, scene.world.classroom_a, 2)
    assert (await sign_up(api, seated.token, class_id)).json()["status"] == "confirmed"
    assert (await sign_up(api, waiting.token, class_id)).json()["status"] == "waitlisted"
    scene.clock.now = EVENING + timedelta(minutes=5)
    url = f"{API}/evening-classes/{class_id}/attendance"

    refused = await api.request(
        "PUT", f"{url}/{waiting.user_id}", json_body={}, token=scene.token("teacher_a")
    )
    assert refused.status == 409 and refused.code == "not_confirmed"
    assert "候补" in refused.json()["detail"]
    async with deps.sessions() as s:
        credited = await s.scalar(
            select(func.count()).select_from(HourCredit).where(HourCredit.parent_user_id == waiting.user_id)
        )
    assert credited == 0
    roster = (
        await api.get(f"{API}/evening-classes/{class_id}/roster", token=scene.token("teacher_a"))
    ).json()
    assert roster["present"] == 0
    marked = await api.request("PUT", f"{url}/{seated.user_id}", json_body={}, token=scene.token("teacher_a"))
    assert marked.status == 200 and marked.json()["present"] is True
