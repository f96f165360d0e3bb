"""A parent's hours and certificates, online-lesson heartbeats, and the district's requirements."""

from __future__ import annotations

from typing import ClassVar

from handlers.base import ApiHandler
from handlers.policy import Operation, Scope
from infra.errors import NotFound, ValidationFailed
from models.accounts.rules import ADMIN_ROLES, DISTRICT_ADMINS, DISTRICT_READERS, PARENTS
from models.audit.actions import AuditAction
from models.catalog import service as catalog
from models.learning import service as learning
from models.learning.certificate import render_certificate_pdf
from models.learning.progress import Lesson
from models.learning.rules import school_year_of, valid_school_year
from models.learning.schemas import (
    AdjustmentIn,
    AdjustmentOut,
    CertificateOut,
    LearningOut,
    LearningQuery,
    ProgressIn,
    ProgressOut,
    RequirementsIn,
    RequirementsOut,
)
from models.pagination import Page

CertificatePage = Page[CertificateOut]


class MyLearningHandler(ApiHandler):
    openapi: ClassVar = {
        "get": Operation(
            "我的学时：本学年各层级要求与已获学时、缺口、学时记录、结业证书",
            query=LearningQuery,
            response=LearningOut,
            errors=(401, 422),
            scope=Scope.family,
        )
    }

    async def get(self) -> None:
        query = self.query(LearningQuery)
        school_year = query.school_year or school_year_of(self.deps.clock())
        if not valid_school_year(school_year):
            raise ValidationFailed(
                errors=[{"loc": ["query", "school_year"], "msg": "expected e.g. 2025-2026"}]
            )
        async with self.transaction() as session:
            out = await learning.learning_summary(session, self.me.id, school_year)
        self.send(out)


class MyCertificatesHandler(ApiHandler):
    openapi: ClassVar = {
        "get": Operation("我的结业证书", response=CertificatePage, errors=(401,), scope=Scope.family)
    }

    async def get(self) -> None:
        async with self.transaction() as session:
            # This year's may be due without a new credit (the district lowered its requirement).
            this_year = school_year_of(self.deps.clock())
            await learning.issue_certificate_if_complete(session, self.me.id, this_year)
            certs = await learning.certificates_of(session, self.me.id)
        self.send(CertificatePage(items=[learning.certificate_out(c) for c in certs]))


class MyCertificatePdfHandler(ApiHandler):
    openapi: ClassVar = {
        "get": Operation("结业证书 PDF（可保存或打印）", errors=(401, 404), scope=Scope.family)
    }

    async def get(self, certificate_id: str) -> None:
        async with self.transaction() as session:
            cert = await learning.certificate_of(session, self.me.id, self.path_uuid(certificate_id))
            if cert is None:
                raise NotFound("证书不存在")
            district_name = await learning.district_name(session, cert.district_id)
        pdf = render_certificate_pdf(cert, parent_name=self.me.display_name, district_name=district_name)
        self.set_header("Content-Type", "application/pdf")
        self.set_header("Content-Disposition", f'inline; filename="certificate-{cert.number}.pdf"')
        self.finish(pdf)


class LessonProgressHandler(ApiHandler):
    openapi: ClassVar = {
        "post": Operation(
            "网络课播放心跳（播放时每 15 秒一次）：服务器只认可可验证的观看时长，看满 90% 记入学时",
            body=ProgressIn,
            response=ProgressOut,
            roles=PARENTS,
            errors=(401, 403, 404, 422),
            scope=Scope.record,
        )
    }

    async def post(self, course_id: str) -> None:
        data = self.body(ProgressIn)
        lesson = await self.deps.lessons.get(self.path_uuid(course_id))
        if lesson is None or not catalog.may_watch(self.me, lesson):
            raise NotFound("课程不存在")
        progress = await self.deps.progress.beat(
            self.me.id, Lesson(lesson.course_id, lesson.video_seconds, lesson.class_hours), data.position
        )
        self.send(
            ProgressOut(
                course_id=lesson.course_id,
                position=progress.position,
                verified_seconds=progress.verified_seconds,
                required_seconds=progress.required_seconds,
                video_seconds=lesson.video_seconds,
                completed=progress.completed,
            )
        )


class RequirementsHandler(ApiHandler):
    openapi: ClassVar = {
        "get": Operation(
            "区县某学年各层级的学时要求",
            response=RequirementsOut,
            roles=DISTRICT_READERS,
            errors=(401, 403, 404),
            scope=Scope.district,
        ),
        "put": Operation(
            "设置区县某学年各层级的学时要求",
            body=RequirementsIn,
            response=RequirementsOut,
            roles=DISTRICT_ADMINS,
            errors=(401, 403, 404, 422),
            scope=Scope.district,
            audit=AuditAction.requirements_set,
        ),
    }

    def _year(self, school_year: str) -> str:
        if not valid_school_year(school_year):
            raise NotFound("学年格式应为 2025-2026")
        return school_year

    async def get(self, district_id: str, school_year: str) -> None:
        year = self._year(school_year)
        async with self.district_scope(district_id) as (
            s,
            d,
        ):
            required = await learning.requirements_for(s, d.id, year)
        self.send(RequirementsOut(district_id=d.id, school_year=year, **required))

    async def put(self, district_id: str, school_year: str) -> None:
        data = self.body(RequirementsIn)
        year = self._year(school_year)
        async with self.district_scope(district_id) as (session, district):
            out = await learning.set_requirements(session, district, year, data, self.me.id)
        self.send(out)


class HourAdjustmentsHandler(ApiHandler):
    openapi: ClassVar = {
        "post": Operation(
            "学校管理员更正家长学时（须写明原因；记入台账并审计，不能修改或删除已有记录）",
            body=AdjustmentIn,
            response=AdjustmentOut,
            status=201,
            roles=ADMIN_ROLES,
            errors=(401, 403, 404, 422),
            idempotent=True,
            scope=Scope.school,
            audit=AuditAction.hours_adjusted,
        )
    }

    async def post(self, school_id: str) -> None:
        data = self.body(AdjustmentIn)
        year = data.school_year or school_year_of(self.deps.clock())
        async with self.school_scope(school_id) as (session, school):
            out = await learning.adjust_hours(session, school, data, year, self.me.id)
        self.send(out, status=201)
