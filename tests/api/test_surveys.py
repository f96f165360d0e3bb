"""Satisfaction surveys through HTTP: drafts and the standard questionnaire, publishing with a sample that
can be drawn again, closing, response rates, answering once per sampled child."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from handlers.deps import Deps
from infra.clock import SHANGHAI
from models.audit.tables import AuditEvent
from models.idempotency.tables import IdempotencyRecord
from models.surveys.rules import Pupil, draw_sample
from models.surveys.tables import (
    Survey,
    SurveyParticipation,
    SurveyPendingResponse,
    SurveyResponse,
    SurveySample,
)
from server.app import API
from tests.builders import (
    Actor,
    FakeClock,
    World,
    make_classroom,
    make_parent_of,
    make_student,
    make_world,
    signed_in,
)
from tests.client import Api, Response

NOW = datetime(2026, 5, 11, 9, 0, tzinfo=SHANGHAI)


def questionnaire() -> list[dict[str, Any]]:
    return [
        {
            "key": "teach",
            "title": "课程",
            "weight": 2,
            "questions": [
                {"key": "q1", "kind": "likert5", "text": "课程内容满意吗？"},
                {"key": "q2", "kind": "likert5", "text": "课程时间满意吗？", "weight": 3},
            ],
        },
        {
            "key": "talk",
            "title": "沟通",
            "questions": [
                {"key": "q3", "kind": "likert5", "text": "沟通满意吗？"},
                {
                    "key": "q4",
                    "kind": "single",
                    "text": "家访方式",
                    "options": [{"key": "home", "label": "到家"}, {"key": "phone", "label": "电话"}],
                },
                {
                    "key": "q5",
                    "kind": "multi",
                    "text": "希望的课程",
                    "required": False,
                    "options": [{"key": "a", "label": "心理"}, {"key": "b", "label": "习惯"}],
                },
                {"key": "q6", "kind": "text", "text": "意见建议"},
            ],
        },
    ]


def draft_body(world: World, **extra: Any) -> dict[str, Any]:
    return {
        "title": "2026 年家长满意度调查",
        "intro": "匿名填写",
        "opens_at": NOW.isoformat(),
        "closes_at": (NOW + timedelta(days=14)).isoformat(),
        "audience": {"school_ids": [str(world.school_a.id), str(world.school_b.id)]},
        "dimensions": questionnaire(),
        **extra,
    }


@pytest.fixture
async def world(deps: Deps) -> World:
    w = await make_world(deps)
    deps.clock = FakeClock(NOW)
    return w


async def create(api: Api, world: World, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = await api.post(
        f"{API}/districts/{world.district.id}/surveys",
        json=body or draft_body(world),
        token=world.token("district_admin"),
    )
    assert response.status == 201, response.body
    created: dict[str, Any] = response.json()
    return created


async def publish(api: Api, world: World, survey_id: str) -> dict[str, Any]:
    response = await api.post(f"{API}/surveys/{survey_id}/publish", token=world.token("district_admin"))
    assert response.status == 200, response.body
    published: dict[str, Any] = response.json()
    return published


async def answer(api: Api, actor: Actor, survey_id: str, student_id: uuid.UUID, **answers: Any) -> Response:
    body = {"q1": 4, "q2": 5, "q3": 3, "q4": "home", "q6": "很好"} | answers
    return await api.post(
        f"{API}/surveys/{survey_id}/responses",
        json={"student_id": str(student_id), "answers": {k: v for k, v in body.items() if v is not None}},
        token=actor.token,
    )


async def count(deps: Deps, table: Any) -> int:
    async with deps.sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(table)) or 0)


# ---- drafts -----------------------------------------------------------------------------------------
async def test_a_district_admin_writes_a_draft_and_reads_it_back(api: Api, deps: Deps, world: World) -> None:
    created = await create(api, world)
    assert created["status"] == "draft"
    assert created["school_year"] == "2025-2026"
    assert created["sampling"] == {"method": "census", "per_school": None, "fraction": None, "seed": None}
    assert [d["key"] for d in created["dimensions"]] == ["teach", "talk"]
    q2 = created["dimensions"][0]["questions"][1]
    assert (q2["weight"], q2["required"]) == (3.0, True)
    text = created["dimensions"][1]["questions"][3]
    assert text["required"] is False  # free text is optional unless said otherwise
    assert created["opens_at"] == "2026-05-11T09:00:00+08:00"

    detail = await api.get(f"{API}/surveys/{created['id']}", token=world.token("evaluator"))
    assert detail.status == 200 and detail.json()["title"] == "2026 年家长满意度调查"
    listed = await api.get(f"{API}/districts/{world.district.id}/surveys", token=world.token("evaluator"))
    assert [s["id"] for s in listed.json()["items"]] == [created["id"]]

    patched = await api.patch(
        f"{API}/surveys/{created['id']}", json={"title": "改过的标题"}, token=world.token("district_admin")
    )
    assert patched.status == 200 and patched.json()["title"] == "改过的标题"


async def test_the_standard_questionnaire_makes_an_editable_draft(api: Api, deps: Deps, world: World) -> None:
    created = await create(api, world, {"from_template": "parent-satisfaction"})
    assert created["template"] == "parent-satisfaction" and created["template_version"] == "2026.1"
    assert [d["title"] for d in created["dimensions"]] == [
        "家长学校课程",
        "家长夜校",
        "家访",
        "家校沟通",
        "学校总体",
    ]
    questions = [q for d in created["dimensions"] for q in d["questions"]]
    assert len(questions) == 20
    assert sum(q["kind"] == "likert5" for q in questions) == 16
    assert created["title"] == "家长学校工作家长满意度调查"
    assert created["opens_at"] is None  # a draft: the window is set before publishing

    dims = created["dimensions"]
    dims[4]["questions"] = dims[4]["questions"][:2]
    edited = await api.patch(
        f"{API}/surveys/{created['id']}",
        json={
            "dimensions": dims,
            "opens_at": NOW.isoformat(),
            "closes_at": (NOW + timedelta(days=7)).isoformat(),
        },
        token=world.token("district_admin"),
    )
    assert edited.status == 200, edited.body
    assert len(edited.json()["dimensions"][4]["questions"]) == 2
    published = await publish(api, world, created["id"])
    assert published["status"] == "published"


@pytest.mark.parametrize(
    "change",
    [
        {"surprise": 1},
        {"dimensions": []},
        {"from_template": "parent-satisfaction"},  # and dimensions too
        {"from_template": "no-such-template", "dimensions": None},
        {"closes_at": (NOW - timedelta(days=1)).isoformat()},
        {"opens_at": "2026-05-11T09:00:00"},  # no offset
        {"sampling": {"method": "census", "per_school": 10}},
        {"sampling": {"method": "stratified"}},
        {"sampling": {"method": "stratified", "per_school": 5, "fraction": 0.5}},
        {"audience": {"grades": [13]}},
        {"audience": {"school_ids": []}},
        {
            "dimensions": [
                {
                    "key": "a",
                    "title": "甲",
                    "questions": [
                        {
                            "key": "x",
                            "kind": "likert5",
                            "text": "题",
                            "options": [{"key": "o", "label": "o"}, {"key": "p", "label": "p"}],
                        }
                    ],
                }
            ]
        },
        {
            "dimensions": [
                {"key": "a", "title": "甲", "questions": [{"key": "x", "kind": "single", "text": "题"}]}
            ]
        },
        {
            "dimensions": [
                {
                    "key": "a",
                    "title": "甲",
                    "questions": [
                        {"key": "x", "kind": "likert5", "text": "题"},
                        {"key": "x", "kind": "likert5", "text": "题"},
                    ],
                }
            ]
        },
        {
            "dimensions": [
                {"key": "A B", "title": "甲", "questions": [{"key": "x", "kind": "likert5", "text": "题"}]}
            ]
        },
        {
            "dimensions": [
                {
                    "key": "a",
                    "title": "甲",
                    "weight": 0,
                    "questions": [{"key": "x", "kind": "likert5", "text": "题"}],
                }
            ]
        },
    ],
)
async def test_a_malformed_draft_is_refused_and_nothing_is_written(
    api: Api, deps: Deps, world: World, change: dict[str, Any]
) -> None:
    body = {k: v for k, v in (draft_body(world) | change).items() if v is not None}
    response = await api.post(
        f"{API}/districts/{world.district.id}/surveys", json=body, token=world.token("district_admin")
    )
    assert response.status == 422, response.body
    assert response.code == "validation_error"
    assert await count(deps, Survey) == 0


async def test_an_audience_school_of_another_district_is_refused(api: Api, deps: Deps, world: World) -> None:
    body = draft_body(world, audience={"school_ids": [str(world.school_a.id), str(world.school_c.id)]})
    response = await api.post(
        f"{API}/districts/{world.district.id}/surveys", json=body, token=world.token("district_admin")
    )
    assert response.status == 422 and "不属于本区" in response.json()["detail"]
    assert await count(deps, Survey) == 0
    not_json = await api.request(
        "POST",
        f"{API}/districts/{world.district.id}/surveys",
        body=b"{nope",
        headers={"Content-Type": "application/json"},
        token=world.token("district_admin"),
    )
    assert not_json.status == 400 and await count(deps, Survey) == 0


async def test_another_districts_surveys_are_not_found(api: Api, deps: Deps, world: World) -> None:
    created = await create(api, world)
    other = world.token("other_district_admin")
    for path in ("", "/response-rates", "/results", "/results.xlsx"):
        response = await api.get(f"{API}/surveys/{created['id']}{path}", token=other)
        assert response.status == 404, path
    assert (await api.post(f"{API}/surveys/{created['id']}/publish", token=other)).status == 404
    response = await api.post(
        f"{API}/districts/{world.other_district.id}/surveys",
        json=draft_body(world),
        token=world.token("district_admin"),
    )
    assert response.status == 404
    evaluator_write = await api.post(f"{API}/surveys/{created['id']}/publish", token=world.token("evaluator"))
    assert evaluator_write.status == 403


# ---- publishing ----------------------------------------------------------------------------------
async def test_publishing_freezes_the_questions_and_draws_a_census(
    api: Api, deps: Deps, world: World
) -> None:
    async with deps.sessions() as s, s.begin():
        for _ in range(3):
            await make_student(s, world.classroom_a)
    created = await create(api, world)
    published = await publish(api, world, created["id"])
    assert published["sample_size"] == 5  # 4 at school A, 1 at school B: every student of the audience
    assert isinstance(published["sampling"]["seed"], int)

    admin = world.token("district_admin")
    again = await api.post(f"{API}/surveys/{created['id']}/publish", token=admin)
    assert again.status == 409 and again.code == "survey_not_draft"
    frozen = await api.patch(
        f"{API}/surveys/{created['id']}", json={"dimensions": questionnaire()}, token=admin
    )
    assert frozen.status == 409 and frozen.code == "survey_frozen"
    earlier = await api.patch(
        f"{API}/surveys/{created['id']}",
        json={"closes_at": (NOW + timedelta(days=1)).isoformat()},
        token=admin,
    )
    assert earlier.status == 409 and earlier.code == "survey_frozen"
    later = (NOW + timedelta(days=30)).isoformat()
    extended = await api.patch(f"{API}/surveys/{created['id']}", json={"closes_at": later}, token=admin)
    assert extended.status == 200 and extended.json()["closes_at"] == later


async def test_publishing_needs_a_window(api: Api, deps: Deps, world: World) -> None:
    created = await create(api, world, {"from_template": "parent-satisfaction"})
    response = await api.post(f"{API}/surveys/{created['id']}/publish", token=world.token("district_admin"))
    assert response.status == 422 and "开始和结束时间" in response.json()["detail"]
    assert await count(deps, SurveySample) == 0


async def test_a_stratified_sample_is_proportional_to_grades_and_can_be_drawn_again(
    api: Api, deps: Deps, world: World
) -> None:
    async with deps.sessions() as s, s.begin():
        grade5 = await make_classroom(s, world.school_a, "五年级1班", 5)
        for _ in range(29):  # grade 3: 30 students with student_a
            await make_student(s, world.classroom_a)
        for _ in range(10):
            await make_student(s, grade5)
        for _ in range(19):  # school B, grade 7: 20
            await make_student(s, world.classroom_b)
    body = draft_body(world, sampling={"method": "stratified", "per_school": 8})
    published = await publish(api, world, (await create(api, world, body))["id"])
    assert published["sample_size"] == 16
    rates = await api.get(f"{API}/surveys/{published['id']}/response-rates", token=world.token("evaluator"))
    by_grade = {(r["school_name"], r["grade"]): r["sampled"] for r in rates.json()["grades"]}
    # 8 of school A's 40 shared 30:10 → 6 and 2; school B's 20 are all grade 7 → 8
    assert by_grade == {("甲小学", 3): 6, ("甲小学", 5): 2, ("乙中学", 7): 8}

    async with deps.sessions() as s:
        drawn = set(
            (
                await s.scalars(
                    select(SurveySample.student_id).where(SurveySample.survey_id == published["id"])
                )
            ).all()
        )
        from models.accounts.tables import Classroom, Student

        roster = [
            Pupil(*row)
            for row in await s.execute(
                select(Student.id, Student.school_id, Classroom.grade)
                .join(Classroom, Classroom.id == Student.classroom_id)
                .where(Student.school_id.in_([world.school_a.id, world.school_b.id]))
            )
        ]
    again = draw_sample(roster, seed=published["sampling"]["seed"], per_school=8, fraction=None)
    assert {p.id for p in again} == drawn  # the recorded seed repeats the draw
    other = draw_sample(roster, seed=published["sampling"]["seed"] + 1, per_school=8, fraction=None)
    assert {p.id for p in other} != drawn


# ---- answering ---------------------------------------------------------------------------------------
async def test_a_parent_sees_one_entry_per_sampled_child_and_answers_once(
    api: Api, deps: Deps, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    async with deps.sessions() as s, s.begin():
        second = await make_student(s, world.classroom_b, "乙同学的妹妹")
        from models.accounts.tables import User

        parent_a = await s.get(User, world.actors["parent_a"].user_id)
        assert parent_a is not None
        await make_parent_of(s, world.classroom_b, second)
        from tests.builders import make_guardian

        await make_guardian(s, parent_a, second)
    parent = await signed_in(deps, world.actors["parent_a"].user_id)
    survey = await publish(api, world, (await create(api, world))["id"])

    mine = await api.get(f"{API}/me/surveys", token=parent.token)
    assert mine.status == 200
    entries = mine.json()["items"]
    assert sorted(e["student_name"] for e in entries) == ["乙同学的妹妹", "甲同学"]
    assert all(e["survey_id"] == survey["id"] and e["answered"] is False for e in entries)
    assert entries[0]["dimensions"][0]["questions"][0]["text"] == "课程内容满意吗？"

    caplog.set_level(logging.DEBUG, logger="access")
    accepted = await answer(api, parent, survey["id"], world.student_a.id, q1="dont_know")
    assert accepted.status == 201, accepted.body
    assert accepted.json() == {
        "accepted": True,
        "survey_id": survey["id"],
        "student_id": str(world.student_a.id),
    }
    twice = await answer(api, parent, survey["id"], world.student_a.id)
    assert twice.status == 409 and twice.code == "already_answered"
    lines = [r.getMessage() for r in caplog.records if r.name == "access" and "/responses" in r.getMessage()]
    assert len(lines) == 2 and all(line.endswith("uid=-") for line in lines)
    assert str(parent.user_id) not in caplog.text

    after = (await api.get(f"{API}/me/surveys", token=parent.token)).json()["items"]
    assert {e["student_name"]: e["answered"] for e in after} == {"甲同学": True, "乙同学的妹妹": False}
    rates = (
        await api.get(f"{API}/surveys/{survey['id']}/response-rates", token=world.token("district_admin"))
    ).json()
    assert (rates["sampled"], rates["responses"], rates["response_rate"]) == (3, 1, 0.3333)
    assert {r["school_name"]: r["responses"] for r in rates["schools"]} == {"乙中学": 0, "甲小学": 1}

    # Nothing of the answer went to the idempotency store or the audit log, even with a key.
    keyed = await api.post(
        f"{API}/surveys/{survey['id']}/responses",
        json={"student_id": str(second.id), "answers": {"q1": 1, "q2": 1, "q3": 1, "q4": "phone"}},
        token=parent.token,
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert keyed.status == 201
    assert await count(deps, IdempotencyRecord) == 0
    async with deps.sessions() as s:
        actors = (
            await s.scalars(select(AuditEvent.actor_user_id).where(AuditEvent.action.like("survey%")))
        ).all()
    assert parent.user_id not in actors


async def test_parents_outside_the_sample_see_nothing_and_cannot_answer(
    api: Api, deps: Deps, world: World
) -> None:
    body = draft_body(world, audience={"school_ids": [str(world.school_a.id)]})
    survey = await publish(api, world, (await create(api, world, body))["id"])
    outsider = world.actors["parent_b"]
    assert (await api.get(f"{API}/me/surveys", token=outsider.token)).json()["items"] == []
    refused = await answer(api, outsider, survey["id"], world.student_b.id)
    assert refused.status == 404
    # A parent in the sample naming a child who is not theirs, or a survey that does not exist.
    insider = world.actors["parent_a"]
    other_child = await answer(api, insider, survey["id"], world.student_b.id)
    assert other_child.status == 404 and other_child.code == "not_in_sample"
    assert (await answer(api, insider, str(uuid.uuid4()), world.student_a.id)).status == 404
    assert await count(deps, SurveyParticipation) == 0


@pytest.mark.parametrize(
    ("answers", "where"),
    [
        ({"q9": 3}, "q9"),
        ({"q1": 6}, "q1"),
        ({"q1": "3"}, "q1"),
        ({"q1": True}, "q1"),
        ({"q4": "video"}, "q4"),
        ({"q5": ["a", "a"]}, "q5"),
        ({"q5": ["z"]}, "q5"),
        ({"q5": []}, "q5"),
        ({"q6": "字" * 501}, "q6"),
        ({"q2": None}, "q2"),  # a required question missing
    ],
)
async def test_invalid_answers_are_refused_and_nothing_is_stored(
    api: Api, deps: Deps, world: World, answers: dict[str, Any], where: str
) -> None:
    survey = await publish(api, world, (await create(api, world))["id"])
    response = await answer(api, world.actors["parent_a"], survey["id"], world.student_a.id, **answers)
    assert response.status == 422, response.body
    assert ["body", "answers", where] in [e["loc"][:3] for e in response.json()["errors"]]
    assert await count(deps, SurveyParticipation) == 0 and await count(deps, SurveyPendingResponse) == 0


async def test_malformed_response_bodies_write_nothing(api: Api, deps: Deps, world: World) -> None:
    survey = await publish(api, world, (await create(api, world))["id"])
    token = world.token("parent_a")
    for body in (
        {},
        {"student_id": "x", "answers": {}},
        {
            "student_id": str(world.student_a.id),
            "answers": [],
        },
        {"student_id": str(world.student_a.id), "answers": {}, "extra": 1},
    ):
        response = await api.post(f"{API}/surveys/{survey['id']}/responses", json=body, token=token)
        assert response.status == 422, body
    assert await count(deps, SurveyParticipation) == 0


async def test_answers_are_taken_only_inside_the_window(api: Api, deps: Deps, world: World) -> None:
    later = draft_body(world, opens_at=(NOW + timedelta(days=1)).isoformat())
    survey = await publish(api, world, (await create(api, world, later))["id"])
    parent = world.actors["parent_a"]
    early = await answer(api, parent, survey["id"], world.student_a.id)
    assert early.status == 409 and early.code == "survey_closed"
    assert (await api.get(f"{API}/me/surveys", token=parent.token)).json()["items"] == []
    assert isinstance(deps.clock, FakeClock)
    deps.clock.tick(2 * 86400)
    assert (await answer(api, parent, survey["id"], world.student_a.id)).status == 201
    closed = await api.post(f"{API}/surveys/{survey['id']}/close", token=world.token("district_admin"))
    assert closed.status == 200 and closed.json()["status"] == "closed"
    late = await answer(api, world.actors["parent_b"], survey["id"], world.student_b.id)
    assert late.status == 409 and late.code == "survey_closed"
    again = await api.post(f"{API}/surveys/{survey['id']}/close", token=world.token("district_admin"))
    assert again.status == 409 and again.code == "survey_not_published"
    # Closing wrote out the one sealed answer, though its cell never reached a batch.
    assert await count(deps, SurveyPendingResponse) == 0 and await count(deps, SurveyResponse) == 1


async def test_fifty_concurrent_submissions_for_one_student_make_one_response(
    api: Api, deps: Deps, world: World
) -> None:
    survey = await publish(api, world, (await create(api, world))["id"])
    parent = world.actors["parent_a"]
    answers = await asyncio.gather(
        *(answer(api, parent, survey["id"], world.student_a.id) for _ in range(50))
    )
    statuses = sorted(r.status for r in answers)
    assert statuses == [201] + [409] * 49
    assert {r.code for r in answers if r.status == 409} == {"already_answered"}
    assert await count(deps, SurveyParticipation) == 1
    assert await count(deps, SurveyPendingResponse) + await count(deps, SurveyResponse) == 1
