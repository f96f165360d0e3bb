"""audit_event: append-only; kept as long as the logs (Cybersecurity Law art. 21: at least six months)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Index, String, Uuid
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UuidPk


class AuditEvent(UuidPk, Base):
    __tablename__ = "audit_event"
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    action: Mapped[str] = mapped_column(String(48))
    # None where the endpoint must not record who called (an anonymous survey answer).
    actor_user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    school_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    district_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # The ids the request named (path parameters): what was read or changed.
    subject: Mapped[dict[str, Any]] = mapped_column(JSONB)
    request_id: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_audit_event_school_at", "school_id", "at"),
        Index("ix_audit_event_actor_at", "actor_user_id", "at"),
    )
