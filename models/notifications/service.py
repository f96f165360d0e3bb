"""Enqueue and cancel reminder jobs inside the caller's transaction (the outbox's write side)."""

from __future__ import annotations

import uuid
from datetime import datetime

import orjson
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from models.notifications.tables import JobStatus, NotificationJob
from server.db import driver_connection

# One statement on the session's asyncpg connection (reminders are written with every confirmed sign-up).
_ENQUEUE = f"""
INSERT INTO notification_job
       (id, kind, user_id, subject_id, template_id, page, data, due_at, status, attempts)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, '{JobStatus.pending}', 0)
ON CONFLICT (kind, user_id, subject_id) DO UPDATE
   SET template_id = excluded.template_id, page = excluded.page, data = excluded.data,
       due_at = excluded.due_at, status = excluded.status, attempts = 0,
       lease_until = NULL, last_error = NULL, sent_at = NULL
 WHERE notification_job.status = '{JobStatus.cancelled}'
RETURNING id
"""  # noqa: S608 - constants only


async def enqueue(
    session: AsyncSession,
    *,
    kind: str,
    user_id: uuid.UUID,
    subject_id: uuid.UUID,
    due_at: datetime,
    template_id: str,
    page: str,
    data: dict[str, str],
) -> bool:
    """Schedule a message for `due_at`; commits (or rolls back) with the caller's transaction.

    Idempotent on (kind, user_id, subject_id): a job that is pending, in flight or finished is left as it
    is and False is returned. A *cancelled* one is revived with the new content and due time (a parent
    who cancels and signs up again must still be reminded), which returns True like a new job."""
    if due_at.tzinfo is None:
        raise ValueError("due_at must be timezone-aware")
    driver = await driver_connection(session)
    written = await driver.fetchval(
        _ENQUEUE,
        uuid.uuid4(),
        kind,
        user_id,
        subject_id,
        template_id,
        page,
        orjson.dumps(data).decode(),
        due_at,
    )
    return written is not None


async def cancel(session: AsyncSession, *, kind: str, user_id: uuid.UUID, subject_id: uuid.UUID) -> None:
    """Drop a job not sent yet. One already in flight is marked too: if its send fails it is not retried
    (if WeChat had already accepted it, the worker records it as sent, which is then the truth)."""
    await session.execute(
        update(NotificationJob)
        .where(
            NotificationJob.kind == kind,
            NotificationJob.user_id == user_id,
            NotificationJob.subject_id == subject_id,
            NotificationJob.status.in_([JobStatus.pending, JobStatus.sending]),
        )
        .values(status=JobStatus.cancelled)
    )
