"""An in-process directory of online lessons, so a heartbeat needs no database round trip."""

from __future__ import annotations

import asyncio
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
        # One query per lesson at a time: when an entry expires, the heartbeats in flight wait for it
        # instead of each asking PostgreSQL (a stampede every DIRECTORY_TTL_SECONDS under load).
        self._loading: dict[uuid.UUID, asyncio.Future[LessonInfo | None]] = {}

    async def get(self, course_id: uuid.UUID) -> LessonInfo | None:
        """The online lesson with this id (not archived), or None."""
        now = time.monotonic()
        cached = self._entries.get(course_id)
        if cached is not None and now - cached[0] < DIRECTORY_TTL_SECONDS:
            return cached[1]
        pending = self._loading.get(course_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[LessonInfo | None] = asyncio.get_running_loop().create_future()
        self._loading[course_id] = future
        try:
            info = await self._load(course_id)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else needs to
            raise
        finally:
            del self._loading[course_id]
        future.set_result(info)
        self._entries[course_id] = (now, info)
        return info

    async def _load(self, course_id: uuid.UUID) -> LessonInfo | None:
        async with self._sessions() as session:
            course = (
                await session.execute(
                    select(Course).where(
                        Course.id == course_id, Course.tier == "online", Course.archived_at.is_(None)
                    )
                )
            ).scalar_one_or_none()
        if course is None:
            return None
        return LessonInfo(
            course.id, course.video_seconds or 0, course.class_hours, course.district_id, course.school_id
        )
