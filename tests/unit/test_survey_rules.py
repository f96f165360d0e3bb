"""Pure survey rules: the allocation of a stratified sample, the draw's repeatability, answer checks, the
collapsed-strata estimate and complementary suppression."""

from __future__ import annotations

import math
import uuid
from statistics import fmean, variance

from models.surveys.rules import (
    Pupil,
    Stratum,
    allocate,
    answer_errors,
    complementary,
    draw_sample,
    stratified_estimate,
)


def test_places_are_shared_in_proportion_with_the_largest_remainders() -> None:
    assert allocate({1: 30, 2: 10}, 8) == {1: 6, 2: 2}
    assert allocate({1: 5, 2: 5, 3: 5}, 4) == {1: 2, 2: 1, 3: 1}  # ties go to the lower grade
    assert allocate({1: 3, 2: 1}, 10) == {1: 3, 2: 1}  # never more than a grade has
    assert allocate({1: 0}, 3) == {1: 0}


def test_a_fraction_is_drawn_per_school_and_the_seed_repeats_it() -> None:
    school_a, school_b = uuid.uuid4(), uuid.uuid4()
    pupils = [Pupil(uuid.uuid4(), school_a, 3 if i < 15 else 4) for i in range(20)]
    pupils += [Pupil(uuid.uuid4(), school_b, 7) for _ in range(9)]
    drawn = draw_sample(pupils, seed=42, per_school=None, fraction=0.5)
    assert sum(p.school_id == school_a for p in drawn) == 10  # 15:5 → 7.5 and 2.5 → 8 and 2 (remainders tie)
    assert sum(p.grade == 3 for p in drawn) in (7, 8) and sum(p.school_id == school_b for p in drawn) == 4
    assert draw_sample(list(reversed(pupils)), seed=42, per_school=None, fraction=0.5) == drawn
    assert draw_sample(pupils, seed=1, per_school=None, fraction=None) == sorted(pupils, key=lambda p: p.id)


def test_answers_are_checked_against_the_questionnaire() -> None:
    dims = [
        {
            "key": "d",
            "questions": [
                {"key": "q", "kind": "likert5", "required": True},
                {"key": "m", "kind": "multi", "required": False, "options": [{"key": "a"}, {"key": "b"}]},
            ],
        }
    ]
    assert answer_errors(dims, {"q": 5}) == []
    assert answer_errors(dims, {"q": "dont_know", "m": ["b", "a"]}) == []
    assert [e["loc"][-1] for e in answer_errors(dims, {"m": ["c"], "x": 1})] == ["m", "x", "q"]


def test_strata_with_one_value_are_pooled_within_their_school() -> None:
    school = uuid.uuid4()
    strata = [
        Stratum((school, 3), 20, [100.0, 50.0, 75.0]),
        Stratum((school, 4), 10, [25.0]),
        Stratum((school, 5), 10, [75.0]),
        Stratum((school, 6), 5, []),  # pooled too: its population is carried by grades 4 and 5
    ]
    found = stratified_estimate(strata)
    pooled = [25.0, 75.0]
    expected = 20 / 45 * fmean([100.0, 50.0, 75.0]) + 25 / 45 * fmean(pooled)
    var = (20 / 45) ** 2 * (1 - 3 / 20) * variance([100.0, 50.0, 75.0]) / 3
    var += (25 / 45) ** 2 * (1 - 2 / 25) * variance(pooled) / 2
    assert (
        found.n == 5
        and math.isclose(found.value or 0, expected)
        and math.isclose(found.se or 0, math.sqrt(var))
    )


def test_a_lone_hidden_cell_takes_the_smallest_shown_one_with_it() -> None:
    assert complementary({"a": (12, False), "b": (9, True), "c": (30, False)}) == {"a"}
    assert complementary({"a": (12, True), "b": (9, True), "c": (30, False)}) == set()
    assert complementary({"a": (12, False), "b": (30, False)}) == set()
