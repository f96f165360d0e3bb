"""Running a survey: drafts, the standard questionnaire, publishing (freeze + sample), closing, reading
one or a district's surveys and the response rates."""

from __future__ import annotations

import secrets
import uuid
from collections import defaultdict
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from infra.errors import Conflict, NotFound, ValidationFailed
from models.accounts.principal import Principal
from models.accounts.rules import Role
from models.accounts.tables import Classroom, School, Student
from models.learning.rules import school_year_of
from models.surveys.rules import Pupil, draw_sample
from models.surveys.schemas import (
    AudienceOut,
    DimensionOut,
    RateRow,
    ResponseRates,
    SamplingOut,
    SurveyFields,
    SurveyIn,
    SurveyOut,
    SurveyPatch,
    dump,
)
from models.surveys.tables import Survey, SurveyParticipation, SurveySample, SurveyStratum
from models.surveys.templates import load_template

READERS = frozenset({Role.district_admin, Role.evaluator})


class SurveyFrozen(Conflict):
    code, title = "survey_frozen", "调查已发布：题目不能再改，只能延长结束时间"


class SurveyClosed(Conflict):
    code, title = "survey_closed", "调查不在开放时间内"


class NotDraft(Conflict):
    code, title = "survey_not_draft", "只有草稿可以发布"


class NotPublished(Conflict):
    code, title = "survey_not_published", "调查尚未发布或已结束"


class NotClosed(Conflict):
    code, title = "survey_not_closed", "调查结束后学校才能查看本校结果"


def _invalid(field: str, detail: str) -> ValidationFailed:
    return ValidationFailed(detail, errors=[{"loc": ["body", field], "msg": detail}])


# ---- reaching a survey --------------------------------------------------------------------------
async def survey_for(
    session: AsyncSession, principal: Principal, survey_id: uuid.UUID, roles: frozenset[Role]
) -> Survey:
    """A survey the caller reaches with one of `roles`: district staff of its district, or a school
    admin of a school in its audience. Anything else is as if it did not exist (404)."""
    survey = await session.get(Survey, survey_id)
    if survey is not None:
        if principal.district_roles(survey.district_id) & roles:
            return survey
        if Role.school_admin in roles and await admin_school(session, principal, survey) is not None:
            return survey
    raise NotFound("调查不存在")


async def admin_school(session: AsyncSession, principal: Principal, survey: Survey) -> uuid.UUID | None:
    """The school of the survey's audience the caller administers, if any."""
    mine = {s.id for s in principal.schools if Role.school_admin in s.roles}
    if not mine:
        return None
    audience = await audience_schools(session, survey)
    return next((s.id for s in sorted(audience, key=lambda s: s.name) if s.id in mine), None)


async def audience_schools(session: AsyncSession, survey: Survey) -> list[School]:
    query = select(School).where(School.district_id == survey.district_id)
    if survey.audience_school_ids is not None:
        query = query.where(School.id.in_(survey.audience_school_ids))
    return list((await session.scalars(query.order_by(School.name))).all())


# ---- drafts ----------------------------------------------------------------------------------------
async def create(
    session: AsyncSession, principal: Principal, district_id: uuid.UUID, data: SurveyIn
) -> Survey:
    survey = Survey(district_id=district_id, created_by=principal.id, status="draft", intro="")
    if data.from_template is not None:
        template = load_template(data.from_template)
        survey.template, survey.template_version = template.key, template.version
        survey.title, survey.intro = template.title, template.intro
        survey.dimensions = [dump(d) for d in template.dimensions]
    await _apply(session, survey, data)
    session.add(survey)
    await session.flush()
    return survey


async def update(session: AsyncSession, survey: Survey, data: SurveyPatch, now: datetime) -> Survey:
    if survey.status == "closed":
        raise SurveyClosed("调查已结束，不能再修改")
    if survey.status == "published":
        changed = data.model_dump(exclude_unset=True)
        if set(changed) - {"closes_at"} or data.closes_at is None:
            raise SurveyFrozen()
        if survey.closes_at is not None and data.closes_at < survey.closes_at:
            raise SurveyFrozen("已发布的调查只能延长结束时间，不能提前")
        if data.closes_at <= now:
            raise _invalid("closes_at", "结束时间须晚于现在")
        survey.closes_at = data.closes_at
        return survey
    await _apply(session, survey, data)
    await session.flush()
    return survey


async def _apply(session: AsyncSession, survey: Survey, data: SurveyFields) -> None:
    if data.title is not None:
        survey.title = data.title
    if data.intro is not None:
        survey.intro = data.intro
    if data.opens_at is not None:
        survey.opens_at = data.opens_at
        survey.school_year = school_year_of(data.opens_at)
    if data.closes_at is not None:
        survey.closes_at = data.closes_at
    if survey.opens_at and survey.closes_at and survey.closes_at <= survey.opens_at:
        raise _invalid("closes_at", "结束时间须晚于开始时间")
    if data.dimensions is not None:
        survey.dimensions = [dump(d) for d in data.dimensions]
    if data.audience is not None:
        ids = data.audience.school_ids
        if ids is not None:
            found = await session.scalar(
                select(func.count())
                .select_from(School)
                .where(School.id.in_(ids), School.district_id == survey.district_id)
            )
            if found != len(set(ids)):
                raise _invalid("audience", "有学校不属于本区")
            ids = sorted(set(ids))
        survey.audience_school_ids = ids
        survey.audience_grades = sorted(set(data.audience.grades)) if data.audience.grades else None
    if data.sampling is not None:
        survey.sampling_method = data.sampling.method
        survey.per_school, survey.fraction = data.sampling.per_school, data.sampling.fraction


# ---- publishing and closing --------------------------------------------------------------------
async def roster(session: AsyncSession, survey: Survey) -> list[Pupil]:
    """The students of the audience as the roster stands now."""
    query = (
        select(Student.id, Student.school_id, Classroom.grade)
        .join(Classroom, Classroom.id == Student.classroom_id)
        .join(School, School.id == Student.school_id)
        .where(School.district_id == survey.district_id)
    )
    if survey.audience_school_ids is not None:
        query = query.where(Student.school_id.in_(survey.audience_school_ids))
    if survey.audience_grades is not None:
        query = query.where(Classroom.grade.in_(survey.audience_grades))
    return [Pupil(*row) for row in await session.execute(query)]


async def publish(session: AsyncSession, survey: Survey, now: datetime) -> Survey:
    """Freeze the questions and draw the sample from the roster, with a seed kept on the survey."""
    locked = await session.get(Survey, survey.id, with_for_update=True, populate_existing=True)
    assert locked is not None
    if locked.status != "draft":
        raise NotDraft()
    if locked.opens_at is None or locked.closes_at is None:
        raise _invalid("opens_at", "发布前请设置开始和结束时间")
    if locked.closes_at <= now:
        raise _invalid("closes_at", "结束时间须晚于现在")
    pupils = await roster(session, locked)
    if not pupils:
        raise _invalid("audience", "调查对象中没有学生")
    locked.seed = secrets.randbits(63)
    sample = draw_sample(pupils, seed=locked.seed, per_school=locked.per_school, fraction=locked.fraction)
    population: dict[tuple[uuid.UUID, int], int] = defaultdict(int)
    sampled: dict[tuple[uuid.UUID, int], int] = defaultdict(int)
    for p in pupils:
        population[(p.school_id, p.grade)] += 1
    for p in sample:
        sampled[(p.school_id, p.grade)] += 1
    session.add_all(
        SurveyStratum(survey_id=locked.id, school_id=s, grade=g, population=n, sampled=sampled[(s, g)])
        for (s, g), n in population.items()
    )
    session.add_all(
        SurveySample(survey_id=locked.id, student_id=p.id, school_id=p.school_id, grade=p.grade)
        for p in sample
    )
    locked.status, locked.published_at = "published", now
    await session.flush()
    return locked


async def close(session: AsyncSession, survey: Survey, now: datetime) -> Survey:
    locked = await session.get(Survey, survey.id, with_for_update=True, populate_existing=True)
    assert locked is not None
    if locked.status != "published":
        raise NotPublished()
    locked.status, locked.closed_at = "closed", now
    locked.results_version += 1
    opened = locked.opens_at is not None and locked.opens_at < now
    if opened and (locked.closes_at is None or locked.closes_at > now):
        locked.closes_at = now  # the window as it really was
    await session.flush()
    return locked


async def discard_sample(session: AsyncSession, survey_id: uuid.UUID) -> None:
    """Only for a draft that was never answered (tests and demo resets)."""
    await session.execute(delete(SurveySample).where(SurveySample.survey_id == survey_id))
    await session.execute(delete(SurveyStratum).where(SurveyStratum.survey_id == survey_id))


# ---- reading ---------------------------------------------------------------------------------------
async def describe(session: AsyncSession, surveys: list[Survey]) -> list[SurveyOut]:
    ids = [s.id for s in surveys]
    sizes: dict[uuid.UUID, int] = {}
    if ids:
        rows = await session.execute(
            select(SurveyStratum.survey_id, func.sum(SurveyStratum.sampled))
            .where(SurveyStratum.survey_id.in_(ids))
            .group_by(SurveyStratum.survey_id)
        )
        sizes = {survey_id: int(n) for survey_id, n in rows}
    return [
        SurveyOut(
            id=s.id,
            district_id=s.district_id,
            title=s.title,
            intro=s.intro,
            status=s.status,
            school_year=s.school_year,
            opens_at=s.opens_at,
            closes_at=s.closes_at,
            audience=AudienceOut(school_ids=s.audience_school_ids, grades=s.audience_grades),
            sampling=SamplingOut(
                method=s.sampling_method,
                per_school=s.per_school,
                fraction=s.fraction,
                seed=s.seed,
            ),
            template=s.template,
            template_version=s.template_version,
            dimensions=[DimensionOut.model_validate(d) for d in s.dimensions],
            sample_size=int(sizes[s.id]) if s.id in sizes else None,
            created_at=s.created_at,
            published_at=s.published_at,
            closed_at=s.closed_at,
        )
        for s in surveys
    ]


async def district_surveys(session: AsyncSession, district_id: uuid.UUID) -> list[SurveyOut]:
    found = await session.scalars(
        select(Survey).where(Survey.district_id == district_id).order_by(Survey.created_at.desc()).limit(200)
    )
    return await describe(session, list(found.all()))


def _rate(responses: int, sampled: int) -> float | None:
    return round(responses / sampled, 4) if sampled else None


async def response_rates(session: AsyncSession, survey: Survey) -> ResponseRates:
    """Responses ÷ sampled per school and per grade of each school; no answers, no names."""
    answered = (
        select(SurveySample.school_id, SurveySample.grade, func.count().label("responses"))
        .join(
            SurveyParticipation,
            (SurveyParticipation.survey_id == SurveySample.survey_id)
            & (SurveyParticipation.student_id == SurveySample.student_id),
        )
        .where(SurveySample.survey_id == survey.id)
        .group_by(SurveySample.school_id, SurveySample.grade)
        .subquery()
    )
    rows = await session.execute(
        select(
            SurveyStratum.school_id,
            School.name,
            SurveyStratum.grade,
            SurveyStratum.sampled,
            answered.c.responses,
        )
        .join(School, School.id == SurveyStratum.school_id)
        .outerjoin(
            answered,
            (answered.c.school_id == SurveyStratum.school_id) & (answered.c.grade == SurveyStratum.grade),
        )
        .where(SurveyStratum.survey_id == survey.id)
        .order_by(School.name, SurveyStratum.grade)
    )
    grades: list[RateRow] = []
    schools: dict[uuid.UUID, RateRow] = {}
    for school_id, name, grade, sampled, responses in rows:
        got = int(responses or 0)
        grades.append(
            RateRow(
                school_id=school_id,
                school_name=name,
                grade=grade,
                sampled=sampled,
                responses=got,
                response_rate=_rate(got, sampled),
            )
        )
        row = schools.setdefault(
            school_id,
            RateRow(school_id=school_id, school_name=name, sampled=0, responses=0, response_rate=None),
        )
        row.sampled += sampled
        row.responses += got
    for row in schools.values():
        row.response_rate = _rate(row.responses, row.sampled)
    total_sampled = sum(r.sampled for r in schools.values())
    total = sum(r.responses for r in schools.values())
    return ResponseRates(
        survey_id=survey.id,
        status=survey.status,
        sampled=total_sampled,
        responses=total,
        response_rate=_rate(total, total_sampled),
        schools=list(schools.values()),
        grades=grades,
    )
