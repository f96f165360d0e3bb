"""One-time subscription allowances (一次性订阅): what a user's accepts allow, and what the sends use.

WeChat lets a mini-program send a user one message of a template for each time the user accepted that
template in `wx.requestSubscribeMessage`. The mini-program reports the accepts (`grant`); the worker takes
one before each send (`take_one`), gives it back when WeChat did not deliver (`give_back`), and believes
WeChat when it answers 43101, no allowance left (`none_left`). A message with nothing to take is not sent
(it would only come back 43101); it goes once the parent allows again, if still in time. The mini-program
reads what is left (`listed`) to ask again only for a template that has run out, not on every tap."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from infra.errors import ValidationFailed
from models.notifications.schemas import Subscription, SubscriptionsOut
from models.notifications.tables import JobStatus, NotificationJob, SubscriptionAllowance


@dataclass(frozen=True)
class Templates:
    """The subscription-message templates chosen in the mini-program's admin console, by message kind."""

    class_reminder: str
    waitlist_promoted: str
    followup_answered: str = "followup-answered"  # a parent's 三带回 item or letter has its answer


async def grant(
    session: AsyncSession, user_id: uuid.UUID, accepted: Sequence[str], templates: Templates, now: datetime
) -> None:
    """One more message allowed for each template the user accepted (each at most once per prompt);
    their messages that went unsent for want of one are due again."""
    known = set(asdict(templates).values())
    errors = [
        {"loc": ["body", "accepted", i], "msg": "unknown template id", "type": "unknown_template"}
        for i, template_id in enumerate(accepted)
        if template_id not in known
    ] + [
        {"loc": ["body", "accepted", i], "msg": "listed twice", "type": "duplicate"}
        for i, template_id in enumerate(accepted)
        if template_id in accepted[:i]
    ]
    if errors:
        raise ValidationFailed("只能记录本小程序的订阅消息模板，每个模板一次", errors=errors)
    stmt = insert(SubscriptionAllowance).values(
        [{"user_id": user_id, "template_id": t, "remaining": 1, "updated_at": now} for t in accepted]
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["user_id", "template_id"],
            set_={"remaining": SubscriptionAllowance.remaining + 1, "updated_at": now},
        )
    )
    # A message that found no allowance goes now, unless its moment has passed (a class that began).
    job = NotificationJob
    await session.execute(
        update(job)
        .where(
            job.user_id == user_id,
            job.template_id.in_(accepted),
            job.status == JobStatus.no_allowance,
            or_(job.expires_at.is_(None), job.expires_at > now),
        )
        .values(status=JobStatus.pending, attempts=0, last_error=None)
    )


async def listed(session: AsyncSession, user_id: uuid.UUID, templates: Templates) -> SubscriptionsOut:
    rows = await session.execute(
        select(SubscriptionAllowance.template_id, SubscriptionAllowance.remaining).where(
            SubscriptionAllowance.user_id == user_id
        )
    )
    remaining: dict[str, int] = {template_id: left for template_id, left in rows}
    return SubscriptionsOut(
        items=[
            Subscription(kind=kind, template_id=template_id, remaining=remaining.get(template_id, 0))
            for kind, template_id in asdict(templates).items()
        ]
    )


def _of(user_id: uuid.UUID, template_id: str) -> ColumnElement[bool]:
    return and_(SubscriptionAllowance.user_id == user_id, SubscriptionAllowance.template_id == template_id)


async def take_one(session: AsyncSession, user_id: uuid.UUID, template_id: str) -> bool:
    """Use one message of the allowance before sending; False when there is none."""
    taken = await session.scalar(
        update(SubscriptionAllowance)
        .where(_of(user_id, template_id), SubscriptionAllowance.remaining > 0)
        .values(remaining=SubscriptionAllowance.remaining - 1, updated_at=func.now())
        .returning(SubscriptionAllowance.remaining)
    )
    return taken is not None


async def give_back(session: AsyncSession, user_id: uuid.UUID, template_id: str) -> None:
    """WeChat did not deliver the message taken for: the user still has it."""
    await session.execute(
        update(SubscriptionAllowance)
        .where(_of(user_id, template_id))
        .values(remaining=SubscriptionAllowance.remaining + 1, updated_at=func.now())
    )


async def none_left(session: AsyncSession, user_id: uuid.UUID, template_id: str) -> None:
    """WeChat answered 43101: whatever we counted, nothing is left."""
    await session.execute(
        update(SubscriptionAllowance)
        .where(_of(user_id, template_id))
        .values(remaining=0, updated_at=func.now())
    )
