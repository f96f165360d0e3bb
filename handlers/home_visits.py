"""Home visits (家访): a teacher's list of visits to make, logging a visit, reading and editing it under
its ETag, a child's visit history, and a school admin's assignments. Each answer carries the sensitive
part only for those rules.may_read_sensitive names, and its audit event says whether it did."""

from __future__ import annotations

from typing import ClassVar

from handlers.base import ApiHandler
from handlers.policy import Operation, Scope
from handlers.uploads import UploadHandler
from models.accounts.rules import (
    ADMIN_ROLES,
    DISTRICT_ADMINS,
    PARENTS,
    SCHOOL_ADMINS,
    SCHOOL_STAFF,
    TEACHERS,
)
from models.audit import service as audit
from models.audit.actions import AuditAction
from models.home_visits import photos, statistics, visits
from models.home_visits import todo as todo_service
from models.home_visits.schemas import (
    AssignmentIn,
    AssignmentOut,
    DistrictSummary,
    HomeVisitIn,
    HomeVisitOut,
    HomeVisitPage,
    HomeVisitPatch,
    HomeVisitSensitiveOut,
    PhotoOut,
    SchoolSummary,
    SummaryQuery,
    TodoOut,
    TodoQuery,
)
from models.home_visits.statistics import Period
from models.pagination import PageQuery

VISIT_READERS = SCHOOL_STAFF | PARENTS  # a parent reads the non-sensitive part of their child's visits


def _fields(outs: list[HomeVisitOut]) -> str:
    """The sensitive fields an answer carries, for its audit event ('' when none)."""
    return (
        ",".join(visits.SENSITIVE_FIELDS) if any(isinstance(o, HomeVisitSensitiveOut) for o in outs) else ""
    )


class MyTodoHandler(ApiHandler):
    openapi: ClassVar = {
        "get": Operation(
            "我这学年要家访的学生（我任班主任的班级，加上学校分配给我的），未访的在前，附最近一次家访的日期和方式",
            roles=TEACHERS,
            query=TodoQuery,
            response=TodoOut,
            errors=(401, 403, 422),
        )
    }

    async def get(self) -> None:
        query = self.query(TodoQuery)
        year = todo_service.school_year(query.school_year, self.deps.clock())
        async with self.transaction() as session:
            out = await todo_service.todo(session, self.me, year)
        self.send(out)


class HomeVisitsHandler(ApiHandler):
    openapi: ClassVar = {
        "post": Operation(
            "记一次家访（一屏完成）：只有 student_ids、visited_at 和 mode 必填；status=draft 存为草稿；"
            "每条三带回事项成为一条跟进",
            roles=SCHOOL_STAFF,
            scope=Scope.record,
            body=HomeVisitIn,
            response=HomeVisitSensitiveOut,
            status=201,
            idempotent=True,
            audit=AuditAction.home_visit_created,
            etag=True,
            errors=(401, 403, 404, 422),
        )
    }

    async def post(self) -> None:
        data = self.body(HomeVisitIn)
        async with self.transaction() as session:
            visit = await visits.create_visit(session, self.me, data, self.deps.cipher, self.deps.clock())
            seen = await visits.get_visit(session, self.me, visit.id)
            [out] = await visits.describe(session, self.deps.cipher, [seen])
            self.audit_about(visit.school_id, visit_id=str(visit.id), fields=_fields([out]))
        self.set_header("ETag", visits.etag(visit))
        self.set_header("Location", f"/api/v1/home-visits/{visit.id}")
        self.send(out, status=201)


class HomeVisitHandler(ApiHandler):
    openapi: ClassVar = {
        "get": Operation(
            "一次家访的记录（带 ETag）。private_note 与 circumstances 只给家访老师、"
            "孩子现在的班主任和学校管理员；家长只看到自己孩子的、已提交的记录中不敏感的部分",
            roles=VISIT_READERS,
            scope=Scope.record,
            response=HomeVisitSensitiveOut,
            audit=AuditAction.home_visit_read,
            etag=True,
            errors=(401, 403, 404),
        ),
        "patch": Operation(
            "修改家访记录（家访老师或学校管理员）：须带 If-Match（上次读到的 ETag）；"
            "他人已修改 → 412，未带 → 428",
            roles=SCHOOL_STAFF,
            scope=Scope.record,
            body=HomeVisitPatch,
            response=HomeVisitSensitiveOut,
            audit=AuditAction.home_visit_updated,
            etag=True,
            errors=(401, 403, 404, 409, 412, 422, 428),
        ),
    }

    async def get(self, visit_id: str) -> None:
        async with self.transaction() as session:
            seen = await visits.get_visit(session, self.me, self.path_uuid(visit_id))
            [out] = await visits.describe(session, self.deps.cipher, [seen])
            self.audit_about(seen.visit.school_id, fields=_fields([out]))
        self.set_header("ETag", visits.etag(seen.visit))
        self.send(out)

    async def patch(self, visit_id: str) -> None:
        patch = self.body(HomeVisitPatch)
        async with self.transaction() as session:
            seen = await visits.update_visit(
                session,
                self.me,
                self.path_uuid(visit_id),
                self.request.headers.get("If-Match"),
                patch,
                self.deps.cipher,
                self.deps.clock(),
            )
            [out] = await visits.describe(session, self.deps.cipher, [seen])
            changed = sorted(patch.model_fields_set & set(visits.SENSITIVE_FIELDS))
            self.audit_about(seen.visit.school_id, fields=_fields([out]), changed=",".join(changed))
        self.set_header("ETag", visits.etag(seen.visit))
        self.send(out)


class StudentHomeVisitsHandler(ApiHandler):
    openapi: ClassVar = {
        "get": Operation(
            "一个孩子的家访记录（按时间先后）：本校老师和管理员，以及孩子的家长（只看不敏感的部分）",
            roles=VISIT_READERS,
            scope=Scope.record,
            query=PageQuery,
            response=HomeVisitPage,
            audit=AuditAction.student_home_visits_read,
            errors=(401, 403, 404, 422),
        )
    }

    async def get(self, student_id: str) -> None:
        page = self.query(PageQuery)
        async with self.transaction() as session:
            seen, cursor = await visits.student_visits(session, self.me, self.path_uuid(student_id), page)
            outs = await visits.describe(session, self.deps.cipher, seen)
            sensitive = [str(o.id) for o in outs if isinstance(o, HomeVisitSensitiveOut)]
            self.audit_about(
                seen[0].visit.school_id if seen else None,
                fields=_fields(outs),
                visit_ids=",".join(sensitive),
            )
        self.send(HomeVisitPage(items=outs, next_cursor=cursor))


class VisitAssignmentsHandler(ApiHandler):
    openapi: ClassVar = {
        "post": Operation(
            "学校管理员请一位老师家访几位学生（不是其班主任的班级），计入该老师本学年的家访名单",
            roles=SCHOOL_ADMINS,
            scope=Scope.school,
            body=AssignmentIn,
            response=AssignmentOut,
            audit=AuditAction.home_visits_assigned,
            errors=(401, 403, 404, 422),
        )
    }

    async def post(self, school_id: str) -> None:
        data = self.body(AssignmentIn)
        year = todo_service.school_year(data.school_year, self.deps.clock())
        async with self.school_scope(school_id) as (session, school):
            out = await todo_service.assign(session, school, data, year)
            self.audit_about(teacher_id=str(data.teacher_id))
        self.send(out)


class SchoolVisitSummaryHandler(ApiHandler):
    openapi: ClassVar = {
        "get": Operation(
            "本校家访统计：每个班的学生数、至少家访一次的学生数、覆盖率、各方式家访次数；跟进事项按状态、关闭率、"
            "答复天数中位数、逾期数、重新打开率、家长平均评分（可按活动期间 from/to）",
            roles=ADMIN_ROLES,
            scope=Scope.school,
            query=SummaryQuery,
            response=SchoolSummary,
            errors=(401, 403, 404, 422),
        )
    }

    async def get(self, school_id: str) -> None:
        query = self.query(SummaryQuery)
        now = self.deps.clock()
        period = Period.of(todo_service.school_year(query.school_year, now), query.from_, query.to)
        async with self.school_scope(school_id) as (session, school):
            out = await statistics.school_summary(session, school, period, now)
        self.send(out)


class DistrictVisitSummaryHandler(ApiHandler):
    openapi: ClassVar = {
        "get": Operation(
            "全区家访统计：每校一行（覆盖率最低的在前）及全区合计；困境儿童只给合计，少于 5 不显示",
            roles=DISTRICT_ADMINS,
            scope=Scope.district,
            query=SummaryQuery,
            response=DistrictSummary,
            audit=AuditAction.home_visit_summary_read,
            errors=(401, 403, 404, 422),
        )
    }

    async def get(self, district_id: str) -> None:
        query = self.query(SummaryQuery)
        now = self.deps.clock()
        period = Period.of(todo_service.school_year(query.school_year, now), query.from_, query.to)
        async with self.district_scope(district_id) as (session, district):
            out = await statistics.district_summary(session, district, period, self.deps.cipher, now)
        self.send(out)


class SchoolAuditLogHandler(ApiHandler):
    openapi: ClassVar = {
        "get": Operation(
            "本校审计日志（谁在何时查看或修改了哪条记录、哪些敏感字段），按时间先后；可按 since、actor 筛选",
            roles=SCHOOL_ADMINS,
            scope=Scope.school,
            query=audit.AuditQuery,
            response=audit.AuditPage,
            errors=(401, 403, 404, 422),
        )
    }

    async def get(self, school_id: str) -> None:
        query = self.query(audit.AuditQuery)
        async with self.school_scope(school_id) as (session, school):
            items, cursor = await audit.school_events(session, school.id, query)
        self.send(audit.AuditPage(items=items, next_cursor=cursor))


class DistrictVisitSummaryXlsxHandler(ApiHandler):
    openapi: ClassVar = {
        "get": Operation(
            "全区家访汇总表（Excel）：与统计接口同样的数字，每校一行加全区合计",
            roles=DISTRICT_ADMINS,
            scope=Scope.district,
            query=SummaryQuery,
            media_type=statistics.XLSX,
            audit=AuditAction.home_visit_summary_read,
            errors=(401, 403, 404, 422),
        )
    }

    async def get(self, district_id: str) -> None:
        query = self.query(SummaryQuery)
        now = self.deps.clock()
        period = Period.of(todo_service.school_year(query.school_year, now), query.from_, query.to)
        async with self.district_scope(district_id) as (session, district):
            out = await statistics.district_summary(session, district, period, self.deps.cipher, now)
        self.set_header("Content-Type", statistics.XLSX)
        self.set_header(
            "Content-Disposition", f'attachment; filename="home-visits-{period.school_year}.xlsx"'
        )
        self.finish(statistics.district_workbook(out, district.name))


class VisitPhotosHandler(UploadHandler):  # streamed: its size is checked before it is read
    openapi: ClassVar = {
        "post": Operation(
            "添加一张家访照片（可选；请求体为图片本身，Content-Type 为 image/jpeg 或 image/png；"
            "每次家访最多 3 张，每张不超过 MAX_PHOTO_BYTES）；照片重新编码，去掉全部元数据（含 GPS）",
            roles=SCHOOL_STAFF,
            scope=Scope.record,
            response=PhotoOut,
            media_type="image/jpeg",
            status=201,
            audit=AuditAction.home_visit_photo_added,
            errors=(401, 403, 404, 409, 413, 415),
        )
    }

    async def post(self, visit_id: str) -> None:
        ctype = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        async with self.transaction() as session:
            photo = await photos.add_photo(
                session,
                self.me,
                self.path_uuid(visit_id),
                self.request.body,
                ctype,
                self.deps.settings.max_photo_bytes,
                self.deps.files,
                self.deps.clock(),
            )
            self.audit_about(photo_id=str(photo.id))
        self.send(PhotoOut(id=photo.id, content_type=photo.content_type, size=photo.size), status=201)


class VisitPhotoHandler(ApiHandler):
    openapi: ClassVar = {
        "get": Operation(
            "一张家访照片（只给家访老师、孩子现在的班主任和学校管理员）",
            roles=SCHOOL_STAFF,
            scope=Scope.record,
            media_type="image/jpeg",
            audit=AuditAction.home_visit_photo_read,
            errors=(401, 403, 404),
        )
    }

    async def get(self, visit_id: str, photo_id: str) -> None:
        async with self.transaction() as session:
            photo, data, school_id = await photos.read_photo(
                session, self.me, self.path_uuid(visit_id), self.path_uuid(photo_id), self.deps.files
            )
            self.audit_about(school_id)
        self.set_header("Content-Type", photo.content_type)
        self.finish(data)
