"""Courses and the families custom courses are assigned to."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, Timestamped, UuidPk


class Course(UuidPk, Timestamped, Base):
    __tablename__ = "course"
    __table_args__ = (
        CheckConstraint("tier IN ('general', 'foundation', 'custom', 'online')", name="tier_known"),
        CheckConstraint("class_hours > 0", name="hours_positive"),
        CheckConstraint(
            "(tier = 'online') = (video_seconds IS NOT NULL AND media_url IS NOT NULL)",
            name="online_has_video",
        ),
        CheckConstraint("school_id IS NULL OR district_id IS NOT NULL", name="school_within_district"),
    )
    # Stable key of a shipped catalogue course (course_catalog/); NULL for courses added through the API.
    key: Mapped[str | None] = mapped_column(String(80), unique=True)
    series: Mapped[str | None] = mapped_column(String(80))
    tier: Mapped[str] = mapped_column(String(12), index=True)
    title: Mapped[str] = mapped_column(String(80))
    summary: Mapped[str] = mapped_column(Text)
    topic: Mapped[str] = mapped_column(String(32))
    grade_bands: Mapped[list[str]] = mapped_column(ARRAY(String(16)))
    class_hours: Mapped[Decimal] = mapped_column(Numeric(4, 1))
    video_seconds: Mapped[int | None] = mapped_column(Integer)
    media_url: Mapped[str | None] = mapped_column(String(500))
    district_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("district.id"), index=True)
    school_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("school.id"), index=True)
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("app_user.id"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CourseAssignment(UuidPk, Timestamped, Base):
    """A custom course offered to a family, named by the child (so every guardian of the child sees it)."""

    __tablename__ = "course_assignment"
    __table_args__ = (UniqueConstraint("course_id", "student_id"),)
    course_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("course.id"), index=True)
    student_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("student.id"), index=True)
    assigned_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("app_user.id"))
