"""The district 首页's figures — one row per school, worst first — from the API's two summaries (evening
classes of the term, hours completion of its school year), and the same table as an .xlsx workbook."""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from datetime import datetime

from openpyxl import Workbook
from openpyxl.styles import Font, PatternFill
from sqlalchemy.ext.asyncio import AsyncSession

from models.accounts import roster
from models.accounts.tables import District
from models.evening_classes import service as evening
from models.learning import statistics


@dataclass(frozen=True)
class SchoolRow:
    school_id: uuid.UUID
    school_name: str
    held: int
    scheduled: int
    required: int
    meets_requirement: bool
    parents: int
    parents_complete: int
    completion_share: float


@dataclass(frozen=True)
class DistrictFigures:
    term: str
    school_year: str
    required: int
    schools_below_requirement: int
    rows: list[SchoolRow]


async def district_figures(
    session: AsyncSession, district: District, term: str, now: datetime
) -> DistrictFigures:
    """The rows in the order of the API's term summary: below the requirement first, fewest held first."""
    school_year = term[:9]
    classes = await evening.district_summary(session, district.id, term, now)
    learning = await statistics.district_summary(session, district, school_year)
    completion = {s.school_id: s for s in learning.by_school}
    rows = []
    for item in classes.items:
        done = completion.get(item.school_id)
        rows.append(
            SchoolRow(
                school_id=item.school_id,
                school_name=item.school_name,
                held=item.held,
                scheduled=item.scheduled,
                required=item.required,
                meets_requirement=item.meets_requirement,
                parents=done.parents if done else 0,
                parents_complete=done.complete if done else 0,
                completion_share=done.share if done else 0.0,
            )
        )
    return DistrictFigures(term, school_year, classes.required, classes.schools_below_requirement, rows)


HEADERS = (
    "学校",
    "已举办夜校",
    "已安排夜校",
    "每学期要求",
    "是否达标",
    "家长人数",
    "完成学时的家长",
    "学时完成率",
)
BELOW = Font(color="C00000", bold=True)


def district_workbook(district: District, figures: DistrictFigures) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "各校汇总"
    sheet.append([f"{district.name} {figures.term} 学期家长夜校与 {figures.school_year} 学年学时完成情况"])
    sheet.append(list(HEADERS))
    for cell in sheet[2]:
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="DDEBF7")
    for row in figures.rows:
        sheet.append(
            [
                row.school_name,
                row.held,
                row.scheduled,
                row.required,
                "达标" if row.meets_requirement else "未达标",
                row.parents,
                row.parents_complete,
                row.completion_share,
            ]
        )
        line = sheet.max_row
        sheet.cell(line, 8).number_format = "0.0%"
        if not row.meets_requirement:
            sheet.cell(line, 2).font = BELOW
            sheet.cell(line, 5).font = BELOW
    for letter, width in zip("ABCDEFGH", (24, 12, 12, 12, 10, 10, 14, 12), strict=True):
        sheet.column_dimensions[letter].width = width
    sheet.freeze_panes = "A3"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def roster_template() -> bytes:
    """The roster import's template: its columns as the import reads them, the 学号 column as text
    (so Excel keeps leading zeros and never writes 1.2E+10), and one example row to overwrite."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "学生名单"
    sheet.append([c.label for c in roster.COLUMNS])
    sheet.append(["20250001", "王小明", "三年级1班", "三年级"])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="DDEBF7")
    for row in range(2, 1002):
        sheet.cell(row, 1).number_format = "@"
    for letter, width in zip("ABCD", (14, 12, 16, 10), strict=True):
        sheet.column_dimensions[letter].width = width
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
