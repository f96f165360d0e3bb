"""A school's evening classes of one term, as its admin reviews them: seats, sign-ups, waitlist and
attendance per class (the console's list; the API's per-term figures are service.term_summaries)."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.accounts.principal import Principal
from models.accounts.tables import School
from models.catalog import service as catalog
from models.catalog.tables import Course
from models.evening_classes.scheduling import SCHEDULABLE_TIERS
from models.evening_classes.schemas import EveningClassOut
from models.evening_classes.tables import Attendance, EveningClass
from models.evening_classes.visibility import describe


class SchoolClassRow(BaseModel):
    evening_class: EveningClassOut
    confirmed: int
    waitlisted: int
    attended: int

    @property
    def attendance_rate(self) -> float | None:
        return round(self.attended / self.confirmed, 4) if self.confirmed else None


async def school_term_classes(
    session: AsyncSession, principal: Principal, school: School, term: str
) -> list[SchoolClassRow]:
    """Every class of the school in the term, the latest first (the caller has checked the school)."""
    present = (
        select(Attendance.class_id, func.count().label("present")).group_by(Attendance.class_id).subquery()
    )
    found = (
        await session.execute(
            select(EveningClass, func.coalesce(present.c.present, 0))
            .outerjoin(present, present.c.class_id == EveningClass.id)
            .where(EveningClass.school_id == school.id, EveningClass.term == term)
            .order_by(EveningClass.starts_at.desc(), EveningClass.id)
        )
    ).all()
    described = await describe(session, principal, [row for row, _ in found])
    return [
        SchoolClassRow(
            evening_class=out, confirmed=row.confirmed_count, waitlisted=row.waitlisted_count, attended=n
        )
        for out, (row, n) in zip(described, found, strict=True)
    ]


async def schedulable_courses(session: AsyncSession, principal: Principal, school: School) -> list[Course]:
    """The courses `service.schedule` accepts for this school, for the scheduling form's choice: those
    the caller sees, of a tier held in a hall, shipped or of the school's district or the school."""
    return list(
        (
            await session.execute(
                select(Course)
                .where(
                    catalog.visible_to(principal),
                    Course.tier.in_(SCHEDULABLE_TIERS),
                    or_(Course.district_id.is_(None), Course.district_id == school.district_id),
                    or_(Course.school_id.is_(None), Course.school_id == school.id),
                )
                .order_by(Course.tier, Course.title)
            )
        ).scalars()
    )
