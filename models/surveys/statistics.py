"""Results of a survey: the satisfaction index per question, dimension and overall, for the district, per
school or per grade band, with honest statistics (see rules.stratified_estimate) and small cells hidden;
and the district's year-over-year view of the standard questionnaire."""

from __future__ import annotations

import math
import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from infra.redis import Keys
from models.accounts.rules import GRADE_BANDS, grade_band
from models.accounts.tables import School
from models.surveys.answering import written_answers
from models.surveys.rules import (
    MIN_CELL,
    SUPPRESSED_NOTE,
    Z_95,
    Estimate,
    Stratum,
    complementary,
    respondent_scores,
    stratified_estimate,
)
from models.surveys.schemas import (
    LIKERT_LABELS,
    DimensionResult,
    Figure,
    GroupResult,
    QuestionResult,
    Share,
    SurveyResults,
)
from models.surveys.tables import Survey, SurveyParticipation, SurveySample, SurveyStratum

GroupBy = Literal["none", "school", "grade_band"]
RESULTS_CACHE_SECONDS = 3600  # a key names the state it was computed from; this only bounds the memory
BAND_LABELS = {
    "kindergarten": "幼儿园",
    "primary_lower": "小学低段（1–2 年级）",
    "primary_middle": "小学中段（3–4 年级）",
    "primary_upper": "小学高段（5–6 年级）",
    "junior": "初中",
    "senior": "高中",
}
Answers = list[tuple[uuid.UUID, int, dict[str, Any]]]


@dataclass
class Cell:
    """What one group of a partition rests on."""

    key: str
    label: str
    strata: list[tuple[uuid.UUID, int, int, int]]  # school, grade, population, sampled
    answers: Answers
    participations: int
    memo: dict[str, Any] = field(default_factory=dict)  # figures computed once per request


def _figure(estimate: Estimate, hidden: bool) -> Figure:
    if hidden or estimate.value is None:
        return Figure(value=None, n=estimate.n, suppressed=True, note=SUPPRESSED_NOTE)
    low, high = estimate.interval or (None, None)
    return Figure(
        value=round(estimate.value, 2),
        ci_low=None if low is None else round(low, 2),
        ci_high=None if high is None else round(high, 2),
        n=estimate.n,
    )


def estimates(dimensions: Sequence[Mapping[str, Any]], cell: Cell) -> dict[str, Estimate]:
    """Each figure's post-stratified estimate over the cell's strata (overall, d:<dim>, q:<question>)."""
    if "estimates" not in cell.memo:
        cell.memo["estimates"] = _estimates(dimensions, cell)
    found: dict[str, Estimate] = cell.memo["estimates"]
    return found


def _estimates(dimensions: Sequence[Mapping[str, Any]], cell: Cell) -> dict[str, Estimate]:
    populations = {(school, grade): population for school, grade, population, _ in cell.strata}
    by_key: dict[str, dict[tuple[uuid.UUID, int], list[float]]] = defaultdict(lambda: defaultdict(list))
    keys = (
        ["overall"]
        + [f"d:{d['key']}" for d in dimensions]
        + [f"q:{q['key']}" for d in dimensions for q in d["questions"] if q["kind"] == "likert5"]
    )
    for school, grade, answers in cell.answers:
        for key, value in respondent_scores(dimensions, answers).items():
            if value is not None:
                by_key[key][(school, grade)].append(value)
    return {
        key: stratified_estimate(
            [Stratum(h, populations.get(h, 0), by_key[key].get(h, [])) for h in populations]
        )
        for key in keys
    }


def cell_distribution(question: Mapping[str, Any], cell: Cell) -> tuple[list[Share], int]:
    key = f"dist:{question['key']}"
    if key not in cell.memo:
        cell.memo[key] = distribution(question, cell.answers)
    found: tuple[list[Share], int] = cell.memo[key]
    return found


def distribution(question: Mapping[str, Any], answers: Answers) -> tuple[list[Share], int]:
    counts: Counter[str] = Counter()
    answered = 0
    for _, _, given in answers:
        value = given.get(question["key"])
        if value is None:
            continue
        answered += 1
        for choice in value if isinstance(value, list) else [value]:
            counts[str(choice)] += 1
    if question["kind"] == "likert5":
        labels = [(str(k), v) for k, v in LIKERT_LABELS.items()]
    else:
        labels = [(o["key"], o["label"]) for o in question.get("options") or []]
    shares = [
        Share(key=k, label=label, count=counts[k], share=round(counts[k] / answered, 4) if answered else 0.0)
        for k, label in labels
    ]
    return shares, answered


def group_result(dimensions: Sequence[Mapping[str, Any]], cell: Cell, hidden: set[str]) -> GroupResult:
    """`hidden`: figure keys (and `dist:<question>`) hidden by complementary suppression."""
    found = estimates(dimensions, cell)
    whole = len(cell.answers) < MIN_CELL
    sampled = sum(s for *_, s in cell.strata)

    def fig(key: str) -> Figure:
        estimate = found[key]
        return _figure(estimate, whole or estimate.n < MIN_CELL or key in hidden)

    questions = []
    for d in dimensions:
        for q in d["questions"]:
            if q["kind"] == "text":  # free text is shown only once moderated: not in these figures
                questions.append(
                    QuestionResult(key=q["key"], dimension=d["key"], kind="text", text=q["text"])
                )
                continue
            shares, answered = cell_distribution(q, cell)
            dist_hidden = whole or answered < MIN_CELL or f"dist:{q['key']}" in hidden
            questions.append(
                QuestionResult(
                    key=q["key"],
                    dimension=d["key"],
                    kind=q["kind"],
                    text=q["text"],
                    figure=fig(f"q:{q['key']}") if q["kind"] == "likert5" else None,
                    distribution=None if dist_hidden else shares,
                    distribution_suppressed=dist_hidden,
                )
            )
    return GroupResult(
        key=cell.key,
        label=cell.label,
        sampled=sampled,
        responses=cell.participations,
        response_rate=round(cell.participations / sampled, 4) if sampled else None,
        suppressed=whole,
        overall=fig("overall"),
        dimensions=[
            DimensionResult(key=d["key"], title=d["title"], weight=d["weight"], figure=fig(f"d:{d['key']}"))
            for d in dimensions
            if any(q["kind"] == "likert5" for q in d["questions"])
        ],
        questions=questions,
    )


def _sizes(dimensions: Sequence[Mapping[str, Any]], cell: Cell) -> dict[str, tuple[int, bool]]:
    """Every figure of a cell with its n and whether it is hidden on its own (before complements)."""
    whole = len(cell.answers) < MIN_CELL
    sizes = {k: (e.n, whole or e.n < MIN_CELL) for k, e in estimates(dimensions, cell).items()}
    for d in dimensions:
        for q in d["questions"]:
            if q["kind"] != "text":
                answered = cell_distribution(q, cell)[1]
                sizes[f"dist:{q['key']}"] = (answered, whole or answered < MIN_CELL)
    return sizes


def partition_results(dimensions: Sequence[Mapping[str, Any]], cells: list[Cell]) -> list[GroupResult]:
    """Groups of a partition whose total is published too: hide one more cell of any figure that would
    otherwise be the only hidden one (total − the others would give it)."""
    sizes = {cell.key: _sizes(dimensions, cell) for cell in cells}
    hidden: dict[str, set[str]] = defaultdict(set)
    figure_keys = {k for s in sizes.values() for k in s}
    if len(cells) > 1:
        for key in figure_keys:
            for cell_key in complementary({c: sizes[c][key] for c in sizes if key in sizes[c]}):
                hidden[str(cell_key)].add(key)
    return [group_result(dimensions, cell, hidden[cell.key]) for cell in cells]


async def _frame(
    session: AsyncSession, survey: Survey
) -> tuple[list[tuple[uuid.UUID, int, int, int]], dict[uuid.UUID, str], Counter[tuple[uuid.UUID, int]]]:
    strata = [
        (school, grade, population, sampled)
        for school, grade, population, sampled in await session.execute(
            select(
                SurveyStratum.school_id, SurveyStratum.grade, SurveyStratum.population, SurveyStratum.sampled
            )
            .where(SurveyStratum.survey_id == survey.id)
            .order_by(SurveyStratum.school_id, SurveyStratum.grade)
        )
    ]
    names = {
        school_id: name
        for school_id, name in await session.execute(
            select(School.id, School.name).where(School.id.in_({s[0] for s in strata}))
        )
    }
    answered: Counter[tuple[uuid.UUID, int]] = Counter()
    for school, grade, count in await session.execute(
        select(SurveySample.school_id, SurveySample.grade, func.count())
        .join(
            SurveyParticipation,
            (SurveyParticipation.survey_id == SurveySample.survey_id)
            & (SurveyParticipation.student_id == SurveySample.student_id),
        )
        .where(SurveySample.survey_id == survey.id)
        .group_by(SurveySample.school_id, SurveySample.grade)
    ):
        answered[(school, grade)] = count
    return strata, names, answered


async def cells_of(
    session: AsyncSession, survey: Survey, group_by: GroupBy, only_school: uuid.UUID | None = None
) -> list[Cell]:
    strata, names, answered = await _frame(session, survey)
    answers = await written_answers(session, survey.id)
    if only_school is not None:
        strata = [s for s in strata if s[0] == only_school]
        answers = [a for a in answers if a[0] == only_school]

    def key_of(school: uuid.UUID, grade: int) -> str:
        if group_by == "school":
            return str(school)
        if group_by == "grade_band":
            return grade_band(grade)
        return str(only_school) if only_school else "district"

    def label_of(key: str) -> str:
        if group_by == "grade_band":
            return BAND_LABELS[key]
        if key == "district":
            return "全区"
        return names.get(uuid.UUID(key), "")

    grouped: dict[str, Cell] = {}
    for school, grade, population, sampled in strata:
        key = key_of(school, grade)
        cell = grouped.setdefault(key, Cell(key, label_of(key), [], [], 0))
        cell.strata.append((school, grade, population, sampled))
        cell.participations += answered[(school, grade)]
    for school, grade, given in answers:
        grouped[key_of(school, grade)].answers.append((school, grade, given))
    order = list(GRADE_BANDS) if group_by == "grade_band" else None
    cells = list(grouped.values())
    return sorted(cells, key=lambda c: order.index(c.key) if order else c.label)


async def results(
    session: AsyncSession, survey: Survey, group_by: GroupBy, only_school: uuid.UUID | None = None
) -> SurveyResults:
    if group_by == "none" and only_school is not None:
        # A school's own figures are its cell of the district's partition by school, hidden wherever
        # that partition hides them: with the district total, a shown school could give away another.
        everyone = partition_results(survey.dimensions, await cells_of(session, survey, "school"))
        groups = [g for g in everyone if g.key == str(only_school)]
    elif group_by == "none":
        groups = [
            group_result(survey.dimensions, c, set()) for c in await cells_of(session, survey, group_by)
        ]
    else:
        groups = partition_results(survey.dimensions, await cells_of(session, survey, group_by, only_school))
    return SurveyResults(
        survey_id=survey.id,
        title=survey.title,
        status=survey.status,
        school_year=survey.school_year,
        method=survey.sampling_method,
        group_by=group_by,
        minimum_cell=MIN_CELL,
        groups=groups,
    )


async def cached_results(
    session: AsyncSession,
    redis: Redis,
    keys: Keys,
    survey: Survey,
    group_by: GroupBy,
    only_school: uuid.UUID | None = None,
) -> bytes:
    """`results` as JSON, computed once per state of what they rest on: the written-out answers (the
    survey's results_version, bumped by every batch and by closing) and the responses counted so far
    (each answer moves the response rate at once)."""
    counted = await session.scalar(
        select(func.count())
        .select_from(SurveyParticipation)
        .where(SurveyParticipation.survey_id == survey.id)
    )
    version = f"{survey.results_version}.{counted}"
    key = keys.survey_results(str(survey.id), version, f"{group_by}:{only_school or 'all'}")
    cached = await redis.get(key)
    if cached is not None:
        return cached if isinstance(cached, bytes) else str(cached).encode()
    data = (await results(session, survey, group_by, only_school)).model_dump_json().encode()
    await redis.set(key, data, ex=RESULTS_CACHE_SECONDS)
    return data


# ---- year over year ----------------------------------------------------------------------------------
class Change(BaseModel):
    current: Figure
    previous: Figure | None
    change: float | None = Field(None, description="今年 − 去年；任一年样本不足时为 null")
    significant: bool | None = Field(None, description="变化是否超出两年置信区间可以偶然解释的范围（95%）")


class SchoolSatisfaction(BaseModel):
    school_id: uuid.UUID
    school_name: str
    overall: Change


class DimensionSatisfaction(BaseModel):
    key: str
    title: str
    district: Change


class DistrictSatisfaction(BaseModel):
    school_year: str
    survey_id: uuid.UUID | None
    previous_survey_id: uuid.UUID | None
    district: Change | None
    dimensions: list[DimensionSatisfaction]
    schools: list[SchoolSatisfaction]


def change(now: Estimate, now_hidden: bool, before: Estimate | None, before_hidden: bool) -> Change:
    current = _figure(now, now_hidden or now.n < MIN_CELL)
    if before is None:
        return Change(current=current, previous=None)
    previous = _figure(before, before_hidden or before.n < MIN_CELL)
    if current.value is None or previous.value is None or now.value is None or before.value is None:
        return Change(current=current, previous=previous)
    delta = now.value - before.value
    spread = Z_95 * math.sqrt((now.se or 0.0) ** 2 + (before.se or 0.0) ** 2)
    return Change(current=current, previous=previous, change=round(delta, 2), significant=abs(delta) > spread)


async def latest_closed(
    session: AsyncSession, district_id: uuid.UUID, school_year: str, template: str | None
) -> Survey | None:
    query = select(Survey).where(
        Survey.district_id == district_id, Survey.status == "closed", Survey.school_year == school_year
    )
    query = (
        query.where(Survey.template == template) if template else query.where(Survey.template.is_not(None))
    )
    return await session.scalar(query.order_by(Survey.closed_at.desc()).limit(1))


def previous_year(school_year: str) -> str:
    start = int(school_year[:4])
    return f"{start - 1}-{start}"


async def _by_school(
    session: AsyncSession, survey: Survey
) -> tuple[dict[str, Estimate], dict[str, tuple[Cell, dict[str, Estimate], set[str]]]]:
    district = (await cells_of(session, survey, "none"))[0]
    schools = await cells_of(session, survey, "school")
    sizes = {c.key: _sizes(survey.dimensions, c) for c in schools}
    hidden: dict[str, set[str]] = defaultdict(set)
    if len(schools) > 1:
        for cell_key in complementary({c: s["overall"] for c, s in sizes.items()}):
            hidden[str(cell_key)].add("overall")
    per_school = {
        c.key: (
            c,
            estimates(survey.dimensions, c),
            hidden[c.key] | ({"overall"} if len(c.answers) < MIN_CELL else set()),
        )
        for c in schools
    }
    return estimates(survey.dimensions, district), per_school


async def district_satisfaction(
    session: AsyncSession, district_id: uuid.UUID, school_year: str
) -> DistrictSatisfaction:
    """The latest closed survey of a standard questionnaire in `school_year`, each school's index and the
    change from the same questionnaire the year before."""
    survey = await latest_closed(session, district_id, school_year, None)
    if survey is None:
        return DistrictSatisfaction(
            school_year=school_year,
            survey_id=None,
            previous_survey_id=None,
            district=None,
            dimensions=[],
            schools=[],
        )
    before = await latest_closed(session, district_id, previous_year(school_year), survey.template)
    now_district, now_schools = await _by_school(session, survey)
    then_district: dict[str, Estimate] = {}
    then_schools: dict[str, tuple[Cell, dict[str, Estimate], set[str]]] = {}
    if before is not None:
        then_district, then_schools = await _by_school(session, before)
    dims = [
        DimensionSatisfaction(
            key=d["key"],
            title=d["title"],
            district=change(
                now_district[f"d:{d['key']}"],
                False,
                then_district.get(f"d:{d['key']}") if before else None,
                False,
            ),
        )
        for d in survey.dimensions
        if f"d:{d['key']}" in now_district and any(q["kind"] == "likert5" for q in d["questions"])
    ]
    schools = []
    for key, (cell, found, hidden) in now_schools.items():
        old = then_schools.get(key)
        schools.append(
            SchoolSatisfaction(
                school_id=uuid.UUID(key),
                school_name=cell.label,
                overall=change(
                    found["overall"],
                    "overall" in hidden,
                    old[1]["overall"] if old else None,
                    bool(old and "overall" in old[2]),
                ),
            )
        )
    return DistrictSatisfaction(
        school_year=school_year,
        survey_id=survey.id,
        previous_survey_id=before.id if before else None,
        district=change(
            now_district["overall"], False, then_district.get("overall") if before else None, False
        ),
        dimensions=dims,
        schools=sorted(schools, key=lambda s: s.school_name),
    )
