"""Aggregates for school and district admins: who meets the hours requirement, and catalogue size.

Only counts leave this module: no parent's name, child or record (PRODUCT.md: a district sees
aggregates, not a family's notes).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from pydantic import BaseModel
from sqlalchemy import ColumnElement, and_, case, distinct, false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from course_catalog.schema import Tier
from models.accounts.tables import Classroom, District, Guardianship, School, Student
from models.catalog.tables import Course
from models.learning.rules import DEFAULT_CATALOGUE_TARGETS
from models.learning.service import TIERS, requirements_for
from models.learning.tables import HourCredit


class Completion(BaseModel):
    parents: int
    complete: int
    share: float

    @classmethod
    def of(cls, parents: int, complete: int) -> Completion:
        return cls(parents=parents, complete=complete, share=round(complete / parents, 4) if parents else 0.0)


class ClassroomCompletion(Completion):
    classroom_id: uuid.UUID
    classroom_name: str
    grade: int


class GradeCompletion(Completion):
    grade: int


class SchoolCompletion(Completion):
    school_id: uuid.UUID
    school_name: str


class SchoolLearningSummary(BaseModel):
    school_id: uuid.UUID
    school_year: str
    required: dict[str, float]
    total: Completion
    by_grade: list[GradeCompletion]
    by_classroom: list[ClassroomCompletion]


class DistrictLearningSummary(BaseModel):
    district_id: uuid.UUID
    school_year: str
    required: dict[str, float]
    total: Completion
    by_school: list[SchoolCompletion]


class TierCatalogue(BaseModel):
    tier: Tier
    courses: int
    target: int
    share_of_target: float


class CatalogueSummary(BaseModel):
    district_id: uuid.UUID
    tiers: list[TierCatalogue]


def _completion_condition(school_year: str, required: dict[str, Decimal]) -> ColumnElement[bool]:
    """SQL: this guardianship's parent has earned every required tier's hours in the school year."""
    needed = {tier: hours for tier, hours in required.items() if hours > 0}
    if not needed:
        return false()
    earned = (
        select(
            HourCredit.parent_user_id,
            *[
                func.coalesce(
                    func.sum(case((HourCredit.tier == tier, HourCredit.class_hours), else_=0)), 0
                ).label(tier)
                for tier in TIERS
            ],
        )
        .where(HourCredit.school_year == school_year)
        .group_by(HourCredit.parent_user_id)
        .subquery()
    )
    return Guardianship.parent_user_id.in_(
        select(earned.c.parent_user_id).where(
            and_(*[earned.c[tier] >= hours for tier, hours in needed.items()])
        )
    )


def _counts(done: ColumnElement[bool]) -> tuple[Any, Any]:
    parent = Guardianship.parent_user_id
    return func.count(distinct(parent)), func.count(distinct(case((done, parent))))


def _guardians() -> Any:
    return (
        select()
        .select_from(Guardianship)
        .join(Student, Student.id == Guardianship.student_id)
        .join(Classroom, Classroom.id == Student.classroom_id)
    )


async def school_summary(session: AsyncSession, school: School, school_year: str) -> SchoolLearningSummary:
    required = await requirements_for(session, school.district_id, school_year)
    done = _completion_condition(school_year, required)
    in_school = Student.school_id == school.id
    total = (await session.execute(_guardians().add_columns(*_counts(done)).where(in_school))).one()
    grades = await session.execute(
        _guardians().add_columns(Classroom.grade, *_counts(done)).where(in_school).group_by(Classroom.grade)
    )
    classrooms = await session.execute(
        _guardians()
        .add_columns(Classroom.id, Classroom.name, Classroom.grade, *_counts(done))
        .where(in_school)
        .group_by(Classroom.id, Classroom.name, Classroom.grade)
        .order_by(Classroom.grade, Classroom.name)
    )
    return SchoolLearningSummary(
        school_id=school.id,
        school_year=school_year,
        required={k: float(v) for k, v in required.items()},
        total=Completion.of(*total),
        by_grade=[GradeCompletion(grade=g, **Completion.of(p, c).model_dump()) for g, p, c in sorted(grades)],
        by_classroom=[
            ClassroomCompletion(classroom_id=i, classroom_name=n, grade=g, **Completion.of(p, c).model_dump())
            for i, n, g, p, c in classrooms
        ],
    )


async def district_summary(
    session: AsyncSession, district: District, school_year: str
) -> DistrictLearningSummary:
    required = await requirements_for(session, district.id, school_year)
    done = _completion_condition(school_year, required)
    schools = list(
        (
            await session.execute(
                select(School).where(School.district_id == district.id).order_by(School.name)
            )
        ).scalars()
    )
    in_district = Student.school_id.in_([s.id for s in schools])
    total = (await session.execute(_guardians().add_columns(*_counts(done)).where(in_district))).one()
    per_school = {
        school_id: (parents, complete)
        for school_id, parents, complete in await session.execute(
            _guardians()
            .add_columns(Student.school_id, *_counts(done))
            .where(in_district)
            .group_by(Student.school_id)
        )
    }
    return DistrictLearningSummary(
        district_id=district.id,
        school_year=school_year,
        required={k: float(v) for k, v in required.items()},
        total=Completion.of(*total),
        by_school=[
            SchoolCompletion(
                school_id=s.id,
                school_name=s.name,
                **Completion.of(*per_school.get(s.id, (0, 0))).model_dump(),
            )
            for s in schools
        ],
    )


async def catalogue_summary(session: AsyncSession, district: District) -> CatalogueSummary:
    """Courses available in the district per tier (shipped + district + its schools) against targets."""
    in_district = or_(Course.district_id.is_(None), Course.district_id == district.id)
    counts = dict(
        (
            await session.execute(
                select(Course.tier, func.count())
                .where(in_district, Course.archived_at.is_(None))
                .group_by(Course.tier)
            )
        ).all()
    )
    return CatalogueSummary(
        district_id=district.id,
        tiers=[
            TierCatalogue(
                tier=tier,
                courses=counts.get(tier.value, 0),
                target=DEFAULT_CATALOGUE_TARGETS[tier.value],
                share_of_target=round(counts.get(tier.value, 0) / DEFAULT_CATALOGUE_TARGETS[tier.value], 4),
            )
            for tier in Tier
        ],
    )
