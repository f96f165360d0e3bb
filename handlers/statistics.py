"""Statistics for school and district admins (aggregates only; evaluators read the district's)."""

from __future__ import annotations

from typing import ClassVar

from handlers.base import ApiHandler
from handlers.policy import Operation, Scope
from models.accounts.rules import ADMIN_ROLES, DISTRICT_READERS
from models.learning import statistics
from models.learning.rules import school_year_of
from models.learning.schemas import LearningQuery


class _YearHandler(ApiHandler):
    def school_year(self) -> str:
        return self.query(LearningQuery).school_year or school_year_of(self.deps.clock())


class SchoolLearningSummaryHandler(_YearHandler):
    openapi: ClassVar = {
        "get": Operation(
            "本校家长完成学时要求的比例（按年级、班级）",
            query=LearningQuery,
            response=statistics.SchoolLearningSummary,
            roles=ADMIN_ROLES,
            errors=(401, 403, 404, 422),
            scope=Scope.school,
        )
    }

    async def get(self, school_id: str) -> None:
        year = self.school_year()
        async with self.school_scope(school_id) as (session, school):
            out = await statistics.school_summary(session, school, year)
        self.send(out)


class DistrictLearningSummaryHandler(_YearHandler):
    openapi: ClassVar = {
        "get": Operation(
            "全区各校家长完成学时要求的比例",
            query=LearningQuery,
            response=statistics.DistrictLearningSummary,
            roles=DISTRICT_READERS,
            errors=(401, 403, 404, 422),
            scope=Scope.district,
        )
    }

    async def get(self, district_id: str) -> None:
        year = self.school_year()
        async with self.district_scope(district_id) as (session, district):
            out = await statistics.district_summary(session, district, year)
        self.send(out)


class CatalogueSummaryHandler(ApiHandler):
    openapi: ClassVar = {
        "get": Operation(
            "本区课程资源数量（按层级）与区级目标的对比",
            response=statistics.CatalogueSummary,
            roles=DISTRICT_READERS,
            errors=(401, 403, 404),
            scope=Scope.district,
        )
    }

    async def get(self, district_id: str) -> None:
        async with self.district_scope(district_id) as (session, district):
            out = await statistics.catalogue_summary(session, district)
        self.send(out)
