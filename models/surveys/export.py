"""The evaluators' workbook (openpyxl): 概览, 维度, 题目, 学校, 逐年对比, 意见建议, with native Excel charts;
every suppressed cell reads 样本不足 instead of a figure. No names, no roster, no sample list."""

from __future__ import annotations

from openpyxl import Workbook
from openpyxl.chart import BarChart, Reference
from openpyxl.styles import Font
from openpyxl.worksheet.worksheet import Worksheet
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from infra.redis import Keys
from infra.spreadsheet import csv_bytes, new_workbook, workbook_bytes
from models.surveys.moderation import shown_quotes
from models.surveys.rules import MIN_CELL, SUPPRESSED_NOTE
from models.surveys.schemas import Figure, SurveyResults
from models.surveys.statistics import cached_results, district_satisfaction
from models.surveys.tables import Survey

METHOD_LABELS = {"census": "普查（全体家庭）", "stratified": "分层随机抽样（按学校、年级）"}
STATUS_LABELS = {"draft": "草稿", "published": "进行中", "closed": "已结束"}
# ?sheet= of the CSV export → the workbook's sheet
SHEETS = {
    "overview": "概览",
    "dimensions": "维度",
    "questions": "题目",
    "schools": "学校",
    "trend": "逐年对比",
    "comments": "意见建议",
}
NO_TEXT = f"暂无可列出的意见建议（只列出通过内容审核、且来自作答不少于 {MIN_CELL} 份的学校的意见）"


def _value(figure: Figure | None) -> float | str | None:
    if figure is None:
        return None
    return SUPPRESSED_NOTE if figure.suppressed else figure.value


def _ci(figure: Figure | None) -> str | None:
    if figure is None or figure.suppressed or figure.ci_low is None:
        return None
    return f"{figure.ci_low:.2f}–{figure.ci_high:.2f}"


def _rate(rate: float | None) -> float | None:
    return None if rate is None else round(rate * 100, 2)


def _header(sheet: Worksheet, *titles: str) -> None:
    sheet.append(list(titles))
    for cell in sheet[sheet.max_row]:
        cell.font = Font(bold=True)


def _bar(sheet: Worksheet, title: str, rows: int, anchor: str) -> None:
    """A bar chart of column B (the index) labelled by column A, rows 2..rows+1."""
    if rows == 0:
        return
    chart = BarChart()
    chart.title = title
    chart.y_axis.title = "满意度指数"
    chart.y_axis.scaling.min, chart.y_axis.scaling.max = 0, 100
    chart.add_data(Reference(sheet, min_col=2, min_row=1, max_row=rows + 1), titles_from_data=True)
    chart.set_categories(Reference(sheet, min_col=1, min_row=2, max_row=rows + 1))
    sheet.add_chart(chart, anchor)


async def workbook(session: AsyncSession, redis: Redis, keys: Keys, survey: Survey) -> bytes:
    return workbook_bytes(await build(session, redis, keys, survey))


async def sheet_csv(session: AsyncSession, redis: Redis, keys: Keys, survey: Survey, sheet: str) -> bytes:
    """One sheet of the workbook as CSV for analysts: UTF-8 with a byte-order mark, which Excel needs to
    read Chinese correctly; suppressed cells read 样本不足 as in the workbook."""
    book = await build(session, redis, keys, survey)
    return csv_bytes(book[SHEETS[sheet]].iter_rows(values_only=True))


async def build(session: AsyncSession, redis: Redis, keys: Keys, survey: Survey) -> Workbook:
    """The same figures as the results endpoint, from its cache when they are there."""
    whole = SurveyResults.model_validate_json(
        await cached_results(session, redis, keys, survey, "none")
    ).groups[0]
    by_school = SurveyResults.model_validate_json(
        await cached_results(session, redis, keys, survey, "school")
    ).groups
    book = new_workbook()

    overview = book.active
    assert overview is not None
    overview.title = "概览"
    _header(overview, "项目", "内容")
    for row in (
        ("调查", survey.title),
        ("学年", survey.school_year or ""),
        ("状态", STATUS_LABELS[survey.status]),
        ("方法", METHOD_LABELS[survey.sampling_method]),
        ("随机种子", str(survey.seed) if survey.seed is not None else ""),
        ("抽中家庭数", whole.sampled),
        ("回收份数", whole.responses),
        ("回收率（%）", _rate(whole.response_rate)),
        ("总体满意度指数", _value(whole.overall)),
        ("95% 置信区间", _ci(whole.overall)),
        (
            "计算方法",
            "指数 0–100（非常不满意=0，非常满意=100），“不了解”不计入；按各校各年级人数事后分层加权；"
            f"置信区间含有限总体校正；不足 {MIN_CELL} 份的数值不显示（样本不足）",
        ),
    ):
        overview.append(list(row))

    dims = book.create_sheet("维度")
    _header(dims, "维度", "满意度指数", "95% 置信区间", "作答人数", "权重")
    for d in whole.dimensions:
        dims.append([d.title, _value(d.figure), _ci(d.figure), d.figure.n, d.weight])
    _bar(dims, "各维度满意度指数", len(whole.dimensions), "G2")

    questions = book.create_sheet("题目")
    labels = ["非常不满意", "不满意", "一般", "满意", "非常满意", "不了解"]
    _header(questions, "题目", "维度", "满意度指数", "95% 置信区间", "作答人数", *labels, "“不了解”占比（%）")
    titles = {d.key: d.title for d in whole.dimensions}
    for q in whole.questions:
        if q.kind != "likert5":
            continue
        if q.distribution is None:
            counts: list[int | str] = [SUPPRESSED_NOTE] * len(labels)
            unknown: float | str | None = SUPPRESSED_NOTE
        else:
            counts = [s.count for s in q.distribution]
            unknown = round(q.distribution[-1].share * 100, 2)
        n = q.figure.n if q.figure else None
        questions.append(
            [
                q.text,
                titles.get(q.dimension, q.dimension),
                _value(q.figure),
                _ci(q.figure),
                n,
                *counts,
                unknown,
            ]
        )

    schools = book.create_sheet("学校")
    _header(
        schools,
        "学校",
        "总体满意度指数",
        "95% 置信区间",
        "作答人数",
        "抽中",
        "回收",
        "回收率（%）",
        *[d.title for d in whole.dimensions],
    )
    for g in by_school:
        schools.append(
            [
                g.label,
                _value(g.overall),
                _ci(g.overall),
                g.overall.n,
                g.sampled,
                g.responses,
                _rate(g.response_rate),
                *[_value(d.figure) for d in g.dimensions],
            ]
        )
    _bar(schools, "各校总体满意度指数", len(by_school), "M2")

    years = book.create_sheet("逐年对比")
    _header(years, "对象", "今年指数", "去年指数", "变化", "是否超出偶然波动")
    if survey.school_year is not None and survey.status == "closed":
        trend = await district_satisfaction(session, survey.district_id, survey.school_year)
        if trend.survey_id == survey.id and trend.district is not None:
            rows = [("全区", trend.district)] + [(f"维度：{d.title}", d.district) for d in trend.dimensions]
            rows += [(s.school_name, s.overall) for s in trend.schools]
            for label, c in rows:
                significant = None if c.significant is None else ("是" if c.significant else "否")
                years.append([label, _value(c.current), _value(c.previous), c.change, significant])

    texts = book.create_sheet("意见建议")
    _header(texts, "学校", "题目", "意见建议（匿名，已通过审核）")
    quotes = await shown_quotes(session, survey)
    for quote in quotes:
        texts.append(list(quote))
    if not quotes:
        texts.append(["", "", NO_TEXT])
    return book
