"""How far behind the outbox is, for operators: the messages due and not delivered yet."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.notifications.tables import JobStatus, NotificationJob


@dataclass(frozen=True)
class Backlog:
    due: int  # pending with due_at passed, or being sent right now
    oldest_due_seconds: float  # how long the longest-waiting of them has been due (0 when none)


async def backlog(session: AsyncSession, now: datetime) -> Backlog:
    """One scan of the (status, due_at) index. A job being sent was due when it was claimed; a reminder
    due tomorrow is not behind and not counted."""
    job = NotificationJob
    count, oldest = (
        await session.execute(
            select(func.count(), func.min(job.due_at)).where(
                job.status.in_([JobStatus.pending, JobStatus.sending]), job.due_at <= now
            )
        )
    ).one()
    return Backlog(int(count), max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0)
