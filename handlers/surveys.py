"""Satisfaction surveys: drafts, publishing and closing (district admin), response rates and results
(district readers; a school admin their own school's, once closed), and answering (parents, recorded
without their identity)."""

from __future__ import annotations

import uuid
from typing import ClassVar

from sqlalchemy.ext.asyncio import AsyncSession

from handlers.base import ApiHandler
from handlers.policy import Operation, Scope
from models.accounts.rules import DISTRICT_ADMINS, DISTRICT_READERS, PARENTS, Role
from models.audit.actions import AuditAction
from models.learning.rules import school_year_of
from models.learning.schemas import LearningQuery
from models.surveys import answering, export, moderation, service, statistics
from models.surveys.schemas import (
    MySurveys,
    ResponseAccepted,
    ResponseIn,
    ResponseRates,
    ResultsQuery,
    SheetQuery,
    SurveyIn,
    SurveyList,
    SurveyOut,
    SurveyPatch,
    SurveyResults,
)
from models.surveys.tables import Survey

# Results: the district's staff and evaluators; a school admin sees their own school's once closed.
RESULT_READERS = DISTRICT_READERS | {Role.school_admin}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class DistrictSurveysHandler(ApiHandler):
    openapi: ClassVar = {
        "post": Operation(
            '新建调查草稿：自拟题目（按维度分组），或用标准问卷 {"from_template": "parent-satisfaction"}',
            body=SurveyIn,
            response=SurveyOut,
            status=201,
            roles=DISTRICT_ADMINS,
            errors=(401, 403, 404, 422),
            idempotent=True,
            scope=Scope.district,
            audit=AuditAction.survey_created,
        ),
        "get": Operation(
            "本区的调查（最新的在前）",
            response=SurveyList,
            roles=DISTRICT_READERS,
            errors=(401, 403, 404),
            scope=Scope.district,
        ),
    }

    async def post(self, district_id: str) -> None:
        data = self.body(SurveyIn)
        async with self.district_scope(district_id) as (session, district):
            created = await service.create(session, self.me, district.id, data)
            [out] = await service.describe(session, [created])
        self.send(out, status=201)

    async def get(self, district_id: str) -> None:
        async with self.district_scope(district_id) as (session, district):
            items = await service.district_surveys(session, district.id)
        self.send(SurveyList(items=items))


class _SurveyHandler(ApiHandler):
    async def survey(self, session: AsyncSession, survey_id: str) -> Survey:
        return await service.survey_for(session, self.me, self.path_uuid(survey_id), self.operation.roles)


class SurveyHandler(_SurveyHandler):
    openapi: ClassVar = {
        "get": Operation(
            "调查详情（题目、对象、抽样方法与种子）",
            response=SurveyOut,
            roles=DISTRICT_READERS,
            errors=(401, 403, 404),
            scope=Scope.record,
        ),
        "patch": Operation(
            "修改草稿；已发布的调查只能延长结束时间",
            body=SurveyPatch,
            response=SurveyOut,
            roles=DISTRICT_ADMINS,
            errors=(401, 403, 404, 409, 422),
            scope=Scope.record,
            audit=AuditAction.survey_changed,
        ),
    }

    async def get(self, survey_id: str) -> None:
        async with self.transaction() as session:
            found = await self.survey(session, survey_id)
            [out] = await service.describe(session, [found])
        self.send(out)

    async def patch(self, survey_id: str) -> None:
        data = self.body(SurveyPatch)
        async with self.transaction() as session:
            found = await self.survey(session, survey_id)
            changed = await service.update(session, found, data, self.deps.clock())
            [out] = await service.describe(session, [changed])
        self.send(out)


class PublishHandler(_SurveyHandler):
    openapi: ClassVar = {
        "post": Operation(
            "发布：冻结题目，并按抽样方法从名单中抽取样本（记录随机种子）",
            response=SurveyOut,
            roles=DISTRICT_ADMINS,
            errors=(401, 403, 404, 409, 422),
            scope=Scope.record,
            audit=AuditAction.survey_published,
        )
    }

    async def post(self, survey_id: str) -> None:
        async with self.transaction() as session:
            found = await self.survey(session, survey_id)
            published = await service.publish(session, found, self.deps.clock())
            [out] = await service.describe(session, [published])
        self.send(out)


class CloseHandler(_SurveyHandler):
    openapi: ClassVar = {
        "post": Operation(
            "结束调查（尚未写出的答卷全部写出）",
            response=SurveyOut,
            roles=DISTRICT_ADMINS,
            errors=(401, 403, 404, 409),
            scope=Scope.record,
            audit=AuditAction.survey_closed,
        )
    }

    async def post(self, survey_id: str) -> None:
        async with self.transaction() as session:
            found = await self.survey(session, survey_id)
            closed = await answering.close_survey(session, found, self.deps.cipher, self.deps.clock())
            [out] = await service.describe(session, [closed])
        self.send(out)


class ResponseRatesHandler(_SurveyHandler):
    openapi: ClassVar = {
        "get": Operation(
            "回收率（按学校、年级：已答 ÷ 抽中），不含任何答案",
            response=ResponseRates,
            roles=DISTRICT_READERS,
            errors=(401, 403, 404),
            scope=Scope.record,
        )
    }

    async def get(self, survey_id: str) -> None:
        async with self.transaction() as session:
            found = await self.survey(session, survey_id)
            out = await service.response_rates(session, found)
        self.send(out)


class ResultsHandler(_SurveyHandler):
    openapi: ClassVar = {
        "get": Operation(
            "满意度指数（题目、维度、总体；全区、按学校或学段），含样本量、回收率与 95% 置信区间；"
            "不足 10 份的数值不显示（样本不足）。学校管理员只看本校、且调查结束后",
            query=ResultsQuery,
            response=SurveyResults,
            roles=RESULT_READERS,
            errors=(401, 403, 404, 409, 422),
            scope=Scope.record,
        )
    }

    async def get(self, survey_id: str) -> None:
        query = self.query(ResultsQuery)
        async with self.transaction() as session:
            found = await self.survey(session, survey_id)
            only = await _own_school_only(self, session, found)
            out = await statistics.cached_results(
                session, self.deps.redis, self.deps.keys, found, query.group_by, only
            )
        self.send(out)


async def _own_school_only(
    handler: _SurveyHandler, session: AsyncSession, survey: Survey
) -> uuid.UUID | None:
    """None for district readers; a school admin's own school, once the survey is closed."""
    if handler.me.district_roles(survey.district_id) & DISTRICT_READERS:
        return None
    if survey.status != "closed":
        raise service.NotClosed()
    return await service.admin_school(session, handler.me, survey)


class ResultsWorkbookHandler(_SurveyHandler):
    openapi: ClassVar = {
        "get": Operation(
            "评估用 Excel：概览、维度、题目、学校、逐年对比、意见建议（带图表；样本不足的格标注）",
            roles=DISTRICT_READERS,
            errors=(401, 403, 404),
            scope=Scope.record,
            media_type=XLSX,
            audit=AuditAction.survey_exported,
        )
    }

    async def get(self, survey_id: str) -> None:
        async with self.transaction() as session:
            found = await self.survey(session, survey_id)
            workbook = await export.workbook(session, self.deps.redis, self.deps.keys, found)
        self.set_header("Content-Type", XLSX)
        self.set_header("Content-Disposition", f'attachment; filename="survey-{found.id}.xlsx"')
        self.finish(workbook)


class ResultsCsvHandler(_SurveyHandler):
    openapi: ClassVar = {
        "get": Operation(
            "评估用 Excel 的一张表，CSV（UTF-8 带 BOM），供分析人员使用",
            query=SheetQuery,
            roles=DISTRICT_READERS,
            errors=(401, 403, 404, 422),
            scope=Scope.record,
            media_type="text/csv",
            audit=AuditAction.survey_exported,
        )
    }

    async def get(self, survey_id: str) -> None:
        query = self.query(SheetQuery)
        async with self.transaction() as session:
            found = await self.survey(session, survey_id)
            data = await export.sheet_csv(session, self.deps.redis, self.deps.keys, found, query.sheet)
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="survey-{found.id}-{query.sheet}.csv"')
        self.finish(data)


class DistrictSatisfactionHandler(ApiHandler):
    openapi: ClassVar = {
        "get": Operation(
            "本区各校满意度指数与上一学年同一问卷的变化（是否超出置信区间）",
            query=LearningQuery,
            response=statistics.DistrictSatisfaction,
            roles=DISTRICT_READERS,
            errors=(401, 403, 404, 422),
            scope=Scope.district,
        )
    }

    async def get(self, district_id: str) -> None:
        year = self.query(LearningQuery).school_year or school_year_of(self.deps.clock())
        async with self.district_scope(district_id) as (session, district):
            out = await statistics.district_satisfaction(session, district.id, year)
        self.send(out)


class MySurveysHandler(ApiHandler):
    openapi: ClassVar = {
        "get": Operation(
            "我可以填写的调查：每个被抽中的孩子一条（已填写的标明）",
            response=MySurveys,
            roles=PARENTS,
            errors=(401, 403),
            scope=Scope.family,
        )
    }

    async def get(self) -> None:
        async with self.transaction() as session:
            items = await answering.my_surveys(session, self.me, self.deps.clock())
        self.send(MySurveys(items=items))


class ResponsesHandler(ApiHandler):
    openapi: ClassVar = {
        "post": Operation(
            "提交一份完整答卷（每个被抽中的孩子一份，由任一监护人填写）。匿名：不记录是谁提交的，"
            "答案与“已填写”分开保存。不接受 Idempotency-Key：重试得到 409 already_answered 即表示已收到",
            body=ResponseIn,
            response=ResponseAccepted,
            status=201,
            roles=PARENTS,
            errors=(401, 403, 404, 409, 422),
            scope=Scope.record,
            records_identity=False,
        )
    }

    async def post(self, survey_id: str) -> None:
        data = self.body(ResponseIn)
        wanted = self.path_uuid(survey_id)
        cipher = self.deps.cipher
        async with self.transaction() as session:
            accepted = await answering.submit(session, self.me, wanted, data, cipher, self.deps.clock())
        # After the commit, each in a transaction of its own (never beside the participation row): the
        # free texts' check with WeChat, then writing out a full batch.
        if accepted.texts:
            checks = await moderation.check(self.deps.wechat, accepted.openid, accepted.texts)
            async with self.transaction() as session:
                await answering.record_checks(session, accepted.pending_id, checks, cipher)
        async with self.transaction() as session:
            if await answering.ready_to_mix(session, wanted, accepted.cell):
                await answering.mix(session, wanted, cipher, self.deps.clock(), cell=accepted.cell)
        self.send(accepted.out, status=201)


class HeldTextsHandler(_SurveyHandler):
    openapi: ClassVar = {
        "get": Operation(
            "待审核的意见建议（微信内容安全检测为 risky 或 review，或无法检测）：只有内容，没有身份",
            response=moderation.HeldTexts,
            roles=DISTRICT_ADMINS,
            errors=(401, 403, 404),
            scope=Scope.record,
        )
    }

    async def get(self, survey_id: str) -> None:
        async with self.transaction() as session:
            found = await self.survey(session, survey_id)
            out = await moderation.held_texts(session, found)
        self.send(out)


class HeldTextHandler(_SurveyHandler):
    openapi: ClassVar = {
        "put": Operation(
            "审核一条意见建议：放行（release）后才会出现在导出中，或驳回（reject）",
            body=moderation.DecisionIn,
            response=moderation.HeldText,
            roles=DISTRICT_ADMINS,
            errors=(401, 403, 404, 409, 422),
            scope=Scope.record,
            audit=AuditAction.survey_text_moderated,
        )
    }

    async def put(self, survey_id: str, text_id: str) -> None:
        data = self.body(moderation.DecisionIn)
        async with self.transaction() as session:
            found = await self.survey(session, survey_id)
            out = await moderation.decide(session, found, text_id, data.decision)
        self.send(out)
