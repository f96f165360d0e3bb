"""Demo surveys for `make run` (never in production): a closed survey of the standard questionnaire with
generated responses (more than 30 per demo school, so every figure shows) and an open one the demo
parents can answer. Idempotent: ids come from names and an existing survey is left alone."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from infra.clock import SHANGHAI
from models.accounts.tables import Classroom, Student
from models.demo import DISTRICT, SCHOOL_A, SCHOOL_B, _put, demo_id
from models.learning.rules import school_year_of
from models.surveys.rules import Pupil
from models.surveys.schemas import DONT_KNOW, dump
from models.surveys.service import roster
from models.surveys.tables import Survey, SurveyParticipation, SurveyResponse, SurveySample, SurveyStratum
from models.surveys.templates import load_template

# One more class per demo school, so that a survey has enough households for every figure.
SURVEY_CLASSROOMS = {SCHOOL_A: ("a", "四年级1班", 4, 24), SCHOOL_B: ("b", "初三1班", 9, 30)}
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = ["子涵", "雨桐", "浩宇", "欣怡", "梓萱", "宇轩", "一诺", "思远", "佳怡", "俊熙", "若曦", "明哲"]
CLOSED = demo_id("survey-closed")
OPEN = demo_id("survey-open")
# Mean answer per school in the generated data: school A's families a little happier than school B's.
LEANING = {SCHOOL_A: 4.1, SCHOOL_B: 3.6}


def _survey(
    survey_id: object, title: str, opens: datetime, closes: datetime, status: str
) -> dict[str, object]:
    template = load_template("parent-satisfaction")
    return {
        "id": survey_id,
        "district_id": DISTRICT,
        "title": title,
        "intro": template.intro,
        "status": status,
        "school_year": school_year_of(opens),
        "opens_at": opens,
        "closes_at": closes,
        "sampling_method": "census",
        "seed": 20260101,
        "template": template.key,
        "template_version": template.version,
        "dimensions": [dump(d) for d in template.dimensions],
        "published_at": opens,
        "closed_at": closes if status == "closed" else None,
    }


async def _publish(session: AsyncSession, survey: Survey) -> list[Pupil]:
    pupils = await roster(session, survey)
    counts: dict[tuple[uuid.UUID, int], int] = defaultdict(int)
    for p in pupils:
        counts[(p.school_id, p.grade)] += 1
        await _put(
            session, SurveySample, survey_id=survey.id, student_id=p.id, school_id=p.school_id, grade=p.grade
        )
    for (school, grade), n in counts.items():
        await _put(
            session,
            SurveyStratum,
            survey_id=survey.id,
            school_id=school,
            grade=grade,
            population=n,
            sampled=n,
        )
    return sorted(pupils, key=lambda p: p.id)


def _answers(rng: random.Random, leaning: float) -> dict[str, object]:
    given: dict[str, object] = {}
    for d in load_template("parent-satisfaction").dimensions:
        for q in d.questions:
            if q.kind == "likert5":
                given[q.key] = (
                    DONT_KNOW if rng.random() < 0.06 else max(1, min(5, round(rng.gauss(leaning, 0.8))))
                )
            elif q.kind == "single" and q.options:
                given[q.key] = rng.choice(q.options).key
            elif q.kind == "multi" and q.options:
                given[q.key] = sorted({rng.choice(q.options).key for _ in range(2)})
    return given


async def load_demo_surveys(session: AsyncSession, now: datetime) -> None:
    for school_id, (letter, name, grade, size) in SURVEY_CLASSROOMS.items():
        classroom = demo_id(f"{letter}-{name}")
        await _put(session, Classroom, id=classroom, school_id=school_id, name=name, grade=grade)
        for n in range(size):
            await _put(
                session,
                Student,
                id=demo_id(f"{letter}-{name}-{n}"),
                school_id=school_id,
                classroom_id=classroom,
                student_no=f"{letter.upper()}S{grade:02d}{n:02d}",
                name=SURNAMES[n % len(SURNAMES)] + GIVEN[n % len(GIVEN)],
            )
    await session.flush()

    if await session.get(Survey, CLOSED) is None:
        closes = (now - timedelta(days=20)).astimezone(SHANGHAI)
        await _put(
            session,
            Survey,
            **_survey(
                CLOSED, "家长满意度调查（演示：已结束）", closes - timedelta(days=14), closes, "closed"
            ),
        )
        survey = await session.get(Survey, CLOSED)
        assert survey is not None
        pupils = await _publish(session, survey)
        rng = random.Random(20260101)  # noqa: S311 - demo data
        rows = []
        for n, pupil in enumerate(pupils):
            if n % 7 == 6:  # about one household in seven did not answer
                continue
            await _put(session, SurveyParticipation, survey_id=CLOSED, student_id=pupil.id)
            rows.append(
                SurveyResponse(
                    survey_id=CLOSED,
                    school_id=pupil.school_id,
                    grade=pupil.grade,
                    day=closes.date(),
                    answers=_answers(rng, LEANING.get(pupil.school_id, 3.8)),
                )
            )
        rng.shuffle(rows)
        session.add_all(rows)

    if await session.get(Survey, OPEN) is None:
        opens = now - timedelta(days=1)
        await _put(
            session,
            Survey,
            **_survey(OPEN, "家长满意度调查（演示：进行中）", opens, now + timedelta(days=30), "published"),
        )
        survey = await session.get(Survey, OPEN)
        assert survey is not None
        await _publish(session, survey)
    await session.flush()
