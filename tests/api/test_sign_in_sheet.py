"""The evening-class sign-in sheet (签到表): an A4 PDF listing every signed-up family with a signature
column, then the waitlist; staff of the class's school only."""

from __future__ import annotations

import io
from datetime import timedelta

import pypdf

from handlers.deps import Deps
from server.app import API
from tests.builders import make_course, make_evening_class, make_parents, make_world
from tests.client import Api


async def test_the_sheet_lists_the_signed_up_families_and_the_waitlist(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    async with deps.sessions() as s, s.begin():
        course = await make_course(s, tier="general", title="家庭教育促进法解读")
        evening = await make_evening_class(
            s, world.school_a, course, starts_at=deps.clock() + timedelta(hours=12), capacity=2
        )
    parents = await make_parents(deps, world.classroom_a, 3)
    for parent in parents:
        signed = await api.post(f"{API}/evening-classes/{evening.id}/signups", {}, token=parent.token)
        assert signed.status == 201, signed.body
    roster = await api.get(f"{API}/evening-classes/{evening.id}/roster", token=world.token("school_admin_a"))
    assert [e["status"] for e in roster.json()["items"]] == ["confirmed", "confirmed", "waitlisted"]

    sheet = await api.get(
        f"{API}/evening-classes/{evening.id}/sign-in-sheet.pdf", token=world.token("school_admin_a")
    )
    assert sheet.status == 200, sheet.body
    assert sheet.headers["Content-Type"] == "application/pdf"
    reader = pypdf.PdfReader(io.BytesIO(sheet.body))
    page = reader.pages[0]
    assert (round(float(page.mediabox.width)), round(float(page.mediabox.height))) == (595, 842)  # A4
    text = "".join(p.extract_text() for p in reader.pages)
    assert "甲小学 家长夜校签到表" in text
    assert "课程：家庭教育促进法解读" in text and "地点：学校报告厅" in text
    assert "名额 2 人，已报名 2 人，候补 1 人" in text
    # Each family by its child (make_parents binds 学生0…学生2 to their mothers), none blank.
    names = {e["parent_id"]: e for e in roster.json()["items"]}
    for n in range(3):
        assert f"学生{n}妈妈" in text
    confirmed_part, _, waitlist_part = text.partition("候补名单")
    assert waitlist_part, "the waitlist section is missing"
    waiting = [e for e in names.values() if e["status"] == "waitlisted"]
    assert len(waiting) == 1
    assert sum(f"学生{n}妈妈" in waitlist_part for n in range(3)) == 1
    assert sum(f"学生{n}妈妈" in confirmed_part for n in range(3)) == 2
    assert "签名" in confirmed_part


async def test_only_staff_of_the_school_get_the_sheet(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    async with deps.sessions() as s, s.begin():
        course = await make_course(s, tier="general")
        evening = await make_evening_class(
            s, world.school_a, course, starts_at=deps.clock() + timedelta(days=1)
        )
    path = f"{API}/evening-classes/{evening.id}/sign-in-sheet.pdf"
    assert (await api.get(path, token=world.token("teacher_a"))).status == 200
    assert (await api.get(path, token=world.token("school_admin_b"))).status == 404
    assert (await api.get(path, token=world.token("parent_a"))).status == 403
    assert (await api.get(path)).status == 401
