"""Coverage and closure: per classroom of a school, per school of a district. Figures only; a count of
children in difficult circumstances reaches a district as a total, suppressed below 5."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from infra.clock import SHANGHAI
from infra.security import FieldCipher
from infra.spreadsheet import Column, report_xlsx
from models.accounts.tables import District, School
from models.home_visits import rules
from models.home_visits.rules import State
from models.home_visits.schemas import (
    ClassroomCoverage,
    DistrictSummary,
    FollowupFigures,
    SchoolRow,
    SchoolSummary,
)


@dataclass(frozen=True)
class Period:
    """A school year, or a campaign's days within it (千师访万家)."""

    school_year: str
    starts: datetime | None = None
    ends: datetime | None = None

    @classmethod
    def of(cls, school_year: str, first: date | None, last: date | None) -> Period:
        starts = datetime.combine(first, time(), SHANGHAI) if first else None
        ends = datetime.combine(last + timedelta(days=1), time(), SHANGHAI) if last else None
        return cls(school_year, starts, ends)

    def params(self) -> dict[str, Any]:
        return {"year": self.school_year, "starts": self.starts, "ends": self.ends}


_VISITS = """
    SELECT v.id, v.mode, v.circumstances_encrypted, hs.student_id, s.classroom_id, s.school_id
      FROM home_visit v
      JOIN home_visit_student hs ON hs.visit_id = v.id
      JOIN student s ON s.id = hs.student_id
     WHERE v.status = 'submitted' AND v.school_year = :year
       AND (CAST(:starts AS timestamptz) IS NULL OR v.visited_at >= :starts)
       AND (CAST(:ends AS timestamptz) IS NULL OR v.visited_at < :ends)
       AND s.school_id = ANY(:schools)
"""

_FOLLOWUPS = """
    SELECT school_id,
           state,
           count(*) AS n,
           count(*) FILTER (WHERE state IN ('open', 'in_progress') AND due_at < :now) AS overdue,
           count(*) FILTER (WHERE reopen_count > 0) AS reopened,
           count(*) FILTER (WHERE first_answered_at IS NOT NULL) AS answered_ever,
           sum(rating) AS rating_sum,
           count(rating) AS ratings,
           array_agg(EXTRACT(EPOCH FROM first_answered_at - created_at) / 86400.0)
               FILTER (WHERE first_answered_at IS NOT NULL) AS days
      FROM followup
     WHERE school_year = :year AND school_id = ANY(:schools)
       AND (CAST(:starts AS timestamptz) IS NULL OR created_at >= :starts)
       AND (CAST(:ends AS timestamptz) IS NULL OR created_at < :ends)
     GROUP BY school_id, state
"""


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    value = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return round(value, 2)


def _figures(rows: list[Any]) -> FollowupFigures:
    by_state = {s.value: 0 for s in State}
    overdue = reopened = answered = rating_sum = ratings = 0
    days: list[float] = []
    for r in rows:
        by_state[r.state] += r.n
        overdue += r.overdue
        reopened += r.reopened
        answered += r.answered_ever
        rating_sum += r.rating_sum or 0
        ratings += r.ratings
        days += [float(d) for d in r.days or []]
    total = sum(by_state.values())
    done = sum(by_state[s] for s in rules.DONE_STATES)
    return FollowupFigures(
        by_state=by_state,
        total=total,
        closure_rate=_share(done, total),
        closed_without_reply=by_state[State.closed_without_reply],
        median_days_to_answer=_median(days),
        overdue=overdue,
        reopen_rate=_share(reopened, answered),
        mean_rating=round(rating_sum / ratings, 2) if ratings else None,
    )


async def _students(session: AsyncSession, schools: list[uuid.UUID]) -> list[Any]:
    return list(
        await session.execute(
            text(
                "SELECT c.id, c.name, c.school_id, count(s.id) AS n FROM classroom c "
                "LEFT JOIN student s ON s.classroom_id = c.id WHERE c.school_id = ANY(:schools) "
                "GROUP BY c.id ORDER BY c.grade, c.name"
            ),
            {"schools": schools},
        )
    )


async def school_summary(
    session: AsyncSession, school: School, period: Period, now: datetime
) -> SchoolSummary:
    params = period.params() | {"schools": [school.id], "now": now}
    classrooms = await _students(session, [school.id])
    visited: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
    modes: dict[uuid.UUID, dict[str, set[uuid.UUID]]] = defaultdict(lambda: defaultdict(set))
    all_visits: dict[str, set[uuid.UUID]] = defaultdict(set)
    for r in await session.execute(text(_VISITS), params):
        visited[r.classroom_id].add(r.student_id)
        modes[r.classroom_id][r.mode].add(r.id)
        all_visits[r.mode].add(r.id)
    rows = [
        ClassroomCoverage(
            classroom_id=c.id,
            classroom_name=c.name,
            students=c.n,
            visited=len(visited[c.id]),
            coverage=_share(len(visited[c.id]), c.n),
            visits_by_mode={m.value: len(modes[c.id][m.value]) for m in rules.Mode},
        )
        for c in classrooms
    ]
    students = sum(c.students for c in rows)
    seen = sum(c.visited for c in rows)
    return SchoolSummary(
        school_id=school.id,
        school_year=period.school_year,
        students=students,
        visited=seen,
        coverage=_share(seen, students),
        visits=len(set().union(*all_visits.values())) if all_visits else 0,
        visits_by_mode={m.value: len(all_visits[m.value]) for m in rules.Mode},
        classrooms=rows,
        followups=_figures(list(await session.execute(text(_FOLLOWUPS), params))),
    )


async def district_summary(
    session: AsyncSession, district: District, period: Period, cipher: FieldCipher, now: datetime
) -> DistrictSummary:
    """One row per school, lowest coverage first, and the district's totals. The circumstances are opened
    here only to be counted; no family's record leaves this function."""
    schools = list(
        await session.execute(
            text("SELECT id, name FROM school WHERE district_id = :d ORDER BY name"), {"d": district.id}
        )
    )
    ids = [s.id for s in schools]
    params = period.params() | {"schools": ids, "now": now}
    students: dict[uuid.UUID, int] = defaultdict(int)
    for c in await _students(session, ids):
        students[c.school_id] += c.n
    visited: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
    visits: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
    in_difficulty: set[uuid.UUID] = set()
    for r in await session.execute(text(_VISITS), params):
        visited[r.school_id].add(r.student_id)
        visits[r.school_id].add(r.id)
        if r.circumstances_encrypted and orjson.loads(
            cipher.decrypt(r.circumstances_encrypted, f"home_visit:{r.id}:circumstances")
        ):
            in_difficulty.add(r.student_id)
    followup_rows = list(await session.execute(text(_FOLLOWUPS), params))
    per_school: dict[uuid.UUID, list[Any]] = defaultdict(list)
    for f in followup_rows:
        per_school[f.school_id].append(f)
    rows = []
    for s in schools:
        figures = _figures(per_school[s.id])
        rows.append(
            SchoolRow(
                school_id=s.id,
                school_name=s.name,
                students=students[s.id],
                visited=len(visited[s.id]),
                coverage=_share(len(visited[s.id]), students[s.id]),
                visits=len(visits[s.id]),
                followups=figures.total,
                closure_rate=figures.closure_rate,
                overdue=figures.overdue,
            )
        )
    rows.sort(key=lambda r: (r.coverage is not None, r.coverage or 0.0, r.school_name))
    total_students = sum(students.values())
    total_visited = sum(len(v) for v in visited.values())
    return DistrictSummary(
        district_id=district.id,
        school_year=period.school_year,
        schools=rows,
        students=total_students,
        visited=total_visited,
        coverage=_share(total_visited, total_students),
        visits=sum(len(v) for v in visits.values()),
        followups=_figures(followup_rows),
        children_in_difficult_circumstances=rules.suppressed(len(in_difficulty)),
    )


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


VISIT_COLUMNS = (
    Column("学校", 24),
    Column("学生数", 10),
    Column("已家访学生", 12),
    Column("覆盖率", 10, "0.0%"),
    Column("家访次数", 10),
    Column("跟进事项", 10),
    Column("关闭率", 10, "0.0%"),
    Column("逾期", 8),
)


def district_workbook(summary: DistrictSummary, district_name: str) -> bytes:
    """The district summary as the 汇总表 a district hands in: one row per school and the total."""
    rows: list[list[Any]] = [
        [r.school_name, r.students, r.visited, r.coverage, r.visits, r.followups, r.closure_rate, r.overdue]
        for r in summary.schools
    ]
    f = summary.followups
    total = ["全区合计", summary.students, summary.visited, summary.coverage, summary.visits]
    rows.append([*total, f.total, f.closure_rate, f.overdue])
    return report_xlsx(
        "家访汇总", VISIT_COLUMNS, rows, caption=f"{district_name} {summary.school_year} 学年家访汇总"
    )
