"""Fixed demo data for `make run`, so every role can be tried (never loaded in production).

WeChat users (log in through the sandbox with the openid as the code):
  demo-parent-a, demo-teacher-a (school A); demo-parent-b, demo-teacher-b (school B)
Password accounts (password `demo-password`):
  demo-district-admin, demo-school-a-admin, demo-school-b-admin
Loading is idempotent: ids are derived from names, existing rows are left alone.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

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
from server.security import hash_password

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
