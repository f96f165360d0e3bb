"""Pydantic models of the accounts area: what the API accepts and returns."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from models.accounts.rules import Role
from models.times import ShanghaiTime

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]


class In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# ---- auth -----------------------------------------------------------------------------------------
class WechatLoginIn(In):
    code: str = Field(min_length=1, max_length=128, description="wx.login() 返回的 code")


class PasswordLoginIn(In):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class RefreshIn(In):
    refresh_token: str = Field(min_length=1, max_length=256)


class EmptyIn(In):
    pass


# ---- who am I --------------------------------------------------------------------------------------
class SchoolMembership(Out):
    id: uuid.UUID
    name: str
    district_id: uuid.UUID
    roles: list[Role]
    teacher_id: uuid.UUID | None = None


class DistrictMembership(Out):
    id: uuid.UUID
    name: str
    roles: list[Role]


class Child(Out):
    id: uuid.UUID
    name: str
    school_id: uuid.UUID
    school_name: str
    classroom_id: uuid.UUID
    classroom_name: str
    grade: int
    relation: str


class Me(Out):
    id: uuid.UUID
    display_name: str
    roles: list[Role]
    schools: list[SchoolMembership]
    districts: list[DistrictMembership]
    children: list[Child]


class TokenOut(Out):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - a scheme name
    expires_in: int
    user: Me


# ---- organisation --------------------------------------------------------------------------------
class SchoolIn(In):
    name: Name


class SchoolOut(Out):
    id: uuid.UUID
    district_id: uuid.UUID
    name: str


class ClassroomIn(In):
    name: Name
    grade: int = Field(ge=0, le=12, description="0 幼儿园，1–6 小学，7–9 初中，10–12 高中")
    head_teacher_id: uuid.UUID | None = None


class ClassroomOut(Out):
    id: uuid.UUID
    school_id: uuid.UUID
    name: str
    grade: int
    head_teacher_id: uuid.UUID | None


class StudentIn(In):
    student_no: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
    name: Name
    classroom_id: uuid.UUID


class StudentOut(Out):
    id: uuid.UUID
    school_id: uuid.UUID
    classroom_id: uuid.UUID
    student_no: str
    name: str


class StudentQuery(In):
    classroom_id: uuid.UUID | None = None
    limit: int = Field(20, ge=1, le=100)
    cursor: str | None = None


class TeacherIn(In):
    name: Name


class TeacherOut(Out):
    id: uuid.UUID
    school_id: uuid.UUID
    name: str
    bound: bool


class BindingCodeOut(Out):
    code: str
    kind: Literal["teacher", "guardian"]
    expires_at: ShanghaiTime
    teacher_id: uuid.UUID | None = None
    student_id: uuid.UUID | None = None
    student_no: str | None = None
    student_name: str | None = None


class TeacherCreatedOut(TeacherOut):
    binding_code: BindingCodeOut


class GuardianCodesOut(Out):
    classroom_id: uuid.UUID
    classroom_name: str
    items: list[BindingCodeOut]


class BindingIn(In):
    code: str = Field(min_length=4, max_length=32)
    relation: Literal["mother", "father", "grandparent", "other"] | None = None
    consent_policy_version: str | None = Field(
        None, max_length=32, description="监护人同意的隐私政策版本；绑定孩子时必填"
    )


class BindingOut(Out):
    kind: Literal["teacher", "guardian"]
    school_id: uuid.UUID
    teacher_id: uuid.UUID | None = None
    student_id: uuid.UUID | None = None
    user: Me


class StaffAccountIn(In):
    username: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=64)]
    password: str = Field(min_length=10, max_length=256)
    display_name: Name
    role: Literal["school_admin", "evaluator"]
    school_id: uuid.UUID | None = None


class StaffAccountOut(Out):
    id: uuid.UUID
    username: str
    display_name: str
    role: Role
    school_id: uuid.UUID | None


class RosterRowError(Out):
    row: int
    field: str
    msg: str


class RosterReport(Out):
    rows: int
    created_classrooms: int
    created_students: int
    updated_students: int


class GuardianOut(Out):
    parent_id: uuid.UUID
    display_name: str
    relation: str
    consent_policy_version: str
    consent_at: ShanghaiTime


class GuardianList(Out):
    student_id: uuid.UUID
    items: list[GuardianOut]
