"""home_visit (+ its students and visiting teachers), home_visit_assignment, followup (+ its history)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, Timestamped, UuidPk


class HomeVisit(UuidPk, Timestamped, Base):
    """One visit. `private_note_encrypted` and `circumstances_encrypted` are AES-256-GCM under a key kept
    outside the database (infra.security.FieldCipher); nothing else here is sensitive."""

    __tablename__ = "home_visit"
    __table_args__ = (
        CheckConstraint("mode IN ('home', 'school', 'phone', 'video')", name="mode_known"),
        CheckConstraint("status IN ('draft', 'submitted')", name="status_known"),
        CheckConstraint("duration_minutes IS NULL OR duration_minutes BETWEEN 1 AND 600", name="duration"),
        Index("ix_home_visit_school_year", "school_id", "school_year"),
    )
    school_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("school.id"))
    school_year: Mapped[str] = mapped_column(String(9))
    status: Mapped[str] = mapped_column(String(10))
    visited_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    duration_minutes: Mapped[int | None] = mapped_column(SmallInteger)
    mode: Mapped[str] = mapped_column(String(10))
    # {"care": {"done": true, "note": "..."}, ...}: what was brought to the home.
    four_to_home: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # A draft's 三带回 items; they become follow-ups when the visit is submitted.
    draft_three_back: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    private_note_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    circumstances_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("app_user.id"))
    # Bumped by every change: the ETag a PATCH must present in If-Match.
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class HomeVisitStudent(Base):
    __tablename__ = "home_visit_student"
    visit_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("home_visit.id", ondelete="CASCADE"), primary_key=True
    )
    student_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("student.id"), primary_key=True, index=True)


class HomeVisitTeacher(Base):
    """The visitor and co-visitors (visits in pairs are good practice)."""

    __tablename__ = "home_visit_teacher"
    visit_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("home_visit.id", ondelete="CASCADE"), primary_key=True
    )
    teacher_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teacher.id"), primary_key=True, index=True)


class HomeVisitAssignment(UuidPk, Timestamped, Base):
    """A student a school admin asked a teacher (not their head teacher) to visit in a school year."""

    __tablename__ = "home_visit_assignment"
    __table_args__ = (UniqueConstraint("teacher_id", "student_id", "school_year"),)
    school_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("school.id"), index=True)
    teacher_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teacher.id"))
    student_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("student.id"), index=True)
    school_year: Mapped[str] = mapped_column(String(9))


class Followup(UuidPk, Timestamped, Base):
    """One thing a family raised (a 三带回 item, a letter to the principal, a hotline call), followed until
    the family has its answer."""

    __tablename__ = "followup"
    __table_args__ = (
        CheckConstraint("kind IN ('feedback', 'demand', 'suggestion')", name="kind_known"),
        CheckConstraint("source IN ('home_visit', 'mailbox', 'hotline', 'meeting')", name="source_known"),
        CheckConstraint(
            "state IN ('open', 'in_progress', 'answered', 'closed', 'closed_without_reply')",
            name="state_known",
        ),
        CheckConstraint("rating IS NULL OR rating BETWEEN 1 AND 5", name="rating_range"),
        Index("ix_followup_school_state_due", "school_id", "state", "due_at"),
    )
    school_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("school.id"))
    school_year: Mapped[str] = mapped_column(String(9))
    student_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("student.id"), index=True)
    visit_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("home_visit.id"), index=True)
    source: Mapped[str] = mapped_column(String(12))
    kind: Mapped[str] = mapped_column(String(12))
    text: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(24))
    # Owner: a teacher of the school, or (no teacher) the school's admins; escalated: the district.
    owner_teacher_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("teacher.id"), index=True)
    escalated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    answer: Mapped[str | None] = mapped_column(Text)
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    first_answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rating: Mapped[int | None] = mapped_column(SmallInteger)
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    raised_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("app_user.id"))
    version: Mapped[int] = mapped_column(Integer, default=1)


class FollowupEvent(UuidPk, Base):
    """Every step of a follow-up, in order: who did what, when."""

    __tablename__ = "followup_event"
    followup_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("followup.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("app_user.id"))
    action: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(24))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


class HomeVisitPhoto(UuidPk, Timestamped, Base):
    """A re-encoded photo of a visit; the bytes live in the file store under the photo's id."""

    __tablename__ = "home_visit_photo"
    visit_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("home_visit.id", ondelete="CASCADE"), index=True)
    content_type: Mapped[str] = mapped_column(String(16))
    size: Mapped[int] = mapped_column(Integer)
