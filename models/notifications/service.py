"""Enqueue and cancel reminder jobs inside the caller's transaction (the outbox's write side)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from infra.db import driver_connection
from models.notifications.tables import JobStatus, NotificationJob


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
    expires_at: datetime | None = None  # not sent after this moment (None: whenever it can go)

    def __post_init__(self) -> None:
        if self.due_at.tzinfo is None or (self.expires_at is not None and self.expires_at.tzinfo is None):
            raise ValueError("due_at and expires_at must be timezone-aware")


_JOB_COLUMNS = "kind, user_id, subject_id, template_id, page, data, due_at, expires_at"
_JOB_TYPES = ("text", "uuid", "uuid", "text", "text", "text", "timestamptz", "timestamptz")


def jobs_unnest(first: int) -> str:
    """A relation `j` of jobs from the arrays job_arrays() makes, passed as parameters $first.. on."""
    arrays = ", ".join(f"${first + i}::{kind}[]" for i, kind in enumerate(_JOB_TYPES))
    return f"unnest({arrays}) AS j({_JOB_COLUMNS})"


def job_arrays(jobs: Sequence[Job]) -> list[list[Any]]:
    """The parameters for jobs_unnest(): one array per column (ids are drawn by PostgreSQL)."""
    return [
        [j.kind for j in jobs],
        [j.user_id for j in jobs],
        [j.subject_id for j in jobs],
        [j.template_id for j in jobs],
        [j.page for j in jobs],
        [orjson.dumps(j.data).decode() for j in jobs],
        [j.due_at for j in jobs],
        [j.expires_at for j in jobs],
    ]


def insert_jobs(rows: str) -> str:
    """The INSERT that enqueue() runs, over `rows` (a relation `j` with jobs_unnest()'s columns): usable
    as a CTE of a caller's own statement, so that its jobs are written with its rows in one round trip.
    Returns a row per job written."""
    return f"""
    INSERT INTO notification_job
           (id, kind, user_id, subject_id, template_id, page, data, due_at, expires_at, status, attempts)
    SELECT gen_random_uuid(), j.kind, j.user_id, j.subject_id, j.template_id, j.page, j.data::jsonb, j.due_at,
           j.expires_at, '{JobStatus.pending}', 0
      FROM {rows}
    ON CONFLICT (kind, user_id, subject_id) DO UPDATE
       SET template_id = excluded.template_id, page = excluded.page, data = excluded.data,
           due_at = excluded.due_at, expires_at = excluded.expires_at, status = excluded.status,
           attempts = 0,
           lease_until = NULL, last_error = NULL, sent_at = NULL
     WHERE notification_job.status = '{JobStatus.cancelled}'
    RETURNING 1"""  # noqa: S608 - constants and the caller's relation


_ENQUEUE = f"WITH written AS ({insert_jobs(jobs_unnest(1))}) SELECT count(*) FROM written"  # noqa: S608


async def enqueue(session: AsyncSession, jobs: Sequence[Job]) -> int:
    """Schedule messages; they commit (or roll back) with the caller's transaction. Returns how many
    were written.

    Idempotent on (kind, user_id, subject_id): a job that is pending, in flight or finished is left as it
    is and not counted. A *cancelled* one is revived with the new content and due time (a parent who
    cancels and signs up again must still be reminded), which counts like a new job. Of two jobs with
    the same key in one call, the first is kept."""
    unique: dict[tuple[str, uuid.UUID, uuid.UUID], Job] = {}
    for job in jobs:  # one statement cannot write a row twice
        unique.setdefault((job.kind, job.user_id, job.subject_id), job)
    if not unique:
        return 0
    driver = await driver_connection(session)
    return int(await driver.fetchval(_ENQUEUE, *job_arrays(list(unique.values()))))


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
