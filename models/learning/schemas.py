"""What the learning endpoints accept and return."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from course_catalog.schema import Tier
from models.catalog.schemas import Hours
from models.times import ShanghaiTime


class TierProgress(BaseModel):
    tier: Tier
    required: Hours
    earned: Hours
    missing: Hours


class CreditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    tier: Tier
    class_hours: Hours
    source: Literal["evening_class", "online_lesson", "adjustment"]
    course_id: uuid.UUID | None
    course_title: str | None = None
    reason: str | None
    created_at: ShanghaiTime


class CertificateOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    school_year: str
    number: str
    issued_at: ShanghaiTime
    pdf_url: str


class LearningOut(BaseModel):
    school_year: str
    complete: bool
    tiers: list[TierProgress]
    credits: list[CreditOut]
    certificate: CertificateOut | None


class LearningQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    school_year: str | None = Field(None, pattern=r"^\d{4}-\d{4}$", description="默认当前学年")


class RequirementsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    foundation: Decimal = Field(ge=0, le=200, decimal_places=1)
    general: Decimal = Field(ge=0, le=200, decimal_places=1)
    custom: Decimal = Field(ge=0, le=200, decimal_places=1)
    online: Decimal = Field(ge=0, le=200, decimal_places=1)


class RequirementsOut(BaseModel):
    district_id: uuid.UUID
    school_year: str
    foundation: Hours
    general: Hours
    custom: Hours
    online: Hours


class ProgressIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    position: float = Field(ge=0, le=24 * 3600, description="播放位置（秒）")


class ProgressOut(BaseModel):
    course_id: uuid.UUID
    position: float
    verified_seconds: int
    required_seconds: int
    video_seconds: int
    completed: bool


class AdjustmentIn(BaseModel):
    """A correction of a parent's hours by a school admin (e.g. a session attended on paper)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    parent_id: uuid.UUID
    tier: Tier
    class_hours: Decimal = Field(ge=-20, le=20, decimal_places=1, description="可为负数（更正多记的学时）")
    reason: str = Field(min_length=2, max_length=200)
    school_year: str | None = Field(None, pattern=r"^\d{4}-\d{4}$", description="默认当前学年")


class AdjustmentOut(BaseModel):
    parent_id: uuid.UUID
    school_year: str
    tier: Tier
    class_hours: Hours
    reason: str
