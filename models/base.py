"""Declarative base with a constraint naming convention, shared column helpers and post-commit hooks."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import DateTime, MetaData, Uuid, func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UuidPk:
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Change(StrEnum):
    """Things a transaction changed that caches outside the database must hear about after commit."""

    principal = "principal"  # a user's roles, schools or children
    revoked_session = "revoked_session"  # a login session (refresh-token family) was revoked
    catalogue = "catalogue"  # courses or their assignments: cached course lists are stale


def note_change(session: AsyncSession, kind: Change, ident: uuid.UUID | str) -> None:
    session.info.setdefault("changes", {}).setdefault(kind, set()).add(str(ident))


def pop_changes(session: AsyncSession) -> dict[Change, set[str]]:
    changes: dict[Change, set[str]] = session.info.pop("changes", {})
    return changes
