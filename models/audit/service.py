"""Writing and reading the audit log (never updating it)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.audit.actions import LABELS, AuditAction
from models.audit.tables import AuditEvent
from models.pagination import PageQuery, keyset_page
from models.times import ShanghaiTime


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


class AuditQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    since: AwareDatetime | None = Field(None, description="此时刻及以后的记录")
    actor: uuid.UUID | None = Field(None, description="操作人的用户 id")
    limit: int = Field(50, ge=1, le=100)
    cursor: str | None = None


class AuditEventOut(BaseModel):
    id: uuid.UUID
    at: ShanghaiTime
    action: str
    label: str
    actor_user_id: uuid.UUID | None
    subject: dict[str, str]
    request_id: str


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    next_cursor: str | None = None


def _label(action: str) -> str:
    try:
        return LABELS[AuditAction(action)]
    except ValueError:  # an action an older release recorded and this one no longer names
        return action


async def school_events(
    session: AsyncSession, school_id: uuid.UUID, query: AuditQuery
) -> tuple[list[AuditEventOut], str | None]:
    """A school's audit log, oldest first from `since`: who read or changed which record, when."""
    stmt = select(AuditEvent).where(AuditEvent.school_id == school_id)
    if query.since is not None:
        stmt = stmt.where(AuditEvent.at >= query.since)
    if query.actor is not None:
        stmt = stmt.where(AuditEvent.actor_user_id == query.actor)
    rows, cursor = await keyset_page(
        session, stmt, [AuditEvent.at, AuditEvent.id], PageQuery(limit=query.limit, cursor=query.cursor)
    )
    return [
        AuditEventOut(
            id=e.id,
            at=e.at,
            action=e.action,
            label=_label(e.action),
            actor_user_id=e.actor_user_id,
            subject={k: str(v) for k, v in e.subject.items()},
            request_id=e.request_id,
        )
        for e in rows
    ], cursor
