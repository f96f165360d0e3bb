"""The console in a real browser: each role's landing page, the district 首页's figures against the API's
summaries (table, chart and .xlsx), scheduling from the form, a roster import with bad rows, what an
evaluator may do, CSRF, another school's page and the idle timeout."""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import openpyxl
import pypdf
from playwright.async_api import Page, expect
from sqlalchemy import select

from handlers.deps import Deps
from infra.clock import SHANGHAI
from models.accounts.tables import User
from models.evening_classes.tables import Attendance
from models.learning.service import credit_hours
from server.app import API
from tests.browser.conftest import shoot
from tests.builders import STAFF_PASSWORD, FakeClock, World, make_course, make_evening_class, make_world
from tests.client import Api

NOW = datetime(2025, 11, 20, 10, 0, tzinfo=SHANGHAI)
TERM = "2025-2026-1"


@dataclass
class Scene:
    world: World
    usernames: dict[str, str]
    clock: FakeClock
    course_id: uuid.UUID


async def scene(deps: Deps, *, held_a: int = 5, held_b: int = 2) -> Scene:
    """make_world's district on 20 Nov 2025: school A held `held_a` classes this term, school B `held_b`
    (below the requirement of 5) and has one more planned; parent A has completed the year's hours."""
    clock = FakeClock(NOW)
    deps.clock = clock
    world = await make_world(deps)
    parent_a = world.actors["parent_a"].user_id
    parent_b = world.actors["parent_b"].user_id
    async with deps.sessions() as s, s.begin():
        course = await make_course(s, tier="general", title="家庭教育促进法解读")
        for school, parent, held in ((world.school_a, parent_a, held_a), (world.school_b, parent_b, held_b)):
            for n in range(held):
                evening = await make_evening_class(
                    s, school, course, starts_at=NOW - timedelta(days=7 * (n + 1))
                )
                evening.confirmed_count = 1
                s.add(Attendance(class_id=evening.id, parent_user_id=parent, method="qr"))
        await make_evening_class(s, world.school_b, course, starts_at=NOW + timedelta(days=3))
        for n in range(4):
            await credit_hours(
                s,
                parent_id=parent_a,
                school_year="2025-2026",
                tier="foundation",
                class_hours=Decimal(2),
                source="evening_class",
                source_key=f"browser:{parent_a}:{n}",
            )
        usernames = {
            label: (await s.execute(select(User.username).where(User.id == actor.user_id))).scalar_one() or ""
            for label, actor in world.actors.items()
        }
    return Scene(world, usernames, clock, course.id)


async def log_in(page: Page, username: str) -> None:
    await page.goto("/console/login")
    await page.get_by_label("用户名").fill(username)
    await page.get_by_label("密码").fill(STAFF_PASSWORD)
    await page.get_by_role("button", name="登录").click()
    await page.wait_for_load_state()


async def api_figures(api: Api, s: Scene) -> list[dict[str, Any]]:
    """The district's rows as the API's two summaries give them, in the API's order."""
    district = s.world.district.id
    token = s.world.token("district_admin")
    classes = await api.get(f"{API}/districts/{district}/terms/{TERM}/evening-classes/summary", token=token)
    learning = await api.get(
        f"{API}/districts/{district}/learning/summary?school_year=2025-2026", token=token
    )
    assert classes.status == 200 and learning.status == 200
    share = {r["school_id"]: r for r in learning.json()["by_school"]}
    return [
        {
            "school_id": r["school_id"],
            "school": r["school_name"],
            "held": r["held"],
            "scheduled": r["scheduled"],
            "required": r["required"],
            "below": not r["meets_requirement"],
            "parents": share[r["school_id"]]["parents"],
            "complete": share[r["school_id"]]["complete"],
            "share": share[r["school_id"]]["share"],
        }
        for r in classes.json()["items"]
    ]


# ---- each role lands on its page ------------------------------------------------------------------
async def test_each_role_logs_in_and_lands_on_its_page(page: Page, api: Api, deps: Deps) -> None:
    s = await scene(deps)
    await log_in(page, s.usernames["district_admin"])
    assert page.url.endswith(f"/console/districts/{s.world.district.id}")
    await expect(page.locator("h1")).to_have_text(f"{s.world.district.name} · 首页")
    await page.get_by_role("button", name="退出登录").click()
    await expect(page.locator("h1")).to_have_text("管理员登录")

    await log_in(page, s.usernames["school_admin_a"])
    assert page.url.endswith(f"/console/schools/{s.world.school_a.id}")
    await expect(page.locator("h1")).to_have_text("甲小学 · 首页")
    await page.get_by_role("button", name="退出登录").click()

    await log_in(page, s.usernames["evaluator"])
    assert page.url.endswith(f"/console/districts/{s.world.district.id}")
    await expect(page.locator("h1")).to_have_text(f"{s.world.district.name} · 首页")


async def test_a_wrong_password_is_shown_in_chinese(page: Page, api: Api, deps: Deps) -> None:
    s = await scene(deps)
    await page.goto("/console/login")
    await page.get_by_label("用户名").fill(s.usernames["school_admin_a"])
    await page.get_by_label("密码").fill("wrong password")
    await page.get_by_role("button", name="登录").click()
    await expect(page.get_by_role("alert")).to_have_text("用户名或密码错误")
    await shoot(page, "login-error")


# ---- the district 首页 against the API -------------------------------------------------------------
async def test_district_page_shows_the_apis_figures_worst_first(page: Page, api: Api, deps: Deps) -> None:
    s = await scene(deps)
    expected = await api_figures(api, s)
    assert [r["school"] for r in expected] == ["乙中学", "甲小学"]  # the API sorts the school below first
    await log_in(page, s.usernames["district_admin"])
    rows = page.locator("#district-table tbody tr")
    await expect(rows).to_have_count(2)
    shown = []
    for i in range(2):
        cells = [c.strip() for c in await rows.nth(i).locator("td").all_inner_texts()]
        shown.append(
            {
                "school_id": await rows.nth(i).get_attribute("data-school-id"),
                "school": cells[0],
                "held": int(cells[1]),
                "scheduled": int(cells[2]),
                "required": int(cells[3]),
                "below": cells[4] == "未达标",
                "parents": int(cells[5]),
                "complete": int(cells[6]),
                "share": round(float(cells[7].rstrip("%")) / 100, 4),
            }
        )
    assert shown == expected
    assert shown[0]["held"] == 2 and shown[0]["below"] and shown[1]["held"] == 5
    # Red below the requirement: the row is marked, and its count is drawn in red.
    await expect(rows.nth(0)).to_have_class("below")
    assert (
        await rows.nth(0).locator("td.held").evaluate("e => getComputedStyle(e).color") == "rgb(198, 40, 40)"
    )
    assert await rows.nth(1).get_attribute("class") == ""
    await expect(page.locator("#below-count")).to_have_text("1")
    await shoot(page, "district")


async def test_the_chart_is_drawn_with_the_apis_figures(page: Page, api: Api, deps: Deps) -> None:
    s = await scene(deps)
    expected = await api_figures(api, s)
    await log_in(page, s.usernames["district_admin"])
    await page.wait_for_function("() => window.consoleCharts && window.consoleCharts.evening")
    option = await page.evaluate(
        """() => {
            const o = window.consoleCharts.evening.getOption();
            return {
                schools: o.xAxis[0].data,
                held: o.series[0].data.map(d => d.value),
                colours: o.series[0].data.map(d => d.itemStyle.color),
                line: o.series[0].markLine.data[0].yAxis,
            };
        }"""
    )
    assert option["schools"] == [r["school"] for r in expected]
    assert option["held"] == [r["held"] for r in expected]
    assert option["line"] == expected[0]["required"] == 5
    assert option["colours"][0] != option["colours"][1]  # the school below the line stands out
    # The canvas holds a drawing: many pixels are painted, in more than one colour.
    painted = await page.evaluate(
        """() => {
            const canvas = document.querySelector('#chart-evening canvas');
            const ctx = canvas.getContext('2d');
            const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
            let painted = 0; const colours = new Set();
            for (let i = 0; i < data.length; i += 4) {
                if (data[i + 3] > 0) {
                    painted++;
                    colours.add(data[i] + ',' + data[i + 1] + ',' + data[i + 2]);
                }
            }
            return { painted, colours: colours.size, total: data.length / 4 };
        }"""
    )
    assert painted["painted"] > painted["total"] * 0.02 and painted["colours"] > 3, painted
    # The red bar is really on the canvas, not only in the option.
    red = await page.evaluate(
        """() => {
            const canvas = document.querySelector('#chart-evening canvas');
            const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
            let n = 0;
            for (let i = 0; i < data.length; i += 4) {
                if (data[i] === 198 && data[i + 1] === 40 && data[i + 2] === 40) n++;
            }
            return n;
        }"""
    )
    assert red > 100
    # The completion chart: one bar per school, the API's share as a percentage.
    completion = await page.evaluate(
        """() => {
            const o = window.consoleCharts.completion.getOption();
            return { schools: o.xAxis[0].data, shares: o.series[0].data };
        }"""
    )
    assert completion["schools"] == [r["school"] for r in expected]
    assert completion["shares"] == [round(r["share"] * 100, 1) for r in expected]
    assert completion["shares"] == [0.0, 100.0]
    await page.locator("#chart-evening").scroll_into_view_if_needed()
    await shoot(page, "district-chart")


async def test_the_xlsx_download_holds_the_apis_figures(page: Page, api: Api, deps: Deps) -> None:
    s = await scene(deps)
    expected = await api_figures(api, s)
    await log_in(page, s.usernames["evaluator"])  # a reader may download it too
    async with page.expect_download() as waiting:
        await page.get_by_role("link", name="下载 Excel 汇总表").click()
    download = await waiting.value
    assert download.suggested_filename == f"{s.world.district.name}-{TERM}-家长夜校与学时.xlsx"
    book = openpyxl.load_workbook(io.BytesIO((await download.path()).read_bytes()))
    sheet = book["各校汇总"]
    header = [c.value for c in sheet[2]]
    assert header == [
        "学校",
        "已举办夜校",
        "已安排夜校",
        "每学期要求",
        "是否达标",
        "家长人数",
        "完成学时的家长",
        "学时完成率",
    ]
    rows = [[c.value for c in row] for row in sheet.iter_rows(min_row=3)]
    assert rows == [
        [
            r["school"],
            r["held"],
            r["scheduled"],
            r["required"],
            "未达标" if r["below"] else "达标",
            r["parents"],
            r["complete"],
            r["share"],
        ]
        for r in expected
    ]


# ---- the school 首页 ---------------------------------------------------------------------------------
async def test_scheduling_from_the_form_shows_the_class_in_the_list(page: Page, api: Api, deps: Deps) -> None:
    s = await scene(deps)
    await log_in(page, s.usernames["school_admin_a"])
    before = await page.locator("#classes-table tbody tr").count()
    form = page.locator("#schedule-form")
    await form.locator("select[name=course_id]").select_option(str(s.course_id))
    await form.get_by_label("标题").fill("如何陪孩子写作业")
    await form.get_by_label("日期").fill("2025-11-27")
    await form.get_by_label("开始").fill("19:00")
    await form.get_by_label("结束").fill("20:30")
    await form.get_by_label("地点").fill("学校报告厅")
    await form.get_by_label("名额").fill("60")
    await form.get_by_role("button", name="开设").click()
    await expect(page.get_by_role("status")).to_contain_text("已开设新的家长夜校")
    rows = page.locator("#classes-table tbody tr")
    await expect(rows).to_have_count(before + 1)
    row = rows.filter(has_text="如何陪孩子写作业")
    await expect(row.locator("td").nth(1)).to_have_text("2025-11-27 19:00–20:30")
    await expect(row.locator("td.capacity")).to_have_text("60")
    await expect(row.locator("td.seats-left")).to_have_text("60")
    await expect(row.locator("td.waitlisted")).to_have_text("0")
    await expect(page.locator("#scheduled")).to_have_text(str(before + 1))
    # The API sees the same class (the form went through the same service).
    listed = await api.get(
        f"{API}/evening-classes?from=2025-11-27&to=2025-11-27", token=s.world.token("parent_a")
    )
    assert [c["title"] for c in listed.json()["items"]] == ["如何陪孩子写作业"]
    await shoot(page, "school")
    # Its sign-in sheet, linked from the row, opens with the session and names the class.
    href = await row.get_by_role("link", name="签到表").get_attribute("href")
    assert href is not None
    sheet = await page.request.get(href)
    assert sheet.status == 200 and sheet.headers["content-type"] == "application/pdf"
    text = pypdf.PdfReader(io.BytesIO(await sheet.body())).pages[0].extract_text()
    assert "课程：如何陪孩子写作业" in text and "暂无报名家庭" in text


async def test_a_form_that_breaks_a_rule_says_why(page: Page, api: Api, deps: Deps) -> None:
    s = await scene(deps)
    await log_in(page, s.usernames["school_admin_a"])
    form = page.locator("#schedule-form")
    await form.locator("select[name=course_id]").select_option(str(s.course_id))
    await form.get_by_label("日期").fill("2025-11-27")
    await form.get_by_label("开始").fill("20:00")
    await form.get_by_label("结束").fill("19:00")
    await form.get_by_label("地点").fill("学校报告厅")
    await form.get_by_role("button", name="开设").click()
    await expect(page.locator("#schedule-error")).to_contain_text("结束时间须晚于开始时间")
    await expect(form.get_by_label("地点")).to_have_value("学校报告厅")  # what was typed is kept


async def test_a_roster_with_bad_rows_shows_each_rows_error(page: Page, api: Api, deps: Deps) -> None:
    s = await scene(deps)
    await log_in(page, s.usernames["school_admin_a"])
    csv = "学号,姓名,班级,年级\nA100,李小花,三年级2班,3\nA101,,三年级2班,3\nA102,赵小虎,三年级2班,九十九\n"
    await page.locator("#roster-form input[type=file]").set_input_files(
        {"name": "名单.csv", "mimeType": "text/csv", "buffer": csv.encode()}
    )
    await page.locator("#roster-form").get_by_role("button", name="导入").click()
    await expect(page.locator("#roster-detail")).to_have_text("名单中有 2 处错误，未导入任何数据")
    errors = page.locator("#roster-errors tbody tr")
    await expect(errors).to_have_count(2)
    assert [c.strip() for c in await errors.nth(0).locator("td").all_inner_texts()] == [
        "3",
        "姓名",
        "姓名不能为空",
    ]
    second = [c.strip() for c in await errors.nth(1).locator("td").all_inner_texts()]
    assert second[:2] == ["4", "年级"] and "无法识别的年级“九十九”" in second[2]
    students = await api.get(
        f"{API}/schools/{s.world.school_a.id}/students", token=s.world.token("school_admin_a")
    )
    assert "李小花" not in students.body.decode()  # nothing half-imported
    await page.locator("#roster").scroll_into_view_if_needed()
    await shoot(page, "school-roster-errors")

    # The corrected list, typed into the downloadable template, imports in one step.
    async with page.expect_download() as waiting:
        await page.get_by_role("link", name="下载名单模板").click()
    template = openpyxl.load_workbook(io.BytesIO((await (await waiting.value).path()).read_bytes()))
    sheet = template["学生名单"]
    assert [c.value for c in sheet[1]] == ["学号", "姓名", "班级", "年级"]
    assert sheet.cell(2, 1).number_format == "@"  # 学号 as text: leading zeros survive Excel
    sheet.delete_rows(2)
    sheet.append(["A100", "李小花", "三年级2班", "三年级"])
    sheet.append(["A101", "钱小多", "三年级2班", 3])
    filled = io.BytesIO()
    template.save(filled)
    await page.locator("#roster-form input[type=file]").set_input_files(
        {
            "name": "名单.xlsx",
            "mimeType": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "buffer": filled.getvalue(),
        }
    )
    await page.locator("#roster-form").get_by_role("button", name="导入").click()
    await expect(page.locator("#roster-report")).to_have_text(
        "已导入 2 行：新建班级 1 个，新建学生 2 名，更新学生 0 名。"
    )


# ---- who may do what ---------------------------------------------------------------------------------
async def test_an_evaluator_sees_no_write_control_and_a_forged_write_is_refused(
    page: Page, api: Api, deps: Deps
) -> None:
    s = await scene(deps)
    await log_in(page, s.usernames["evaluator"])
    # The only form that posts is the logout button; no school links into pages it may not open.
    assert await page.locator("form[method=post]").count() == 1
    await expect(page.locator("form[method=post] button")).to_have_text("退出登录")
    await expect(page.locator("#requirement-form")).to_have_count(0)
    await expect(page.locator("#district-table a")).to_have_count(0)
    await shoot(page, "district-evaluator")
    forged = await page.evaluate(
        """async ([district, school, term]) => {
            const form = { "Content-Type": "application/x-www-form-urlencoded" };
            const a = await consoleFetch(`/console/districts/${district}/terms/${term}/requirement`,
                                         { method: "POST", headers: form, body: "required=1" });
            const b = await consoleFetch(`/console/schools/${school}/evening-classes`,
                                         { method: "POST", headers: form, body: "place=x" });
            return [a.status, b.status, await a.text()];
        }""",
        [str(s.world.district.id), str(s.world.school_a.id), TERM],
    )
    assert forged[:2] == [403, 403]  # with a valid CSRF token: refused for the role
    assert "无权执行此操作" in forged[2]
    summary = await api.get(
        f"{API}/districts/{s.world.district.id}/terms/{TERM}/evening-classes/summary",
        token=s.world.token("district_admin"),
    )
    assert summary.json()["required"] == 5


async def test_a_district_admin_sets_the_requirement_but_not_without_the_csrf_token(
    page: Page, api: Api, deps: Deps
) -> None:
    s = await scene(deps)
    await log_in(page, s.usernames["district_admin"])
    without = await page.evaluate(
        """async ([district, term]) => {
            const r = await fetch(`/console/districts/${district}/terms/${term}/requirement`, {
                method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" },
                body: "required=1" });
            return [r.status, await r.text()];
        }""",
        [str(s.world.district.id), TERM],
    )
    assert without[0] == 403 and "页面已过期" in without[1]
    # The form itself, with its hidden token removed, is refused the same way.
    form = page.locator("#requirement-form form")
    await form.locator("input[name=csrf_token]").evaluate("e => e.remove()")
    await form.get_by_role("spinbutton").fill("1")
    await form.get_by_role("button", name="保存").click()
    await expect(page.locator("h1")).to_have_text("页面已过期或来源不明，请刷新页面后重试")
    # With its token the form works, and the page then counts against the new requirement.
    await page.goto(f"/console/districts/{s.world.district.id}")
    form = page.locator("#requirement-form form")
    await form.get_by_role("spinbutton").fill("2")
    await form.get_by_role("button", name="保存").click()
    await expect(page.get_by_role("status")).to_contain_text("已更新")
    await expect(page.locator("#below-count")).to_have_text("0")
    summary = await api.get(
        f"{API}/districts/{s.world.district.id}/terms/{TERM}/evening-classes/summary",
        token=s.world.token("district_admin"),
    )
    assert summary.json()["required"] == 2 and summary.json()["schools_below_requirement"] == 0


async def test_another_schools_page_is_not_found(page: Page, api: Api, deps: Deps) -> None:
    s = await scene(deps)
    await log_in(page, s.usernames["school_admin_a"])
    for other in (s.world.school_b.id, s.world.school_c.id, uuid.uuid4()):
        answer = await page.goto(f"/console/schools/{other}")
        assert answer is not None and answer.status == 404
        await expect(page.locator("h1")).to_have_text("未找到")
        await expect(page.locator(".problem")).to_contain_text("学校不存在")
    answer = await page.goto(f"/console/districts/{s.world.district.id}")
    assert answer is not None and answer.status == 403  # a school admin holds no district role
    # A district admin opens its schools' pages from the table, but not another district's school.
    await page.get_by_role("button", name="退出登录").click()
    await log_in(page, s.usernames["district_admin"])
    await page.get_by_role("link", name="乙中学").click()
    await expect(page.locator("h1")).to_have_text("乙中学 · 首页")
    answer = await page.goto(f"/console/schools/{s.world.school_c.id}")
    assert answer is not None and answer.status == 404


async def test_an_idle_session_expires(page: Page, api: Api, deps: Deps) -> None:
    s = await scene(deps)
    await log_in(page, s.usernames["school_admin_a"])
    s.clock.tick(29 * 60)
    await page.reload()
    await expect(page.locator("h1")).to_have_text("甲小学 · 首页")
    s.clock.tick(31 * 60)
    await page.reload()
    await expect(page.locator("h1")).to_have_text("管理员登录")
    assert "/console/login?next=" in page.url
    # Logging in again returns to the page the session was on.
    await page.get_by_label("用户名").fill(s.usernames["school_admin_a"])
    await page.get_by_label("密码").fill(STAFF_PASSWORD)
    await page.get_by_role("button", name="登录").click()
    await expect(page.locator("h1")).to_have_text("甲小学 · 首页")


# ---- an initial password ----------------------------------------------------------------------------
async def test_an_account_with_an_initial_password_changes_it_at_first_login(
    page: Page, api: Api, deps: Deps
) -> None:
    s = await scene(deps)
    created = await api.post(
        f"{API}/districts/{s.world.district.id}/staff-accounts",
        {
            "username": "jia_new_admin",
            "password": "initial password 1",
            "display_name": "新管理员",
            "role": "school_admin",
            "school_id": str(s.world.school_a.id),
        },
        token=s.world.token("district_admin"),
    )
    assert created.status == 201, created.body
    api_login = await api.post(
        f"{API}/auth/password-login", {"username": "jia_new_admin", "password": "initial password 1"}
    )
    refresh_token = api_login.json()["refresh_token"]

    # Someone else who knows the initial password signs in elsewhere first.
    elsewhere_context = await page.context.browser.new_context(base_url=api.base)  # type: ignore[union-attr]
    elsewhere = await elsewhere_context.new_page()
    await elsewhere.goto("/console/login")
    await elsewhere.get_by_label("用户名").fill("jia_new_admin")
    await elsewhere.get_by_label("密码").fill("initial password 1")
    await elsewhere.get_by_role("button", name="登录").click()
    await expect(elsewhere.locator("h1")).to_have_text("修改密码")

    await page.goto("/console/login")
    await page.get_by_label("用户名").fill("jia_new_admin")
    await page.get_by_label("密码").fill("initial password 1")
    await page.get_by_role("button", name="登录").click()
    await expect(page.locator("h1")).to_have_text("修改密码")
    await expect(page.get_by_role("status")).to_contain_text("初始密码")
    await shoot(page, "password")
    # Nothing else opens until the password is changed.
    await page.goto(f"/console/schools/{s.world.school_a.id}")
    await expect(page.locator("h1")).to_have_text("修改密码")

    await page.get_by_label("当前密码").fill("initial password 1")
    await page.get_by_label("新密码（至少 10 个字符）").fill("my own password 2")
    await page.get_by_label("再次输入新密码").fill("my own password 3")
    await page.get_by_role("button", name="保存新密码").click()
    await expect(page.get_by_role("alert")).to_have_text("两次输入的新密码不一致")

    await page.get_by_label("当前密码").fill("initial password 1")
    await page.get_by_label("新密码（至少 10 个字符）").fill("my own password 2")
    await page.get_by_label("再次输入新密码").fill("my own password 2")
    await page.get_by_role("button", name="保存新密码").click()
    await expect(page.locator("h1")).to_have_text("甲小学 · 首页")

    # The other browser's session has ended with the old password.
    await elsewhere.reload()
    await expect(elsewhere.locator("h1")).to_have_text("管理员登录")
    await elsewhere_context.close()
    # The API login made with the initial password has ended; only the new password logs in.
    assert (await api.post(f"{API}/auth/refresh", {"refresh_token": refresh_token})).status == 401
    old = await api.post(
        f"{API}/auth/password-login", {"username": "jia_new_admin", "password": "initial password 1"}
    )
    assert old.status == 401
    new = await api.post(
        f"{API}/auth/password-login", {"username": "jia_new_admin", "password": "my own password 2"}
    )
    assert new.status == 200
    await page.get_by_role("button", name="退出登录").click()
    await page.get_by_label("用户名").fill("jia_new_admin")
    await page.get_by_label("密码").fill("my own password 2")
    await page.get_by_role("button", name="登录").click()
    await expect(page.locator("h1")).to_have_text("甲小学 · 首页")  # asked only once


# ---- the check-in screen ----------------------------------------------------------------------------
async def test_the_checkin_screen_shows_a_new_checkin_and_rotates_its_code(
    page: Page, api: Api, deps: Deps
) -> None:
    s = await scene(deps)
    async with deps.sessions() as session, session.begin():
        from models.catalog.tables import Course

        course = await session.get(Course, s.course_id)
        assert course is not None
        evening = await make_evening_class(
            session, s.world.school_a, course, starts_at=NOW + timedelta(minutes=10)
        )
        later = await make_evening_class(session, s.world.school_a, course, starts_at=NOW + timedelta(days=2))
    signed = await api.post(
        f"{API}/evening-classes/{evening.id}/signups", {}, token=s.world.token("parent_a")
    )
    assert signed.status == 201, signed.body
    await log_in(page, s.usernames["school_admin_a"])
    link = page.locator(f"tr[data-class-id='{evening.id}']").get_by_role("link", name="签到大屏")
    assert await link.get_attribute("href") == f"/console/evening-classes/{evening.id}/checkin"
    await page.goto(f"/console/evening-classes/{evening.id}/checkin")
    qr = page.locator("#qr")
    await expect(qr).to_be_visible()
    await expect(page.locator("#present")).to_have_text("0")
    await expect(page.locator("#confirmed")).to_have_text("1")
    token = await qr.get_attribute("data-token")
    assert token
    assert (await qr.get_attribute("src") or "").startswith("data:image/svg+xml")
    await shoot(page, "checkin")

    # The parent scans the code on the screen: the API accepts it, and the screen counts it within 2 s.
    checked = await api.post(
        f"{API}/evening-classes/{evening.id}/checkins", {"token": token}, token=s.world.token("parent_a")
    )
    assert checked.status == 201, checked.body
    await expect(page.locator("#present")).to_have_text("1", timeout=2000)

    # Thirty seconds on, the screen shows the next code.
    s.clock.tick(30)
    await expect(qr).not_to_have_attribute("data-token", token, timeout=2000)

    # A class whose check-in has not opened says so instead of showing a code.
    await page.goto(f"/console/evening-classes/{later.id}/checkin")
    await expect(page.locator("#checkin-status")).to_have_text("签到在开课前 30 分钟开放，下课后 30 分钟关闭")
    await expect(qr).to_be_hidden()
