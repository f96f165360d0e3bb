"""Retention of the sensitive part of visits: once a visit is older than VISIT_SENSITIVE_RETENTION_DAYS
its private note and circumstances are erased (the visit itself, its 四到家 items and follow-ups stay,
so coverage figures do not change)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from models.home_visits.tables import HomeVisit


async def erase_expired_sensitive(session: AsyncSession, now: datetime, retention_days: int) -> int:
    """Erase the sealed fields of visits that happened more than `retention_days` ago; returns how many."""
    erased = await session.execute(
        update(HomeVisit)
        .where(
            HomeVisit.visited_at < now - timedelta(days=retention_days),
            or_(
                HomeVisit.private_note_encrypted.is_not(None), HomeVisit.circumstances_encrypted.is_not(None)
            ),
        )
        .values(private_note_encrypted=None, circumstances_encrypted=None, version=HomeVisit.version + 1)
        .returning(HomeVisit.id)
    )
    return len(erased.all())
