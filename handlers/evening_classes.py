"""Evening classes: schedule, list, sign up / cancel, check-in code and check-in, roster, term counts."""

from __future__ import annotations

import hashlib
import hmac
from typing import ClassVar

from handlers.base import ApiHandler
from handlers.policy import XLSX, Operation, Scope
from infra.config import Settings
from infra.errors import NotFound
from models import reports
from models.accounts.rules import ADMIN_ROLES, DISTRICT_ADMINS, DISTRICT_READERS, PARENTS, STAFF_ROLES
from models.accounts.tables import District
from models.audit.actions import AuditAction
from models.evening_classes import attendance, scheduling, signups, term_counts, visibility
from models.evening_classes.errors import CheckinClosed
from models.evening_classes.rules import CHECKIN_PERIOD_SECONDS, checkin_open, checkin_token, valid_term
from models.evening_classes.schemas import (
    AttendanceOut,
    CheckinCodeOut,
    CheckinIn,
    DistrictTermSummary,
    EveningClassIn,
    EveningClassOut,
    EveningClassQuery,
    RosterOut,
    SignupIn,
    SignupOut,
    TermRequirementIn,
    TermSummary,
)
from models.pagination import Page

EveningClassPage = Page[EveningClassOut]


def checkin_key(settings: Settings) -> bytes:
    """Check-in tokens are signed with a key derived from the JWT secret, for this purpose only."""
    secret = settings.jwt_secret.get_secret_value().encode()
    return hmac.new(secret, b"evening-class-checkin", hashlib.sha256).digest()


class _EveningHandler(ApiHandler):
    @property
    def checkin_key(self) -> bytes:
        return checkin_key(self.deps.settings)

    def term(self, term: str) -> str:
        if not valid_term(term):
            raise NotFound("学期格式应为 2025-2026-1")
        return term


class SchoolEveningClassesHandler(_EveningHandler):
    openapi: ClassVar = {
        "post": Operation(
            "开设一节家长夜校（课程、时间、地点或线上链接、名额、面向对象、报名与取消截止时间）",
            body=EveningClassIn,
            response=EveningClassOut,
            status=201,
            roles=STAFF_ROLES,
            errors=(401, 403, 404, 422),
            idempotent=True,
            scope=Scope.school,
            audit=AuditAction.evening_class_scheduled,
        )
    }

    async def post(self, school_id: str) -> None:
        data = self.body(EveningClassIn)
        async with self.school_scope(school_id) as (session, school):
            created = await scheduling.schedule(session, self.me, school, data, self.deps.clock())
            [out] = await visibility.describe(session, self.me, [created])
        self.send(out, status=201)


class EveningClassesHandler(_EveningHandler):
    openapi: ClassVar = {
        "get": Operation(
            "我能看到的家长夜校（家长：面向自己孩子的；老师和管理员：本校的），按开课时间排序",
            query=EveningClassQuery,
            response=EveningClassPage,
            errors=(401, 422),
        )
    }

    async def get(self) -> None:
        query = self.query(EveningClassQuery)
        async with self.transaction() as session:
            items, cursor = await visibility.list_classes(session, self.me, query, self.deps.clock())
        self.send(EveningClassPage(items=items, next_cursor=cursor))


class EveningClassHandler(_EveningHandler):
    openapi: ClassVar = {
        "get": Operation(
            "家长夜校详情（含我的报名状态）", response=EveningClassOut, errors=(401, 404), scope=Scope.record
        )
    }

    async def get(self, class_id: str) -> None:
        async with self.transaction() as session:
            found = await visibility.get_class(session, self.me, self.path_uuid(class_id))
            [out] = await visibility.describe(session, self.me, [found])
        self.send(out)


class SignupsHandler(_EveningHandler):
    openapi: ClassVar = {
        "post": Operation(
            "报名：有名额则确认，否则进入候补（返回候补位置）",
            body=SignupIn,
            response=SignupOut,
            status=201,
            roles=PARENTS,
            errors=(401, 403, 404, 409, 422),
            idempotent=True,
            scope=Scope.record,
        )
    }

    async def post(self, class_id: str) -> None:
        self.body(SignupIn)
        request = signups.SignupRequest(
            self.me, self.path_uuid(class_id), self.deps.clock(), self.deps.templates
        )
        out = await self.deps.signups.submit(request)
        self.send(out, status=201)


class MySignupHandler(_EveningHandler):
    openapi: ClassVar = {
        "delete": Operation(
            "取消报名（截止时间前）；空出的名额自动给候补第一位",
            status=204,
            roles=PARENTS,
            errors=(401, 403, 404, 409),
            scope=Scope.record,
        )
    }

    async def delete(self, class_id: str) -> None:
        async with self.transaction() as session:
            await signups.cancel_signup(
                session, self.me, self.path_uuid(class_id), self.deps.clock(), self.deps.templates
            )
        self.set_status(204)
        self.finish()


class CheckinCodeHandler(_EveningHandler):
    openapi: ClassVar = {
        "get": Operation(
            f"老师屏幕上的签到二维码内容，每 {CHECKIN_PERIOD_SECONDS} 秒更换",
            response=CheckinCodeOut,
            roles=STAFF_ROLES,
            errors=(401, 403, 404, 409),
            scope=Scope.record,
        )
    }

    async def get(self, class_id: str) -> None:
        now = self.deps.clock()
        async with self.transaction() as session:
            found = await visibility.staff_class(session, self.me, self.path_uuid(class_id))
        if not checkin_open(found.starts_at, found.ends_at, now):
            raise CheckinClosed("签到在开课前 30 分钟开放，下课后 30 分钟关闭")
        token, next_at = checkin_token(self.checkin_key, str(found.id), now)
        self.send(CheckinCodeOut(token=token, next_token_at=next_at, period_seconds=CHECKIN_PERIOD_SECONDS))


class CheckinsHandler(_EveningHandler):
    openapi: ClassVar = {
        "post": Operation(
            "家长扫码签到（签到一次，记入学时一次）",
            body=CheckinIn,
            response=AttendanceOut,
            status=201,
            roles=PARENTS,
            errors=(401, 403, 404, 409, 422),
            scope=Scope.record,
        )
    }

    async def post(self, class_id: str) -> None:
        data = self.body(CheckinIn)
        async with self.transaction() as session:
            out = await attendance.check_in(
                session, self.me, self.path_uuid(class_id), data.token, self.checkin_key, self.deps.clock()
            )
        self.send(out, status=200 if out.already_recorded else 201)


class RosterHandler(_EveningHandler):
    openapi: ClassVar = {
        "get": Operation(
            "报名名单与出席情况",
            response=RosterOut,
            roles=STAFF_ROLES,
            errors=(401, 403, 404),
            scope=Scope.record,
            audit=AuditAction.evening_roster_read,
        )
    }

    async def get(self, class_id: str) -> None:
        async with self.transaction() as session:
            out = await attendance.roster(session, self.me, self.path_uuid(class_id))
        self.send(out)


class RosterAttendanceHandler(_EveningHandler):
    openapi: ClassVar = {
        "put": Operation(
            "老师在名单上登记家长出席（手机扫码失败时）",
            body=SignupIn,
            response=AttendanceOut,
            roles=STAFF_ROLES,
            errors=(401, 403, 404, 409),
            scope=Scope.record,
            audit=AuditAction.attendance_marked,
        )
    }

    async def put(self, class_id: str, parent_id: str) -> None:
        self.body(SignupIn)
        async with self.transaction() as session:
            out = await attendance.mark_on_roster(
                session, self.me, self.path_uuid(class_id), self.path_uuid(parent_id), self.deps.clock()
            )
        self.send(out)


class SchoolTermSummaryHandler(_EveningHandler):
    openapi: ClassVar = {
        "get": Operation(
            "本校本学期家长夜校：已举办、已安排、要求次数、报名率与出席率",
            response=TermSummary,
            roles=ADMIN_ROLES,
            errors=(401, 403, 404),
            scope=Scope.school,
        )
    }

    async def summary(self, school_id: str, term: str) -> TermSummary:
        wanted = self.term(term)
        async with self.school_scope(school_id) as (session, school):
            required = await term_counts.required_per_term(session, school.district_id, wanted)
            [out] = await term_counts.term_summaries(session, [school], wanted, self.deps.clock(), required)
        return out

    async def get(self, school_id: str, term: str) -> None:
        self.send(await self.summary(school_id, term))


class SchoolTermSummaryXlsxHandler(SchoolTermSummaryHandler):
    openapi: ClassVar = {"get": SchoolTermSummaryHandler.openapi["get"].spreadsheet()}

    async def get(self, school_id: str, term: str) -> None:
        out = await self.summary(school_id, term)
        self.send_download(
            reports.school_term_xlsx(out), XLSX, f"{out.school_name}{out.term}学期家长夜校.xlsx"
        )


class DistrictTermSummaryHandler(_EveningHandler):
    openapi: ClassVar = {
        "get": Operation(
            "全区各校本学期家长夜校次数（未达要求的学校排在前面）",
            response=DistrictTermSummary,
            roles=DISTRICT_READERS,
            errors=(401, 403, 404),
            scope=Scope.district,
        )
    }

    async def summary(self, district_id: str, term: str) -> tuple[District, DistrictTermSummary]:
        wanted = self.term(term)
        async with self.district_scope(district_id) as (session, district):
            out = await term_counts.district_summary(session, district.id, wanted, self.deps.clock())
        return district, out

    async def get(self, district_id: str, term: str) -> None:
        self.send((await self.summary(district_id, term))[1])


class DistrictTermSummaryXlsxHandler(DistrictTermSummaryHandler):
    openapi: ClassVar = {"get": DistrictTermSummaryHandler.openapi["get"].spreadsheet()}

    async def get(self, district_id: str, term: str) -> None:
        district, out = await self.summary(district_id, term)
        data = reports.district_term_xlsx(district.name, out)
        self.send_download(data, XLSX, f"{district.name}{out.term}学期各校家长夜校.xlsx")


class TermRequirementHandler(_EveningHandler):
    openapi: ClassVar = {
        "put": Operation(
            "设置本区每校每学期至少举办的夜校次数",
            body=TermRequirementIn,
            response=DistrictTermSummary,
            roles=DISTRICT_ADMINS,
            errors=(401, 403, 404, 422),
            scope=Scope.district,
            audit=AuditAction.term_requirement_set,
        )
    }

    async def put(self, district_id: str, term: str) -> None:
        data = self.body(TermRequirementIn)
        wanted = self.term(term)
        async with self.district_scope(district_id) as (session, district):
            await term_counts.set_required_per_term(session, district.id, wanted, data.required, self.me.id)
            out = await term_counts.district_summary(session, district.id, wanted, self.deps.clock())
        self.send(out)
