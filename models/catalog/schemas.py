"""What the course endpoints accept and return."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    PlainSerializer,
    StringConstraints,
    model_validator,
)

from course_catalog.schema import GradeBand, Tier, Topic

# Class hours travel as JSON numbers (1.5), not strings.
Hours = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]


class CourseOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    key: str | None
    tier: Tier
    series: str | None
    title: str
    summary: str
    topic: Topic
    grade_bands: list[GradeBand]
    class_hours: Hours
    video_seconds: int | None
    media_url: str | None
    scope: Literal["catalogue", "district", "school"]
    district_id: uuid.UUID | None
    school_id: uuid.UUID | None


class CourseQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    tier: Tier | None = None
    grade_band: GradeBand | None = None
    topic: Topic | None = None
    q: str | None = Field(
        None, min_length=1, max_length=50, description="在标题和简介中搜索（空格分隔多个词）"
    )
    limit: int = Field(20, ge=1, le=100)
    cursor: str | None = None


class CourseIn(BaseModel):
    """A course a district (for all its schools) or a school adds."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    tier: Tier
    title: Annotated[str, StringConstraints(min_length=1, max_length=80)]
    summary: Annotated[str, StringConstraints(min_length=1, max_length=400)]
    topic: Topic
    grade_bands: list[GradeBand] = Field(min_length=1, max_length=6)
    class_hours: Decimal = Field(gt=0, le=8, decimal_places=1)
    video_seconds: int | None = Field(None, gt=0, le=4 * 3600)
    media_url: HttpUrl | None = None

    @model_validator(mode="after")
    def _video_matches_tier(self) -> CourseIn:
        has_video = self.video_seconds is not None and self.media_url is not None
        if self.tier == Tier.online and not has_video:
            raise ValueError("网络课需要视频时长和视频地址")
        if self.tier != Tier.online and (self.video_seconds is not None or self.media_url is not None):
            raise ValueError("只有网络课带视频")
        return self


class AssignmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    course_id: uuid.UUID
    student_ids: list[uuid.UUID] = Field(min_length=1, max_length=500)


class AssignmentOut(BaseModel):
    course_id: uuid.UUID
    assigned: int
    already_assigned: int


class SyncReport(BaseModel):
    created: int
    updated: int
    unchanged: int
    archived: int
