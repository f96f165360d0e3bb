"""Per-term counts: the classes each school scheduled and held in a term, its seats, sign-ups and
attendance, against the number its district requires."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from models.accounts.auth import audit
from models.accounts.tables import School
from models.evening_classes.rules import DEFAULT_CLASSES_PER_TERM
from models.evening_classes.schemas import DistrictTermSummary, TermSummary
from models.evening_classes.tables import Attendance, EveningClass, TermRequirement


async def term_summaries(
    session: AsyncSession,
    schools: list[School],
    term: str,
    now: datetime,
    required: int = DEFAULT_CLASSES_PER_TERM,
) -> list[TermSummary]:
    """Per school: classes scheduled and held (ended, with attendance recorded), seats, sign-ups, presence."""
    school_ids = [s.id for s in schools]
    attended = (
        select(Attendance.class_id, func.count().label("present")).group_by(Attendance.class_id).subquery()
    )
    rows = await session.execute(
        select(
            EveningClass.school_id,
            func.count(),
            func.count().filter(and_(EveningClass.ends_at < now, attended.c.present > 0)),
            func.coalesce(func.sum(EveningClass.capacity), 0),
            func.coalesce(func.sum(EveningClass.confirmed_count), 0),
            func.coalesce(func.sum(attended.c.present).filter(EveningClass.ends_at < now), 0),
            func.coalesce(
                func.sum(EveningClass.confirmed_count).filter(
                    and_(EveningClass.ends_at < now, attended.c.present > 0)
                ),
                0,
            ),
        )
        .outerjoin(attended, attended.c.class_id == EveningClass.id)
        .where(
            EveningClass.school_id.in_(school_ids),
            EveningClass.term == term,
            EveningClass.cancelled_at.is_(None),
        )
        .group_by(EveningClass.school_id)
    )
    by_school: dict[uuid.UUID, Any] = {r[0]: r[1:] for r in rows}
    out = []
    for school in schools:
        scheduled, held, seats, confirmed, present, confirmed_held = by_school.get(
            school.id, (0, 0, 0, 0, 0, 0)
        )
        out.append(
            TermSummary(
                school_id=school.id,
                school_name=school.name,
                term=term,
                required=required,
                scheduled=scheduled,
                held=held,
                meets_requirement=held >= required,
                seats=int(seats),
                confirmed_signups=int(confirmed),
                attended=int(present),
                signup_rate=round(int(confirmed) / int(seats), 4) if seats else 0.0,
                attendance_rate=round(int(present) / int(confirmed_held), 4) if confirmed_held else 0.0,
            )
        )
    return out


async def required_per_term(session: AsyncSession, district_id: uuid.UUID, term: str) -> int:
    found = await session.execute(
        select(TermRequirement.required).where(
            TermRequirement.district_id == district_id, TermRequirement.term == term
        )
    )
    required = found.scalar_one_or_none()
    return DEFAULT_CLASSES_PER_TERM if required is None else required


async def set_required_per_term(
    session: AsyncSession, district_id: uuid.UUID, term: str, required: int, actor: uuid.UUID
) -> None:
    await session.execute(
        insert(TermRequirement)
        .values(id=uuid.uuid4(), district_id=district_id, term=term, required=required)
        .on_conflict_do_update(index_elements=["district_id", "term"], set_={"required": required})
    )
    audit(
        session,
        "evening_class_requirement.updated",
        actor=actor,
        target_type="district",
        target_id=district_id,
        term=term,
        required=required,
    )


async def district_summary(
    session: AsyncSession, district_id: uuid.UUID, term: str, now: datetime
) -> DistrictTermSummary:
    """One row per school, the schools below the requirement first."""
    schools = list(
        (
            await session.execute(
                select(School).where(School.district_id == district_id).order_by(School.name)
            )
        ).scalars()
    )
    required = await required_per_term(session, district_id, term)
    rows = await term_summaries(session, schools, term, now, required)
    rows.sort(key=lambda r: (r.meets_requirement, r.held, r.school_name))
    return DistrictTermSummary(
        district_id=district_id,
        term=term,
        required=required,
        schools_below_requirement=sum(1 for r in rows if not r.meets_requirement),
        items=rows,
    )
