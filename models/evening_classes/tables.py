"""Evening classes, sign-ups and attendance."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Sequence,
    String,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, Timestamped, UuidPk

waitlist_seq = Sequence("waitlist_seq", metadata=Base.metadata)


class EveningClass(UuidPk, Timestamped, Base):
    __tablename__ = "evening_class"
    __table_args__ = (
        CheckConstraint("capacity > 0", name="capacity_positive"),
        CheckConstraint("confirmed_count BETWEEN 0 AND capacity", name="seats_never_oversold"),
        CheckConstraint("waitlisted_count >= 0", name="waitlist_not_negative"),
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        CheckConstraint("signup_closes_at > signup_opens_at", name="window_ordered"),
        CheckConstraint("audience IN ('school', 'grades', 'classrooms', 'invited')", name="audience_known"),
        CheckConstraint("place IS NOT NULL OR meeting_url IS NOT NULL", name="somewhere"),
        Index("ix_evening_class_school_start", "school_id", "starts_at"),
    )
    school_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("school.id"))
    course_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("course.id"))
    title: Mapped[str] = mapped_column(String(80))
    term: Mapped[str] = mapped_column(String(11), index=True)
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    place: Mapped[str | None] = mapped_column(String(120))
    meeting_url: Mapped[str | None] = mapped_column(String(500))
    capacity: Mapped[int] = mapped_column(Integer)
    # Seats taken, kept on the row so that sign-ups serialise on its lock (see the package docstring).
    confirmed_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # Parents on the waitlist, kept beside it so that a sign-up learns its position from the locked row.
    waitlisted_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    audience: Mapped[str] = mapped_column(String(12))
    audience_grades: Mapped[list[int] | None] = mapped_column(ARRAY(Integer))
    audience_classroom_ids: Mapped[list[uuid.UUID] | None] = mapped_column(ARRAY(Uuid))
    signup_opens_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    signup_closes_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    cancel_deadline: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("app_user.id"))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Signup(UuidPk, Timestamped, Base):
    """One parent's place in one class: confirmed, waitlisted (in `waitlist_seq` order) or cancelled."""

    __tablename__ = "signup"
    __table_args__ = (
        CheckConstraint("status IN ('confirmed', 'waitlisted', 'cancelled')", name="status_known"),
        # One live sign-up per parent per class; a cancelled one may be followed by a new one.
        Index(
            "uq_signup_live",
            "class_id",
            "parent_user_id",
            unique=True,
            postgresql_where=text("status <> 'cancelled'"),
        ),
        Index(
            "ix_signup_waitlist", "class_id", "waitlist_seq", postgresql_where=text("status = 'waitlisted'")
        ),
    )
    class_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("evening_class.id"), index=True)
    parent_user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("app_user.id"), index=True)
    status: Mapped[str] = mapped_column(String(10))
    waitlist_seq: Mapped[int] = mapped_column(BigInteger)
    promoted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Attendance(UuidPk, Timestamped, Base):
    """A parent present at a class, by QR check-in or marked by the teacher on the roster."""

    __tablename__ = "attendance"
    __table_args__ = (
        UniqueConstraint("class_id", "parent_user_id"),
        CheckConstraint("method IN ('qr', 'roster')", name="method_known"),
    )
    class_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("evening_class.id"), index=True)
    parent_user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("app_user.id"), index=True)
    method: Mapped[str] = mapped_column(String(8))
    marked_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("app_user.id"))


class TermRequirement(UuidPk, Timestamped, Base):
    """A district's required number of evening classes per school in one term (absent → policy default)."""

    __tablename__ = "evening_class_requirement"
    __table_args__ = (
        UniqueConstraint("district_id", "term"),
        CheckConstraint("required >= 0", name="non_negative"),
    )
    district_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("district.id"))
    term: Mapped[str] = mapped_column(String(11))
    required: Mapped[int] = mapped_column(Integer)
