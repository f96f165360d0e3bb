"""Organisation (district → school → classroom → student), users, roles, bindings and sessions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    Uuid,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, Timestamped, UuidPk


class District(UuidPk, Timestamped, Base):
    __tablename__ = "district"
    name: Mapped[str] = mapped_column(String(100), unique=True)


class School(UuidPk, Timestamped, Base):
    __tablename__ = "school"
    __table_args__ = (UniqueConstraint("district_id", "name"),)
    district_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("district.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))


class Teacher(UuidPk, Timestamped, Base):
    """A member of a school's staff roster; `user_id` is set when they redeem their binding code."""

    __tablename__ = "teacher"
    __table_args__ = (UniqueConstraint("school_id", "user_id"),)
    school_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("school.id"), index=True)
    name: Mapped[str] = mapped_column(String(50))
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("app_user.id"), index=True)


class Classroom(UuidPk, Timestamped, Base):
    __tablename__ = "classroom"
    __table_args__ = (
        UniqueConstraint("school_id", "name"),
        CheckConstraint("grade BETWEEN 0 AND 12", name="grade_range"),
    )
    school_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("school.id"), index=True)
    name: Mapped[str] = mapped_column(String(50))
    # 0 kindergarten, 1–6 primary, 7–9 junior secondary, 10–12 senior secondary
    grade: Mapped[int] = mapped_column(Integer)
    head_teacher_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("teacher.id"), index=True)


class Student(UuidPk, Timestamped, Base):
    """A child. Kept minimal (PIPL data minimisation): school number, name and classroom only."""

    __tablename__ = "student"
    __table_args__ = (UniqueConstraint("school_id", "student_no"),)
    school_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("school.id"), index=True)
    classroom_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("classroom.id"), index=True)
    student_no: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(50))


class User(UuidPk, Timestamped, Base):
    __tablename__ = "app_user"
    display_name: Mapped[str] = mapped_column(String(50), default="")
    wechat_openid: Mapped[str | None] = mapped_column(String(128), unique=True)
    wechat_unionid: Mapped[str | None] = mapped_column(String(128))
    username: Mapped[str | None] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set when someone else chose the password (a district admin creating the account): the console
    # asks for a new one at the next login.
    password_change_required: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class WechatSession(Base):
    """WeChat's session_key for a user, AES-GCM encrypted; it never leaves the server."""

    __tablename__ = "wechat_session"
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("app_user.id"), primary_key=True)
    session_key_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RoleGrant(UuidPk, Timestamped, Base):
    """Staff roles on an organisation: school_admin on a school, district_admin/evaluator on a district."""

    __tablename__ = "role_grant"
    __table_args__ = (
        CheckConstraint(
            "(role = 'school_admin' AND school_id IS NOT NULL) OR "
            "(role IN ('district_admin', 'evaluator') AND school_id IS NULL)",
            name="scope_matches_role",
        ),
        Index(
            "uq_role_grant_scope",
            "user_id",
            "role",
            "district_id",
            text("coalesce(school_id, '00000000-0000-0000-0000-000000000000'::uuid)"),
            unique=True,
        ),
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("app_user.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    district_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("district.id"))
    school_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("school.id"))


class Guardianship(UuidPk, Timestamped, Base):
    """parent_student: a guardian bound to a child, with the consent PIPL art. 31 requires."""

    __tablename__ = "guardianship"
    __table_args__ = (UniqueConstraint("parent_user_id", "student_id"),)
    parent_user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("app_user.id"), index=True)
    student_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("student.id"), index=True)
    relation: Mapped[str] = mapped_column(String(20))
    consent_policy_version: Mapped[str] = mapped_column(String(32))
    consent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class BindingCode(UuidPk, Timestamped, Base):
    """A one-time code a school admin issues: `teacher` binds a staff member, `guardian` binds a parent."""

    __tablename__ = "binding_code"
    __table_args__ = (
        CheckConstraint(
            "(kind = 'teacher' AND teacher_id IS NOT NULL AND student_id IS NULL) OR "
            "(kind = 'guardian' AND student_id IS NOT NULL AND teacher_id IS NULL)",
            name="target_matches_kind",
        ),
    )
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(10))
    school_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("school.id"), index=True)
    teacher_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("teacher.id"))
    student_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("student.id"))
    issued_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("app_user.id"))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    redeemed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    redeemed_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("app_user.id"))


class RefreshToken(UuidPk, Timestamped, Base):
    """One rotation of a login session (`family_id`); a used token presented again revokes the family."""

    __tablename__ = "refresh_token"
    family_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("app_user.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditLog(Base):
    """Append-only record of security-relevant actions and reads of sensitive data (kept ≥ 6 months)."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)
    actor_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("app_user.id"))
    action: Mapped[str] = mapped_column(String(64))
    school_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("school.id"))
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
