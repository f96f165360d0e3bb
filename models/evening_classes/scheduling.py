"""Scheduling an evening class: a catalogue course of this school's district at a time and place, with
seats, an audience, a sign-up window and a cancellation deadline."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from course_catalog.schema import Tier
from infra.errors import ValidationFailed
from models.accounts.auth import audit
from models.accounts.principal import Principal
from models.accounts.tables import Classroom, School
from models.catalog.service import get_course
from models.evening_classes.rules import term_of
from models.evening_classes.schemas import EveningClassIn
from models.evening_classes.tables import EveningClass

SCHEDULABLE_TIERS = {Tier.foundation.value, Tier.general.value, Tier.custom.value}


async def schedule(
    session: AsyncSession, principal: Principal, school: School, data: EveningClassIn, now: datetime
) -> EveningClass:
    course = await get_course(session, principal, data.course_id)
    if course.tier not in SCHEDULABLE_TIERS:
        raise ValidationFailed(
            "网络课不能开设为夜校", errors=[{"loc": ["body", "course_id"], "msg": "online course"}]
        )
    if course.school_id not in (None, school.id) or course.district_id not in (None, school.district_id):
        raise ValidationFailed(
            "课程不属于本校", errors=[{"loc": ["body", "course_id"], "msg": "not this school's"}]
        )
    if data.audience == "invited" and course.tier != Tier.custom.value:
        raise ValidationFailed(
            "只有定制课可以只面向受邀家庭", errors=[{"loc": ["body", "audience"], "msg": "not custom"}]
        )
    if data.classroom_ids:
        found = await session.execute(
            select(func.count())
            .select_from(Classroom)
            .where(Classroom.id.in_(data.classroom_ids), Classroom.school_id == school.id)
        )
        if found.scalar_one() != len(set(data.classroom_ids)):
            raise ValidationFailed(
                "有班级不属于本校", errors=[{"loc": ["body", "classroom_ids"], "msg": "unknown classroom"}]
            )
    opens = data.signup_opens_at or now
    closes = data.signup_closes_at or data.starts_at
    deadline = data.cancel_deadline or max(opens, data.starts_at - timedelta(hours=24))
    if not opens < closes <= data.ends_at or deadline > data.starts_at:
        raise ValidationFailed(
            "报名开始须早于截止，截止不晚于下课；取消截止不晚于开课",
            errors=[{"loc": ["body", "signup_closes_at"], "msg": "inconsistent windows"}],
        )
    evening = EveningClass(
        school_id=school.id,
        course_id=course.id,
        title=data.title or course.title,
        term=term_of(data.starts_at),
        starts_at=data.starts_at,
        ends_at=data.ends_at,
        place=data.place,
        meeting_url=str(data.meeting_url) if data.meeting_url else None,
        capacity=data.capacity,
        confirmed_count=0,
        audience=data.audience,
        audience_grades=sorted(set(data.grades)) if data.grades else None,
        audience_classroom_ids=list(dict.fromkeys(data.classroom_ids)) if data.classroom_ids else None,
        signup_opens_at=opens,
        signup_closes_at=closes,
        cancel_deadline=deadline,
        created_by=principal.id,
    )
    session.add(evening)
    await session.flush()
    audit(
        session,
        "evening_class.scheduled",
        actor=principal.id,
        school_id=school.id,
        target_type="evening_class",
        target_id=evening.id,
    )
    return evening
