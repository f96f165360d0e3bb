"""The district 首页's figures — one row per school, worst first — from the API's two summaries (evening
classes of the term, hours completion of its school year), and the same table as an .xlsx workbook."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from infra.spreadsheet import Column, report_xlsx
from models.accounts import roster
from models.accounts.tables import District
from models.evening_classes import term_counts
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
    classes = await term_counts.district_summary(session, district.id, term, now)
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


COLUMNS = (
    Column("学校", 24),
    Column("已举办夜校"),
    Column("已安排夜校"),
    Column("每学期要求"),
    Column("是否达标", 10),
    Column("家长人数", 10),
    Column("完成学时的家长", 14),
    Column("学时完成率", 12, "0.0%"),
)
HELD, MEETS = 1, 4  # the cells shown red for a school below the requirement


def district_workbook(district: District, figures: DistrictFigures) -> bytes:
    rows = [
        (
            row.school_name,
            row.held,
            row.scheduled,
            row.required,
            "达标" if row.meets_requirement else "未达标",
            row.parents,
            row.parents_complete,
            row.completion_share,
        )
        for row in figures.rows
    ]
    return report_xlsx(
        "各校汇总",
        COLUMNS,
        rows,
        caption=f"{district.name} {figures.term} 学期家长夜校与 {figures.school_year} 学年学时完成情况",
        flagged=lambda row: (HELD, MEETS) if row[MEETS] == "未达标" else (),
    )


TEMPLATE_COLUMNS = (Column("学号", 14, "@"), Column("姓名", 12), Column("班级", 16), Column("年级", 10))


def roster_template() -> bytes:
    """The roster import's template: its columns as the import reads them, the 学号 column as text
    (so Excel keeps leading zeros and never writes 1.2E+10), and one example row to overwrite."""
    assert [c.header for c in TEMPLATE_COLUMNS] == [c.label for c in roster.COLUMNS]
    return report_xlsx(
        "学生名单", TEMPLATE_COLUMNS, [("20250001", "王小明", "三年级1班", "三年级")], formatted_rows=1001
    )
