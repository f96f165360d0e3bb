"""The Excel twins of the summaries schools and districts report with (汇总表): the same figures as the JSON
answers, Chinese headers, one row per school / grade / classroom / tier, a totals row where the figures
add up, and every cell written through infra.spreadsheet (so no typed text runs as a formula)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from course_catalog.schema import Tier
from infra.spreadsheet import Column, report_xlsx
from models.evening_classes.schemas import DistrictTermSummary, TermSummary
from models.learning.statistics import (
    CatalogueSummary,
    Completion,
    DistrictLearningSummary,
    SchoolLearningSummary,
)

TIER_LABELS = {
    Tier.foundation: "基础课",
    Tier.general: "通识课",
    Tier.custom: "定制课",
    Tier.online: "网络课",
}
SHARE = "0.0%"

COMPLETION_COLUMNS = (Column("家长人数", 10), Column("完成学时的家长", 14), Column("完成率", 10, SHARE))


def _completion(c: Completion) -> tuple[int, int, float]:
    return c.parents, c.complete, c.share


def _requirement(required: dict[str, float]) -> str:
    wanted = [f"{TIER_LABELS[Tier(t)]} {h:g} 课时" for t, h in required.items() if h > 0]
    return "，".join(wanted) or "未设要求"


def school_learning_xlsx(school_name: str, summary: SchoolLearningSummary) -> bytes:
    columns = (Column("年级", 8), Column("班级", 16), *COMPLETION_COLUMNS)
    rows: list[Sequence[Any]] = [(c.grade, c.classroom_name, *_completion(c)) for c in summary.by_classroom]
    rows.append(("合计", "", *_completion(summary.total)))
    return report_xlsx(
        "按班级",
        columns,
        rows,
        caption=f"{school_name} {summary.school_year} 学年家长学时完成情况"
        f"（要求：{_requirement(summary.required)}）",
    )


def district_learning_xlsx(district_name: str, summary: DistrictLearningSummary) -> bytes:
    columns = (Column("学校", 24), *COMPLETION_COLUMNS)
    rows: list[Sequence[Any]] = [(s.school_name, *_completion(s)) for s in summary.by_school]
    rows.append(("合计", *_completion(summary.total)))
    return report_xlsx(
        "各校汇总",
        columns,
        rows,
        caption=f"{district_name} {summary.school_year} 学年各校家长学时完成情况"
        f"（要求：{_requirement(summary.required)}）",
    )


TERM_COLUMNS = (
    Column("学校", 24),
    Column("每学期要求", 10),
    Column("已举办", 8),
    Column("已安排", 8),
    Column("是否达标", 10),
    Column("座位数", 8),
    Column("确认报名", 10),
    Column("出席", 8),
    Column("报名率", 10, SHARE),
    Column("出席率", 10, SHARE),
)
HELD, MEETS = 2, 4


def _term_row(t: TermSummary) -> tuple[Any, ...]:
    return (
        t.school_name,
        t.required,
        t.held,
        t.scheduled,
        "达标" if t.meets_requirement else "未达标",
        t.seats,
        t.confirmed_signups,
        t.attended,
        t.signup_rate,
        t.attendance_rate,
    )


def _flag_below(row: Sequence[Any]) -> tuple[int, ...]:
    return (HELD, MEETS) if row[MEETS] == "未达标" else ()


def school_term_xlsx(summary: TermSummary) -> bytes:
    return report_xlsx(
        "本校",
        TERM_COLUMNS,
        [_term_row(summary)],
        caption=f"{summary.school_name} {summary.term} 学期家长夜校",
        flagged=_flag_below,
    )


def district_term_xlsx(district_name: str, summary: DistrictTermSummary) -> bytes:
    items = summary.items
    seats = sum(t.seats for t in items)
    confirmed = sum(t.confirmed_signups for t in items)
    attended = sum(t.attended for t in items)
    totals = (
        f"合计（{len(items)} 所，未达标 {summary.schools_below_requirement} 所）",
        summary.required,
        sum(t.held for t in items),
        sum(t.scheduled for t in items),
        "",
        seats,
        confirmed,
        attended,
        round(confirmed / seats, 4) if seats else 0.0,
        "",  # attendance counts the confirmed of classes already held, which the rows do not carry
    )
    return report_xlsx(
        "各校汇总",
        TERM_COLUMNS,
        [*(_term_row(t) for t in items), totals],
        caption=f"{district_name} {summary.term} 学期各校家长夜校（每校至少 {summary.required} 次）",
        flagged=_flag_below,
    )


def catalogue_xlsx(district_name: str, summary: CatalogueSummary) -> bytes:
    columns = (
        Column("层级", 10),
        Column("课程数", 10),
        Column("区级目标", 10),
        Column("完成比例", 10, SHARE),
    )
    rows = [(TIER_LABELS[t.tier], t.courses, t.target, t.share_of_target) for t in summary.tiers]
    return report_xlsx(
        "课程资源",
        columns,
        rows,
        caption=f"{district_name} 课程资源数量与区级目标",
        flagged=lambda row: (3,) if row[3] < 1.0 else (),
    )
