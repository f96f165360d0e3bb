"""Statistics for school and district admins (aggregates only; evaluators read the district's)."""

from __future__ import annotations

from typing import ClassVar

from handlers.base import ApiHandler
from handlers.policy import XLSX, Operation, Scope
from models import reports
from models.accounts.rules import ADMIN_ROLES, DISTRICT_READERS
from models.accounts.tables import District, School
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

    async def summary(self, school_id: str) -> tuple[School, statistics.SchoolLearningSummary]:
        year = self.school_year()
        async with self.school_scope(school_id) as (session, school):
            return school, await statistics.school_summary(session, school, year)

    async def get(self, school_id: str) -> None:
        self.send((await self.summary(school_id))[1])


class SchoolLearningSummaryXlsxHandler(SchoolLearningSummaryHandler):
    openapi: ClassVar = {"get": SchoolLearningSummaryHandler.openapi["get"].spreadsheet()}

    async def get(self, school_id: str) -> None:
        school, out = await self.summary(school_id)
        data = reports.school_learning_xlsx(school.name, out)
        self.send_download(data, XLSX, f"{school.name}{out.school_year}学年学时完成情况.xlsx")


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

    async def summary(self, district_id: str) -> tuple[District, statistics.DistrictLearningSummary]:
        year = self.school_year()
        async with self.district_scope(district_id) as (session, district):
            return district, await statistics.district_summary(session, district, year)

    async def get(self, district_id: str) -> None:
        self.send((await self.summary(district_id))[1])


class DistrictLearningSummaryXlsxHandler(DistrictLearningSummaryHandler):
    openapi: ClassVar = {"get": DistrictLearningSummaryHandler.openapi["get"].spreadsheet()}

    async def get(self, district_id: str) -> None:
        district, out = await self.summary(district_id)
        data = reports.district_learning_xlsx(district.name, out)
        self.send_download(data, XLSX, f"{district.name}{out.school_year}学年各校学时完成情况.xlsx")


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

    async def summary(self, district_id: str) -> tuple[District, statistics.CatalogueSummary]:
        async with self.district_scope(district_id) as (session, district):
            return district, await statistics.catalogue_summary(session, district)

    async def get(self, district_id: str) -> None:
        self.send((await self.summary(district_id))[1])


class CatalogueSummaryXlsxHandler(CatalogueSummaryHandler):
    openapi: ClassVar = {"get": CatalogueSummaryHandler.openapi["get"].spreadsheet()}

    async def get(self, district_id: str) -> None:
        district, out = await self.summary(district_id)
        self.send_download(reports.catalogue_xlsx(district.name, out), XLSX, f"{district.name}课程资源.xlsx")
