"""Who sees which class: a parent the classes whose audience one of their children is in (and those
they signed up for), staff their schools' classes, district admins and evaluators their district's;
reading one class or a page of them, and how a class reads to the caller (with their own sign-up)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING

import asyncpg
from sqlalchemy import ColumnElement, and_, false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from infra.clock import SHANGHAI
from infra.db import driver_connection
from infra.errors import Forbidden, NotFound, ValidationFailed
from models.accounts.principal import Principal
from models.accounts.rules import Role
from models.accounts.tables import Classroom, School, Student
from models.catalog.tables import Course, CourseAssignment
from models.evening_classes.schemas import EveningClassOut, EveningClassQuery, MySignup
from models.evening_classes.tables import Attendance, EveningClass, Signup
from models.pagination import PageQuery, keyset_page

if TYPE_CHECKING:  # signups imports this module; ClassRules is only an annotation here
    from models.evening_classes.signups import ClassRules

DEFAULT_LIST_DAYS = 60

_INVITED = """
SELECT course_id, student_id FROM course_assignment
 WHERE course_id = ANY($1::uuid[]) AND student_id = ANY($2::uuid[])"""
_WAITLIST_POSITION = """
SELECT count(*) FROM signup WHERE class_id = $1 AND status = 'waitlisted' AND waitlist_seq <= $2"""


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


def in_audience(
    principal: Principal, evening: EveningClass | ClassRules, invited: set[tuple[uuid.UUID, uuid.UUID]]
) -> bool:
    """_audience_of_children() for a class already read: the same rule, checked in Python (a sign-up rush
    reads its classes anyway, and building that SQL cost more than the query). `invited` holds the
    (course, student) assignments of the parent's children, from invitations()."""
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


async def invitations(
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
        invited = await invitations(await driver_connection(session), [found], [principal])
        if not in_audience(principal, found, invited):
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
