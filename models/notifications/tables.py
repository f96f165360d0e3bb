"""The outbox of WeChat subscription messages: one row per (kind, user, subject), whatever its fate."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, Timestamped, UuidPk


class JobStatus(StrEnum):
    pending = "pending"  # waiting for due_at (also between retries)
    sending = "sending"  # claimed by a worker until lease_until; past it, claimable again
    sent = "sent"
    no_allowance = "no_allowance"  # WeChat 43101: the user has no subscription allowance left
    failed = "failed"  # permanent refusal, no openid, or out of attempts; see last_error
    cancelled = "cancelled"
    expired = "expired"  # its moment passed before it could go out (a reminder of a class that began)


class NotificationJob(UuidPk, Timestamped, Base):
    __tablename__ = "notification_job"
    __table_args__ = (
        UniqueConstraint("kind", "user_id", "subject_id"),
        CheckConstraint(
            "status IN ('pending', 'sending', 'sent', 'no_allowance', 'failed', 'cancelled', 'expired')",
            name="status_known",
        ),
        CheckConstraint("status <> 'sending' OR lease_until IS NOT NULL", name="sending_has_lease"),
        # The worker's scan: due pending jobs, and sending jobs whose lease ran out.
        Index("ix_notification_job_status_due_at", "status", "due_at"),
    )
    kind: Mapped[str] = mapped_column(String(32))
    # A job means nothing without its user: it goes with the account.
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("app_user.id", ondelete="CASCADE"), index=True)
    # What the message is about (an evening class, a sign-up...); any area's id, hence no foreign key.
    subject_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    template_id: Mapped[str] = mapped_column(String(128))
    page: Mapped[str] = mapped_column(String(255))
    data: Mapped[dict[str, str]] = mapped_column(JSONB)
    # Not before this moment; a retry moves it on by the backoff.
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Not after this moment either: past it, a message not yet out is dropped (status expired).
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.pending)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SubscriptionAllowance(Base):
    """How many more messages of one template a user lets us send. WeChat's one-time subscription
    (一次性订阅): each "accept" in the mini-program's prompt allows one message, each message sent uses one;
    the mini-program reports the accepts, the worker counts the sends."""

    __tablename__ = "subscription_allowance"
    __table_args__ = (CheckConstraint("remaining >= 0", name="remaining_not_negative"),)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("app_user.id", ondelete="CASCADE"), primary_key=True
    )
    template_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    remaining: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
