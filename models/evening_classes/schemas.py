"""What the evening-class endpoints accept and return."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, HttpUrl, model_validator

from course_catalog.schema import Tier
from models.catalog.schemas import Hours
from models.times import ShanghaiTime


class EveningClassIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    course_id: uuid.UUID
    title: str | None = Field(None, min_length=1, max_length=80, description="默认用课程名")
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    place: str | None = Field(None, min_length=1, max_length=120)
    meeting_url: HttpUrl | None = None
    capacity: int = Field(ge=1, le=5000)
    audience: Literal["school", "grades", "classrooms", "invited"] = "school"
    grades: list[int] | None = Field(None, min_length=1, max_length=13)
    classroom_ids: list[uuid.UUID] | None = Field(None, min_length=1, max_length=200)
    signup_opens_at: AwareDatetime | None = Field(None, description="默认立即开放")
    signup_closes_at: AwareDatetime | None = Field(None, description="默认开课时截止")
    cancel_deadline: AwareDatetime | None = Field(None, description="默认开课前 24 小时（不早于报名开始）")

    @model_validator(mode="after")
    def _consistent(self) -> EveningClassIn:
        if self.ends_at <= self.starts_at:
            raise ValueError("下课时间应晚于开课时间")
        if self.place is None and self.meeting_url is None:
            raise ValueError("请填写地点或线上会议链接")
        if (self.audience == "grades") != (self.grades is not None):
            raise ValueError("面向年级时请填写年级，其他情况不填")
        if (self.audience == "classrooms") != (self.classroom_ids is not None):
            raise ValueError("面向班级时请选择班级，其他情况不选")
        if self.grades and any(not 0 <= g <= 12 for g in self.grades):
            raise ValueError("年级应为 0–12")
        return self


class MySignup(BaseModel):
    status: Literal["confirmed", "waitlisted"]
    position: int | None = None
    present: bool = False


class EveningClassOut(BaseModel):
    id: uuid.UUID
    school_id: uuid.UUID
    course_id: uuid.UUID
    tier: Tier
    class_hours: Hours
    title: str
    term: str
    starts_at: ShanghaiTime
    ends_at: ShanghaiTime
    place: str | None
    meeting_url: str | None
    capacity: int
    seats_left: int
    audience: str
    grades: list[int] | None
    classroom_ids: list[uuid.UUID] | None
    signup_opens_at: ShanghaiTime
    signup_closes_at: ShanghaiTime
    cancel_deadline: ShanghaiTime
    cancelled: bool
    my_signup: MySignup | None = None


class EveningClassQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    from_: date | None = Field(None, alias="from", description="默认今天")
    to: date | None = Field(None, description="默认 60 天后")
    mine: bool = Field(False, description="只列出我报了名的（已确认或候补中），即“我的报名”")
    limit: int = Field(20, ge=1, le=100)
    cursor: str | None = None


class SignupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignupOut(BaseModel):
    class_id: uuid.UUID
    status: Literal["confirmed", "waitlisted"]
    position: int | None = None


class CheckinCodeOut(BaseModel):
    token: str
    next_token_at: ShanghaiTime
    period_seconds: int


class CheckinIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=64)


class AttendanceOut(BaseModel):
    class_id: uuid.UUID
    parent_id: uuid.UUID
    present: bool
    method: Literal["qr", "roster"]
    already_recorded: bool


class RosterEntry(BaseModel):
    parent_id: uuid.UUID
    display_name: str
    status: Literal["confirmed", "waitlisted"]
    position: int | None
    present: bool


class RosterOut(BaseModel):
    class_id: uuid.UUID
    capacity: int
    confirmed: int
    waitlisted: int
    present: int
    items: list[RosterEntry]


class TermSummary(BaseModel):
    school_id: uuid.UUID
    school_name: str
    term: str
    required: int
    scheduled: int
    held: int
    meets_requirement: bool
    seats: int
    confirmed_signups: int
    attended: int
    signup_rate: float
    attendance_rate: float


class DistrictTermSummary(BaseModel):
    district_id: uuid.UUID
    term: str
    required: int
    schools_below_requirement: int
    items: list[TermSummary]


class TermRequirementIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    required: int = Field(ge=0, le=50, description="每校每学期至少举办的夜校次数")
