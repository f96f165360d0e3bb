"""One row per creating request carried out under an Idempotency-Key, written in its own transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_record"
    # sha256 of (caller, method, path, key): the client's key itself is not kept
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of the request body
    # The response, stored once it is known: missing after a crash between the commit and that moment.
    status: Mapped[int | None] = mapped_column(Integer)
    body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
