"""Organisation: schools, classrooms, students, teachers, binding codes and staff accounts."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from sqlalchemy import func, select

from handlers.deps import Deps
from models.accounts.tables import BindingCode, Classroom, Student, User
from server.app import API
from tests.builders import World, make_student, make_teacher, make_world
from tests.client import Api

STAFF_PASSWORD = "a long enough password"


async def _count(deps: Deps, table: type) -> int:
    async with deps.sessions() as s:
        return int((await s.execute(select(func.count()).select_from(table))).scalar_one())


async def _redeem(api: Api, token: str, code: str, **extra: str) -> int:
    response = await api.post(f"{API}/bindings", {"code": code, **extra}, token=token)
    return response.status


# ---- schools -----------------------------------------------------------------------------------------
async def test_district_admin_creates_a_school_and_lists_every_school_once_across_pages(
    api: Api, deps: Deps
) -> None:
    w = await make_world(deps)
    token = w.token("district_admin")
    schools = f"{API}/districts/{w.district.id}/schools"

    created = await api.post(schools, {"name": "  新建小学  "}, token=token)
    assert created.status == 201
    body = created.json()
    assert body["name"] == "新建小学" and body["district_id"] == str(w.district.id)
    for i in range(4):
        assert (await api.post(schools, {"name": f"学校{i}"}, token=token)).status == 201

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        url = f"{schools}?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = await api.get(url, token=token)
        assert page.status == 200, page.body
        items = page.json()["items"]
        assert len(items) <= 2
        seen += [s["name"] for s in items]
        cursor = page.json()["next_cursor"]
        pages += 1
        if cursor is None:
            break
        assert pages < 10, "pagination does not terminate"
    # Two from the world, five created: every one exactly once, none of district C.
    assert len(seen) == 7
    assert set(seen) == {"甲小学", "乙中学", "新建小学", "学校0", "学校1", "学校2", "学校3"}

    # The school page of the other district's admin does not show them.
    other = await api.get(
        f"{API}/districts/{w.other_district.id}/schools", token=w.token("other_district_admin")
    )
    assert [s["name"] for s in other.json()["items"]] == ["丙小学"]


async def test_school_list_rejects_bad_limits_and_cursors(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    token = w.token("district_admin")
    schools = f"{API}/districts/{w.district.id}/schools"
    wrong_width = base64.urlsafe_b64encode(json.dumps(["a"]).encode()).decode()
    wrong_types = base64.urlsafe_b64encode(json.dumps([1, "not-a-uuid"]).encode()).decode()
    nul_name = base64.urlsafe_b64encode(json.dumps(["a\x00", str(uuid.uuid4())]).encode()).decode()
    for query, field in (
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("cursor=%%%garbage", "cursor"),
        ("cursor=bm90IGpzb24", "cursor"),  # base64 of "not json"
        (f"cursor={wrong_width}", "cursor"),
        (f"cursor={wrong_types}", "cursor"),
        (f"cursor={nul_name}", "cursor"),
        ("limit=1%00", "limit"),
    ):
        response = await api.get(f"{schools}?{query}", token=token)
        assert response.status == 422, (query, response.body)
        assert ["query", field] in [e["loc"][:2] for e in response.json()["errors"]], query
    assert (await api.get(f"{schools}?limit=100", token=token)).status == 200


async def test_duplicate_school_name_in_a_district_is_a_conflict(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    response = await api.post(
        f"{API}/districts/{w.district.id}/schools", {"name": "甲小学"}, token=w.token("district_admin")
    )
    assert response.status == 409 and response.code == "duplicate"
    # The same name is fine in another district.
    other = await api.post(
        f"{API}/districts/{w.other_district.id}/schools",
        {"name": "甲小学"},
        token=w.token("other_district_admin"),
    )
    assert other.status == 201


async def test_school_staff_read_their_school(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    response = await api.get(f"{API}/schools/{w.school_a.id}", token=w.token("teacher_a"))
    assert response.status == 200
    assert response.json() == {"id": str(w.school_a.id), "district_id": str(w.district.id), "name": "甲小学"}


# ---- classrooms ----------------------------------------------------------------------------------------
async def test_school_admin_creates_classrooms_and_duplicates_conflict(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    token = w.token("school_admin_a")
    classrooms = f"{API}/schools/{w.school_a.id}/classrooms"

    created = await api.post(
        classrooms, {"name": "四年级2班", "grade": 4, "head_teacher_id": str(w.teacher_a.id)}, token=token
    )
    assert created.status == 201
    assert created.json()["head_teacher_id"] == str(w.teacher_a.id)
    assert created.json()["school_id"] == str(w.school_a.id)

    duplicate = await api.post(classrooms, {"name": "四年级2班", "grade": 5}, token=token)
    assert duplicate.status == 409 and duplicate.code == "duplicate"

    # Another school may use the same name.
    elsewhere = await api.post(
        f"{API}/schools/{w.school_b.id}/classrooms",
        {"name": "四年级2班", "grade": 4},
        token=w.token("school_admin_b"),
    )
    assert elsewhere.status == 201

    listed = await api.get(classrooms, token=token)
    assert sorted(c["name"] for c in listed.json()["items"]) == sorted(["三年级1班", "四年级2班"])


async def test_classroom_head_teacher_must_be_of_the_same_school(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    async with deps.sessions() as s, s.begin():
        teacher_b = await make_teacher(s, w.school_b, name="乙校老师")
    for head in (teacher_b.id, uuid.uuid4()):
        response = await api.post(
            f"{API}/schools/{w.school_a.id}/classrooms",
            {"name": "五年级1班", "grade": 5, "head_teacher_id": str(head)},
            token=w.token("school_admin_a"),
        )
        assert response.status == 422
        assert ["body", "head_teacher_id"] in [e["loc"] for e in response.json()["errors"]]
    assert await _count(deps, Classroom) == 2


async def test_classroom_grade_outside_0_to_12_is_rejected(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    for grade in (-1, 13):
        response = await api.post(
            f"{API}/schools/{w.school_a.id}/classrooms",
            {"name": "怪班", "grade": grade},
            token=w.token("school_admin_a"),
        )
        assert response.status == 422
        assert ["body", "grade"] in [e["loc"] for e in response.json()["errors"]]


# ---- students -------------------------------------------------------------------------------------------
async def test_school_admin_creates_students_only_in_their_own_classrooms(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    token = w.token("school_admin_a")
    students = f"{API}/schools/{w.school_a.id}/students"

    created = await api.post(
        students, {"student_no": "A002", "name": "新同学", "classroom_id": str(w.classroom_a.id)}, token=token
    )
    assert created.status == 201
    assert created.json()["classroom_id"] == str(w.classroom_a.id)

    for classroom_id in (w.classroom_b.id, uuid.uuid4()):
        response = await api.post(
            students, {"student_no": "A003", "name": "错班", "classroom_id": str(classroom_id)}, token=token
        )
        assert response.status == 422, response.body
        assert ["body", "classroom_id"] in [e["loc"] for e in response.json()["errors"]]

    duplicate = await api.post(
        students, {"student_no": "A002", "name": "重号", "classroom_id": str(w.classroom_a.id)}, token=token
    )
    assert duplicate.status == 409 and duplicate.code == "duplicate"

    assert await _count(deps, Student) == 3  # the world's two and the one created


async def test_student_list_pages_and_filters_by_classroom(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    async with deps.sessions() as s, s.begin():
        for i in range(4):
            await make_student(s, w.classroom_a, f"学生{i}", f"A10{i}")
    token = w.token("school_admin_a")
    url = f"{API}/schools/{w.school_a.id}/students?classroom_id={w.classroom_a.id}&limit=3"
    first = await api.get(url, token=token)
    assert first.status == 200
    assert [s["student_no"] for s in first.json()["items"]] == ["A001", "A100", "A101"]
    cursor = first.json()["next_cursor"]
    second = await api.get(f"{url}&cursor={cursor}", token=token)
    assert [s["student_no"] for s in second.json()["items"]] == ["A102", "A103"]
    assert second.json()["next_cursor"] is None


# ---- teachers and their codes ---------------------------------------------------------------------------
async def test_new_teacher_gets_a_code_that_binds_them(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    created = await api.post(
        f"{API}/schools/{w.school_a.id}/teachers", {"name": "王老师"}, token=w.token("school_admin_a")
    )
    assert created.status == 201
    body = created.json()
    assert body["bound"] is False and body["name"] == "王老师"
    code = body["binding_code"]
    assert code["kind"] == "teacher" and code["teacher_id"] == body["id"] and len(code["code"]) >= 8

    assert await _redeem(api, w.token("stranger"), code["code"]) == 201
    listed = await api.get(f"{API}/schools/{w.school_a.id}/teachers", token=w.token("school_admin_a"))
    by_name = {t["name"]: t for t in listed.json()["items"]}
    assert by_name["王老师"]["bound"] is True


async def test_a_reissued_teacher_code_replaces_the_last_and_bound_teachers_get_none(
    api: Api, deps: Deps
) -> None:
    w = await make_world(deps)
    async with deps.sessions() as s, s.begin():
        unbound = await make_teacher(s, w.school_a, name="未绑定老师")
    token = w.token("school_admin_a")
    reissue = f"{API}/schools/{w.school_a.id}/teachers/{unbound.id}/binding-code"

    lost = await api.post(reissue, {}, token=token)
    code = await api.post(reissue, {}, token=token)  # the first was lost: it stops working
    assert code.status == 201
    assert code.json()["teacher_id"] == str(unbound.id)
    assert await _redeem(api, w.token("stranger"), lost.json()["code"]) == 404
    assert await _redeem(api, w.token("stranger"), code.json()["code"]) == 201

    again = await api.post(reissue, {}, token=token)
    assert again.status == 409 and again.code == "already_bound"
    bound_already = await api.post(
        f"{API}/schools/{w.school_a.id}/teachers/{w.teacher_a.id}/binding-code", {}, token=token
    )
    assert bound_already.status == 409 and bound_already.code == "already_bound"
    # Another school's teacher under this school's path names nothing.
    async with deps.sessions() as s, s.begin():
        teacher_b = await make_teacher(s, w.school_b, name="乙校新老师")
    foreign = await api.post(
        f"{API}/schools/{w.school_a.id}/teachers/{teacher_b.id}/binding-code", {}, token=token
    )
    assert foreign.status == 404


# ---- guardian codes -------------------------------------------------------------------------------------
async def test_guardian_codes_one_per_student_of_the_classroom(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    async with deps.sessions() as s, s.begin():
        await make_student(s, w.classroom_a, "乙乙", "A003")
        await make_student(s, w.classroom_a, "丙丙", "A002")
    issued = await api.post(
        f"{API}/schools/{w.school_a.id}/classrooms/{w.classroom_a.id}/guardian-codes",
        {},
        token=w.token("school_admin_a"),
    )
    assert issued.status == 201
    body = issued.json()
    assert body["classroom_id"] == str(w.classroom_a.id) and body["classroom_name"] == "三年级1班"
    items = body["items"]
    assert [(c["student_no"], c["student_name"]) for c in items] == [
        ("A001", "甲同学"),
        ("A002", "丙丙"),
        ("A003", "乙乙"),
    ]
    assert all(c["kind"] == "guardian" for c in items)
    assert len({c["code"] for c in items}) == 3
    async with deps.sessions() as s:
        stored = (await s.execute(select(BindingCode))).scalars().all()
    assert {str(c.student_id) for c in stored} == {c["student_id"] for c in items}

    # Another school's classroom under this school's path names nothing.
    foreign = await api.post(
        f"{API}/schools/{w.school_a.id}/classrooms/{w.classroom_b.id}/guardian-codes",
        {},
        token=w.token("school_admin_a"),
    )
    assert foreign.status == 404
    assert await _count(deps, BindingCode) == 3


# ---- staff accounts ---------------------------------------------------------------------------------------
async def _staff(api: Api, w: World, **body: object) -> tuple[int, Any]:
    payload = {"password": STAFF_PASSWORD, "display_name": "新账号", **body}
    response = await api.post(
        f"{API}/districts/{w.district.id}/staff-accounts", payload, token=w.token("district_admin")
    )
    return response.status, response.json()


async def test_district_admin_creates_a_school_admin_who_can_log_in(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    status, body = await _staff(
        api, w, username="jia_admin2", role="school_admin", school_id=str(w.school_a.id)
    )
    assert status == 201, body
    assert body["role"] == "school_admin" and body["school_id"] == str(w.school_a.id)
    assert "password" not in body

    login = await api.post(
        f"{API}/auth/password-login", {"username": "jia_admin2", "password": STAFF_PASSWORD}
    )
    assert login.status == 200, login.body
    me = await api.get(f"{API}/me", token=login.json()["access_token"])
    assert me.json()["roles"] == ["school_admin"]
    assert [(s["id"], s["roles"]) for s in me.json()["schools"]] == [(str(w.school_a.id), ["school_admin"])]

    # And acts on that school.
    classrooms = await api.get(
        f"{API}/schools/{w.school_a.id}/classrooms", token=login.json()["access_token"]
    )
    assert classrooms.status == 200


async def test_district_admin_creates_an_evaluator_of_the_district(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    status, body = await _staff(api, w, username="pinggu01", role="evaluator")
    assert status == 201, body
    assert body["role"] == "evaluator" and body["school_id"] is None
    login = await api.post(f"{API}/auth/password-login", {"username": "pinggu01", "password": STAFF_PASSWORD})
    me = (await api.get(f"{API}/me", token=login.json()["access_token"])).json()
    assert me["roles"] == ["evaluator"]
    assert [(d["id"], d["roles"]) for d in me["districts"]] == [(str(w.district.id), ["evaluator"])]
    assert me["schools"] == []


async def test_staff_account_errors_write_nothing(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    status, _ = await _staff(api, w, username="taken01", role="evaluator")
    assert status == 201
    users_before = await _count(deps, User)

    status, body = await _staff(api, w, username="taken01", role="evaluator")
    assert status == 409 and body["code"] == "duplicate"

    status, body = await _staff(api, w, username="c_admin", role="school_admin", school_id=str(w.school_c.id))
    assert status == 422 and ["body", "school_id"] in [e["loc"] for e in body["errors"]]

    status, body = await _staff(api, w, username="no_school", role="school_admin")
    assert status == 422 and ["body", "school_id"] in [e["loc"] for e in body["errors"]]

    status, body = await _staff(
        api, w, username="eval_school", role="evaluator", school_id=str(w.school_a.id)
    )
    assert status == 422 and ["body", "school_id"] in [e["loc"] for e in body["errors"]]

    status, body = await _staff(api, w, username="shortpw", role="evaluator", password="short")
    assert status == 422 and ["body", "password"] in [e["loc"] for e in body["errors"]]

    assert await _count(deps, User) == users_before
