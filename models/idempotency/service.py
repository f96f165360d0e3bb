"""Idempotency-Key records in PostgreSQL, written in the same transaction as the request's own writes.

Redis answers replays fast (handlers.idempotency), but what it holds can be lost (a restart without
persistence) or left pending (a process killed mid-request). What is kept here cannot disagree with the
writes: the record commits with them or not at all, so a request is never carried out twice under one
key, whatever Redis remembers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from models.idempotency.tables import IdempotencyRecord

RETENTION = timedelta(hours=24)  # a key may be retried, and is replayed, for this long
PURGE_BATCH = 100  # expired records deleted by each new one


class AlreadyCarriedOut(Exception):
    """The key's request was carried out before: this one's writes are rolled back, and
    handlers.idempotency answers from the record instead."""


@dataclass(frozen=True)
class Stored:
    fingerprint: str
    status: int | None
    body: str | None


async def record(session: AsyncSession, key: str, fingerprint: str, now: datetime) -> None:
    """Mark `key` carried out, first thing in the request's transaction. Raises
    AlreadyCarriedOut if it was, within RETENTION; a concurrent request under the same key waits here
    until the first one's transaction ends."""
    expired = now - RETENTION
    stmt = insert(IdempotencyRecord).values(key=key, fingerprint=fingerprint, created_at=now)
    written = await session.scalar(
        stmt.on_conflict_do_update(
            index_elements=[IdempotencyRecord.key],
            set_={"fingerprint": fingerprint, "status": None, "body": None, "created_at": now},
            where=IdempotencyRecord.created_at < expired,
        ).returning(IdempotencyRecord.key)
    )
    if written is None:
        raise AlreadyCarriedOut()
    old = select(IdempotencyRecord.key).where(IdempotencyRecord.created_at < expired).limit(PURGE_BATCH)
    await session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.key.in_(old)))


async def remember_response(session: AsyncSession, key: str, status: int, body: str) -> None:
    await session.execute(
        update(IdempotencyRecord).where(IdempotencyRecord.key == key).values(status=status, body=body)
    )


async def stored(session: AsyncSession, key: str, now: datetime) -> Stored | None:
    row = (
        await session.execute(
            select(IdempotencyRecord.fingerprint, IdempotencyRecord.status, IdempotencyRecord.body).where(
                IdempotencyRecord.key == key, IdempotencyRecord.created_at >= now - RETENTION
            )
        )
    ).first()
    return Stored(*row) if row else None
