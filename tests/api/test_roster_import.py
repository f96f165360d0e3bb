"""POST /api/v1/schools/{id}/roster-imports: a school admin uploads the class roster as CSV or XLSX."""

from __future__ import annotations

import io
from typing import Any

import openpyxl
from sqlalchemy import func, select

from handlers.deps import Deps
from models.accounts.tables import AuditLog, Classroom, Student
from tests.builders import World, make_world
from tests.client import Api, Response

API = "/api/v1"
CSV = "text/csv"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def csv_of(*lines: str, encoding: str = "utf-8") -> bytes:
    return "\n".join(("学号,姓名,班级,年级", *lines)).encode(encoding)


def xlsx_of(*rows: list[Any]) -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["学号", "姓名", "班级", "年级"])
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


async def upload(
    api: Api, world: World, data: bytes, content_type: str = CSV, actor: str = "school_admin_a", **kw: Any
) -> Response:
    headers = {"Content-Type": content_type, **kw.pop("headers", {})}
    return await api.post(
        f"{API}/schools/{world.school_a.id}/roster-imports",
        body=data,
        headers=headers,
        token=world.token(actor) if actor else None,
        **kw,
    )


async def students(api: Api, world: World) -> dict[str, tuple[str, str]]:
    """student_no → (name, classroom name), as the school admin sees the school."""
    token = world.token("school_admin_a")
    rooms = await api.get(f"{API}/schools/{world.school_a.id}/classrooms?limit=100", token=token)
    names = {c["id"]: c["name"] for c in rooms.json()["items"]}
    listed = await api.get(f"{API}/schools/{world.school_a.id}/students?limit=100", token=token)
    assert listed.status == 200
    return {s["student_no"]: (s["name"], names[s["classroom_id"]]) for s in listed.json()["items"]}


async def classroom_grades(api: Api, world: World) -> dict[str, int]:
    token = world.token("school_admin_a")
    rooms = await api.get(f"{API}/schools/{world.school_a.id}/classrooms?limit=100", token=token)
    return {c["name"]: c["grade"] for c in rooms.json()["items"]}


async def row_counts(deps: Deps) -> tuple[int, int]:
    """Students and classrooms in the whole database, to show a rejected upload wrote nothing anywhere."""
    async with deps.sessions() as s:
        return (
            (await s.execute(select(func.count()).select_from(Student))).scalar_one(),
            (await s.execute(select(func.count()).select_from(Classroom))).scalar_one(),
        )


# ---- success ------------------------------------------------------------------------------------------
async def test_csv_upload_creates_classrooms_and_students(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    data = csv_of("A101,张三,三年级2班,三年级", "A102,李四,三年级2班,3", "", "A201,王五,初一1班,初一")

    response = await upload(api, world, data)

    assert response.status == 201, response.body
    assert response.json() == {
        "rows": 3,
        "created_classrooms": 2,
        "created_students": 3,
        "updated_students": 0,
    }
    assert await students(api, world) == {
        "A001": ("甲同学", "三年级1班"),  # already there, not in the file: left alone
        "A101": ("张三", "三年级2班"),
        "A102": ("李四", "三年级2班"),
        "A201": ("王五", "初一1班"),
    }
    assert await classroom_grades(api, world) == {"三年级1班": 3, "三年级2班": 3, "初一1班": 7}
    async with deps.sessions() as s:
        audit = (await s.execute(select(AuditLog).where(AuditLog.action == "roster.imported"))).scalar_one()
    assert audit.actor_user_id == world.actors["school_admin_a"].user_id
    assert audit.school_id == world.school_a.id
    assert audit.detail == response.json()


async def test_gbk_csv_as_excel_in_china_saves_it(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    response = await upload(api, world, csv_of("A101,张三,三年级2班,3", encoding="gbk"))
    assert response.status == 201, response.body
    assert (await students(api, world))["A101"] == ("张三", "三年级2班")


async def test_xlsx_upload_by_the_district_admin(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    data = xlsx_of([2025001, "赵六", "高一3班", "高一"], [2025002, "钱七", "幼儿园大班", 0])

    response = await upload(api, world, data, XLSX, actor="district_admin")

    assert response.status == 201, response.body
    assert response.json()["created_students"] == 2
    listed = await students(api, world)
    assert listed["2025001"] == ("赵六", "高一3班")
    assert listed["2025002"] == ("钱七", "幼儿园大班")
    grades = await classroom_grades(api, world)
    assert grades["高一3班"] == 10 and grades["幼儿园大班"] == 0


async def test_a_file_over_the_json_limit_but_within_the_upload_limit_is_accepted(
    api: Api, deps: Deps
) -> None:
    world = await make_world(deps)
    remark = "备注" * 300
    lines = [f"N{i:04d},学生{i},三年级{i % 5}班,3,{remark}" for i in range(1000)]
    data = "\n".join(("学号,姓名,班级,年级,备注", *lines)).encode()
    assert deps.settings.max_body_bytes < len(data) < deps.settings.max_upload_bytes

    response = await upload(api, world, data)

    assert response.status == 201, response.body[:300]
    assert response.json()["created_students"] == 1000


async def test_reimport_updates_students_instead_of_duplicating_them(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    first = await upload(api, world, csv_of("A101,张三,三年级2班,3", "A102,李四,三年级2班,3"))
    assert first.status == 201
    parent = world.token("parent_a")
    before = (await api.get(f"{API}/me", token=parent)).json()["children"]
    assert [c["classroom_name"] for c in before] == ["三年级1班"]

    # A001 (parent_a's child) moves class, A102 is renamed, A101 is unchanged, A103 is new.
    second = await upload(
        api,
        world,
        csv_of(
            "A001,甲同学,三年级2班,3",
            "A101,张三,三年级2班,3",
            "A102,李小四,三年级2班,3",
            "A103,新生,三年级2班,3",
        ),
    )

    assert second.status == 201, second.body
    assert second.json() == {
        "rows": 4,
        "created_classrooms": 0,
        "created_students": 1,
        "updated_students": 2,
    }
    assert await students(api, world) == {
        "A001": ("甲同学", "三年级2班"),
        "A101": ("张三", "三年级2班"),
        "A102": ("李小四", "三年级2班"),
        "A103": ("新生", "三年级2班"),
    }
    # The parent's profile (cached between requests) shows the child's new class at once.
    after = (await api.get(f"{API}/me", token=parent)).json()["children"]
    assert [c["classroom_name"] for c in after] == ["三年级2班"]


async def test_a_replayed_upload_with_the_same_idempotency_key_imports_once(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    data = csv_of("A101,张三,三年级2班,3")
    first = await upload(api, world, data, headers={"Idempotency-Key": "roster-1"})
    again = await upload(api, world, data, headers={"Idempotency-Key": "roster-1"})
    assert first.status == again.status == 201
    assert again.json() == first.json() and again.json()["created_students"] == 1
    assert again.headers.get("Idempotent-Replayed") == "true"


# ---- rejected files: nothing is written ---------------------------------------------------------------
async def test_a_file_with_bad_rows_is_rejected_with_every_error_and_writes_nothing(
    api: Api, deps: Deps
) -> None:
    world = await make_world(deps)
    before = await row_counts(deps)
    data = csv_of(
        "A101,张三,三年级2班,3",  # fine, but not imported because of the others
        "A102,李四,新班,十三年级",
        "A101,王五,三年级2班,3",
        "A103,,三年级2班,3",
        "A104,赵六,三年级1班,4",  # 三年级1班 exists in the school as grade 3
    )

    response = await upload(api, world, data)

    assert response.status == 422
    assert response.code == "roster_invalid"
    problem = response.json()
    assert "4 处错误" in problem["detail"]
    assert [(e["row"], e["field"]) for e in problem["errors"]] == [
        (3, "grade"),
        (4, "student_no"),
        (5, "name"),
        (6, "grade"),
    ]
    assert all(e["msg"] for e in problem["errors"])
    assert await row_counts(deps) == before
    assert await students(api, world) == {"A001": ("甲同学", "三年级1班")}


async def test_a_file_missing_a_column_is_rejected_with_the_column_named(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    before = await row_counts(deps)
    response = await upload(api, world, "学号,姓名,年级\nA101,张三,3\n".encode())
    assert response.status == 422 and response.code == "roster_invalid"
    assert "班级" in response.json()["detail"]
    assert response.json()["errors"] == [
        {"row": 1, "field": "classroom", "msg": "缺少“班级”列（也可写作 classroom）"}
    ]
    assert await row_counts(deps) == before


async def test_other_content_types_are_415(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    before = await row_counts(deps)
    for content_type in ("application/json", "text/plain", "application/vnd.ms-excel"):
        response = await upload(api, world, csv_of("A101,张三,三年级2班,3"), content_type)
        assert response.status == 415, content_type
        assert response.code == "unsupported_media_type"
    assert await row_counts(deps) == before


async def test_a_file_over_the_upload_limit_is_413(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    before = await row_counts(deps)
    data = csv_of("A101,张三,三年级2班,3") + b" " * deps.settings.max_upload_bytes
    response = await upload(api, world, data)
    assert response.status == 413 and response.code == "payload_too_large"
    assert await row_counts(deps) == before


async def test_a_file_with_more_students_than_the_settings_allow_is_refused(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    deps.settings.roster_max_rows = 2
    within = await upload(api, world, csv_of("A101,张三,三年级2班,3", "A102,李四,三年级2班,3"))
    assert within.status == 201, within.body
    after = await row_counts(deps)
    response = await upload(
        api, world, csv_of("A103,王五,三年级2班,3", "A104,赵六,三年级2班,3", "A105,钱七,三年级2班,3")
    )
    assert response.status == 422 and response.code == "roster_invalid"
    assert "一次最多导入 2 名学生" in response.json()["detail"]
    assert await row_counts(deps) == after


# ---- who may import -----------------------------------------------------------------------------------
async def test_only_admins_of_the_school_may_import(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    before = await row_counts(deps)
    data = csv_of("A101,张三,三年级2班,3")
    for actor, status in (
        ("school_admin_b", 404),
        ("other_district_admin", 404),
        ("teacher_a", 403),
        ("parent_a", 403),
        ("evaluator", 403),
        ("", 401),
    ):
        response = await upload(api, world, data, actor=actor)
        assert response.status == status, (actor, response.body)
    assert await row_counts(deps) == before
