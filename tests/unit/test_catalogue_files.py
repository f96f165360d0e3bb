"""The shipped catalogue is valid and complete; broken files are reported by file and field."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from course_catalog.loader import CatalogueInvalid, load_catalogue
from course_catalog.schema import GradeBand, Tier

GOOD = """
series: 测试系列
tier: foundation
courses:
  - key: t-one
    title: 第一课
    summary: 简介。
    topic: family_education
    grade_bands: [junior]
    class_hours: 2
"""


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_shipped_catalogue_covers_every_tier_and_grade_band() -> None:
    courses = load_catalogue()
    tiers = Counter(c.tier for c in courses)
    assert len(courses) >= 60
    assert tiers[Tier.online] >= 30
    assert set(tiers) == set(Tier)
    assert {band for c in courses for band in c.course.grade_bands} == set(GradeBand)
    assert all(c.course.media_url and c.course.video_seconds for c in courses if c.tier == Tier.online)


def test_invalid_field_names_file_and_field(tmp_path: Path) -> None:
    write(tmp_path, "foundation/good.yaml", GOOD)
    write(
        tmp_path,
        "foundation/bad.yaml",
        GOOD.replace("t-one", "t-two").replace("class_hours: 2", "class_hours: -1"),
    )
    with pytest.raises(CatalogueInvalid) as caught:
        load_catalogue(tmp_path)
    assert any(p.startswith("foundation/bad.yaml: courses.0.class_hours:") for p in caught.value.problems)
    assert not any("good.yaml" in p for p in caught.value.problems)


def test_duplicate_keys_and_misplaced_tiers_are_reported(tmp_path: Path) -> None:
    write(tmp_path, "foundation/a.yaml", GOOD)
    write(tmp_path, "foundation/b.yaml", GOOD)
    write(tmp_path, "online/c.yaml", GOOD.replace("t-one", "t-three"))
    with pytest.raises(CatalogueInvalid) as caught:
        load_catalogue(tmp_path)
    problems = "\n".join(caught.value.problems)
    assert "foundation/b.yaml: courses.0.key: 't-one' already used in foundation/a.yaml" in problems
    assert "online/c.yaml: tier: file says foundation but lives in online/" in problems


def test_online_lessons_need_a_video(tmp_path: Path) -> None:
    write(tmp_path, "online/a.yaml", GOOD.replace("tier: foundation", "tier: online"))
    with pytest.raises(CatalogueInvalid) as caught:
        load_catalogue(tmp_path)
    assert "online lessons need video_seconds and media_url" in caught.value.problems[0]


def test_unknown_fields_and_bad_yaml(tmp_path: Path) -> None:
    write(
        tmp_path,
        "general/a.yaml",
        GOOD.replace("tier: foundation", "tier: general") + "    teacher: 张老师\n",
    )
    write(tmp_path, "general/b.yaml", "series: [unclosed\n")
    with pytest.raises(CatalogueInvalid) as caught:
        load_catalogue(tmp_path)
    problems = "\n".join(caught.value.problems)
    assert "general/a.yaml: courses.0.teacher: Extra inputs are not permitted" in problems
    assert "general/b.yaml: not valid YAML" in problems
