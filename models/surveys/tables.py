"""Surveys, their frozen sample, who has answered, and the answers (kept apart; see the package)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, Timestamped, UuidPk


class Survey(UuidPk, Timestamped, Base):
    __tablename__ = "survey"
    __table_args__ = (
        CheckConstraint("status IN ('draft', 'published', 'closed')", name="status_known"),
        CheckConstraint("sampling_method IN ('census', 'stratified')", name="sampling_known"),
        CheckConstraint("closes_at IS NULL OR opens_at IS NULL OR closes_at > opens_at", name="window"),
        CheckConstraint("status = 'draft' OR seed IS NOT NULL", name="drawn_when_published"),
        Index("ix_survey_district_created", "district_id", "created_at"),
    )
    district_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("district.id"))
    title: Mapped[str] = mapped_column(String(80))
    intro: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(10), default="draft")
    school_year: Mapped[str | None] = mapped_column(String(9))
    opens_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closes_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Audience: None = every school of the district / every grade.
    audience_school_ids: Mapped[list[uuid.UUID] | None] = mapped_column(ARRAY(Uuid))
    audience_grades: Mapped[list[int] | None] = mapped_column(ARRAY(Integer))
    sampling_method: Mapped[str] = mapped_column(String(10), default="census")
    per_school: Mapped[int | None] = mapped_column(Integer)
    fraction: Mapped[float | None] = mapped_column()
    seed: Mapped[int | None] = mapped_column(BigInteger)  # drawn at publishing; repeats the draw
    template: Mapped[str | None] = mapped_column(String(40))
    template_version: Mapped[str | None] = mapped_column(String(20))
    # The questionnaire: [{key, title, weight, questions: [{key, kind, text, options, required, weight}]}]
    dimensions: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("app_user.id"))
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Bumped whenever answers are written out or the survey closes: cached results name the version.
    results_version: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))


class SurveyStratum(Base):
    """A school's grade as the roster stood at publishing: its population (for the post-stratification
    weights N/n and the finite-population correction) and how many of its students were sampled."""

    __tablename__ = "survey_stratum"
    survey_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("survey.id"), primary_key=True)
    school_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("school.id"), primary_key=True)
    grade: Mapped[int] = mapped_column(Integer, primary_key=True)
    population: Mapped[int] = mapped_column(Integer)
    sampled: Mapped[int] = mapped_column(Integer)


class SurveySample(Base):
    """A sampled student: their guardians see the survey and one of them may answer for the household."""

    __tablename__ = "survey_sample"
    __table_args__ = (Index("ix_survey_sample_student", "student_id"),)
    survey_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("survey.id"), primary_key=True)
    student_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("student.id"), primary_key=True)
    school_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("school.id"))
    grade: Mapped[int] = mapped_column(Integer)


class SurveyParticipation(Base):
    """ "Has answered": one row per sampled student whose household answered. No time, no answer, no
    reference to the response (the primary key makes one response per student)."""

    __tablename__ = "survey_participation"
    survey_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("survey.id"), primary_key=True)
    student_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("student.id"), primary_key=True)


class SurveyPendingResponse(Base):
    """An accepted response waiting to be mixed: sealed with the field key (outside the database), so
    the transaction it shares with its participation row pairs the household with ciphertext only."""

    __tablename__ = "survey_pending_response"
    __table_args__ = (Index("ix_survey_pending_cell", "survey_id", "school_id", "grade"),)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    survey_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("survey.id"))
    school_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    grade: Mapped[int] = mapped_column(Integer)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class SurveyResponse(Base):
    """One household's answers, keeping only what the statistics need: school, grade and the day it was
    written out (the day of its batch). Ids are random (uuid4) and rows are inserted in shuffled order."""

    __tablename__ = "survey_response"
    __table_args__ = (
        Index("ix_survey_response_survey", "survey_id", "school_id", "grade"),
        Index(
            "ix_survey_response_unchecked", "survey_id", postgresql_where=text("sealed_openid IS NOT NULL")
        ),
    )
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    survey_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("survey.id"))
    school_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    grade: Mapped[int] = mapped_column(Integer)
    day: Mapped[date] = mapped_column(Date)
    # {question key: 1–5 | "dont_know" | option key | [option keys] | text}
    answers: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # Free text's moderation: {question key: passed | held | unchecked | released | rejected}
    text_status: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict, server_default=text("'{}'"))
    # For a text WeChat could not check yet: the writer's openid, sealed with the field key (the check
    # needs it); dropped once checked.
    sealed_openid: Mapped[bytes | None] = mapped_column(LargeBinary)
