"""A teacher's visits to make this school year, and the students a school admin asks them to visit."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import and_, func, literal, select, union_all
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from models.accounts.principal import Principal
from models.accounts.tables import Classroom, School, Student, Teacher
from models.home_visits.errors import StudentNotFound, invalid
from models.home_visits.schemas import AssignmentIn, AssignmentOut, LastVisit, TodoItem, TodoOut
from models.home_visits.tables import HomeVisit, HomeVisitAssignment, HomeVisitStudent
from models.learning.rules import school_year_of, valid_school_year


def school_year(given: str | None, now: datetime) -> str:
    year = given or school_year_of(now)
    if not valid_school_year(year):
        raise invalid("school_year", "学年格式应为 2025-2026")
    return year


async def todo(session: AsyncSession, principal: Principal, year: str) -> TodoOut:
    teacher_ids = [s.teacher_id for s in principal.schools if s.teacher_id is not None]
    headed = (
        select(Student.id.label("student_id"), literal("head_teacher").label("reason"))
        .join(Classroom, Classroom.id == Student.classroom_id)
        .where(Classroom.head_teacher_id.in_(teacher_ids))
    )
    assigned = select(HomeVisitAssignment.student_id, literal("assigned").label("reason")).where(
        HomeVisitAssignment.teacher_id.in_(teacher_ids), HomeVisitAssignment.school_year == year
    )
    mine = union_all(headed, assigned).subquery()
    reason = func.min(mine.c.reason).label("reason")  # 'assigned' < 'head_teacher': either will do
    picked = select(mine.c.student_id, reason).group_by(mine.c.student_id).subquery()
    last = (
        select(
            HomeVisitStudent.student_id,
            HomeVisit.id.label("visit_id"),
            HomeVisit.visited_at,
            HomeVisit.mode,
            func.row_number()
            .over(partition_by=HomeVisitStudent.student_id, order_by=HomeVisit.visited_at.desc())
            .label("n"),
        )
        .join(HomeVisit, HomeVisit.id == HomeVisitStudent.visit_id)
        .where(
            HomeVisit.status == "submitted",
            HomeVisit.school_year == year,
            HomeVisitStudent.student_id.in_(select(picked.c.student_id)),
        )
        .subquery()
    )
    rows = await session.execute(
        select(Student, Classroom.name, picked.c.reason, last.c.visit_id, last.c.visited_at, last.c.mode)
        .join(picked, picked.c.student_id == Student.id)
        .join(Classroom, Classroom.id == Student.classroom_id)
        .outerjoin(last, and_(last.c.student_id == Student.id, last.c.n == 1))
        .order_by(last.c.visited_at.asc().nulls_first(), Classroom.name, Student.student_no, Student.id)
    )
    items = [
        TodoItem(
            student_id=student.id,
            student_name=student.name,
            school_id=student.school_id,
            classroom_id=student.classroom_id,
            classroom_name=classroom_name,
            reason=why,
            last_visit=LastVisit(visit_id=vid, visited_at=at, mode=mode) if vid is not None else None,
        )
        for student, classroom_name, why, vid, at, mode in rows
    ]
    return TodoOut(
        school_year=year,
        students=len(items),
        visited=sum(1 for i in items if i.last_visit is not None),
        items=items,
    )


async def assign(session: AsyncSession, school: School, data: AssignmentIn, year: str) -> AssignmentOut:
    teacher = await session.get(Teacher, data.teacher_id)
    if teacher is None or teacher.school_id != school.id:
        raise invalid("teacher_id", "老师须是本校老师", code="teacher_not_of_school")
    wanted = set(data.student_ids)
    found = set(
        (
            await session.execute(
                select(Student.id).where(Student.id.in_(wanted), Student.school_id == school.id)
            )
        ).scalars()
    )
    if found != wanted:
        raise StudentNotFound()
    await session.execute(
        pg_insert(HomeVisitAssignment)
        .values(
            [
                {
                    "id": uuid.uuid4(),
                    "school_id": school.id,
                    "teacher_id": teacher.id,
                    "student_id": s,
                    "school_year": year,
                }
                for s in sorted(wanted)
            ]
        )
        .on_conflict_do_nothing()
    )
    return AssignmentOut(school_year=year, teacher_id=teacher.id, assigned=len(wanted))
