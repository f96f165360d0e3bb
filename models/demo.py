"""Fixed demo data for `make run`, so every role can be tried (never loaded in production).

WeChat users (log in through the sandbox with the openid as the code):
  demo-parent-a, demo-teacher-a (school A); demo-parent-b, demo-teacher-b (school B)
Password accounts (password `demo-password`):
  demo-district-admin, demo-school-a-admin, demo-school-b-admin
Evening classes: upcoming classes at both schools open to every family of the school, one of them
("evening-a-tiny", 2 seats) small enough to show the waitlist; a fresh set each week it is started.
Loading is idempotent: ids are derived from names, existing rows are left alone.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from infra.clock import SHANGHAI
from infra.security import hash_password
from models.accounts.rules import Role
from models.accounts.tables import (
    Classroom,
    District,
    Guardianship,
    RoleGrant,
    School,
    Student,
    Teacher,
    User,
)
from models.base import Base
from models.catalog.tables import Course
from models.evening_classes.rules import term_of
from models.evening_classes.tables import EveningClass

DEMO_PASSWORD = "demo-password"  # noqa: S105 - published demo credential, development only
_NS = uuid.UUID("6b1f4a52-6f0e-4d43-9a55-8d1a2f3c0b7e")


def demo_id(name: str) -> uuid.UUID:
    return uuid.uuid5(_NS, name)


DISTRICT = demo_id("district")
SCHOOL_A = demo_id("school-a")
SCHOOL_B = demo_id("school-b")

SCHOOLS = {
    SCHOOL_A: ("演示第一实验小学", [("三年级1班", 3), ("三年级2班", 3), ("六年级1班", 6)]),
    SCHOOL_B: ("演示第二中学", [("初一1班", 7), ("初二3班", 8)]),
}
STUDENT_NAMES = ["王小明", "李思雨", "张浩然", "刘子涵", "陈一诺", "杨梓轩"]


async def _put(session: AsyncSession, model: type[Base], **values: object) -> None:
    await session.execute(insert(model).values(**values).on_conflict_do_nothing())


async def load_demo(session: AsyncSession, now: datetime, policy_version: str) -> None:
    await _put(session, District, id=DISTRICT, name="演示区")
    password = hash_password(DEMO_PASSWORD)
    await _put(
        session,
        User,
        id=demo_id("demo-district-admin"),
        username="demo-district-admin",
        password_hash=password,
        display_name="演示区教委管理员",
        failed_logins=0,
    )
    await _put(
        session,
        RoleGrant,
        id=demo_id("grant-district"),
        user_id=demo_id("demo-district-admin"),
        role=Role.district_admin,
        district_id=DISTRICT,
    )

    for (school_id, (school_name, classrooms)), letter in zip(SCHOOLS.items(), "ab", strict=True):
        await _put(session, School, id=school_id, district_id=DISTRICT, name=school_name)
        admin = demo_id(f"demo-school-{letter}-admin")
        await _put(
            session,
            User,
            id=admin,
            username=f"demo-school-{letter}-admin",
            password_hash=password,
            display_name=f"{school_name}管理员",
            failed_logins=0,
        )
        await _put(
            session,
            RoleGrant,
            id=demo_id(f"grant-school-{letter}"),
            user_id=admin,
            role=Role.school_admin,
            district_id=DISTRICT,
            school_id=school_id,
        )

        teacher_user = demo_id(f"demo-teacher-{letter}")
        await _put(
            session,
            User,
            id=teacher_user,
            wechat_openid=f"demo-teacher-{letter}",
            display_name=f"演示教师{letter.upper()}",
            failed_logins=0,
        )
        teacher = demo_id(f"teacher-{letter}")
        await _put(
            session,
            Teacher,
            id=teacher,
            school_id=school_id,
            name=f"演示教师{letter.upper()}",
            user_id=teacher_user,
        )

        for index, (classroom_name, grade) in enumerate(classrooms):
            classroom = demo_id(f"{letter}-{classroom_name}")
            await _put(
                session,
                Classroom,
                id=classroom,
                school_id=school_id,
                name=classroom_name,
                grade=grade,
                head_teacher_id=teacher if index == 0 else None,
            )
            for n, child in enumerate(STUDENT_NAMES):
                await _put(
                    session,
                    Student,
                    id=demo_id(f"{letter}-{classroom_name}-{n}"),
                    school_id=school_id,
                    classroom_id=classroom,
                    student_no=f"{letter.upper()}{grade:02d}{index}{n:02d}",
                    name=child,
                )

        parent = demo_id(f"demo-parent-{letter}")
        await _put(
            session,
            User,
            id=parent,
            wechat_openid=f"demo-parent-{letter}",
            display_name=f"演示家长{letter.upper()}",
            failed_logins=0,
        )
        first_classroom = classrooms[0][0]
        await _put(
            session,
            Guardianship,
            id=demo_id(f"guardian-{letter}"),
            parent_user_id=parent,
            student_id=demo_id(f"{letter}-{first_classroom}-0"),
            relation="mother",
            consent_policy_version=policy_version,
            consent_at=now,
        )


# (school, id name, catalogue course key, days from now, capacity)
EVENING_CLASSES = [
    (SCHOOL_A, "evening-a-1", "f-xiaoxue-zhongduan-zizhu-xuexi", 3, 60),
    (SCHOOL_A, "evening-a-tiny", "g-jiacufa-jiedu", 5, 2),
    (SCHOOL_A, "evening-a-2", "f-xiaoxue-zhongduan-qingxu-goutong", 10, 60),
    (SCHOOL_B, "evening-b-1", "f-chuzhong-qingchunqi-goutong", 4, 80),
    (SCHOOL_B, "evening-b-2", "f-chuzhong-shouji-yueding", 11, 80),
]


def demo_evening_class_id(name: str, week: str) -> uuid.UUID:
    return demo_id(f"{name}-{week}")


def _week(day: date) -> str:
    return "{}-W{:02d}".format(*day.isocalendar()[:2])


async def load_demo_evening_classes(session: AsyncSession, now: datetime) -> None:
    """Upcoming classes, 19:00–20:30 Shanghai time; only added when their course is in the catalogue."""
    courses = {
        c.key: c
        for c in (
            await session.execute(select(Course).where(Course.key.in_([e[2] for e in EVENING_CLASSES])))
        ).scalars()
    }
    today = now.astimezone(SHANGHAI).date()
    week = _week(today)  # a fresh set each week the demo is started
    # A set made in an earlier week may still be ahead (made at most `longest` days ago): a course with
    # a class ahead gets no second one, so that the demo never lists the same class twice.
    longest = max(e[3] for e in EVENING_CLASSES)
    weeks = {_week(today - timedelta(days=d)) for d in range(1, longest + 1)} - {week}
    earlier = [demo_evening_class_id(e[1], w) for e in EVENING_CLASSES for w in weeks]
    ahead = {
        (school_id, course_id)
        for school_id, course_id in await session.execute(
            select(EveningClass.school_id, EveningClass.course_id).where(
                EveningClass.id.in_(earlier), EveningClass.starts_at > now
            )
        )
    }
    for school_id, name, key, days, capacity in EVENING_CLASSES:
        course = courses.get(key)
        if course is None or (school_id, course.id) in ahead:
            continue
        starts_at = datetime.combine(today + timedelta(days=days), time(19, 0), SHANGHAI)
        await _put(
            session,
            EveningClass,
            id=demo_evening_class_id(name, week),
            school_id=school_id,
            course_id=course.id,
            title=course.title,
            term=term_of(starts_at),
            starts_at=starts_at,
            ends_at=starts_at + timedelta(minutes=90),
            place="学校报告厅",
            capacity=capacity,
            confirmed_count=0,
            audience="school",
            signup_opens_at=now,
            signup_closes_at=starts_at,
            cancel_deadline=starts_at - timedelta(hours=24),
        )
