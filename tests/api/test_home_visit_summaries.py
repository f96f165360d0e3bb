"""Coverage and closure figures for a school and a district, through HTTP."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

from openpyxl import load_workbook
from sqlalchemy import select

from handlers.deps import Deps
from models.accounts.tables import Student
from models.audit.tables import AuditEvent
from models.home_visits.statistics import XLSX
from server.app import API
from tests.builders import FakeClock, World, make_parents, make_student, make_world
from tests.client import Api


async def visit(
    api: Api, deps: Deps, w: World, student_ids: list[Any], mode: str, **extra: Any
) -> dict[str, Any]:
    created = await api.post(
        f"{API}/home-visits",
        {
            "student_ids": [str(s) for s in student_ids],
            "visited_at": (deps.clock() - timedelta(hours=1)).isoformat(),
            "mode": mode,
            **extra,
        },
        token=w.token("teacher_a"),
    )
    assert created.status == 201, created.body
    return dict(created.json())


async def test_the_school_summary_per_classroom(api: Api, deps: Deps) -> None:
    clock = FakeClock(deps.clock())
    deps.clock = clock
    w = await make_world(deps)
    async with deps.sessions() as s, s.begin():
        for n in range(3):
            await make_student(s, w.classroom_a, f"同学{n}")
    first = await visit(
        api,
        deps,
        w,
        [w.student_a.id],
        "home",
        three_back=[{"kind": "demand", "text": "托管"}, {"kind": "feedback", "text": "很好"}],
    )
    await visit(api, deps, w, [w.student_a.id], "phone")
    await visit(api, deps, w, [w.student_a.id], "video", status="draft")  # drafts do not count
    demand = first["three_back"][0]["followup_id"]
    clock.tick(2 * 86400)
    await api.post(f"{API}/followups/{demand}/answer", {"answer": "已安排"}, token=w.token("teacher_a"))
    await api.post(f"{API}/followups/{demand}/confirm", {"rating": 4}, token=w.token("parent_a"))
    clock.tick(13 * 86400)  # the feedback item is overdue now (14 days)

    summary = await api.get(
        f"{API}/schools/{w.school_a.id}/home-visits/summary", token=w.token("school_admin_a")
    )
    assert summary.status == 200, summary.body
    body = summary.json()
    [room] = body["classrooms"]
    assert (room["classroom_name"], room["students"], room["visited"], room["coverage"]) == (
        "三年级1班",
        4,
        1,
        0.25,
    )
    assert room["visits_by_mode"] == {"home": 1, "school": 0, "phone": 1, "video": 0}
    assert body["visits"] == 2
    f = body["followups"]
    assert f["total"] == 2 and f["by_state"]["closed"] == 1 and f["by_state"]["open"] == 1
    assert f["closure_rate"] == 0.5 and f["overdue"] == 1
    assert f["median_days_to_answer"] == 2.0 and f["mean_rating"] == 4.0 and f["reopen_rate"] == 0.0

    campaign = await api.get(
        f"{API}/schools/{w.school_a.id}/home-visits/summary?from=2020-01-01&to=2020-01-31",
        token=w.token("school_admin_a"),
    )
    assert campaign.json()["visited"] == 0 and campaign.json()["followups"]["total"] == 0
    assert (
        await api.get(f"{API}/schools/{w.school_a.id}/home-visits/summary", token=w.token("teacher_a"))
    ).status == 403
    assert (
        await api.get(f"{API}/schools/{w.school_c.id}/home-visits/summary", token=w.token("school_admin_a"))
    ).status == 404
    bad = await api.get(
        f"{API}/schools/{w.school_a.id}/home-visits/summary?school_year=x", token=w.token("school_admin_a")
    )
    assert bad.status == 422


async def test_the_district_sees_schools_lowest_coverage_first_and_suppresses_small_counts(
    api: Api, deps: Deps
) -> None:
    w = await make_world(deps)
    await visit(
        api, deps, w, [w.student_a.id], "home", private_note="不得出现", circumstances=["left_behind"]
    )
    path = f"{API}/districts/{w.district.id}/home-visits/summary"
    answer = await api.get(path, token=w.token("district_admin"))
    assert answer.status == 200, answer.body
    body = answer.json()
    assert [(r["school_name"], r["coverage"]) for r in body["schools"]] == [("乙中学", 0.0), ("甲小学", 1.0)]
    assert (body["students"], body["visited"], body["coverage"]) == (2, 1, 0.5)
    assert body["children_in_difficult_circumstances"] is None  # 1 < 5: withheld
    assert "不得出现" not in answer.body.decode()

    parents = await make_parents(deps, w.classroom_a, 5)
    async with deps.sessions() as s:
        ids = [
            sid
            for sid in (
                await s.execute(select(Student.id).where(Student.classroom_id == w.classroom_a.id))
            ).scalars()
            if sid != w.student_a.id
        ]
    assert len(parents) == 5
    for sid in ids[:4]:
        await visit(api, deps, w, [sid], "phone", circumstances=["migrant"])
    body = (await api.get(path, token=w.token("district_admin"))).json()
    assert body["children_in_difficult_circumstances"] == 5
    assert (await api.get(path, token=w.token("school_admin_a"))).status == 403
    assert (await api.get(path, token=w.token("evaluator"))).status == 403
    assert (
        await api.get(
            f"{API}/districts/{w.other_district.id}/home-visits/summary", token=w.token("district_admin")
        )
    ).status == 404
    async with deps.sessions() as s:
        reads = (
            await s.execute(select(AuditEvent).where(AuditEvent.action == "home_visit_summary_read"))
        ).scalars()
        assert len(list(reads)) == 2


async def test_the_district_summary_comes_out_as_excel(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    await visit(api, deps, w, [w.student_a.id], "home", private_note="不得出现")
    path = f"{API}/districts/{w.district.id}/home-visits/summary.xlsx"
    answer = await api.get(path, token=w.token("district_admin"))
    assert answer.status == 200, answer.body
    assert answer.headers["Content-Type"] == XLSX
    sheet = load_workbook(io.BytesIO(answer.body)).active
    assert sheet is not None
    rows = [list(r) for r in sheet.iter_rows(min_row=2, values_only=True)]
    assert rows[0][:4] == ["学校", "学生数", "已家访学生", "覆盖率"]
    assert [r[:4] for r in rows[1:]] == [["乙中学", 1, 0, 0], ["甲小学", 1, 1, 1], ["全区合计", 2, 1, 0.5]]
    assert "不得出现".encode() not in answer.body
    assert (await api.get(path, token=w.token("school_admin_a"))).status == 403
    other = f"{API}/districts/{w.other_district.id}/home-visits/summary.xlsx"
    assert (await api.get(other, token=w.token("district_admin"))).status == 404
