"""Requirements, the append-only hours ledger, online-lesson progress and certificates."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    Numeric,
    Sequence,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, Timestamped, UuidPk

certificate_number_seq = Sequence("certificate_number_seq", metadata=Base.metadata)


class HourRequirement(UuidPk, Timestamped, Base):
    """A district's required class hours for one tier in one school year (absent → policy default)."""

    __tablename__ = "hour_requirement"
    __table_args__ = (
        UniqueConstraint("district_id", "school_year", "tier"),
        CheckConstraint("required_hours >= 0", name="non_negative"),
    )
    district_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("district.id"))
    school_year: Mapped[str] = mapped_column(String(9))
    tier: Mapped[str] = mapped_column(String(12))
    required_hours: Mapped[Decimal] = mapped_column(Numeric(5, 1))
    updated_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("app_user.id"))


class HourCredit(Base):
    """学时台账: one credit. Append-only (a trigger refuses UPDATE and DELETE); corrections are new rows.

    `source_key` names what earned it (an attendance, a lesson completion, an adjustment) and is unique,
    so the same thing can never be credited twice, however often it is reported.
    """

    __tablename__ = "hour_credit"
    __table_args__ = (
        CheckConstraint("source IN ('evening_class', 'online_lesson', 'adjustment')", name="source_known"),
        CheckConstraint("source = 'adjustment' OR class_hours > 0", name="earned_positive"),
        CheckConstraint("source <> 'adjustment' OR reason IS NOT NULL", name="adjustment_has_reason"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    parent_user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("app_user.id"), index=True)
    school_year: Mapped[str] = mapped_column(String(9))
    tier: Mapped[str] = mapped_column(String(12))
    class_hours: Mapped[Decimal] = mapped_column(Numeric(4, 1))
    source: Mapped[str] = mapped_column(String(16))
    source_key: Mapped[str] = mapped_column(String(200), unique=True)
    course_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("course.id"))
    reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("app_user.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class LessonProgress(Base):
    """Verified watching of one online lesson by one parent, flushed from Redis in batches."""

    __tablename__ = "lesson_progress"
    parent_user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("app_user.id"), primary_key=True)
    course_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("course.id"), primary_key=True)
    position: Mapped[float] = mapped_column(Numeric(8, 1))
    last_beat_at: Mapped[float] = mapped_column(Numeric(14, 3), comment="epoch seconds of the last heartbeat")
    covered: Mapped[bytes] = mapped_column(LargeBinary, comment="bitmap of watched 5-second buckets")
    verified_seconds: Mapped[int] = mapped_column(Integer)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Certificate(UuidPk, Base):
    """结业证书: issued once per parent and school year, when every requirement is met."""

    __tablename__ = "certificate"
    __table_args__ = (UniqueConstraint("parent_user_id", "school_year"),)
    parent_user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("app_user.id"), index=True)
    school_year: Mapped[str] = mapped_column(String(9))
    district_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("district.id"))
    number: Mapped[str] = mapped_column(String(32), unique=True)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
