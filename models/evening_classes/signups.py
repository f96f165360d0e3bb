"""Signing up and cancelling: a seat while the class has one, else a place on its waitlist; a seat
freed by a cancellation goes to the first parent waiting."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from infra.errors import AppError, NotFound
from infra.group_commit import RetryBatch
from models.accounts.principal import Principal
from models.evening_classes.errors import (
    AlreadySignedUp,
    CancelClosed,
    ClassCancelled,
    NotSignedUp,
    SignupClosed,
)
from models.evening_classes.reminders import class_reminder
from models.evening_classes.rules import message_time
from models.evening_classes.schemas import SignupOut
from models.evening_classes.tables import EveningClass, Signup
from models.evening_classes.visibility import get_class, in_audience, invitations
from models.notifications import service as notifications
from models.notifications.allowance import Templates

# Sign-ups are written in batches (group commit, see infra.group_commit): in a rush the requests that
# arrive while one batch is being written go together in the next. A batch reads its classes, checks
# each request in Python, then takes every place in ONE statement sent in autocommit: its own
# transaction, which holds the class locks only while PostgreSQL runs it and commits, never across a
# round trip to this process (whose event loop, busy with the rush, would make every other batch wait).
# The statements go on the asyncpg connection: a rush is CPU-bound, and SQLAlchemy costs several times
# what PostgreSQL spends on them (see infra.db.driver_connection). scripts/bench_signups.py runs
# TAKE_PLACES in pgbench.
CLASSES = """
SELECT id, school_id, course_id, title, place, starts_at, audience, audience_grades,
       audience_classroom_ids, signup_opens_at, signup_closes_at
  FROM evening_class
 WHERE id = ANY($1::uuid[])"""
# $1, $2: the requests that passed the checks, in arrival order (class, parent; no parent twice in one
# class). $3..: the reminder of each, written for those who get a seat.
# The classes are locked in id order (two batches cannot deadlock); the locked rows are the latest
# versions, so seats, waitlist lengths and cancellation are exact. Seats go in arrival order, then
# waitlist places, numbered behind those already waiting. Each request gets back 'confirmed' or
# 'waitlisted' (with its position), 'cancelled' (the class was), or NULL (already holds a place).
# Whether a parent already holds a place is read from the statement's snapshot, taken before the locks
# were granted: a place committed in between (the same parent through the other process) makes the
# INSERT fail on the partial unique index, nothing is written, and the batch is sent again
# (RetryBatch), then seeing it.
TAKE_PLACES = f"""
WITH asked AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS a(class_id, parent_user_id, n)
), locked AS (
    SELECT id, capacity - confirmed_count AS free, waitlisted_count AS waiting,
           cancelled_at IS NOT NULL AS cancelled
      FROM evening_class
     WHERE id = ANY($1::uuid[])
     ORDER BY id
       FOR UPDATE
), ranked AS (
    SELECT a.class_id, a.parent_user_id, a.n, l.free, l.waiting,
           row_number() OVER (PARTITION BY a.class_id ORDER BY a.n) AS rank
      FROM asked AS a JOIN locked AS l ON l.id = a.class_id
     WHERE NOT l.cancelled
       AND NOT EXISTS (SELECT FROM signup AS s
                        WHERE s.class_id = a.class_id AND s.parent_user_id = a.parent_user_id
                          AND s.status <> 'cancelled')
), new AS (
    SELECT class_id, parent_user_id, n,
           CASE WHEN rank <= free THEN 'confirmed' ELSE 'waitlisted' END AS status,
           CASE WHEN rank > free THEN waiting + rank - free END AS position
      FROM ranked
), placed AS (
    INSERT INTO signup (id, class_id, parent_user_id, status, waitlist_seq)
    SELECT gen_random_uuid(), class_id, parent_user_id, status, nextval('waitlist_seq') FROM new ORDER BY n
    RETURNING class_id, parent_user_id, status
), counted AS (
    UPDATE evening_class AS e
       SET confirmed_count = e.confirmed_count + c.confirmed,
           waitlisted_count = e.waitlisted_count + c.waiting
      FROM (SELECT class_id, count(*) FILTER (WHERE status = 'confirmed') AS confirmed,
                   count(*) FILTER (WHERE status = 'waitlisted') AS waiting
              FROM placed GROUP BY class_id) AS c
     WHERE e.id = c.class_id
), reminded AS ({
    notifications.insert_jobs(
        f"{notifications.jobs_unnest(3)} JOIN placed AS p"
        " ON p.class_id = j.subject_id AND p.parent_user_id = j.user_id AND p.status = 'confirmed'"
    )
}
)
SELECT a.n, CASE WHEN l.cancelled THEN 'cancelled' ELSE new.status END AS status, new.position
  FROM asked AS a JOIN locked AS l ON l.id = a.class_id LEFT JOIN new USING (n)
 ORDER BY a.n"""  # noqa: S608 - constants only


@dataclass(frozen=True, slots=True)
class ClassRules:
    """What a sign-up checks of its class before taking a place: audience and window, which do not
    change once the class is scheduled, so they are read without a lock (whether the class was
    cancelled is checked under it, by TAKE_PLACES)."""

    id: uuid.UUID
    school_id: uuid.UUID
    course_id: uuid.UUID
    title: str
    place: str | None
    starts_at: datetime
    audience: str
    audience_grades: list[int] | None
    audience_classroom_ids: list[uuid.UUID] | None
    signup_opens_at: datetime
    signup_closes_at: datetime


@dataclass(frozen=True, slots=True)
class SignupRequest:
    """One parent asking for a place in one class, at `now`."""

    principal: Principal
    class_id: uuid.UUID
    now: datetime
    templates: Templates


async def sign_up_batch(
    driver: asyncpg.Connection, requests: Sequence[SignupRequest]
) -> list[SignupOut | AppError]:
    """Sign up every request: a seat while the class has one, else a place on its waitlist. Each
    request gets its answer, or the error it alone caused (the others are still written).

    `driver` must be in autocommit: the places are taken by one statement, its own transaction (see
    TAKE_PLACES). Within a batch, requests are served in the order they arrived."""
    rows = await driver.fetch(CLASSES, list({r.class_id for r in requests}))
    classes = {row["id"]: ClassRules(**row) for row in rows}
    invited = await invitations(driver, classes.values(), [r.principal for r in requests])

    answers: list[SignupOut | AppError | None] = []
    asked: list[tuple[int, SignupRequest, ClassRules]] = []
    seen: set[tuple[uuid.UUID, uuid.UUID]] = set()
    for request in requests:
        evening = classes.get(request.class_id)
        if evening is None or not in_audience(request.principal, evening, invited):
            answers.append(NotFound("夜校课程不存在"))
        elif (refusal := _refusal(request, evening, seen)) is not None:
            answers.append(refusal)
        else:
            seen.add((evening.id, request.principal.id))
            asked.append((len(answers), request, evening))
            answers.append(None)
    if asked:
        try:
            taken = await driver.fetch(
                TAKE_PLACES,
                [evening.id for _, _, evening in asked],
                [request.principal.id for _, request, _ in asked],
                *notifications.job_arrays(
                    [class_reminder(evening, r.principal.id, r.templates, r.now) for _, r, evening in asked]
                ),
            )
        except asyncpg.UniqueViolationError as overtaken:
            if overtaken.constraint_name != "uq_signup_live":
                raise
            raise RetryBatch from overtaken
        for (answer, _, evening), row in zip(asked, taken, strict=True):
            if row["status"] is None:
                answers[answer] = AlreadySignedUp()
            elif row["status"] == "cancelled":
                answers[answer] = ClassCancelled()
            else:
                answers[answer] = SignupOut(
                    class_id=evening.id, status=row["status"], position=row["position"]
                )
    return [a for a in answers if a is not None]


def _refusal(
    request: SignupRequest, evening: ClassRules, seen: set[tuple[uuid.UUID, uuid.UUID]]
) -> AppError | None:
    """Why a parent in the class's audience may not sign up now, if they may not (`seen`: the places
    asked for earlier in the same batch)."""
    if not evening.signup_opens_at <= request.now < evening.signup_closes_at:
        return SignupClosed(
            f"报名时间：{message_time(evening.signup_opens_at)} 至 {message_time(evening.signup_closes_at)}"
        )
    if (evening.id, request.principal.id) in seen:
        return AlreadySignedUp()
    return None


async def cancel_signup(
    session: AsyncSession, principal: Principal, class_id: uuid.UUID, now: datetime, templates: Templates
) -> Signup | None:
    """Cancel the caller's sign-up; a freed seat goes to the first on the waitlist, who is returned."""
    await get_class(session, principal, class_id, as_parent=True)
    evening = (
        await session.execute(
            select(EveningClass)
            .where(EveningClass.id == class_id)
            .with_for_update()
            # The row as it is once locked, not as get_class() read it before (another cancellation
            # may have committed in between): confirmed_count is decremented from this value.
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    mine = (
        await session.execute(
            select(Signup)
            .where(
                Signup.class_id == class_id,
                Signup.parent_user_id == principal.id,
                Signup.status != "cancelled",
            )
            .with_for_update()
        )
    ).scalar_one_or_none()
    if mine is None:
        raise NotSignedUp()
    if now > evening.cancel_deadline:
        raise CancelClosed(f"取消截止时间：{message_time(evening.cancel_deadline)}")
    was_confirmed = mine.status == "confirmed"
    if not was_confirmed:
        evening.waitlisted_count -= 1
    mine.status, mine.cancelled_at = "cancelled", now
    await notifications.cancel(session, kind="class_reminder", user_id=principal.id, subject_id=evening.id)
    promoted = None
    if was_confirmed:
        promoted = (
            await session.execute(
                select(Signup)
                .where(Signup.class_id == class_id, Signup.status == "waitlisted")
                .order_by(Signup.waitlist_seq)
                .limit(1)
                .with_for_update()
            )
        ).scalar_one_or_none()
        if promoted is not None:
            promoted.status, promoted.promoted_at = "confirmed", now
            evening.waitlisted_count -= 1
            promotion = notifications.Job(
                kind="waitlist_promoted",
                user_id=promoted.parent_user_id,
                subject_id=promoted.id,  # a new sign-up after a cancel gets its own message
                due_at=now,
                template_id=templates.waitlist_promoted,
                page=f"pages/evening-class/detail?id={evening.id}",
                data={
                    "thing1": evening.title[:20],
                    "time2": message_time(evening.starts_at),
                    "thing3": "候补成功，已为您保留座位",
                },
                expires_at=evening.starts_at,
            )
            reminder = class_reminder(evening, promoted.parent_user_id, templates, now)
            await notifications.enqueue(session, [promotion, reminder])
        else:
            evening.confirmed_count -= 1
    await session.flush()
    return promoted
