"""Pydantic schema of a catalogue file."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, StringConstraints, model_validator


class Tier(StrEnum):
    general = "general"  # 通识课: district lectures and school showcases, open to all
    foundation = "foundation"  # 基础课: compulsory hours each school year
    custom = "custom"  # 定制课: by invitation, for families with particular needs
    online = "online"  # 网络课: self-study micro-lessons credited by verified watch time


class GradeBand(StrEnum):
    kindergarten = "kindergarten"
    primary_lower = "primary_lower"
    primary_middle = "primary_middle"
    primary_upper = "primary_upper"
    junior = "junior"
    senior = "senior"


class Topic(StrEnum):
    family_education = "family_education"  # 家庭教育理念与方法
    mental_health = "mental_health"  # 心理健康
    career_planning = "career_planning"  # 生涯规划与启蒙
    safety = "safety"  # 安全教育
    law = "law"  # 法治教育
    reading = "reading"  # 亲子阅读
    health = "health"  # 体质健康、营养、睡眠、近视
    digital_life = "digital_life"  # 手机与网络使用
    school_transition = "school_transition"  # 幼小衔接、小升初、初升高
    home_school = "home_school"  # 家校沟通与协同
    special_needs = "special_needs"  # 特殊需要与困境家庭支持


Key = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", max_length=80)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class CourseFile(BaseModel):
    """One course as written in a catalogue file."""

    model_config = ConfigDict(extra="forbid")

    key: Key = Field(description="stable identifier, unique in the catalogue; never reuse or rename")
    title: Annotated[Text, StringConstraints(max_length=80)]
    summary: Annotated[Text, StringConstraints(max_length=400)]
    topic: Topic
    grade_bands: list[GradeBand] = Field(min_length=1)
    class_hours: Decimal = Field(gt=0, le=8, decimal_places=1, description="课时 credited on completion")
    video_seconds: int | None = Field(None, gt=0, le=4 * 3600)
    media_url: HttpUrl | None = None


class SeriesFile(BaseModel):
    """A file: a series of courses of one tier."""

    model_config = ConfigDict(extra="forbid")

    series: Annotated[Text, StringConstraints(max_length=80)]
    tier: Tier
    courses: list[CourseFile] = Field(min_length=1)

    @model_validator(mode="after")
    def _online_lessons_have_media(self) -> SeriesFile:
        for index, course in enumerate(self.courses):
            is_online = self.tier == Tier.online
            has_media = course.video_seconds is not None and course.media_url is not None
            if is_online and not has_media:
                raise ValueError(
                    f"courses[{index}] ({course.key}): online lessons need video_seconds and media_url"
                )
            if not is_online and (course.video_seconds is not None or course.media_url is not None):
                raise ValueError(f"courses[{index}] ({course.key}): only online lessons carry a video")
        return self
