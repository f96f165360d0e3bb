"""Reminder jobs (the notifications outbox) delivered by the worker to the WeChat sandbox over real HTTP.

Jobs are enqueued the way the evening-class code does it, inside a transaction of its own; the worker is
driven round by round with `run_once`, and time by a settable deps.clock that it reads."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from handlers.deps import Deps
from infra.clock import SHANGHAI
from infra.wechat import WechatGateway
from models.accounts.tables import User
from models.notifications.service import Job, cancel, enqueue
from models.notifications.tables import JobStatus, NotificationJob, SubscriptionAllowance
from models.notifications.worker import NO_ALLOWANCE, NO_OPENID, NotificationWorker, backoff
from server.wechat_sandbox import SandboxState
from tests.builders import FakeClock, allow_messages, make_password_user, make_wechat_user

NOW = datetime(2025, 11, 6, 18, 0, tzinfo=SHANGHAI)
TEMPLATE = "tmpl-class-reminder"
PAGE = "pages/evening-class/detail?id=1"
DATA = {"thing1": "亲子沟通的艺术", "time2": "2025-11-07 19:00", "thing3": "甲小学报告厅"}
Sandbox = tuple[SandboxState, str]


@pytest.fixture
def clock(deps: Deps) -> FakeClock:
    clock = FakeClock(NOW)
    deps.clock = clock
    return clock


async def make_user(deps: Deps, openid: str | None = None, allowance: int = 10) -> User:
    """A WeChat user who accepted TEMPLATE `allowance` times in the subscription prompt."""
    async with deps.sessions() as s, s.begin():
        user = await make_wechat_user(s, openid=openid or f"openid-{uuid.uuid4().hex[:8]}")
        await allow_messages(s, user.id, TEMPLATE, allowance)
        return user


async def add_job(
    deps: Deps,
    user: User,
    *,
    due_at: datetime = NOW,
    expires_at: datetime | None = None,
    subject_id: uuid.UUID | None = None,
    kind: str = "class_reminder",
    data: dict[str, str] | None = None,
) -> uuid.UUID:
    subject_id = subject_id or uuid.uuid4()
    async with deps.sessions() as s, s.begin():
        created = await enqueue(
            s,
            [
                Job(
                    kind=kind,
                    user_id=user.id,
                    subject_id=subject_id,
                    due_at=due_at,
                    template_id=TEMPLATE,
                    page=PAGE,
                    data=data or DATA,
                    expires_at=expires_at,
                )
            ],
        )
    assert created == 1
    return subject_id


async def remaining(deps: Deps, user: User) -> int:
    """How many more TEMPLATE messages the user lets us send, as counted."""
    async with deps.sessions() as s:
        left = await s.scalar(
            select(SubscriptionAllowance.remaining).where(
                SubscriptionAllowance.user_id == user.id, SubscriptionAllowance.template_id == TEMPLATE
            )
        )
    assert left is not None
    return left


async def job_of(
    deps: Deps, user: User, subject_id: uuid.UUID, kind: str = "class_reminder"
) -> NotificationJob:
    async with deps.sessions() as s:
        job = await s.scalar(
            select(NotificationJob).where(
                NotificationJob.kind == kind,
                NotificationJob.user_id == user.id,
                NotificationJob.subject_id == subject_id,
            )
        )
    assert job is not None
    return job


def unreachable_api_base() -> str:
    """A URL on a port nothing listens on."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def closed_port_gateway(deps: Deps) -> WechatGateway:
    """The real gateway, aimed at a port nothing listens on: WeChat unreachable."""
    return WechatGateway(
        appid=deps.wechat.appid,
        secret=deps.settings.wechat_secret.get_secret_value() if deps.settings.wechat_secret else "",
        api_base=unreachable_api_base(),
        timeout=1.0,
        redis=deps.redis,
        keys=deps.keys,
    )


def another_worker(
    deps: Deps, gateway: WechatGateway, clock: Callable[[], datetime], **options: int
) -> NotificationWorker:
    """A worker beside deps.notifications, on its own gateway or clock, configured from the same settings."""
    s = deps.settings
    return NotificationWorker(
        deps.sessions,
        gateway,
        clock,
        poll_interval=s.notification_poll_seconds,
        send_concurrency=s.notification_send_concurrency,
        max_attempts=s.notification_max_attempts,
        **options,
    )


async def test_a_due_job_is_sent_once_and_marked_sent(deps: Deps, wechat: Sandbox, clock: FakeClock) -> None:
    state, _ = wechat
    user = await make_user(deps)
    subject = await add_job(deps, user, due_at=NOW - timedelta(minutes=1))

    assert await deps.notifications.run_once() == 1

    assert state.messages == [
        {
            "touser": user.wechat_openid,
            "template_id": TEMPLATE,
            "page": PAGE,
            "data": {key: {"value": value} for key, value in DATA.items()},
            "miniprogram_state": "formal",
        }
    ]
    job = await job_of(deps, user, subject)
    assert job.status == JobStatus.sent
    assert job.sent_at == NOW
    assert job.attempts == 1
    assert job.lease_until is None
    assert job.last_error is None

    clock.tick(3600)
    assert await deps.notifications.run_once() == 0
    assert await deps.notifications.run_once() == 0
    assert len(state.messages) == 1


async def test_a_job_not_yet_due_waits_for_its_time(deps: Deps, wechat: Sandbox, clock: FakeClock) -> None:
    state, _ = wechat
    user = await make_user(deps)
    subject = await add_job(deps, user, due_at=NOW + timedelta(days=1))

    assert await deps.notifications.run_once() == 0
    clock.tick(24 * 3600 - 1)
    assert await deps.notifications.run_once() == 0
    assert state.messages == []
    assert (await job_of(deps, user, subject)).status == JobStatus.pending

    clock.tick(1)
    assert await deps.notifications.run_once() == 1
    assert [m["touser"] for m in state.messages] == [user.wechat_openid]


async def test_enqueuing_the_same_job_twice_keeps_one(deps: Deps, wechat: Sandbox, clock: FakeClock) -> None:
    state, _ = wechat
    user = await make_user(deps)
    subject = await add_job(deps, user)
    async with deps.sessions() as s, s.begin():
        again = await enqueue(
            s,
            [
                Job(
                    kind="class_reminder",
                    user_id=user.id,
                    subject_id=subject,
                    due_at=NOW + timedelta(hours=5),
                    template_id="another-template",
                    page=PAGE,
                    data={"thing1": "changed"},
                )
            ],
        )
    assert again == 0
    # The same subject under another kind is another job.
    await add_job(deps, user, subject_id=subject, kind="waitlist_promoted")

    async with deps.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(NotificationJob)) == 2
    job = await job_of(deps, user, subject)
    assert (job.template_id, job.data, job.due_at) == (TEMPLATE, DATA, NOW)

    assert await deps.notifications.run_once() == 2
    assert len(state.messages) == 2


async def test_one_call_enqueues_many_jobs_and_keeps_the_first_of_a_repeated_one(
    deps: Deps, wechat: Sandbox, clock: FakeClock
) -> None:
    state, _ = wechat
    first, second = await make_user(deps), await make_user(deps)
    subject = uuid.uuid4()

    def job(user: User, thing: str) -> Job:
        return Job("class_reminder", user.id, subject, NOW, TEMPLATE, PAGE, {"thing1": thing})

    async with deps.sessions() as s, s.begin():
        written = await enqueue(s, [job(first, "first"), job(second, "second"), job(first, "repeated")])
    assert written == 2
    assert (await job_of(deps, first, subject)).data == {"thing1": "first"}
    assert await deps.notifications.run_once() == 2
    assert sorted(m["data"]["thing1"]["value"] for m in state.messages) == ["first", "second"]


async def test_a_job_enqueued_in_a_rolled_back_transaction_does_not_exist(
    deps: Deps, wechat: Sandbox, clock: FakeClock
) -> None:
    user = await make_user(deps)

    class SignupFailed(Exception):
        pass

    with pytest.raises(SignupFailed):
        async with deps.sessions() as s, s.begin():
            await enqueue(
                s,
                [
                    Job(
                        kind="waitlist_promoted",
                        user_id=user.id,
                        subject_id=uuid.uuid4(),
                        due_at=NOW,
                        template_id=TEMPLATE,
                        page=PAGE,
                        data=DATA,
                    )
                ],
            )
            raise SignupFailed

    assert await deps.notifications.run_once() == 0
    assert wechat[0].messages == []


async def test_a_cancelled_job_is_never_sent_and_enqueuing_again_revives_it(
    deps: Deps, wechat: Sandbox, clock: FakeClock
) -> None:
    state, _ = wechat
    user = await make_user(deps)
    subject = await add_job(deps, user, due_at=NOW + timedelta(hours=1))
    async with deps.sessions() as s, s.begin():
        await cancel(s, kind="class_reminder", user_id=user.id, subject_id=subject)

    clock.tick(2 * 3600)
    assert await deps.notifications.run_once() == 0
    assert state.messages == []
    assert (await job_of(deps, user, subject)).status == JobStatus.cancelled

    # The parent signs up again: the reminder is back, with the new content.
    await add_job(deps, user, subject_id=subject, due_at=clock.now, data={"thing1": "再次报名"})
    assert await deps.notifications.run_once() == 1
    assert [m["data"] for m in state.messages] == [{"thing1": {"value": "再次报名"}}]
    assert (await job_of(deps, user, subject)).status == JobStatus.sent


async def test_cancel_leaves_a_sent_job_alone(deps: Deps, wechat: Sandbox, clock: FakeClock) -> None:
    user = await make_user(deps)
    subject = await add_job(deps, user)
    await deps.notifications.run_once()
    async with deps.sessions() as s, s.begin():
        await cancel(s, kind="class_reminder", user_id=user.id, subject_id=subject)
        await cancel(s, kind="class_reminder", user_id=user.id, subject_id=uuid.uuid4())  # no such job
    assert (await job_of(deps, user, subject)).status == JobStatus.sent


async def test_no_allowance_left_is_recorded_not_retried(
    deps: Deps, wechat: Sandbox, clock: FakeClock
) -> None:
    state, _ = wechat
    user = await make_user(deps)
    assert user.wechat_openid
    state.subscription_allowance[user.wechat_openid] = 1
    first = await add_job(deps, user, kind="waitlist_promoted")
    second = await add_job(deps, user, due_at=NOW + timedelta(minutes=1))

    assert await deps.notifications.run_once() == 1
    clock.tick(60)
    assert await deps.notifications.run_once() == 1  # 43101 from the sandbox: no exception

    assert len(state.messages) == 1
    assert (await job_of(deps, user, first, kind="waitlist_promoted")).status == JobStatus.sent
    job = await job_of(deps, user, second)
    assert job.status == JobStatus.no_allowance
    assert job.last_error and "43101" in job.last_error
    assert job.sent_at is None

    clock.tick(24 * 3600)
    assert await deps.notifications.run_once() == 0
    assert len(state.messages) == 1
    assert state.subscription_allowance[user.wechat_openid] == 0
    assert await remaining(deps, user) == 0  # we had counted 10 accepts; WeChat knows better


async def test_each_message_uses_one_accept_and_without_one_wechat_is_not_asked(
    deps: Deps, wechat: Sandbox, clock: FakeClock
) -> None:
    state, _ = wechat
    user = await make_user(deps, allowance=2)
    never = await make_user(deps, allowance=0)
    subjects = [await add_job(deps, user, due_at=NOW + timedelta(minutes=i)) for i in range(3)]
    unasked = await add_job(deps, never)

    clock.tick(600)
    assert await deps.notifications.run_once() == 4

    assert Counter(m["touser"] for m in state.messages) == {user.wechat_openid: 2}
    outcomes = [(await job_of(deps, user, subject)).status for subject in subjects]
    assert sorted(outcomes) == [JobStatus.no_allowance, JobStatus.sent, JobStatus.sent]
    refused = await job_of(deps, never, unasked)
    assert refused.status == JobStatus.no_allowance and refused.last_error == NO_ALLOWANCE
    assert (await remaining(deps, user), await remaining(deps, never)) == (0, 0)


async def test_an_unreachable_wechat_is_retried_with_backoff_until_it_recovers(
    deps: Deps, wechat: Sandbox, clock: FakeClock
) -> None:
    state, _ = wechat
    user = await make_user(deps, allowance=1)
    subject = await add_job(deps, user)
    down = another_worker(deps, closed_port_gateway(deps), clock)

    assert await down.run_once() == 1
    job = await job_of(deps, user, subject)
    assert job.status == JobStatus.pending
    assert job.attempts == 1
    assert job.due_at == NOW + backoff(1)
    assert job.last_error and job.last_error.startswith("ServiceUnavailable")
    assert await remaining(deps, user) == 1  # not delivered: the parent's one accept is still there

    # Not again before the backoff is over, even with WeChat back.
    assert await deps.notifications.run_once() == 0
    clock.tick(backoff(1).total_seconds())
    assert await down.run_once() == 1
    assert (await job_of(deps, user, subject)).due_at == clock.now + backoff(2)

    clock.tick(backoff(2).total_seconds())
    assert await deps.notifications.run_once() == 1
    assert [m["touser"] for m in state.messages] == [user.wechat_openid]
    job = await job_of(deps, user, subject)
    assert (job.status, job.attempts) == (JobStatus.sent, 3)
    assert await remaining(deps, user) == 0


async def test_a_job_whose_moment_passed_is_dropped_not_sent(
    deps: Deps, wechat: Sandbox, clock: FakeClock
) -> None:
    state, _ = wechat
    user = await make_user(deps)
    late = await add_job(deps, user, due_at=NOW - timedelta(hours=2), expires_at=NOW - timedelta(hours=1))
    timely = await add_job(deps, user, due_at=NOW - timedelta(hours=2), expires_at=NOW + timedelta(hours=1))

    assert await deps.notifications.run_once() == 1
    assert len(state.messages) == 1
    assert (await job_of(deps, user, late)).status == JobStatus.expired
    assert (await job_of(deps, user, timely)).status == JobStatus.sent


async def test_a_job_retried_past_its_expiry_is_dropped(
    deps: Deps, wechat: Sandbox, clock: FakeClock
) -> None:
    user = await make_user(deps)
    subject = await add_job(deps, user, expires_at=NOW + backoff(1) / 2)
    down = another_worker(deps, closed_port_gateway(deps), clock)
    assert await down.run_once() == 1  # WeChat unreachable: to be tried again after the backoff
    clock.tick(backoff(1).total_seconds())
    assert await deps.notifications.run_once() == 0  # ... by which time it has expired
    job = await job_of(deps, user, subject)
    assert (job.status, job.attempts) == (JobStatus.expired, 1)
    assert wechat[0].messages == []


async def test_a_job_that_expires_between_its_claim_and_its_send_is_not_sent(
    deps: Deps, wechat: Sandbox
) -> None:
    user = await make_user(deps)
    subject = await add_job(deps, user, expires_at=NOW + timedelta(seconds=1))
    moments = iter([NOW, NOW + timedelta(seconds=2)])  # the claim, then the send a while later
    slow = another_worker(deps, deps.wechat, lambda: next(moments, NOW + timedelta(seconds=2)))
    assert await slow.run_once() == 1
    assert (await job_of(deps, user, subject)).status == JobStatus.expired
    assert wechat[0].messages == []


async def test_a_job_fails_after_the_attempts_the_settings_allow(
    deps: Deps, wechat: Sandbox, clock: FakeClock
) -> None:
    attempts = 3  # not the default, so that the setting is seen to reach the service's worker
    down = Deps(
        settings=deps.settings.model_copy(
            update={"notification_max_attempts": attempts, "wechat_api_base": unreachable_api_base()}
        ),
        engine=deps.engine,
        sessions=deps.sessions,
        redis=deps.redis,
        keys=deps.keys,
        clock=clock,
    ).notifications
    user = await make_user(deps)
    subject = await add_job(deps, user)
    for attempt in range(1, attempts + 1):
        assert await down.run_once() == 1
        clock.tick(backoff(attempt).total_seconds())

    job = await job_of(deps, user, subject)
    assert (job.status, job.attempts) == (JobStatus.failed, attempts)
    assert job.last_error and job.last_error.startswith(f"gave up after {attempts} attempts")
    clock.tick(24 * 3600)
    assert await deps.notifications.run_once() == 0
    assert wechat[0].messages == []


async def test_a_rejected_access_token_is_refreshed_and_the_message_sent(
    deps: Deps, wechat: Sandbox, clock: FakeClock
) -> None:
    state, _ = wechat
    user = await make_user(deps)
    subject = await add_job(deps, user)
    # A token WeChat no longer knows (revoked, or issued before a secret reset) sits in the shared cache.
    await deps.redis.set(deps.keys.wechat_token(deps.wechat.appid), "revoked-token", ex=3600)

    assert await deps.notifications.run_once() == 1

    assert [m["touser"] for m in state.messages] == [user.wechat_openid]
    assert state.token_calls == 1
    cached = await deps.redis.get(deps.keys.wechat_token(deps.wechat.appid))
    assert cached is not None and cached.decode() in state.issued_tokens
    job = await job_of(deps, user, subject)
    assert (job.status, job.attempts) == (JobStatus.sent, 1)


async def test_a_user_without_openid_fails_with_a_clear_error(
    deps: Deps, wechat: Sandbox, clock: FakeClock
) -> None:
    async with deps.sessions() as s, s.begin():
        staff = await make_password_user(s)
    subject = await add_job(deps, staff)

    assert await deps.notifications.run_once() == 1

    job = await job_of(deps, staff, subject)
    assert job.status == JobStatus.failed
    assert job.last_error == NO_OPENID
    assert wechat[0].messages == []


async def test_a_job_left_sending_by_a_crashed_worker_is_sent_once_its_lease_expires(
    deps: Deps, wechat: Sandbox, clock: FakeClock
) -> None:
    state, _ = wechat
    user = await make_user(deps)
    crashed = await add_job(deps, user)
    in_flight = await add_job(deps, user)
    async with deps.sessions() as s, s.begin():
        for subject, lease_until in (
            (crashed, NOW - timedelta(seconds=1)),
            (in_flight, NOW + timedelta(seconds=30)),
        ):
            await s.execute(
                update(NotificationJob)
                .where(NotificationJob.subject_id == subject)
                .values(status=JobStatus.sending, lease_until=lease_until, attempts=1)
            )

    assert await deps.notifications.run_once() == 1  # the live lease is another worker's: left alone

    assert len(state.messages) == 1
    job = await job_of(deps, user, crashed)
    assert (job.status, job.attempts) == (JobStatus.sent, 2)
    assert (await job_of(deps, user, in_flight)).status == JobStatus.sending


async def test_a_job_whose_lease_expired_on_every_attempt_is_given_up(
    deps: Deps, wechat: Sandbox, clock: FakeClock
) -> None:
    user = await make_user(deps)
    subject = await add_job(deps, user)
    async with deps.sessions() as s, s.begin():
        await s.execute(
            update(NotificationJob)
            .where(NotificationJob.subject_id == subject)
            .values(
                status=JobStatus.sending,
                lease_until=NOW - timedelta(seconds=1),
                attempts=deps.settings.notification_max_attempts,
            )
        )

    assert await deps.notifications.run_once() == 0

    job = await job_of(deps, user, subject)
    assert (job.status, job.last_error) == (JobStatus.failed, "lease expired on every attempt")
    assert wechat[0].messages == []


async def test_a_job_is_handed_back_untried_when_its_lease_is_nearly_spent(
    deps: Deps, wechat: Sandbox, clock: FakeClock
) -> None:
    """A batch that took most of the lease (WeChat crawling) must not start sends another worker may
    repeat once the lease expires: the job goes back to pending without using up an attempt."""
    user = await make_user(deps)
    subject = await add_job(deps, user)
    readings = iter([NOW, NOW + timedelta(seconds=45)])  # the claim, then the moment before sending
    slow = another_worker(deps, deps.wechat, lambda: next(readings))

    assert await slow.run_once() == 1

    job = await job_of(deps, user, subject)
    assert (job.status, job.attempts, job.lease_until, job.due_at) == (JobStatus.pending, 0, None, NOW)
    assert wechat[0].messages == []
    assert await deps.notifications.run_once() == 1
    assert len(wechat[0].messages) == 1


async def test_two_workers_send_each_of_50_jobs_exactly_once(
    deps: Deps, wechat: Sandbox, clock: FakeClock
) -> None:
    state, _ = wechat
    users = []
    async with deps.sessions() as s, s.begin():
        for i in range(50):
            users.append(await make_wechat_user(s, openid=f"parent-{i:02d}-{uuid.uuid4().hex[:6]}"))
            await allow_messages(s, users[-1].id, TEMPLATE, 1)
    for user in users:
        await add_job(deps, user)
    # Small batches, so that the two workers' claims interleave over several rounds.
    workers = [another_worker(deps, deps.wechat, clock, batch_size=7) for _ in range(2)]

    async def drain(worker: NotificationWorker) -> int:
        total = 0
        while claimed := await worker.run_once():
            total += claimed
        return total

    claimed = await asyncio.gather(*(drain(worker) for worker in workers))

    assert sum(claimed) == 50
    assert Counter(m["touser"] for m in state.messages) == Counter(u.wechat_openid for u in users)
    async with deps.sessions() as s:
        statuses = Counter((await s.scalars(select(NotificationJob.status))).all())
    assert statuses == {JobStatus.sent: 50}
    # And the plain version: two full-size rounds at once.
    extra = await make_user(deps)
    await add_job(deps, extra)
    assert sorted(await asyncio.gather(deps.notifications.run_once(), deps.notifications.run_once())) == [
        0,
        1,
    ]
    assert len(state.messages) == 51


async def test_the_background_loop_delivers_and_stops(deps: Deps, wechat: Sandbox, clock: FakeClock) -> None:
    state, _ = wechat
    user = await make_user(deps)
    await add_job(deps, user)
    stop = asyncio.Event()
    task = asyncio.create_task(deps.notifications.run(stop))
    for _ in range(200):
        if state.messages:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert [m["touser"] for m in state.messages] == [user.wechat_openid]
