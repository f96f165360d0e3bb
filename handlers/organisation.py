"""Schools, classrooms, students, teachers, guardian codes and staff accounts."""

from __future__ import annotations

from typing import ClassVar

from handlers.base import ApiHandler
from handlers.policy import Operation, Scope
from handlers.uploads import UploadHandler
from models.accounts import organisation, roster
from models.accounts.rules import ADMIN_ROLES, DISTRICT_ADMINS, STAFF_ROLES, Role
from models.accounts.schemas import (
    BindingCodeOut,
    ClassroomIn,
    ClassroomOut,
    EmptyIn,
    GuardianCodesOut,
    GuardianList,
    RosterReport,
    SchoolIn,
    SchoolOut,
    StaffAccountIn,
    StaffAccountOut,
    StudentIn,
    StudentOut,
    StudentQuery,
    TeacherCreatedOut,
    TeacherIn,
    TeacherOut,
)
from models.audit.actions import AuditAction
from models.pagination import Page, PageQuery

ClassroomPage = Page[ClassroomOut]
StudentPage = Page[StudentOut]
TeacherPage = Page[TeacherOut]
SchoolPage = Page[SchoolOut]


class DistrictSchoolsHandler(ApiHandler):
    openapi: ClassVar = {
        "get": Operation(
            "区县的学校列表",
            query=PageQuery,
            response=SchoolPage,
            roles=DISTRICT_ADMINS,
            errors=(401, 403, 404),
            scope=Scope.district,
        ),
        "post": Operation(
            "新建学校",
            body=SchoolIn,
            response=SchoolOut,
            status=201,
            roles=DISTRICT_ADMINS,
            errors=(401, 403, 404, 409, 422),
            idempotent=True,
            scope=Scope.district,
            audit=AuditAction.school_created,
        ),
    }

    async def get(self, district_id: str) -> None:
        page = self.query(PageQuery)
        async with self.district_scope(district_id) as (session, district):
            rows, cursor = await organisation.list_schools(session, district, page)
        self.send(SchoolPage(items=[SchoolOut.model_validate(r) for r in rows], next_cursor=cursor))

    async def post(self, district_id: str) -> None:
        data = self.body(SchoolIn)
        async with self.district_scope(district_id) as (session, district):
            school = await organisation.create_school(session, district, data.name, self.me.id)
        self.send(SchoolOut.model_validate(school), status=201)


class StaffAccountsHandler(ApiHandler):
    openapi: ClassVar = {
        "post": Operation(
            "新建学校管理员或评估机构账号（用户名密码）",
            body=StaffAccountIn,
            response=StaffAccountOut,
            status=201,
            roles=DISTRICT_ADMINS,
            errors=(401, 403, 404, 409, 422),
            idempotent=True,
            scope=Scope.district,
            audit=AuditAction.staff_account_created,
        )
    }

    async def post(self, district_id: str) -> None:
        data = self.body(StaffAccountIn)
        async with self.district_scope(district_id) as (session, district):
            user, grant = await organisation.create_staff_account(session, district, data, self.me.id)
        self.send(
            StaffAccountOut(
                id=user.id,
                username=data.username,
                display_name=user.display_name,
                role=Role(grant.role),
                school_id=grant.school_id,
            ),
            status=201,
        )


class SchoolHandler(ApiHandler):
    openapi: ClassVar = {
        "get": Operation(
            "学校信息",
            response=SchoolOut,
            roles=STAFF_ROLES,
            errors=(401, 403, 404),
            scope=Scope.school,
        )
    }

    async def get(self, school_id: str) -> None:
        async with self.school_scope(school_id) as (_, school):
            self.send(SchoolOut.model_validate(school))


class ClassroomsHandler(ApiHandler):
    openapi: ClassVar = {
        "get": Operation(
            "班级列表",
            query=PageQuery,
            response=ClassroomPage,
            roles=STAFF_ROLES,
            errors=(401, 403, 404),
            scope=Scope.school,
        ),
        "post": Operation(
            "新建班级",
            body=ClassroomIn,
            response=ClassroomOut,
            status=201,
            roles=ADMIN_ROLES,
            errors=(401, 403, 404, 409, 422),
            idempotent=True,
            scope=Scope.school,
            audit=AuditAction.classroom_created,
        ),
    }

    async def get(self, school_id: str) -> None:
        page = self.query(PageQuery)
        async with self.school_scope(school_id) as (session, school):
            rows, cursor = await organisation.list_classrooms(session, school, page)
        self.send(ClassroomPage(items=[ClassroomOut.model_validate(r) for r in rows], next_cursor=cursor))

    async def post(self, school_id: str) -> None:
        data = self.body(ClassroomIn)
        async with self.school_scope(school_id) as (session, school):
            classroom = await organisation.create_classroom(session, school, data, self.me.id)
        self.send(ClassroomOut.model_validate(classroom), status=201)


class StudentsHandler(ApiHandler):
    openapi: ClassVar = {
        "get": Operation(
            "学生列表（教师只看到自己任班主任的班级）",
            query=StudentQuery,
            response=StudentPage,
            roles=STAFF_ROLES,
            errors=(401, 403, 404),
            scope=Scope.school,
            audit=AuditAction.students_read,
        ),
        "post": Operation(
            "新建学生",
            body=StudentIn,
            response=StudentOut,
            status=201,
            roles=ADMIN_ROLES,
            errors=(401, 403, 404, 409, 422),
            idempotent=True,
            scope=Scope.school,
            audit=AuditAction.student_created,
        ),
    }

    async def get(self, school_id: str) -> None:
        query = self.query(StudentQuery)
        async with self.school_scope(school_id) as (session, school):
            rows, cursor = await organisation.list_students(session, school, self.me, query)
        self.send(StudentPage(items=[StudentOut.model_validate(r) for r in rows], next_cursor=cursor))

    async def post(self, school_id: str) -> None:
        data = self.body(StudentIn)
        async with self.school_scope(school_id) as (session, school):
            student = await organisation.create_student(session, school, data, self.me.id)
        self.send(StudentOut.model_validate(student), status=201)


class TeachersHandler(ApiHandler):
    openapi: ClassVar = {
        "get": Operation(
            "教师名单",
            query=PageQuery,
            response=TeacherPage,
            roles=ADMIN_ROLES,
            errors=(401, 403, 404),
            scope=Scope.school,
        ),
        "post": Operation(
            "新建教师并发放一次性绑定码",
            body=TeacherIn,
            response=TeacherCreatedOut,
            status=201,
            roles=ADMIN_ROLES,
            errors=(401, 403, 404, 422),
            idempotent=True,
            scope=Scope.school,
            audit=AuditAction.teacher_created,
        ),
    }

    async def get(self, school_id: str) -> None:
        page = self.query(PageQuery)
        async with self.school_scope(school_id) as (session, school):
            rows, cursor = await organisation.list_teachers(session, school, page)
        items = [
            TeacherOut(id=t.id, school_id=t.school_id, name=t.name, bound=t.user_id is not None) for t in rows
        ]
        self.send(TeacherPage(items=items, next_cursor=cursor))

    async def post(self, school_id: str) -> None:
        data = self.body(TeacherIn)
        settings = self.deps.settings
        async with self.school_scope(school_id) as (session, school):
            teacher, code = await organisation.create_teacher(
                session,
                school,
                data.name,
                self.me.id,
                now=self.deps.clock(),
                ttl_days=settings.binding_code_ttl_days,
            )
        out = TeacherCreatedOut(
            id=teacher.id, school_id=school.id, name=teacher.name, bound=False, binding_code=code
        )
        self.send(out, status=201)


class TeacherCodeHandler(ApiHandler):
    openapi: ClassVar = {
        "post": Operation(
            "为尚未绑定的教师重新发放绑定码（此前发放、尚未使用的绑定码随即失效）",
            body=EmptyIn,
            response=BindingCodeOut,
            status=201,
            roles=ADMIN_ROLES,
            errors=(401, 403, 404, 409),
            scope=Scope.school,
            audit=AuditAction.teacher_code_issued,
        )
    }

    async def post(self, school_id: str, teacher_id: str) -> None:
        self.body(EmptyIn)
        async with self.school_scope(school_id) as (session, school):
            code = await organisation.reissue_teacher_code(
                session,
                school,
                self.path_uuid(teacher_id),
                self.me.id,
                now=self.deps.clock(),
                ttl_days=self.deps.settings.binding_code_ttl_days,
            )
        self.send(code, status=201)


class GuardianCodesHandler(ApiHandler):
    openapi: ClassVar = {
        "post": Operation(
            "为班级每个学生发放家长绑定码（打印发给家长）",
            body=EmptyIn,
            response=GuardianCodesOut,
            status=201,
            roles=ADMIN_ROLES,
            errors=(401, 403, 404),
            scope=Scope.school,
            audit=AuditAction.guardian_codes_issued,
        )
    }

    async def post(self, school_id: str, classroom_id: str) -> None:
        self.body(EmptyIn)
        async with self.school_scope(school_id) as (session, school):
            classroom = await organisation.classroom_of(session, school, self.path_uuid(classroom_id))
            codes = await organisation.issue_guardian_codes(
                session,
                school,
                classroom,
                self.me.id,
                now=self.deps.clock(),
                ttl_days=self.deps.settings.binding_code_ttl_days,
            )
        self.send(
            GuardianCodesOut(classroom_id=classroom.id, classroom_name=classroom.name, items=codes),
            status=201,
        )


class RosterImportHandler(UploadHandler):
    openapi: ClassVar = {
        "post": Operation(
            "导入学生名单：请求体为文件本身，Content-Type 为 text/csv（UTF-8 或 GBK）或 "
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet（.xlsx）；"
            "列：学号、姓名、班级、年级；有任何一行出错则不导入任何数据",
            response=RosterReport,
            status=201,
            roles=ADMIN_ROLES,
            errors=(401, 403, 404, 409, 411, 413, 415, 422),
            idempotent=True,
            scope=Scope.school,
            audit=AuditAction.roster_imported,
        )
    }

    async def post(self, school_id: str) -> None:
        content_type = self.request.headers.get("Content-Type", "")
        async with self.school_scope(school_id) as (session, school):
            parsed = await roster.parse_upload(
                self.request.body, content_type, max_rows=self.deps.settings.roster_max_rows
            )
            report = await roster.import_roster(session, school, parsed, self.me.id)
        self.send(report, status=201)


class GuardiansHandler(ApiHandler):
    openapi: ClassVar = {
        "get": Operation(
            "学生的已绑定家长（含监护人同意记录）",
            response=GuardianList,
            roles=ADMIN_ROLES,
            errors=(401, 403, 404),
            scope=Scope.school,
            audit=AuditAction.guardians_read,
        )
    }

    async def get(self, school_id: str, student_id: str) -> None:
        async with self.school_scope(school_id) as (session, school):
            items = await organisation.guardians_of(session, school, self.path_uuid(student_id))
        self.send(GuardianList(student_id=self.path_uuid(student_id), items=items))
