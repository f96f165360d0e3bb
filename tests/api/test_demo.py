"""The demo data `make run` loads at every start (development only)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy import select

from course_catalog.loader import load_catalogue
from handlers.deps import Deps
from infra.clock import SHANGHAI
from models.catalog.service import sync_catalogue
from models.demo import DISTRICT, demo_id, load_demo, load_demo_evening_classes
from models.evening_classes.tables import EveningClass
from models.surveys.demo import load_demo_surveys
from server.app import API
from tests.builders import FakeClock, signed_in
from tests.client import Api

MONDAY = datetime(2025, 10, 13, 9, 0, tzinfo=SHANGHAI)


async def test_starting_the_demo_week_after_week_lists_each_class_once(deps: Deps) -> None:
    """Each week the demo is started brings upcoming classes; a class of last week's set that is still
    ahead is not doubled by this week's."""
    async with deps.sessions() as s, s.begin():
        await sync_catalogue(s, load_catalogue())
    for now in (MONDAY, MONDAY + timedelta(days=7), MONDAY + timedelta(days=9), MONDAY + timedelta(days=30)):
        async with deps.sessions() as s, s.begin():
            await load_demo(s, now, deps.settings.privacy_policy_version)
            await load_demo_evening_classes(s, now)
        async with deps.sessions() as s:
            upcoming = (
                await s.execute(
                    select(EveningClass.school_id, EveningClass.course_id, EveningClass.capacity).where(
                        EveningClass.starts_at > now
                    )
                )
            ).all()
        per_course = Counter((school, course) for school, course, _ in upcoming)
        assert len(per_course) == 5 and set(per_course.values()) == {1}, now
        assert [capacity for *_, capacity in upcoming].count(2) == 1  # the one class with a waitlist


async def test_the_demo_has_a_closed_survey_with_every_figure_and_an_open_one_to_answer(
    api: Api, deps: Deps
) -> None:
    now = datetime(2026, 5, 11, 9, 0, tzinfo=SHANGHAI)
    for _ in range(2):  # every start loads it again: nothing doubles
        async with deps.sessions() as s, s.begin():
            await load_demo(s, now, deps.settings.privacy_policy_version)
            await load_demo_surveys(s, now)
    deps.clock = FakeClock(now)
    admin = await signed_in(deps, demo_id("demo-district-admin"))
    listed = (await api.get(f"{API}/districts/{DISTRICT}/surveys", token=admin.token)).json()["items"]
    assert sorted(s["status"] for s in listed) == ["closed", "published"]
    closed = next(s for s in listed if s["status"] == "closed")
    results = (
        await api.get(f"{API}/surveys/{closed['id']}/results?group_by=school", token=admin.token)
    ).json()
    assert [g["label"] for g in results["groups"]] == ["演示第一实验小学", "演示第二中学"]
    for group in results["groups"]:
        assert group["responses"] >= 30 and group["overall"]["value"] is not None
        assert all(d["figure"]["value"] is not None for d in group["dimensions"])
    assert results["groups"][0]["overall"]["value"] > results["groups"][1]["overall"]["value"]

    parent = await signed_in(deps, demo_id("demo-parent-a"))
    mine = (await api.get(f"{API}/me/surveys", token=parent.token)).json()["items"]
    assert [(m["title"], m["student_name"]) for m in mine] == [("家长满意度调查（演示：进行中）", "王小明")]
    answers = {
        q["key"]: (q["options"][0]["key"] if q["kind"] == "single" else 5)
        for d in mine[0]["dimensions"]
        for q in d["questions"]
        if q["required"]
    }
    response = await api.post(
        f"{API}/surveys/{mine[0]['survey_id']}/responses",
        json={"student_id": mine[0]["student_id"], "answers": answers},
        token=parent.token,
    )
    assert response.status == 201
