"""Enqueue and cancel reminder jobs inside the caller's transaction (the outbox's write side)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from models.notifications.tables import JobStatus, NotificationJob
from server.db import driver_connection


@dataclass(frozen=True, slots=True)
class Job:
    """One message to send at `due_at` (not before), to one user, about one subject."""

    kind: str
    user_id: uuid.UUID
    subject_id: uuid.UUID
    due_at: datetime
    template_id: str
    page: str
    data: dict[str, str]


# One statement on the session's asyncpg connection, however many jobs (reminders are written with every
# confirmed sign-up, a batch of sign-ups at a time).
_ENQUEUE = f"""
WITH written AS (
    INSERT INTO notification_job
           (id, kind, user_id, subject_id, template_id, page, data, due_at, status, attempts)
    SELECT id, kind, user_id, subject_id, template_id, page, data::jsonb, due_at, '{JobStatus.pending}', 0
      FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::text[],
                  $8::timestamptz[]) AS j(id, kind, user_id, subject_id, template_id, page, data, due_at)
    ON CONFLICT (kind, user_id, subject_id) DO UPDATE
       SET template_id = excluded.template_id, page = excluded.page, data = excluded.data,
           due_at = excluded.due_at, status = excluded.status, attempts = 0,
           lease_until = NULL, last_error = NULL, sent_at = NULL
     WHERE notification_job.status = '{JobStatus.cancelled}'
    RETURNING 1
)
SELECT count(*) FROM written
"""  # noqa: S608 - constants only


async def enqueue(session: AsyncSession, jobs: Sequence[Job]) -> int:
    """Schedule messages; they commit (or roll back) with the caller's transaction. Returns how many
    were written.

    Idempotent on (kind, user_id, subject_id): a job that is pending, in flight or finished is left as it
    is and not counted. A *cancelled* one is revived with the new content and due time (a parent who
    cancels and signs up again must still be reminded), which counts like a new job. Of two jobs with
    the same key in one call, the first is kept."""
    unique = list({(j.kind, j.user_id, j.subject_id): j for j in reversed(jobs)}.values())[::-1]
    if not unique:
        return 0
    if any(j.due_at.tzinfo is None for j in unique):
        raise ValueError("due_at must be timezone-aware")
    driver = await driver_connection(session)
    written = await driver.fetchval(
        _ENQUEUE,
        [uuid.uuid4() for _ in unique],
        [j.kind for j in unique],
        [j.user_id for j in unique],
        [j.subject_id for j in unique],
        [j.template_id for j in unique],
        [j.page for j in unique],
        [orjson.dumps(j.data).decode() for j in unique],
        [j.due_at for j in unique],
    )
    return int(written)


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
