"""Use cases of the organisation: schools, classrooms, students, teachers, staff accounts, bindings."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from infra.errors import NotFound, ValidationFailed
from infra.security import hash_token, new_binding_code, normalise_binding_code
from models.accounts.auth import audit, create_password_user
from models.accounts.errors import AlreadyBound, BindingCodeInvalid, ConsentRequired, DuplicateName
from models.accounts.principal import Principal
from models.accounts.rules import Role, binding_code_usable
from models.accounts.schemas import (
    BindingCodeOut,
    BindingIn,
    ClassroomIn,
    GuardianOut,
    StaffAccountIn,
    StudentIn,
    StudentQuery,
)
from models.accounts.tables import (
    BindingCode,
    Classroom,
    District,
    Guardianship,
    RoleGrant,
    School,
    Student,
    Teacher,
    User,
)
from models.base import Change, note_change
from models.pagination import PageQuery, keyset_page


async def _flush_unique(session: AsyncSession, what: str) -> None:
    """Flush, turning a unique-constraint violation into a 409 the user can act on."""
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise DuplicateName(f"{what}已存在") from exc


# ---- schools ---------------------------------------------------------------------------------------
async def create_school(session: AsyncSession, district: District, name: str, actor: uuid.UUID) -> School:
    school = School(district_id=district.id, name=name)
    session.add(school)
    await _flush_unique(session, "同名学校")
    audit(
        session, "school.created", actor=actor, school_id=school.id, target_type="school", target_id=school.id
    )
    return school


async def list_schools(
    session: AsyncSession, district: District, page: PageQuery
) -> tuple[list[School], str | None]:
    stmt = select(School).where(School.district_id == district.id)
    return await keyset_page(session, stmt, [School.name, School.id], page)


# ---- classrooms ------------------------------------------------------------------------------------
async def _teacher_of(session: AsyncSession, school: School, teacher_id: uuid.UUID) -> Teacher:
    teacher = await session.get(Teacher, teacher_id)
    if teacher is None or teacher.school_id != school.id:
        raise ValidationFailed(
            "班主任不是本校教师", errors=[{"loc": ["body", "head_teacher_id"], "msg": "unknown teacher"}]
        )
    return teacher


async def create_classroom(
    session: AsyncSession, school: School, data: ClassroomIn, actor: uuid.UUID
) -> Classroom:
    if data.head_teacher_id is not None:
        teacher = await _teacher_of(session, school, data.head_teacher_id)
        if teacher.user_id:
            note_change(session, Change.principal, teacher.user_id)
    classroom = Classroom(
        school_id=school.id, name=data.name, grade=data.grade, head_teacher_id=data.head_teacher_id
    )
    session.add(classroom)
    await _flush_unique(session, "同名班级")
    audit(
        session,
        "classroom.created",
        actor=actor,
        school_id=school.id,
        target_type="classroom",
        target_id=classroom.id,
    )
    return classroom


async def list_classrooms(
    session: AsyncSession, school: School, page: PageQuery
) -> tuple[list[Classroom], str | None]:
    stmt = select(Classroom).where(Classroom.school_id == school.id)
    return await keyset_page(session, stmt, [Classroom.name, Classroom.id], page)


async def classroom_of(session: AsyncSession, school: School, classroom_id: uuid.UUID) -> Classroom:
    classroom = await session.get(Classroom, classroom_id)
    if classroom is None or classroom.school_id != school.id:
        raise NotFound("班级不存在")
    return classroom


# ---- students --------------------------------------------------------------------------------------
async def create_student(session: AsyncSession, school: School, data: StudentIn, actor: uuid.UUID) -> Student:
    classroom = await session.get(Classroom, data.classroom_id)
    if classroom is None or classroom.school_id != school.id:
        raise ValidationFailed(
            "班级不存在", errors=[{"loc": ["body", "classroom_id"], "msg": "unknown classroom"}]
        )
    student = Student(
        school_id=school.id, classroom_id=classroom.id, student_no=data.student_no, name=data.name
    )
    session.add(student)
    await _flush_unique(session, "该学号")
    audit(
        session,
        "student.created",
        actor=actor,
        school_id=school.id,
        target_type="student",
        target_id=student.id,
    )
    return student


async def list_students(
    session: AsyncSession, school: School, principal: Principal, query: StudentQuery
) -> tuple[list[Student], str | None]:
    """Admins see the whole school; a teacher only the classrooms they are head teacher of."""
    stmt = select(Student).where(Student.school_id == school.id)
    if query.classroom_id is not None:
        stmt = stmt.where(Student.classroom_id == query.classroom_id)
    is_admin = bool(
        principal.school_roles(school.id) & {Role.school_admin}
        or principal.district_roles(school.district_id) & {Role.district_admin}
    )
    if not is_admin:
        own = select(Classroom.id).where(Classroom.head_teacher_id == principal.teacher_id(school.id))
        stmt = stmt.where(Student.classroom_id.in_(own))
    page = PageQuery(limit=query.limit, cursor=query.cursor)
    return await keyset_page(session, stmt, [Student.student_no, Student.id], page)


# ---- teachers and binding codes --------------------------------------------------------------------
def _issue_code(
    session: AsyncSession,
    *,
    kind: str,
    school: School,
    actor: uuid.UUID,
    now: datetime,
    ttl_days: int,
    teacher: Teacher | None = None,
    student: Student | None = None,
) -> BindingCodeOut:
    code = new_binding_code()
    row = BindingCode(
        code_hash=hash_token(code),
        kind=kind,
        school_id=school.id,
        teacher_id=teacher.id if teacher else None,
        student_id=student.id if student else None,
        issued_by=actor,
        expires_at=now + timedelta(days=ttl_days),
    )
    session.add(row)
    return BindingCodeOut(
        code=code,
        kind=kind,
        expires_at=row.expires_at,
        teacher_id=row.teacher_id,
        student_id=row.student_id,
        student_no=student.student_no if student else None,
        student_name=student.name if student else None,
    )


async def create_teacher(
    session: AsyncSession, school: School, name: str, actor: uuid.UUID, *, now: datetime, ttl_days: int
) -> tuple[Teacher, BindingCodeOut]:
    teacher = Teacher(school_id=school.id, name=name)
    session.add(teacher)
    await session.flush()
    code = _issue_code(
        session, kind="teacher", school=school, actor=actor, now=now, ttl_days=ttl_days, teacher=teacher
    )
    audit(
        session,
        "teacher.created",
        actor=actor,
        school_id=school.id,
        target_type="teacher",
        target_id=teacher.id,
    )
    return teacher, code


async def list_teachers(
    session: AsyncSession, school: School, page: PageQuery
) -> tuple[list[Teacher], str | None]:
    stmt = select(Teacher).where(Teacher.school_id == school.id)
    return await keyset_page(session, stmt, [Teacher.name, Teacher.id], page)


async def reissue_teacher_code(
    session: AsyncSession,
    school: School,
    teacher_id: uuid.UUID,
    actor: uuid.UUID,
    *,
    now: datetime,
    ttl_days: int,
) -> BindingCodeOut:
    teacher = await session.get(Teacher, teacher_id)
    if teacher is None or teacher.school_id != school.id:
        raise NotFound("教师不存在")
    if teacher.user_id is not None:
        raise AlreadyBound("该教师已绑定微信")
    # A code is reissued because the first was lost or leaked: it must stop working at once.
    await session.execute(
        update(BindingCode)
        .where(
            BindingCode.teacher_id == teacher.id,
            BindingCode.redeemed_at.is_(None),
            BindingCode.expires_at > now,
        )
        .values(expires_at=now)
    )
    return _issue_code(
        session, kind="teacher", school=school, actor=actor, now=now, ttl_days=ttl_days, teacher=teacher
    )


async def issue_guardian_codes(
    session: AsyncSession,
    school: School,
    classroom: Classroom,
    actor: uuid.UUID,
    *,
    now: datetime,
    ttl_days: int,
) -> list[BindingCodeOut]:
    """One fresh code per student of a classroom, for the printed list sent home."""
    students = (
        await session.execute(
            select(Student).where(Student.classroom_id == classroom.id).order_by(Student.student_no)
        )
    ).scalars()
    codes = [
        _issue_code(
            session, kind="guardian", school=school, actor=actor, now=now, ttl_days=ttl_days, student=s
        )
        for s in students
    ]
    audit(
        session,
        "guardian_codes.issued",
        actor=actor,
        school_id=school.id,
        target_type="classroom",
        target_id=classroom.id,
        count=len(codes),
    )
    return codes


async def redeem_binding(
    session: AsyncSession, user_id: uuid.UUID, data: BindingIn, *, now: datetime, policy_version: str
) -> BindingCode:
    """Redeem a one-time code: attach the caller to a teacher record or, with consent, to a child."""
    row = (
        await session.execute(
            select(BindingCode)
            .where(BindingCode.code_hash == hash_token(normalise_binding_code(data.code)))
            .with_for_update()
        )
    ).scalar_one_or_none()
    if row is None or not binding_code_usable(row.expires_at, row.redeemed_at, now):
        raise BindingCodeInvalid()

    if row.kind == "teacher":
        assert row.teacher_id is not None
        teacher = await session.get(Teacher, row.teacher_id, with_for_update=True)
        assert teacher is not None
        if teacher.user_id is not None:
            raise AlreadyBound("该教师已绑定微信")
        already = await session.execute(
            select(Teacher.id).where(Teacher.school_id == teacher.school_id, Teacher.user_id == user_id)
        )
        if already.first() is not None:
            raise AlreadyBound("你已是本校教师")
        teacher.user_id = user_id
    else:
        assert row.student_id is not None
        if data.consent_policy_version != policy_version or data.relation is None:
            raise ConsentRequired(
                f"请阅读并同意隐私政策（版本 {policy_version}），并选择与孩子的关系",
                errors=[
                    {"loc": ["body", "consent_policy_version"], "msg": f"must be {policy_version}"},
                    {"loc": ["body", "relation"], "msg": "required for a guardian code"},
                ],
            )
        exists = await session.execute(
            select(Guardianship.id).where(
                Guardianship.parent_user_id == user_id, Guardianship.student_id == row.student_id
            )
        )
        if exists.first() is not None:
            raise AlreadyBound("已经绑定过这个孩子")
        session.add(
            Guardianship(
                parent_user_id=user_id,
                student_id=row.student_id,
                relation=data.relation,
                consent_policy_version=data.consent_policy_version,
                consent_at=now,
            )
        )
    row.redeemed_at = now
    row.redeemed_by = user_id
    note_change(session, Change.principal, user_id)
    audit(
        session,
        f"binding.{row.kind}",
        actor=user_id,
        school_id=row.school_id,
        target_type=row.kind,
        target_id=row.teacher_id or row.student_id,
        consent_policy_version=data.consent_policy_version if row.kind == "guardian" else None,
    )
    await session.flush()
    return row


# ---- staff accounts --------------------------------------------------------------------------------
async def create_staff_account(
    session: AsyncSession, district: District, data: StaffAccountIn, actor: uuid.UUID
) -> tuple[User, RoleGrant]:
    school_id = None
    if data.role == Role.school_admin:
        school = await session.get(School, data.school_id) if data.school_id else None
        if school is None or school.district_id != district.id:
            raise ValidationFailed(
                "请选择本区县的学校", errors=[{"loc": ["body", "school_id"], "msg": "unknown school"}]
            )
        school_id = school.id
    elif data.school_id is not None:
        raise ValidationFailed(
            "评估账号不属于学校", errors=[{"loc": ["body", "school_id"], "msg": "must be empty"}]
        )
    exists = await session.execute(select(User.id).where(User.username == data.username))
    if exists.first() is not None:
        raise DuplicateName("用户名已存在")
    user = await create_password_user(session, data.username, data.password, data.display_name)
    user.password_change_required = True  # the district admin chose it: the owner picks their own
    grant = RoleGrant(user_id=user.id, role=data.role, district_id=district.id, school_id=school_id)
    session.add(grant)
    await _flush_unique(session, "用户名")
    audit(
        session,
        "staff_account.created",
        actor=actor,
        school_id=school_id,
        target_type="user",
        target_id=user.id,
    )
    return user, grant


async def grant_district_admin(
    session: AsyncSession, district_name: str, username: str, password: str
) -> User:
    """For the bootstrap script: the district (created if new) and its first admin account."""
    district = (
        await session.execute(select(District).where(District.name == district_name))
    ).scalar_one_or_none()
    if district is None:
        district = District(name=district_name)
        session.add(district)
        await session.flush()
    exists = await session.execute(select(User.id).where(User.username == username))
    if exists.first() is not None:
        raise DuplicateName("用户名已存在")
    user = await create_password_user(session, username, password, display_name=f"{district_name}管理员")
    session.add(RoleGrant(user_id=user.id, role=Role.district_admin, district_id=district.id))
    audit(session, "district_admin.created", actor=None, target_type="user", target_id=user.id)
    await session.flush()
    return user


async def guardians_of(session: AsyncSession, school: School, student_id: uuid.UUID) -> list[GuardianOut]:
    """The parents bound to a child of this school, with the consent they gave."""
    student = await session.get(Student, student_id)
    if student is None or student.school_id != school.id:
        raise NotFound("学生不存在")
    rows = await session.execute(
        select(Guardianship, User.display_name)
        .join(User, User.id == Guardianship.parent_user_id)
        .where(Guardianship.student_id == student.id)
        .order_by(Guardianship.created_at)
    )
    return [
        GuardianOut(
            parent_id=g.parent_user_id,
            display_name=name,
            relation=g.relation,
            consent_policy_version=g.consent_policy_version,
            consent_at=g.consent_at,
        )
        for g, name in rows
    ]
