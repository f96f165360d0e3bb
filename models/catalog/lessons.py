"""An in-process directory of online lessons, so a heartbeat needs no database round trip."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.catalog.tables import Course

# A lesson's length or scope rarely changes; a minute of staleness is harmless for heartbeats.
DIRECTORY_TTL_SECONDS = 60.0


@dataclass(frozen=True)
class LessonInfo:
    course_id: uuid.UUID
    video_seconds: int
    class_hours: Decimal
    district_id: uuid.UUID | None
    school_id: uuid.UUID | None


class LessonDirectory:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._entries: dict[uuid.UUID, tuple[float, LessonInfo | None]] = {}

    async def get(self, course_id: uuid.UUID) -> LessonInfo | None:
        """The online lesson with this id (not archived), or None."""
        now = time.monotonic()
        cached = self._entries.get(course_id)
        if cached is not None and now - cached[0] < DIRECTORY_TTL_SECONDS:
            return cached[1]
        async with self._sessions() as session:
            course = (
                await session.execute(
                    select(Course).where(
                        Course.id == course_id, Course.tier == "online", Course.archived_at.is_(None)
                    )
                )
            ).scalar_one_or_none()
        info = (
            LessonInfo(
                course.id, course.video_seconds or 0, course.class_hours, course.district_id, course.school_id
            )
            if course is not None
            else None
        )
        self._entries[course_id] = (now, info)
        return info
