"""Writing and reading the audit log (never updating it)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from models.audit.actions import AuditAction
from models.audit.tables import AuditEvent


@dataclass(frozen=True)
class AuditEntry:
    action: AuditAction
    actor_user_id: uuid.UUID | None
    subject: dict[str, str]
    request_id: str
    school_id: uuid.UUID | None = None
    district_id: uuid.UUID | None = None


def record(session: AsyncSession, entry: AuditEntry, at: datetime) -> None:
    """Added to the caller's transaction: committed with what it records, or not at all."""
    session.add(
        AuditEvent(
            at=at,
            action=entry.action.value,
            actor_user_id=entry.actor_user_id,
            school_id=entry.school_id,
            district_id=entry.district_id,
            subject=entry.subject,
            request_id=entry.request_id,
        )
    )
