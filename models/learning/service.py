"""Hours ledger, requirements and certificates."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from infra.errors import ValidationFailed
from models.accounts.auth import audit
from models.accounts.tables import District, Guardianship, School, Student
from models.catalog.tables import Course
from models.learning.rules import DEFAULT_REQUIREMENTS, requirement_met
from models.learning.schemas import (
    AdjustmentIn,
    AdjustmentOut,
    CertificateOut,
    CreditOut,
    LearningOut,
    RequirementsIn,
    RequirementsOut,
    TierProgress,
)
from models.learning.tables import Certificate, HourCredit, HourRequirement, certificate_number_seq

TIERS = ("foundation", "general", "custom", "online")


async def requirements_for(
    session: AsyncSession, district_id: uuid.UUID | None, school_year: str
) -> dict[str, Decimal]:
    required = dict(DEFAULT_REQUIREMENTS)
    if district_id is not None:
        rows = await session.execute(
            select(HourRequirement.tier, HourRequirement.required_hours).where(
                HourRequirement.district_id == district_id, HourRequirement.school_year == school_year
            )
        )
        required.update({tier: hours for tier, hours in rows})
    return required


async def set_requirements(
    session: AsyncSession, district: District, school_year: str, data: RequirementsIn, actor: uuid.UUID
) -> RequirementsOut:
    values = data.model_dump()
    for tier, hours in values.items():
        await session.execute(
            insert(HourRequirement)
            .values(
                id=uuid.uuid4(),
                district_id=district.id,
                school_year=school_year,
                tier=tier,
                required_hours=hours,
                updated_by=actor,
            )
            .on_conflict_do_update(
                index_elements=["district_id", "school_year", "tier"],
                set_={"required_hours": hours, "updated_by": actor},
            )
        )
    audit(
        session,
        "requirements.updated",
        actor=actor,
        target_type="district",
        target_id=district.id,
        school_year=school_year,
        hours={k: str(v) for k, v in values.items()},
    )
    return RequirementsOut(district_id=district.id, school_year=school_year, **values)


async def district_name(session: AsyncSession, district_id: uuid.UUID) -> str:
    district = await session.get(District, district_id)
    return district.name if district else ""


async def parent_district(session: AsyncSession, parent_id: uuid.UUID) -> uuid.UUID | None:
    """The district whose requirement applies: that of the parent's (first bound) child."""
    row = await session.execute(
        select(School.district_id)
        .join(Student, Student.school_id == School.id)
        .join(Guardianship, Guardianship.student_id == Student.id)
        .where(Guardianship.parent_user_id == parent_id)
        .order_by(Guardianship.created_at)
        .limit(1)
    )
    return row.scalar_one_or_none()


async def credit_hours(
    session: AsyncSession,
    *,
    parent_id: uuid.UUID,
    school_year: str,
    tier: str,
    class_hours: Decimal,
    source: str,
    source_key: str,
    course_id: uuid.UUID | None = None,
    reason: str | None = None,
    actor: uuid.UUID | None = None,
) -> bool:
    """Append a credit unless its source was already credited; issue the certificate if now complete.
    Returns whether a credit was written."""
    # One parent's credits are judged one transaction at a time, so two credits landing together still
    # see each other and the certificate is issued exactly once.
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"ledger:{parent_id}:{school_year}"}
    )
    inserted = await session.execute(
        insert(HourCredit)
        .values(
            parent_user_id=parent_id,
            school_year=school_year,
            tier=tier,
            class_hours=class_hours,
            source=source,
            source_key=source_key,
            course_id=course_id,
            reason=reason,
            created_by=actor,
        )
        .on_conflict_do_nothing(index_elements=["source_key"])
        .returning(HourCredit.id)
    )
    if inserted.scalar_one_or_none() is None:
        return False
    if source == "adjustment":
        audit(
            session,
            "hours.adjusted",
            actor=actor,
            target_type="user",
            target_id=parent_id,
            school_year=school_year,
            tier=tier,
            class_hours=str(class_hours),
            reason=reason,
        )
    await issue_certificate_if_complete(session, parent_id, school_year)
    return True


async def earned_by_tier(session: AsyncSession, parent_id: uuid.UUID, school_year: str) -> dict[str, Decimal]:
    rows = await session.execute(
        select(HourCredit.tier, func.sum(HourCredit.class_hours))
        .where(HourCredit.parent_user_id == parent_id, HourCredit.school_year == school_year)
        .group_by(HourCredit.tier)
    )
    return {tier: total for tier, total in rows}


async def certificate_for_year(
    session: AsyncSession, parent_id: uuid.UUID, school_year: str
) -> Certificate | None:
    return (
        await session.execute(
            select(Certificate).where(
                Certificate.parent_user_id == parent_id, Certificate.school_year == school_year
            )
        )
    ).scalar_one_or_none()


async def issue_certificate_if_complete(
    session: AsyncSession, parent_id: uuid.UUID, school_year: str
) -> None:
    if await certificate_for_year(session, parent_id, school_year) is not None:
        return  # issued once; later credits neither re-issue nor use up a number
    district_id = await parent_district(session, parent_id)
    if district_id is None:
        return
    required = await requirements_for(session, district_id, school_year)
    if not requirement_met(required, await earned_by_tier(session, parent_id, school_year)):
        return
    number = await session.scalar(certificate_number_seq.next_value())
    await session.execute(
        insert(Certificate)
        .values(
            id=uuid.uuid4(),
            parent_user_id=parent_id,
            school_year=school_year,
            district_id=district_id,
            number=f"JX{school_year[:4]}{number:07d}",
        )
        .on_conflict_do_nothing(index_elements=["parent_user_id", "school_year"])
    )


def certificate_out(cert: Certificate) -> CertificateOut:
    return CertificateOut(
        id=cert.id,
        school_year=cert.school_year,
        number=cert.number,
        issued_at=cert.issued_at,
        pdf_url=f"/api/v1/me/certificates/{cert.id}/pdf",
    )


async def learning_summary(session: AsyncSession, parent_id: uuid.UUID, school_year: str) -> LearningOut:
    district_id = await parent_district(session, parent_id)
    required = await requirements_for(session, district_id, school_year)
    earned = await earned_by_tier(session, parent_id, school_year)
    credits = (
        await session.execute(
            select(HourCredit, Course.title)
            .outerjoin(Course, Course.id == HourCredit.course_id)
            .where(HourCredit.parent_user_id == parent_id, HourCredit.school_year == school_year)
            .order_by(HourCredit.created_at, HourCredit.id)
        )
    ).all()
    complete = requirement_met(required, earned)
    cert = await certificate_for_year(session, parent_id, school_year)
    if complete and cert is None:
        # Met without a new credit, e.g. the district lowered its requirement: issue it now.
        await issue_certificate_if_complete(session, parent_id, school_year)
        cert = await certificate_for_year(session, parent_id, school_year)
    tiers = [
        TierProgress(
            tier=t,
            required=required[t],
            earned=earned.get(t, Decimal(0)),
            missing=max(Decimal(0), required[t] - earned.get(t, Decimal(0))),
        )
        for t in TIERS
    ]
    return LearningOut(
        school_year=school_year,
        complete=complete,
        tiers=tiers,
        credits=[
            CreditOut.model_validate(c).model_copy(update={"course_title": title}) for c, title in credits
        ],
        certificate=certificate_out(cert) if cert else None,
    )


async def certificates_of(session: AsyncSession, parent_id: uuid.UUID) -> list[Certificate]:
    rows = await session.execute(
        select(Certificate)
        .where(Certificate.parent_user_id == parent_id)
        .order_by(Certificate.school_year.desc())
    )
    return list(rows.scalars())


async def certificate_of(
    session: AsyncSession, parent_id: uuid.UUID, cert_id: uuid.UUID
) -> Certificate | None:
    cert = await session.get(Certificate, cert_id)
    return cert if cert is not None and cert.parent_user_id == parent_id else None


async def adjust_hours(
    session: AsyncSession, school: School, data: AdjustmentIn, school_year: str, actor: uuid.UUID
) -> AdjustmentOut:
    """An audited correction by a school admin, for a parent of a child at that school."""
    if data.class_hours == 0:
        raise ValidationFailed(errors=[{"loc": ["body", "class_hours"], "msg": "must not be 0"}])
    guardian = await session.execute(
        select(Guardianship.id)
        .join(Student, Student.id == Guardianship.student_id)
        .where(Guardianship.parent_user_id == data.parent_id, Student.school_id == school.id)
        .limit(1)
    )
    if guardian.first() is None:
        raise ValidationFailed(
            "不是本校学生的家长", errors=[{"loc": ["body", "parent_id"], "msg": "unknown parent"}]
        )
    await credit_hours(
        session,
        parent_id=data.parent_id,
        school_year=school_year,
        tier=data.tier.value,
        class_hours=data.class_hours,
        source="adjustment",
        source_key=f"adjustment:{uuid.uuid4()}",
        reason=data.reason,
        actor=actor,
    )
    return AdjustmentOut(
        parent_id=data.parent_id,
        school_year=school_year,
        tier=data.tier,
        class_hours=data.class_hours,
        reason=data.reason,
    )
