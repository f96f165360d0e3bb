"""Check-in and attendance: a parent scans the rotating QR code, or the teacher marks them on the
roster; either way present once, and the course's class hours credited once."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import and_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from models.accounts.principal import Principal
from models.accounts.tables import User
from models.catalog.tables import Course
from models.evening_classes.errors import (
    CheckinClosed,
    CheckinTokenExpired,
    CheckinTokenInvalid,
    NotConfirmed,
    NotSignedUp,
)
from models.evening_classes.rules import check_token, checkin_open
from models.evening_classes.schemas import AttendanceOut, RosterEntry, RosterOut
from models.evening_classes.tables import Attendance, EveningClass, Signup
from models.evening_classes.visibility import get_class, staff_class
from models.learning.rules import school_year_of
from models.learning.service import credit_hours


async def check_in(
    session: AsyncSession, principal: Principal, class_id: uuid.UUID, token: str, key: bytes, now: datetime
) -> AttendanceOut:
    evening = await get_class(session, principal, class_id, as_parent=True)
    verdict = check_token(key, str(evening.id), token, now)
    if verdict == "invalid":
        raise CheckinTokenInvalid(errors=[{"loc": ["body", "token"], "msg": "invalid token"}])
    if verdict == "expired":
        raise CheckinTokenExpired()
    if not checkin_open(evening.starts_at, evening.ends_at, now):
        raise CheckinClosed()
    signup = (
        await session.execute(
            select(Signup).where(
                Signup.class_id == class_id,
                Signup.parent_user_id == principal.id,
                Signup.status != "cancelled",
            )
        )
    ).scalar_one_or_none()
    if signup is None:
        raise NotSignedUp()
    if signup.status != "confirmed":
        raise NotConfirmed()
    return await record_attendance(session, evening, principal.id, method="qr", marked_by=principal.id)


async def mark_on_roster(
    session: AsyncSession, principal: Principal, class_id: uuid.UUID, parent_id: uuid.UUID, now: datetime
) -> AttendanceOut:
    """The teacher marks a parent present (a phone that fails, a paper list); live sign-ups only."""
    evening = await staff_class(session, principal, class_id)
    if now < evening.starts_at - timedelta(minutes=30):
        raise CheckinClosed("课程开始前不能登记出席")
    signup = (
        await session.execute(
            select(Signup).where(
                Signup.class_id == class_id, Signup.parent_user_id == parent_id, Signup.status != "cancelled"
            )
        )
    ).scalar_one_or_none()
    if signup is None:
        raise NotSignedUp("这位家长没有报名这节课")
    if signup.status != "confirmed":  # as at the QR check-in: a waitlisted parent holds no seat
        raise NotConfirmed("这位家长在候补名单上，没有座位，不能登记出席")
    return await record_attendance(session, evening, parent_id, method="roster", marked_by=principal.id)


async def record_attendance(
    session: AsyncSession, evening: EveningClass, parent_id: uuid.UUID, *, method: str, marked_by: uuid.UUID
) -> AttendanceOut:
    """Present once; the course's class hours are credited once, whatever marks it again."""
    inserted = await session.execute(
        insert(Attendance)
        .values(
            id=uuid.uuid4(), class_id=evening.id, parent_user_id=parent_id, method=method, marked_by=marked_by
        )
        .on_conflict_do_nothing(index_elements=["class_id", "parent_user_id"])
        .returning(Attendance.id)
    )
    if inserted.scalar_one_or_none() is None:
        existing = (
            await session.execute(
                select(Attendance.method).where(
                    Attendance.class_id == evening.id, Attendance.parent_user_id == parent_id
                )
            )
        ).scalar_one()
        return AttendanceOut(
            class_id=evening.id, parent_id=parent_id, present=True, method=existing, already_recorded=True
        )
    course = await session.get(Course, evening.course_id)
    assert course is not None
    await credit_hours(
        session,
        parent_id=parent_id,
        school_year=school_year_of(evening.starts_at),
        tier=course.tier,
        class_hours=course.class_hours,
        source="evening_class",
        source_key=f"evening:{evening.id}:{parent_id}",
        course_id=course.id,
        actor=marked_by,
    )
    return AttendanceOut(
        class_id=evening.id, parent_id=parent_id, present=True, method=method, already_recorded=False
    )


async def roster(session: AsyncSession, principal: Principal, class_id: uuid.UUID) -> RosterOut:
    evening = await staff_class(session, principal, class_id)
    rows = (
        await session.execute(
            select(Signup, User.display_name, Attendance.id.is_not(None))
            .join(User, User.id == Signup.parent_user_id)
            .outerjoin(
                Attendance,
                and_(
                    Attendance.class_id == Signup.class_id, Attendance.parent_user_id == Signup.parent_user_id
                ),
            )
            .where(Signup.class_id == class_id, Signup.status != "cancelled")
            .order_by(Signup.status, Signup.waitlist_seq)
        )
    ).all()
    entries: list[RosterEntry] = []
    waiting = 0
    for signup, name, present in rows:
        position = None
        if signup.status == "waitlisted":
            waiting += 1
            position = waiting
        entries.append(
            RosterEntry(
                parent_id=signup.parent_user_id,
                display_name=name,
                status=signup.status,
                position=position,
                present=bool(present),
            )
        )
    return RosterOut(
        class_id=evening.id,
        capacity=evening.capacity,
        confirmed=sum(1 for e in entries if e.status == "confirmed"),
        waitlisted=waiting,
        present=sum(1 for e in entries if e.present),
        items=entries,
    )
