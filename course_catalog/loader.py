"""Read and validate every catalogue file; report the file and field of each problem."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from course_catalog.schema import CourseFile, SeriesFile, Tier

DATA_DIR = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class LoadedCourse:
    tier: Tier
    series: str
    source: str  # file path relative to the data folder
    course: CourseFile


class CatalogueInvalid(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_catalogue(root: Path = DATA_DIR) -> list[LoadedCourse]:
    """All courses under `root`, or CatalogueInvalid listing every problem as `file: field: message`."""
    problems: list[str] = []
    loaded: list[LoadedCourse] = []
    seen: dict[str, str] = {}
    for path in sorted(root.rglob("*.yaml")):
        rel = path.relative_to(root).as_posix()
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
            series = SeriesFile.model_validate(raw)
        except yaml.YAMLError as exc:
            problems.append(f"{rel}: not valid YAML: {exc}")
            continue
        except ValidationError as exc:
            for error in exc.errors():
                field = ".".join(str(part) for part in error["loc"]) or "(file)"
                problems.append(f"{rel}: {field}: {error['msg']}")
            continue
        if path.parent.name != series.tier.value:
            problems.append(f"{rel}: tier: file says {series.tier.value} but lives in {path.parent.name}/")
        for index, course in enumerate(series.courses):
            if course.key in seen:
                problems.append(
                    f"{rel}: courses.{index}.key: {course.key!r} already used in {seen[course.key]}"
                )
                continue
            seen[course.key] = rel
            loaded.append(LoadedCourse(series.tier, series.series, rel, course))
    if problems:
        raise CatalogueInvalid(problems)
    return loaded
