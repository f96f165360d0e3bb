"""Builders: real rows through the ORM, and real tokens through the auth service."""

from __future__ import annotations

import asyncio
import functools
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.deps import Deps
from infra.security import hash_password
from models.accounts import auth
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
from models.catalog.tables import Course
from models.evening_classes.tables import EveningClass

STAFF_PASSWORD = "correct horse battery"


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def make_district(s: AsyncSession, name: str | None = None) -> District:
    d = District(name=name or _name("区"))
    s.add(d)
    await s.flush()
    return d


async def make_school(s: AsyncSession, district: District, name: str | None = None) -> School:
    school = School(district_id=district.id, name=name or _name("学校"))
    s.add(school)
    await s.flush()
    return school


async def make_classroom(
    s: AsyncSession,
    school: School,
    name: str | None = None,
    grade: int = 3,
    head_teacher: Teacher | None = None,
) -> Classroom:
    c = Classroom(
        school_id=school.id,
        name=name or _name("班"),
        grade=grade,
        head_teacher_id=head_teacher.id if head_teacher else None,
    )
    s.add(c)
    await s.flush()
    return c


async def make_student(
    s: AsyncSession, classroom: Classroom, name: str = "学生", no: str | None = None
) -> Student:
    st = Student(
        school_id=classroom.school_id, classroom_id=classroom.id, name=name, student_no=no or _name("S")
    )
    s.add(st)
    await s.flush()
    return st


async def make_wechat_user(s: AsyncSession, openid: str | None = None) -> User:
    u = User(wechat_openid=openid or _name("openid"), display_name="")
    s.add(u)
    await s.flush()
    return u


async def make_password_user(
    s: AsyncSession, username: str | None = None, password: str = STAFF_PASSWORD
) -> User:
    u = User(
        username=username or _name("staff"), password_hash=hash_password(password), display_name="管理员"
    )
    s.add(u)
    await s.flush()
    return u


async def make_teacher(
    s: AsyncSession, school: School, user: User | None = None, name: str = "老师"
) -> Teacher:
    t = Teacher(school_id=school.id, name=name, user_id=user.id if user else None)
    s.add(t)
    await s.flush()
    return t


async def make_guardian(
    s: AsyncSession, parent: User, student: Student, relation: str = "mother"
) -> Guardianship:
    g = Guardianship(
        parent_user_id=parent.id,
        student_id=student.id,
        relation=relation,
        consent_policy_version="2025-09",
        consent_at=datetime.now().astimezone(),
    )
    s.add(g)
    await s.flush()
    return g


async def grant(
    s: AsyncSession, user: User, role: Role, district: District, school: School | None = None
) -> None:
    s.add(
        RoleGrant(
            user_id=user.id, role=role, district_id=district.id, school_id=school.id if school else None
        )
    )
    await s.flush()


async def token_for(deps: Deps, user_id: uuid.UUID) -> str:
    async with deps.sessions() as s, s.begin():
        issued = await auth.open_session(
            s, user_id, deps.signer, refresh_ttl=deps.settings.refresh_token_ttl, now=deps.clock()
        )
    return issued.access_token


@dataclass
class Actor:
    """A signed-in user. `token` is an access token of their login session issued at the service's clock
    now, so a test that moves the clock forwards by days still calls as a user who is signed in."""

    user_id: uuid.UUID
    session_id: str
    deps: Deps

    @property
    def token(self) -> str:
        return self.deps.signer.issue(str(self.user_id), self.session_id, now=self.deps.clock().timestamp())


async def signed_in(deps: Deps, user_id: uuid.UUID) -> Actor:
    token = await token_for(deps, user_id)
    return Actor(user_id, deps.signer.verify(token, now=deps.clock().timestamp()).session_id, deps)


@dataclass
class World:
    """Two schools in one district, a third school in another district, and one user of every role."""

    district: District
    other_district: District
    school_a: School
    school_b: School
    school_c: School
    classroom_a: Classroom
    classroom_b: Classroom
    student_a: Student
    student_b: Student
    teacher_a: Teacher
    actors: dict[str, Actor] = field(default_factory=dict)

    def token(self, label: str) -> str:
        return self.actors[label].token


async def make_world(deps: Deps) -> World:
    async with deps.sessions() as s, s.begin():
        district = await make_district(s)
        other = await make_district(s)
        school_a = await make_school(s, district, "甲小学")
        school_b = await make_school(s, district, "乙中学")
        school_c = await make_school(s, other, "丙小学")
        users: dict[str, User] = {}
        for label in ("parent_a", "parent_b", "teacher_a", "teacher_b", "stranger"):
            users[label] = await make_wechat_user(s, openid=_name(label))
        for label in (
            "school_admin_a",
            "school_admin_b",
            "district_admin",
            "other_district_admin",
            "evaluator",
        ):
            users[label] = await make_password_user(s, username=_name(label))
        teacher_a = await make_teacher(s, school_a, users["teacher_a"], name="甲老师")
        teacher_b = await make_teacher(s, school_b, users["teacher_b"], name="乙老师")
        classroom_a = await make_classroom(s, school_a, "三年级1班", 3, head_teacher=teacher_a)
        classroom_b = await make_classroom(s, school_b, "初一1班", 7, head_teacher=teacher_b)
        student_a = await make_student(s, classroom_a, "甲同学", "A001")
        student_b = await make_student(s, classroom_b, "乙同学", "B001")
        await make_guardian(s, users["parent_a"], student_a)
        await make_guardian(s, users["parent_b"], student_b)
        await grant(s, users["school_admin_a"], Role.school_admin, district, school_a)
        await grant(s, users["school_admin_b"], Role.school_admin, district, school_b)
        await grant(s, users["district_admin"], Role.district_admin, district)
        await grant(s, users["other_district_admin"], Role.district_admin, other)
        await grant(s, users["evaluator"], Role.evaluator, district)
    world = World(
        district,
        other,
        school_a,
        school_b,
        school_c,
        classroom_a,
        classroom_b,
        student_a,
        student_b,
        teacher_a,
    )
    for label, user in users.items():
        world.actors[label] = await signed_in(deps, user.id)
    return world


async def make_binding_code(
    s: AsyncSession,
    school: School,
    *,
    teacher: Teacher | None = None,
    student: Student | None = None,
    expires_at: datetime | None = None,
) -> str:
    """An unredeemed one-time code (teacher or guardian) as the school would issue it; returns the code."""
    from datetime import timedelta

    from infra.security import hash_token, new_binding_code
    from models.accounts.tables import BindingCode

    code = new_binding_code()
    s.add(
        BindingCode(
            code_hash=hash_token(code),
            kind="teacher" if teacher else "guardian",
            school_id=school.id,
            teacher_id=teacher.id if teacher else None,
            student_id=student.id if student else None,
            expires_at=expires_at or datetime.now().astimezone() + timedelta(days=30),
        )
    )
    await s.flush()
    return code


# Argon2 with production parameters costs ~0.4 s per hash on a 2-core CI box and every world has five
# staff users; the same real hash serves every builder-made account with the same password.
_hash_password_uncached = hash_password


@functools.cache
def hash_password(password: str) -> str:  # type: ignore[no-redef]
    return _hash_password_uncached(password)


async def make_course(
    s: AsyncSession,
    *,
    tier: str = "general",
    title: str = "家庭教育讲座",
    district: District | None = None,
    school: School | None = None,
    video_seconds: int = 600,
    class_hours: str = "2",
    grade_bands: list[str] | None = None,
    topic: str = "family_education",
) -> Course:
    """A course of the shipped catalogue (no district), of a district, or of one school."""
    online = tier == "online"
    course = Course(
        tier=tier,
        title=title,
        summary=f"{title}的简介",
        topic=topic,
        grade_bands=grade_bands or ["primary_middle"],
        class_hours=Decimal(class_hours),
        video_seconds=video_seconds if online else None,
        media_url="https://media.parent-school.cn/lessons/test.mp4" if online else None,
        district_id=district.id if district else (school.district_id if school else None),
        school_id=school.id if school else None,
    )
    s.add(course)
    await s.flush()
    return course


async def make_parent_of(
    s: AsyncSession, classroom: Classroom, child: Student | None = None, relation: str = "mother"
) -> tuple[User, Student]:
    """A WeChat parent bound to `child`, or to a new student of `classroom`."""
    student = child or await make_student(s, classroom, "另一位同学")
    parent = await make_wechat_user(s)
    await make_guardian(s, parent, student, relation)
    return parent, student


@dataclass
class FakeClock:
    """A settable deps.clock: `deps.clock = FakeClock(...)`, then `clock.tick(15)` between requests."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float) -> None:
        from datetime import timedelta

        self.now += timedelta(seconds=seconds)


async def make_evening_class(
    s: AsyncSession,
    school: School,
    course: Course,
    *,
    starts_at: datetime,
    minutes: int = 90,
    capacity: int = 30,
    audience: str = "school",
    grades: list[int] | None = None,
    classroom_ids: list[uuid.UUID] | None = None,
    signup_opens_at: datetime | None = None,
    signup_closes_at: datetime | None = None,
    cancel_deadline: datetime | None = None,
) -> EveningClass:
    """A scheduled class; by default sign-up is open from a day before until it ends."""
    from datetime import timedelta

    from models.evening_classes.rules import term_of

    ends_at = starts_at + timedelta(minutes=minutes)
    evening = EveningClass(
        school_id=school.id,
        course_id=course.id,
        title=course.title,
        term=term_of(starts_at),
        starts_at=starts_at,
        ends_at=ends_at,
        place="学校报告厅",
        capacity=capacity,
        confirmed_count=0,
        audience=audience,
        audience_grades=grades,
        audience_classroom_ids=classroom_ids,
        signup_opens_at=signup_opens_at or starts_at - timedelta(days=1),
        signup_closes_at=signup_closes_at or ends_at,
        cancel_deadline=cancel_deadline or starts_at,
    )
    s.add(evening)
    await s.flush()
    return evening


async def make_parents(deps: Deps, classroom: Classroom, n: int) -> list[Actor]:
    """`n` WeChat parents, each bound to a new student of `classroom`, made in one transaction (a crowd
    for sign-up rushes). Their access tokens are signed directly: a request needs nothing more."""
    async with deps.sessions() as s, s.begin():
        users = [User(wechat_openid=_name("openid"), display_name=f"家长{i}") for i in range(n)]
        students = [
            Student(
                school_id=classroom.school_id,
                classroom_id=classroom.id,
                name=f"学生{i}",
                student_no=_name("S"),
            )
            for i in range(n)
        ]
        s.add_all([*users, *students])
        await s.flush()
        s.add_all(
            [
                Guardianship(
                    parent_user_id=user.id,
                    student_id=student.id,
                    relation="mother",
                    consent_policy_version="2025-09",
                    consent_at=datetime.now().astimezone(),
                )
                for user, student in zip(users, students, strict=True)
            ]
        )
    return [Actor(u.id, str(uuid.uuid4()), deps) for u in users]


async def allow_messages(s: AsyncSession, user_id: uuid.UUID, template_id: str, n: int) -> None:
    """The user accepted `template_id` `n` times in the mini-program's subscription prompt."""
    from models.notifications.tables import SubscriptionAllowance

    s.add(SubscriptionAllowance(user_id=user_id, template_id=template_id, remaining=n))
    await s.flush()


async def until_a_statement_waits_for_a_lock(deps: Deps) -> None:
    """Until some statement waits for a row lock (one the test holds in another connection)."""
    for _ in range(500):
        async with deps.engine.connect() as probe:
            if await probe.scalar(
                text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
            ):
                return
        await asyncio.sleep(0.01)
    raise AssertionError("no statement ever waited for the lock")


async def make_open_survey(
    s: AsyncSession, district: District, schools: list[School], now: datetime
) -> uuid.UUID:
    """A published census survey of the standard questionnaire over `schools`, open since yesterday for
    two weeks, sampling every student of those schools as the roster stands."""
    from datetime import timedelta

    from sqlalchemy import select

    from models.learning.rules import school_year_of
    from models.surveys.schemas import dump
    from models.surveys.tables import Survey, SurveySample, SurveyStratum
    from models.surveys.templates import load_template

    template = load_template("parent-satisfaction")
    survey = Survey(
        district_id=district.id,
        title=template.title,
        intro=template.intro,
        status="published",
        school_year=school_year_of(now),
        opens_at=now - timedelta(days=1),
        closes_at=now + timedelta(days=14),
        audience_school_ids=[school.id for school in schools],
        sampling_method="census",
        seed=1,
        template=template.key,
        template_version=template.version,
        dimensions=[dump(d) for d in template.dimensions],
        published_at=now - timedelta(days=1),
    )
    s.add(survey)
    await s.flush()
    rows = await s.execute(
        select(Student.id, Student.school_id, Classroom.grade)
        .join(Classroom, Classroom.id == Student.classroom_id)
        .where(Student.school_id.in_([school.id for school in schools]))
    )
    strata: dict[tuple[uuid.UUID, int], int] = {}
    for student_id, school_id, grade in rows:
        s.add(SurveySample(survey_id=survey.id, student_id=student_id, school_id=school_id, grade=grade))
        strata[(school_id, grade)] = strata.get((school_id, grade), 0) + 1
    s.add_all(
        SurveyStratum(survey_id=survey.id, school_id=school, grade=grade, population=n, sampled=n)
        for (school, grade), n in strata.items()
    )
    await s.flush()
    return survey.id
