"""The outbox's delivery side: one NotificationWorker per service process, any number of processes.

A round (`run_once`):
1. one short transaction claims up to `batch_size` jobs that are due (pending with due_at ≤ now, or
   `sending` with an expired lease: a worker died mid-send) with `FOR UPDATE SKIP LOCKED`, so workers
   never wait for nor share a job; each is set to `sending` with a lease, attempts + 1;
2. each job takes one message of its user's allowance for its template (given back if WeChat does not
   deliver it) and is sent through the gateway, outside any database transaction (a slow WeChat holds
   no row lock and no connection), a few at a time;
3. each outcome is written at once, fenced by the attempt number (a worker whose lease ran out and whose
   job was claimed again writes nothing):
   sent · no_allowance (the user's one-time subscription allowance is used up: nothing left to take in
   models/notifications/allowance.py, so WeChat is not even asked, or WeChat's 43101; never retried) ·
   expired (its expires_at passed before it could go: a reminder of a class that has begun) ·
   failed (no openid, a permanent WeChat refusal, or out of attempts) · pending again with exponential
   backoff (outage, timeout, -1, rate limit). A rejected access token (40001) is dropped from the shared
   cache and the send retried once at once with a fresh one.

Delivery guarantee, honestly: WeChat's send API has no idempotency key, so nothing can make delivery
exactly-once across a crash. If the process dies (or stalls past the lease) after WeChat accepted a
message but before our outcome commits, the job is claimed again when its lease expires and the parent
gets the message twice. Outside that window — a few milliseconds per message — every job is delivered
exactly once: claims never overlap, and a timed-out request that WeChat may have accepted is the only
other source of a repeat (it is retried, as a lost reminder is worse than a repeated one).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infra.errors import RateLimited, ServiceUnavailable
from infra.wechat import AccessTokenRejected, SubscriptionQuotaExhausted, WechatError, WechatGateway
from models.accounts.tables import User
from models.notifications import allowance
from models.notifications.tables import JobStatus, NotificationJob

log = logging.getLogger(__name__)
_T = TypeVar("_T")

BATCH_SIZE = 50
# Long enough for a whole batch at the default send concurrency (8, Settings.notification_send_concurrency)
# even when every call runs into the gateway's timeout; with fewer at a time, the jobs a batch has not
# reached when its lease nears the end are handed back untried (SEND_MARGIN).
LEASE = timedelta(seconds=60)
# A send is not started with less lease than this left: a token refresh plus the send, each bounded by
# the gateway's timeout (5 s), must end before another worker may claim the job again.
SEND_MARGIN = timedelta(seconds=30)
# 30 s, 2 min, 8 min, 32 min, then hourly; how many tries a job gets is Settings.notification_max_attempts.
BACKOFF_FIRST = timedelta(seconds=30)
BACKOFF_FACTOR = 4
BACKOFF_MAX = timedelta(hours=1)
# Refusals a retry cannot change: invalid openid, invalid template_id, invalid page, invalid data.
PERMANENT_ERRCODES = frozenset({40003, 40037, 41030, 47003})
OUTCOME_WRITE_TRIES = 3
NO_OPENID = "user has no WeChat openid (not a WeChat account): nothing to send to"
NO_ALLOWANCE = (
    "no subscription allowance: the user has not accepted this template in the mini-program (or used it up)"
)


@dataclass(frozen=True)
class ClaimedJob:
    id: uuid.UUID
    kind: str
    user_id: uuid.UUID
    attempts: int
    lease_until: datetime
    openid: str | None
    template_id: str
    page: str
    data: dict[str, str]
    expires_at: datetime | None


def backoff(attempts: int) -> timedelta:
    """Wait before the next try, after `attempts` failed ones."""
    factor: int = BACKOFF_FACTOR ** max(0, attempts - 1)
    return min(BACKOFF_MAX, BACKOFF_FIRST * factor)


class NotificationWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        gateway: WechatGateway,
        clock: Callable[[], datetime],
        *,
        poll_interval: float,
        send_concurrency: int,
        max_attempts: int,
        batch_size: int = BATCH_SIZE,
        lease: timedelta = LEASE,
    ) -> None:
        """`poll_interval` (seconds), `send_concurrency` and `max_attempts`: see Settings.notification_*."""
        self._sessions = sessions
        self._gateway = gateway
        self._clock = clock
        self._poll_interval = poll_interval
        self._send_concurrency = send_concurrency
        self._max_attempts = max_attempts
        self._batch_size = batch_size
        self._lease = lease
        self._send_margin = min(SEND_MARGIN, lease / 2)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver due jobs every `poll_interval` seconds (at once again after a full batch) until stopped."""
        while not stop.is_set():
            try:
                while await self.run_once() >= self._batch_size and not stop.is_set():
                    pass
            except Exception:
                log.exception("notification round failed; will retry")
            try:
                await asyncio.wait_for(stop.wait(), self._poll_interval)
            except TimeoutError:
                pass

    async def run_once(self) -> int:
        """Claim one batch of due jobs and deliver it; returns how many jobs were claimed."""
        jobs = await self._claim()
        if not jobs:
            return 0
        limit = asyncio.Semaphore(self._send_concurrency)

        async def deliver(job: ClaimedJob) -> None:
            async with limit:
                await self._deliver(job)

        results = await asyncio.gather(*(deliver(job) for job in jobs), return_exceptions=True)
        for job, result in zip(jobs, results, strict=True):
            if isinstance(result, BaseException):
                # Its outcome could not be written: the lease runs out and the job is tried again.
                log.error("notification job %s: outcome not recorded", job.id, exc_info=result)
        return len(jobs)

    async def _claim(self) -> list[ClaimedJob]:
        now = self._clock()
        job = NotificationJob
        async with self._sessions() as session, session.begin():
            # A job that kept dying mid-send (a message that crashes us?) stops being tried. Like the
            # claim below, it skips rows another worker holds, so workers never wait for each other.
            exhausted = (
                select(job.id)
                .where(
                    job.status == JobStatus.sending, job.lease_until < now, job.attempts >= self._max_attempts
                )
                .with_for_update(skip_locked=True)
                .cte("exhausted")
            )
            await session.execute(
                update(job)
                .where(job.id == exhausted.c.id)
                .values(
                    status=JobStatus.failed, lease_until=None, last_error="lease expired on every attempt"
                )
                .execution_options(synchronize_session=False)
            )
            claimable = or_(
                and_(job.status == JobStatus.pending, job.due_at <= now),
                and_(
                    job.status == JobStatus.sending, job.lease_until < now, job.attempts < self._max_attempts
                ),
            )
            # One whose moment passed (the class began while WeChat was down, say) is dropped, not sent.
            past = (
                select(job.id)
                .where(claimable, job.expires_at <= now)
                .with_for_update(skip_locked=True)
                .cte("past")
            )
            await session.execute(
                update(job)
                .where(job.id == past.c.id)
                .values(status=JobStatus.expired, lease_until=None)
                .execution_options(synchronize_session=False)
            )
            due = (
                select(job.id)
                .where(claimable, or_(job.expires_at.is_(None), job.expires_at > now))
                .order_by(job.due_at)
                .limit(self._batch_size)
                .with_for_update(skip_locked=True)
                .cte("due")
            )
            openid = select(User.wechat_openid).where(User.id == job.user_id).scalar_subquery()
            rows = await session.execute(
                update(job)
                .where(job.id == due.c.id)
                .values(status=JobStatus.sending, lease_until=now + self._lease, attempts=job.attempts + 1)
                .returning(
                    job.id,
                    job.kind,
                    job.user_id,
                    job.attempts,
                    job.lease_until,
                    openid.label("openid"),
                    job.template_id,
                    job.page,
                    job.data,
                    job.expires_at,
                )
                .execution_options(synchronize_session=False)
            )
            return [ClaimedJob(**row._asdict()) for row in rows]

    async def _deliver(self, job: ClaimedJob) -> None:
        if not job.openid:
            await self._record(job, status=JobStatus.failed, last_error=NO_OPENID)
            return
        if job.expires_at is not None and self._clock() >= job.expires_at:
            await self._record(job, status=JobStatus.expired, lease_until=None)
            return
        if self._clock() > job.lease_until - self._send_margin:
            # This batch took too long (WeChat is slow): hand the job back untried rather than race the
            # worker that may claim it once the lease expires.
            await self._record(job, status=JobStatus.pending, lease_until=None, attempts=job.attempts - 1)
            return
        if not await self._allowance(allowance.take_one, job):
            await self._record(job, status=JobStatus.no_allowance, last_error=NO_ALLOWANCE)
            return
        try:
            await self._send(job)
        except SubscriptionQuotaExhausted as exc:
            await self._allowance(allowance.none_left, job)
            await self._record(job, status=JobStatus.no_allowance, last_error=_describe(exc))
        except Exception as exc:
            await self._allowance(allowance.give_back, job)  # not delivered: the parent still has it
            await self._not_sent(job, exc)
        else:
            sent = await self._record(
                job,
                status=JobStatus.sent,
                sent_at=self._clock(),
                lease_until=None,
                also_from=JobStatus.cancelled,  # cancelled while in flight, but WeChat accepted it
            )
            if not sent:
                log.warning(
                    "notification job %s was sent after its lease expired: it may go out twice", job.id
                )

    async def _allowance(
        self, change: Callable[[AsyncSession, uuid.UUID, str], Awaitable[_T]], job: ClaimedJob
    ) -> _T:
        async with self._sessions() as session, session.begin():
            return await change(session, job.user_id, job.template_id)

    async def _not_sent(self, job: ClaimedJob, exc: Exception) -> None:
        if isinstance(exc, WechatError) and exc.errcode in PERMANENT_ERRCODES:
            await self._record(job, status=JobStatus.failed, last_error=_describe(exc))
            return
        if not isinstance(exc, WechatError | ServiceUnavailable | RateLimited):
            # A bug of ours must not lose the job; the attempt limit stops it from looping.
            log.error("notification job %s: unexpected error while sending", job.id, exc_info=exc)
        await self._retry_or_fail(job, exc)

    async def _send(self, job: ClaimedJob) -> None:
        assert job.openid is not None
        message: dict[str, Any] = {
            "openid": job.openid,
            "template_id": job.template_id,
            "page": job.page,
            "data": job.data,
        }
        try:
            await self._gateway.send_subscribe_message(**message)
        except AccessTokenRejected:
            # Revoked or replaced elsewhere: WeChat refused before delivering, so resending is safe.
            await self._gateway.forget_access_token()
            await self._gateway.send_subscribe_message(**message)

    async def _retry_or_fail(self, job: ClaimedJob, exc: Exception) -> None:
        if job.attempts >= self._max_attempts:
            await self._record(
                job,
                status=JobStatus.failed,
                last_error=f"gave up after {job.attempts} attempts: {_describe(exc)}",
            )
            return
        log.info("notification job %s: attempt %d failed (%s); will retry", job.id, job.attempts, exc)
        await self._record(
            job,
            status=JobStatus.pending,
            lease_until=None,
            due_at=self._clock() + backoff(job.attempts),
            last_error=_describe(exc),
        )

    async def _record(
        self, job: ClaimedJob, *, status: JobStatus, also_from: JobStatus | None = None, **values: Any
    ) -> bool:
        """Write the outcome if the job is still ours (same attempt, still in flight); True if written."""
        from_statuses = [JobStatus.sending] + ([also_from] if also_from else [])
        stmt = (
            update(NotificationJob)
            .where(
                NotificationJob.id == job.id,
                NotificationJob.attempts == job.attempts,
                NotificationJob.status.in_(from_statuses),
            )
            .values(status=status, **values)
            .returning(NotificationJob.id)
            .execution_options(synchronize_session=False)
        )
        for attempt in range(1, OUTCOME_WRITE_TRIES + 1):
            try:
                async with self._sessions() as session, session.begin():
                    return (await session.scalar(stmt)) is not None
            except Exception:
                # The message may be out already: losing this write means sending it again later.
                if attempt == OUTCOME_WRITE_TRIES:
                    raise
                log.warning("notification job %s: outcome write failed, trying again", job.id, exc_info=True)
                await asyncio.sleep(0.2 * attempt)
        raise AssertionError("unreachable")


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:1000]
