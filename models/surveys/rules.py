"""Pure rules of surveys: which answers a questionnaire takes, how the sample is drawn, and the
statistics (satisfaction index, post-stratified estimate with its interval, small-cell suppression)."""

from __future__ import annotations

import math
import random
import uuid
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from models.surveys.schemas import DONT_KNOW

MIN_CELL = 10  # any figure resting on fewer responses is not shown (`suppressed`, 样本不足)
MIX_BATCH = 10  # answers are written out in shuffled batches of at least this many of one school and grade
TEXT_MAX = 500  # characters of one free-text answer
Z_95 = 1.959963984540054  # two-sided 95% normal quantile
SUPPRESSED_NOTE = "样本不足"


# ---- answers -------------------------------------------------------------------------------------------
def questions_of(dimensions: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {q["key"]: q for d in dimensions for q in d["questions"]}


def answer_errors(
    dimensions: Sequence[Mapping[str, Any]], answers: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Every problem with a whole response, as 422 `errors` entries (empty: the response is valid)."""
    questions = questions_of(dimensions)
    errors: list[dict[str, Any]] = []

    def fail(key: str, msg: str) -> None:
        errors.append({"loc": ["body", "answers", key], "msg": msg})

    for key, value in answers.items():
        question = questions.get(key)
        if question is None:
            fail(key, "没有这道题")
            continue
        kind = question["kind"]
        options = {o["key"] for o in question.get("options") or []}
        if kind == "likert5":
            if not (value == DONT_KNOW or (type(value) is int and 1 <= value <= 5)):
                fail(key, "请选择 1–5 或“不了解”（dont_know）")
        elif kind == "single":
            if not (isinstance(value, str) and value in options):
                fail(key, "没有这个选项")
        elif kind == "multi":
            if not (
                isinstance(value, list) and value and set(value) <= options and len(set(value)) == len(value)
            ):
                fail(key, "请从所给选项中选择（不重复）")
        elif not (isinstance(value, str) and 0 < len(value.strip()) <= TEXT_MAX):
            fail(key, f"请填写 1–{TEXT_MAX} 个字")
    for key, question in questions.items():
        if question["required"] and key not in answers:
            fail(key, "这道题必须回答")
    return errors


# ---- sampling ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pupil:
    id: uuid.UUID
    school_id: uuid.UUID
    grade: int


def allocate(sizes: Mapping[int, int], total: int) -> dict[int, int]:
    """`total` places shared among grades in proportion to their sizes (largest remainder, ties to the
    lower grade), never more than a grade has."""
    population = sum(sizes.values())
    total = min(total, population)
    if population == 0:
        return {g: 0 for g in sizes}
    quotas = {g: total * n / population for g, n in sizes.items()}
    given = {g: math.floor(q) for g, q in quotas.items()}
    left = total - sum(given.values())
    for g in sorted(sizes, key=lambda g: (-(quotas[g] - given[g]), g))[:left]:
        given[g] += 1
    return given


def draw_sample(
    pupils: Iterable[Pupil], *, seed: int, per_school: int | None, fraction: float | None
) -> list[Pupil]:
    """Census without a size; else per school `per_school` students (or `fraction` of them, rounded to
    the nearest), stratified by grade in proportion to grade sizes, drawn at random from each grade.
    Deterministic given the roster and `seed` (students are ordered by id before drawing), so anyone
    holding both can repeat the draw."""
    chosen = sorted(pupils, key=lambda p: p.id)
    if per_school is None and fraction is None:
        return chosen
    rng = random.Random(seed)  # noqa: S311 - a reproducible draw, not a secret
    by_school: dict[uuid.UUID, dict[int, list[Pupil]]] = defaultdict(lambda: defaultdict(list))
    for pupil in chosen:
        by_school[pupil.school_id][pupil.grade].append(pupil)
    sample: list[Pupil] = []
    for school_id in sorted(by_school):
        grades = by_school[school_id]
        size = sum(len(g) for g in grades.values())
        wanted = per_school if per_school is not None else round((fraction or 0) * size)
        quota = allocate({g: len(p) for g, p in grades.items()}, wanted)
        for grade in sorted(grades):
            sample += rng.sample(grades[grade], quota[grade])
    return sorted(sample, key=lambda p: p.id)


# ---- the index ---------------------------------------------------------------------------------------
def likert_index(value: Any) -> float | None:
    """1 → 0 … 5 → 100; 不了解 (and anything else) counts nowhere."""
    if type(value) is int and 1 <= value <= 5:
        return (value - 1) * 25.0
    return None


def weighted_mean(pairs: Iterable[tuple[float | None, float]]) -> float | None:
    present = [(v, w) for v, w in pairs if v is not None]
    total = sum(w for _, w in present)
    return sum(v * w for v, w in present) / total if total else None


def respondent_scores(
    dimensions: Sequence[Mapping[str, Any]], answers: Mapping[str, Any]
) -> dict[str, float | None]:
    """One household's scores on the 0–100 scale: each likert question, each dimension (the weighted
    mean of its answered questions) and `overall` (the weighted mean of its dimensions). Averaged over
    households these are the indices; with no 不了解 in the data, a dimension's index equals the weighted
    mean of its questions' indices exactly."""
    scores: dict[str, float | None] = {}
    dims: list[tuple[float | None, float]] = []
    for d in dimensions:
        parts = []
        for q in d["questions"]:
            if q["kind"] == "likert5":
                scores[f"q:{q['key']}"] = value = likert_index(answers.get(q["key"]))
                parts.append((value, float(q["weight"])))
        if parts:
            scores[f"d:{d['key']}"] = score = weighted_mean(parts)
            dims.append((score, float(d["weight"])))
    scores["overall"] = weighted_mean(dims)
    return scores


@dataclass
class Stratum:
    key: tuple[uuid.UUID, int | None]  # (school, grade); grade None = collapsed grades of the school
    population: int
    values: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Estimate:
    value: float | None
    se: float | None
    n: int

    @property
    def interval(self) -> tuple[float, float] | None:
        if self.value is None or self.se is None:
            return None
        return max(0.0, self.value - Z_95 * self.se), min(100.0, self.value + Z_95 * self.se)


def collapse(strata: Sequence[Stratum]) -> list[Stratum]:
    """A stratum needs two values for a variance: grades of a school with fewer are pooled into one
    stratum of that school, and schools whose pool still has fewer into one last pool (collapsed
    strata, Cochran §5A.12). A pool with no value at all carries no weight."""
    kept = [s for s in strata if len(s.values) >= 2]
    pools: dict[uuid.UUID, Stratum] = {}
    for s in strata:
        if len(s.values) < 2:
            pool = pools.setdefault(s.key[0], Stratum((s.key[0], None), 0))
            pool.population += s.population
            pool.values += s.values
    last: Stratum | None = None
    for pool in pools.values():
        if len(pool.values) >= 2:
            kept.append(pool)
        elif pool.values:
            last = last or Stratum((pool.key[0], None), 0)
            last.population += pool.population
            last.values += pool.values
    if last is not None:
        kept.append(last)
    return kept


def stratified_estimate(strata: Sequence[Stratum]) -> Estimate:
    """Post-stratified mean Σ W_h ȳ_h with W_h = N_h / ΣN (populations from the roster, not who happened
    to answer) and Var = Σ W_h² (1 − n_h/N_h) s_h² / n_h (finite-population correction)."""
    used = [s for s in collapse(strata) if s.values]
    n = sum(len(s.values) for s in used)
    population = sum(s.population for s in used)
    if n == 0 or population == 0:
        return Estimate(None, None, n)
    value = 0.0
    variance = 0.0
    for s in used:
        weight = s.population / population
        size = len(s.values)
        mean = math.fsum(s.values) / size
        value += weight * mean
        if size >= 2:
            fpc = max(0.0, 1 - size / s.population) if s.population else 0.0
            # The sample variance in two passes (statistics.variance is exact but converts every value to
            # a fraction: most of a 50,000-response computation went there).
            spread = math.fsum((v - mean) ** 2 for v in s.values) / (size - 1)
            variance += weight**2 * fpc * spread / size
    return Estimate(value, math.sqrt(variance), n)


# ---- suppression ----------------------------------------------------------------------------------
def complementary(cells: Mapping[Hashable, tuple[int, bool]]) -> set[Hashable]:
    """Cells of one figure across a partition whose total is shown elsewhere: `{cell: (n, suppressed)}`.
    When exactly one cell is hidden, the total and the others would give it away, so the smallest shown
    cell is hidden too. Returns the cells to hide besides those already hidden."""
    hidden = [c for c, (_, s) in cells.items() if s]
    shown = sorted((n, str(c), c) for c, (n, s) in cells.items() if not s)
    if len(hidden) == 1 and shown:
        return {shown[0][2]}
    return set()
