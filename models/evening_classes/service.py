"""Evening-class use cases: schedule, list, sign up, cancel, check in, roster, per-term counts."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

import asyncpg
from sqlalchemy import ColumnElement, and_, false, func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from course_catalog.schema import Tier
from infra.clock import SHANGHAI
from infra.db import driver_connection
from infra.errors import AppError, Conflict, Forbidden, NotFound, ValidationFailed
from infra.group_commit import RetryBatch
from models.accounts.auth import audit
from models.accounts.principal import Principal
from models.accounts.rules import Role
from models.accounts.tables import Classroom, School, Student, User
from models.catalog.service import get_course
from models.catalog.tables import Course, CourseAssignment
from models.evening_classes.rules import DEFAULT_CLASSES_PER_TERM, check_token, checkin_open, term_of
from models.evening_classes.schemas import (
    AttendanceOut,
    DistrictTermSummary,
    EveningClassIn,
    EveningClassOut,
    EveningClassQuery,
    MySignup,
    RosterEntry,
    RosterOut,
    SignupOut,
    TermSummary,
)
from models.evening_classes.tables import Attendance, EveningClass, Signup, TermRequirement
from models.learning.rules import school_year_of
from models.learning.service import credit_hours
from models.notifications import service as notifications
from models.notifications.allowance import Templates
from models.pagination import PageQuery, keyset_page

DEFAULT_LIST_DAYS = 60
SCHEDULABLE_TIERS = {Tier.foundation.value, Tier.general.value, Tier.custom.value}


class SignupClosed(Conflict):
    code, title = "signup_closed", "不在报名时间内"


class AlreadySignedUp(Conflict):
    code, title = "already_signed_up", "已经报过名了"


class NotSignedUp(NotFound):
    code, title = "not_signed_up", "没有报名这节课"


class CancelClosed(Conflict):
    code, title = "cancel_closed", "已过取消报名的截止时间"


class CheckinClosed(Conflict):
    code, title = "checkin_closed", "现在不是签到时间"


class CheckinTokenExpired(Conflict):
    code, title = "checkin_token_expired", "签到码已过期，请重新扫描老师屏幕上的二维码"


class CheckinTokenInvalid(ValidationFailed):
    code, title = "invalid_checkin_token", "签到码无效"


class NotConfirmed(Conflict):
    code, title = "not_confirmed", "候补中的家长不能扫码签到，请联系老师"


class ClassCancelled(Conflict):
    code, title = "class_cancelled", "这节课已取消"


# ---- scheduling --------------------------------------------------------------------------------
async def schedule(
    session: AsyncSession, principal: Principal, school: School, data: EveningClassIn, now: datetime
) -> EveningClass:
    course = await get_course(session, principal, data.course_id)
    if course.tier not in SCHEDULABLE_TIERS:
        raise ValidationFailed(
            "网络课不能开设为夜校", errors=[{"loc": ["body", "course_id"], "msg": "online course"}]
        )
    if course.school_id not in (None, school.id) or course.district_id not in (None, school.district_id):
        raise ValidationFailed(
            "课程不属于本校", errors=[{"loc": ["body", "course_id"], "msg": "not this school's"}]
        )
    if data.audience == "invited" and course.tier != Tier.custom.value:
        raise ValidationFailed(
            "只有定制课可以只面向受邀家庭", errors=[{"loc": ["body", "audience"], "msg": "not custom"}]
        )
    if data.classroom_ids:
        found = await session.execute(
            select(func.count())
            .select_from(Classroom)
            .where(Classroom.id.in_(data.classroom_ids), Classroom.school_id == school.id)
        )
        if found.scalar_one() != len(set(data.classroom_ids)):
            raise ValidationFailed(
                "有班级不属于本校", errors=[{"loc": ["body", "classroom_ids"], "msg": "unknown classroom"}]
            )
    opens = data.signup_opens_at or now
    closes = data.signup_closes_at or data.starts_at
    deadline = data.cancel_deadline or max(opens, data.starts_at - timedelta(hours=24))
    if not opens < closes <= data.ends_at or deadline > data.starts_at:
        raise ValidationFailed(
            "报名开始须早于截止，截止不晚于下课；取消截止不晚于开课",
            errors=[{"loc": ["body", "signup_closes_at"], "msg": "inconsistent windows"}],
        )
    evening = EveningClass(
        school_id=school.id,
        course_id=course.id,
        title=data.title or course.title,
        term=term_of(data.starts_at),
        starts_at=data.starts_at,
        ends_at=data.ends_at,
        place=data.place,
        meeting_url=str(data.meeting_url) if data.meeting_url else None,
        capacity=data.capacity,
        confirmed_count=0,
        audience=data.audience,
        audience_grades=sorted(set(data.grades)) if data.grades else None,
        audience_classroom_ids=list(dict.fromkeys(data.classroom_ids)) if data.classroom_ids else None,
        signup_opens_at=opens,
        signup_closes_at=closes,
        cancel_deadline=deadline,
        created_by=principal.id,
    )
    session.add(evening)
    await session.flush()
    audit(
        session,
        "evening_class.scheduled",
        actor=principal.id,
        school_id=school.id,
        target_type="evening_class",
        target_id=evening.id,
    )
    return evening


# ---- who may see which class -----------------------------------------------------------------------
def _audience_of_children(principal: Principal) -> ColumnElement[bool]:
    clauses = []
    for child in principal.children:
        assigned = select(CourseAssignment.course_id).where(CourseAssignment.student_id == child.id)
        clauses.append(
            and_(
                EveningClass.school_id == child.school_id,
                or_(
                    EveningClass.audience == "school",
                    and_(
                        EveningClass.audience == "grades", EveningClass.audience_grades.any_() == child.grade
                    ),
                    and_(
                        EveningClass.audience == "classrooms",
                        EveningClass.audience_classroom_ids.any_() == child.classroom_id,
                    ),
                    and_(EveningClass.audience == "invited", EveningClass.course_id.in_(assigned)),
                ),
            )
        )
    return or_(*clauses) if clauses else false()


STAFF = frozenset({Role.teacher, Role.school_admin, Role.district_admin})


def _staff_scope(principal: Principal, *, readers: bool = False) -> ColumnElement[bool]:
    """Classes of schools where the caller is staff; with `readers`, also what evaluators may see."""
    schools = [s.id for s in principal.schools if {Role.teacher, Role.school_admin} & set(s.roles)]
    district_roles = {Role.district_admin, Role.evaluator} if readers else {Role.district_admin}
    districts = [d.id for d in principal.districts if district_roles & set(d.roles)]
    return or_(
        EveningClass.school_id.in_(schools) if schools else false(),
        EveningClass.school_id.in_(select(School.id).where(School.district_id.in_(districts)))
        if districts
        else false(),
    )


def visible_to(principal: Principal) -> ColumnElement[bool]:
    return or_(_audience_of_children(principal), _staff_scope(principal, readers=True))


def _in_audience(
    principal: Principal, evening: EveningClass | ClassRules, invited: set[tuple[uuid.UUID, uuid.UUID]]
) -> bool:
    """_audience_of_children() for a class already read: the same rule, checked in Python (a sign-up rush
    reads its classes anyway, and building that SQL cost more than the query). `invited` holds the
    (course, student) assignments of the parent's children, from _invitations()."""
    children = [c for c in principal.children if c.school_id == evening.school_id]
    if evening.audience == "school":
        return bool(children)
    if evening.audience == "grades":
        return any(c.grade in (evening.audience_grades or ()) for c in children)
    if evening.audience == "classrooms":
        return any(c.classroom_id in (evening.audience_classroom_ids or ()) for c in children)
    if evening.audience == "invited":
        return any((evening.course_id, c.id) in invited for c in children)
    return False


async def _invitations(
    driver: asyncpg.Connection, classes: Iterable[EveningClass | ClassRules], principals: Iterable[Principal]
) -> set[tuple[uuid.UUID, uuid.UUID]]:
    """The (course, student) assignments that invite these parents' children to these classes (a query
    only when one of the classes is for invited families)."""
    courses = list({c.course_id for c in classes if c.audience == "invited"})
    if not courses:
        return set()
    students = list({child.id for p in principals for child in p.children})
    return {(row["course_id"], row["student_id"]) for row in await driver.fetch(_INVITED, courses, students)}


async def get_class(
    session: AsyncSession,
    principal: Principal,
    class_id: uuid.UUID,
    *,
    as_parent: bool = False,
) -> EveningClass:
    """A class the caller may see (as a parent: one they are in the audience of), else 404."""
    if as_parent:
        stmt = select(EveningClass).where(EveningClass.id == class_id)
    else:
        stmt = select(EveningClass).where(EveningClass.id == class_id, visible_to(principal))
    found = (await session.execute(stmt)).scalar_one_or_none()
    if found is not None and as_parent:
        invited = await _invitations(await driver_connection(session), [found], [principal])
        if not _in_audience(principal, found, invited):
            found = None
    if found is None:
        raise NotFound("夜校课程不存在")
    return found


async def staff_class(session: AsyncSession, principal: Principal, class_id: uuid.UUID) -> EveningClass:
    """A class of a school where the caller is a teacher or admin (or its district admin): 403 for
    other roles, 404 for other schools' classes."""
    if not principal.has_any(STAFF):
        raise Forbidden()
    found = (
        await session.execute(
            select(EveningClass).where(EveningClass.id == class_id, _staff_scope(principal))
        )
    ).scalar_one_or_none()
    if found is None or (
        found.audience == "invited" and not await _may_run_invited(session, principal, found)
    ):
        raise NotFound("夜校课程不存在")
    return found


async def _may_run_invited(session: AsyncSession, principal: Principal, evening: EveningClass) -> bool:
    """An invitation-only class names families in difficult circumstances: its roster is for its
    organiser, the school's admins (and its district's), and the head teachers of the invited children's
    classrooms; not for every teacher of the school."""
    if evening.created_by == principal.id or Role.school_admin in principal.school_roles(evening.school_id):
        return True
    school = await session.get(School, evening.school_id)
    if school is not None and Role.district_admin in principal.district_roles(school.district_id):
        return True
    teacher_id = principal.teacher_id(evening.school_id)
    if teacher_id is None:
        return False
    heads_an_invited_classroom = await session.scalar(
        select(func.count())
        .select_from(CourseAssignment)
        .join(Student, Student.id == CourseAssignment.student_id)
        .join(Classroom, Classroom.id == Student.classroom_id)
        .where(
            CourseAssignment.course_id == evening.course_id,
            Student.school_id == evening.school_id,
            Classroom.head_teacher_id == teacher_id,
        )
    )
    return bool(heads_an_invited_classroom)


# ---- listing -----------------------------------------------------------------------------------
async def list_classes(
    session: AsyncSession, principal: Principal, query: EveningClassQuery, now: datetime
) -> tuple[list[EveningClassOut], str | None]:
    start = query.from_ or now.astimezone(SHANGHAI).date()
    end = query.to or start + timedelta(days=DEFAULT_LIST_DAYS)
    if end < start:
        raise ValidationFailed(errors=[{"loc": ["query", "to"], "msg": "must not be before from"}])
    # My sign-ups stay mine to see even if my child has since left the class's audience.
    signed_up = EveningClass.id.in_(
        select(Signup.class_id).where(Signup.parent_user_id == principal.id, Signup.status != "cancelled")
    )
    stmt = select(EveningClass).where(
        signed_up if query.mine else visible_to(principal),
        EveningClass.starts_at >= datetime.combine(start, time.min, SHANGHAI),
        EveningClass.starts_at < datetime.combine(end + timedelta(days=1), time.min, SHANGHAI),
    )
    rows, cursor = await keyset_page(
        session,
        stmt,
        [EveningClass.starts_at, EveningClass.id],
        PageQuery(limit=query.limit, cursor=query.cursor),
    )
    return await describe(session, principal, rows), cursor


async def describe(
    session: AsyncSession, principal: Principal, rows: list[EveningClass]
) -> list[EveningClassOut]:
    if not rows:
        return []
    ids = [r.id for r in rows]
    courses = {
        c.id: c
        for c in (
            await session.execute(select(Course).where(Course.id.in_({r.course_id for r in rows})))
        ).scalars()
    }
    mine: dict[uuid.UUID, MySignup] = {}
    for signup, present in await session.execute(
        select(Signup, Attendance.id.is_not(None))
        .outerjoin(
            Attendance,
            and_(Attendance.class_id == Signup.class_id, Attendance.parent_user_id == Signup.parent_user_id),
        )
        .where(Signup.class_id.in_(ids), Signup.parent_user_id == principal.id, Signup.status != "cancelled")
    ):
        position = (
            await _position(session, signup.class_id, signup.waitlist_seq)
            if signup.status == "waitlisted"
            else None
        )
        mine[signup.class_id] = MySignup(status=signup.status, position=position, present=bool(present))
    return [
        EveningClassOut(
            id=r.id,
            school_id=r.school_id,
            course_id=r.course_id,
            tier=courses[r.course_id].tier,
            class_hours=courses[r.course_id].class_hours,
            title=r.title,
            term=r.term,
            starts_at=r.starts_at,
            ends_at=r.ends_at,
            place=r.place,
            meeting_url=r.meeting_url,
            capacity=r.capacity,
            seats_left=r.capacity - r.confirmed_count,
            audience=r.audience,
            grades=r.audience_grades,
            classroom_ids=r.audience_classroom_ids,
            signup_opens_at=r.signup_opens_at,
            signup_closes_at=r.signup_closes_at,
            cancel_deadline=r.cancel_deadline,
            cancelled=r.cancelled_at is not None,
            my_signup=mine.get(r.id),
        )
        for r in rows
    ]


async def _position(session: AsyncSession, class_id: uuid.UUID, waitlist_seq: int) -> int:
    """Where a waitlisted sign-up stands: 1 for the next to be promoted."""
    driver = await driver_connection(session)
    return int(await driver.fetchval(_WAITLIST_POSITION, class_id, waitlist_seq))


# ---- signing up and cancelling ------------------------------------------------------------------------
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
_INVITED = """
SELECT course_id, student_id FROM course_assignment
 WHERE course_id = ANY($1::uuid[]) AND student_id = ANY($2::uuid[])"""
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
_WAITLIST_POSITION = """
SELECT count(*) FROM signup WHERE class_id = $1 AND status = 'waitlisted' AND waitlist_seq <= $2"""


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
    invited = await _invitations(driver, classes.values(), [r.principal for r in requests])

    answers: list[SignupOut | AppError | None] = []
    asked: list[tuple[int, SignupRequest, ClassRules]] = []
    seen: set[tuple[uuid.UUID, uuid.UUID]] = set()
    for request in requests:
        evening = classes.get(request.class_id)
        if evening is None or not _in_audience(request.principal, evening, invited):
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
                    [_reminder(evening, r.principal.id, r.templates, r.now) for _, r, evening in asked]
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
            f"报名时间：{_local(evening.signup_opens_at)} 至 {_local(evening.signup_closes_at)}"
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
        raise CancelClosed(f"取消截止时间：{_local(evening.cancel_deadline)}")
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
                    "time2": _local(evening.starts_at),
                    "thing3": "候补成功，已为您保留座位",
                },
                expires_at=evening.starts_at,
            )
            reminder = _reminder(evening, promoted.parent_user_id, templates, now)
            await notifications.enqueue(session, [promotion, reminder])
        else:
            evening.confirmed_count -= 1
    await session.flush()
    return promoted


# ---- check-in and attendance ---------------------------------------------------------------------
async def check_in(
    session: AsyncSession, principal: Principal, class_id: uuid.UUID, token: str, key: bytes, now: datetime
) -> AttendanceOut:
    evening = await get_class(session, principal, class_id, as_parent=True)
    verdict = check_token(key, str(evening.id), token, now)
    if verdict == "invalid":
        raise CheckinTokenInvalid(errors=[{"loc": ["body", "token"], "msg": "invalid token"}])
    if verdict == "expired":
        raise CheckinTokenExpired()
    if not checkin_open(evening.starts_at, evening.ends_at, now):
        raise CheckinClosed()
    signup = (
        await session.execute(
            select(Signup).where(
                Signup.class_id == class_id,
                Signup.parent_user_id == principal.id,
                Signup.status != "cancelled",
            )
        )
    ).scalar_one_or_none()
    if signup is None:
        raise NotSignedUp()
    if signup.status != "confirmed":
        raise NotConfirmed()
    return await record_attendance(session, evening, principal.id, method="qr", marked_by=principal.id)


async def mark_on_roster(
    session: AsyncSession, principal: Principal, class_id: uuid.UUID, parent_id: uuid.UUID, now: datetime
) -> AttendanceOut:
    """The teacher marks a parent present (a phone that fails, a paper list); live sign-ups only."""
    evening = await staff_class(session, principal, class_id)
    if now < evening.starts_at - timedelta(minutes=30):
        raise CheckinClosed("课程开始前不能登记出席")
    signup = (
        await session.execute(
            select(Signup).where(
                Signup.class_id == class_id, Signup.parent_user_id == parent_id, Signup.status != "cancelled"
            )
        )
    ).scalar_one_or_none()
    if signup is None:
        raise NotSignedUp("这位家长没有报名这节课")
    if signup.status != "confirmed":  # as at the QR check-in: a waitlisted parent holds no seat
        raise NotConfirmed("这位家长在候补名单上，没有座位，不能登记出席")
    return await record_attendance(session, evening, parent_id, method="roster", marked_by=principal.id)


async def record_attendance(
    session: AsyncSession, evening: EveningClass, parent_id: uuid.UUID, *, method: str, marked_by: uuid.UUID
) -> AttendanceOut:
    """Present once; the course's class hours are credited once, whatever marks it again."""
    inserted = await session.execute(
        insert(Attendance)
        .values(
            id=uuid.uuid4(), class_id=evening.id, parent_user_id=parent_id, method=method, marked_by=marked_by
        )
        .on_conflict_do_nothing(index_elements=["class_id", "parent_user_id"])
        .returning(Attendance.id)
    )
    if inserted.scalar_one_or_none() is None:
        existing = (
            await session.execute(
                select(Attendance.method).where(
                    Attendance.class_id == evening.id, Attendance.parent_user_id == parent_id
                )
            )
        ).scalar_one()
        return AttendanceOut(
            class_id=evening.id, parent_id=parent_id, present=True, method=existing, already_recorded=True
        )
    course = await session.get(Course, evening.course_id)
    assert course is not None
    await credit_hours(
        session,
        parent_id=parent_id,
        school_year=school_year_of(evening.starts_at),
        tier=course.tier,
        class_hours=course.class_hours,
        source="evening_class",
        source_key=f"evening:{evening.id}:{parent_id}",
        course_id=course.id,
        actor=marked_by,
    )
    return AttendanceOut(
        class_id=evening.id, parent_id=parent_id, present=True, method=method, already_recorded=False
    )


async def roster(session: AsyncSession, principal: Principal, class_id: uuid.UUID) -> RosterOut:
    evening = await staff_class(session, principal, class_id)
    rows = (
        await session.execute(
            select(Signup, User.display_name, Attendance.id.is_not(None))
            .join(User, User.id == Signup.parent_user_id)
            .outerjoin(
                Attendance,
                and_(
                    Attendance.class_id == Signup.class_id, Attendance.parent_user_id == Signup.parent_user_id
                ),
            )
            .where(Signup.class_id == class_id, Signup.status != "cancelled")
            .order_by(Signup.status, Signup.waitlist_seq)
        )
    ).all()
    entries: list[RosterEntry] = []
    waiting = 0
    for signup, name, present in rows:
        position = None
        if signup.status == "waitlisted":
            waiting += 1
            position = waiting
        entries.append(
            RosterEntry(
                parent_id=signup.parent_user_id,
                display_name=name,
                status=signup.status,
                position=position,
                present=bool(present),
            )
        )
    return RosterOut(
        class_id=evening.id,
        capacity=evening.capacity,
        confirmed=sum(1 for e in entries if e.status == "confirmed"),
        waitlisted=waiting,
        present=sum(1 for e in entries if e.present),
        items=entries,
    )


# ---- per-term counts ------------------------------------------------------------------------------
async def term_summaries(
    session: AsyncSession,
    schools: list[School],
    term: str,
    now: datetime,
    required: int = DEFAULT_CLASSES_PER_TERM,
) -> list[TermSummary]:
    """Per school: classes scheduled and held (ended, with attendance recorded), seats, sign-ups, presence."""
    school_ids = [s.id for s in schools]
    attended = (
        select(Attendance.class_id, func.count().label("present")).group_by(Attendance.class_id).subquery()
    )
    rows = await session.execute(
        select(
            EveningClass.school_id,
            func.count(),
            func.count().filter(and_(EveningClass.ends_at < now, attended.c.present > 0)),
            func.coalesce(func.sum(EveningClass.capacity), 0),
            func.coalesce(func.sum(EveningClass.confirmed_count), 0),
            func.coalesce(func.sum(attended.c.present).filter(EveningClass.ends_at < now), 0),
            func.coalesce(
                func.sum(EveningClass.confirmed_count).filter(
                    and_(EveningClass.ends_at < now, attended.c.present > 0)
                ),
                0,
            ),
        )
        .outerjoin(attended, attended.c.class_id == EveningClass.id)
        .where(
            EveningClass.school_id.in_(school_ids),
            EveningClass.term == term,
            EveningClass.cancelled_at.is_(None),
        )
        .group_by(EveningClass.school_id)
    )
    by_school: dict[uuid.UUID, Any] = {r[0]: r[1:] for r in rows}
    out = []
    for school in schools:
        scheduled, held, seats, confirmed, present, confirmed_held = by_school.get(
            school.id, (0, 0, 0, 0, 0, 0)
        )
        out.append(
            TermSummary(
                school_id=school.id,
                school_name=school.name,
                term=term,
                required=required,
                scheduled=scheduled,
                held=held,
                meets_requirement=held >= required,
                seats=int(seats),
                confirmed_signups=int(confirmed),
                attended=int(present),
                signup_rate=round(int(confirmed) / int(seats), 4) if seats else 0.0,
                attendance_rate=round(int(present) / int(confirmed_held), 4) if confirmed_held else 0.0,
            )
        )
    return out


REMINDER_BEFORE = timedelta(days=1)


def _reminder(
    evening: EveningClass | ClassRules, parent_id: uuid.UUID, templates: Templates, now: datetime
) -> notifications.Job:
    """The day-before reminder for a confirmed seat (at once if the class is sooner than that); not
    sent at all once the class has begun."""
    return notifications.Job(
        kind="class_reminder",
        user_id=parent_id,
        subject_id=evening.id,
        due_at=max(now, evening.starts_at - REMINDER_BEFORE),
        template_id=templates.class_reminder,
        page=f"pages/evening-class/detail?id={evening.id}",
        data={
            "thing1": evening.title[:20],
            "time2": _local(evening.starts_at),
            "thing3": (evening.place or "线上")[:20],
        },
        expires_at=evening.starts_at,  # once the class has begun, a reminder only confuses
    )


@functools.lru_cache(maxsize=256)
def _local(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).strftime("%m月%d日 %H:%M")


async def required_per_term(session: AsyncSession, district_id: uuid.UUID, term: str) -> int:
    found = await session.execute(
        select(TermRequirement.required).where(
            TermRequirement.district_id == district_id, TermRequirement.term == term
        )
    )
    required = found.scalar_one_or_none()
    return DEFAULT_CLASSES_PER_TERM if required is None else required


async def set_required_per_term(
    session: AsyncSession, district_id: uuid.UUID, term: str, required: int, actor: uuid.UUID
) -> None:
    await session.execute(
        insert(TermRequirement)
        .values(id=uuid.uuid4(), district_id=district_id, term=term, required=required)
        .on_conflict_do_update(index_elements=["district_id", "term"], set_={"required": required})
    )
    audit(
        session,
        "evening_class_requirement.updated",
        actor=actor,
        target_type="district",
        target_id=district_id,
        term=term,
        required=required,
    )


async def district_summary(
    session: AsyncSession, district_id: uuid.UUID, term: str, now: datetime
) -> DistrictTermSummary:
    """One row per school, the schools below the requirement first."""
    schools = list(
        (
            await session.execute(
                select(School).where(School.district_id == district_id).order_by(School.name)
            )
        ).scalars()
    )
    required = await required_per_term(session, district_id, term)
    rows = await term_summaries(session, schools, term, now, required)
    rows.sort(key=lambda r: (r.meets_requirement, r.held, r.school_name))
    return DistrictTermSummary(
        district_id=district_id,
        term=term,
        required=required,
        schools_below_requirement=sum(1 for r in rows if not r.meets_requirement),
        items=rows,
    )
