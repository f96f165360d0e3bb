"""Enqueue and cancel reminder jobs inside the caller's transaction (the outbox's write side)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from models.notifications.tables import JobStatus, NotificationJob


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
    values = {
        "kind": kind,
        "user_id": user_id,
        "subject_id": subject_id,
        "due_at": due_at,
        "template_id": template_id,
        "page": page,
        "data": data,
        "status": JobStatus.pending,
        "attempts": 0,
    }
    stmt = insert(NotificationJob).values(id=uuid.uuid4(), **values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["kind", "user_id", "subject_id"],
        set_={**values, "lease_until": None, "last_error": None, "sent_at": None},
        where=NotificationJob.status == JobStatus.cancelled,
    )
    written = await session.scalar(stmt.returning(NotificationJob.id))
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
