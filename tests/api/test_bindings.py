"""Redeeming binding codes: a teacher binds their WeChat, a guardian binds a child (with consent)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from handlers.deps import Deps
from models.accounts.tables import BindingCode, Guardianship, Teacher
from server.app import API
from tests.builders import World, make_binding_code, make_student, make_teacher, make_world
from tests.client import Api, Response

BINDINGS = f"{API}/bindings"


async def _guardian_code(deps: Deps, w: World, **kw: Any) -> tuple[str, Any]:
    async with deps.sessions() as s, s.begin():
        student = await make_student(s, w.classroom_a, "丁同学", "A009")
        code = await make_binding_code(s, w.school_a, student=student, **kw)
    return code, student


async def _teacher_code(deps: Deps, w: World, **kw: Any) -> tuple[str, Teacher]:
    async with deps.sessions() as s, s.begin():
        teacher = await make_teacher(s, w.school_a, name="新来的老师")
        code = await make_binding_code(s, w.school_a, teacher=teacher, **kw)
    return code, teacher


def _consent(deps: Deps, code: str, relation: str = "mother") -> dict[str, str]:
    return {
        "code": code,
        "relation": relation,
        "consent_policy_version": deps.settings.privacy_policy_version,
    }


async def _me(api: Api, token: str) -> dict[str, Any]:
    response = await api.get(f"{API}/me", token=token)
    assert response.status == 200
    result: dict[str, Any] = response.json()
    return result


async def _guardianships(deps: Deps) -> int:
    async with deps.sessions() as s:
        return int((await s.execute(select(func.count()).select_from(Guardianship))).scalar_one())


async def test_teacher_code_makes_a_wechat_user_a_teacher_at_once(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    code, teacher = await _teacher_code(deps, w)
    token = w.token("stranger")
    assert (await _me(api, token))["roles"] == []  # and now cached

    bound = await api.post(BINDINGS, {"code": code}, token=token)
    assert bound.status == 201, bound.body
    body = bound.json()
    assert body["kind"] == "teacher" and body["teacher_id"] == str(teacher.id)
    assert body["school_id"] == str(w.school_a.id)
    assert body["user"]["roles"] == ["teacher"]

    me = await _me(api, token)
    assert me["roles"] == ["teacher"]
    assert [(s["id"], s["roles"], s["teacher_id"]) for s in me["schools"]] == [
        (str(w.school_a.id), ["teacher"], str(teacher.id))
    ]
    # The new role works straight away.
    assert (await api.get(f"{API}/schools/{w.school_a.id}/classrooms", token=token)).status == 200

    again = await api.post(BINDINGS, {"code": code}, token=w.token("parent_b"))
    assert again.status == 404 and again.code == "binding_code_invalid"
    assert (await _me(api, w.token("parent_b")))["roles"] == ["parent"]


async def test_a_teacher_of_the_school_cannot_bind_a_second_teacher_record(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    code, teacher = await _teacher_code(deps, w)
    response = await api.post(BINDINGS, {"code": code}, token=w.token("teacher_a"))
    assert response.status == 409 and response.code == "already_bound"
    async with deps.sessions() as s:
        row = await s.get(Teacher, teacher.id)
        assert row is not None and row.user_id is None
    # The code was not used up by the refusal.
    assert (await api.post(BINDINGS, {"code": code}, token=w.token("stranger"))).status == 201


async def test_guardian_code_needs_consent_and_relation_and_writes_nothing_without(
    api: Api, deps: Deps
) -> None:
    w = await make_world(deps)
    code, _ = await _guardian_code(deps, w)
    token = w.token("stranger")
    version = deps.settings.privacy_policy_version
    before = await _guardianships(deps)
    for body in (
        {"code": code},
        {"code": code, "relation": "mother"},
        {"code": code, "consent_policy_version": version},
        {"code": code, "relation": "mother", "consent_policy_version": "2019-01"},
    ):
        response = await api.post(BINDINGS, body, token=token)
        assert response.status == 422 and response.code == "consent_required", (body, response.body)
        locs = [e["loc"] for e in response.json()["errors"]]
        assert ["body", "consent_policy_version"] in locs and ["body", "relation"] in locs
    assert await _guardianships(deps) == before
    async with deps.sessions() as s:
        row = (await s.execute(select(BindingCode))).scalar_one()
        assert row.redeemed_at is None and row.redeemed_by is None
    assert (await _me(api, token))["children"] == []


async def test_guardian_code_with_consent_binds_the_child_and_records_the_consent(
    api: Api, deps: Deps
) -> None:
    w = await make_world(deps)
    code, student = await _guardian_code(deps, w)
    token = w.token("stranger")
    assert (await _me(api, token))["children"] == []

    before = datetime.now().astimezone()
    bound = await api.post(BINDINGS, _consent(deps, code, "grandparent"), token=token)
    assert bound.status == 201, bound.body
    assert bound.json()["kind"] == "guardian" and bound.json()["student_id"] == str(student.id)

    me = await _me(api, token)
    assert me["roles"] == ["parent"]
    assert [(c["id"], c["name"], c["classroom_name"], c["relation"]) for c in me["children"]] == [
        (str(student.id), "丁同学", "三年级1班", "grandparent")
    ]
    async with deps.sessions() as s:
        guardianship = (
            await s.execute(select(Guardianship).where(Guardianship.student_id == student.id))
        ).scalar_one()
        code_row = (await s.execute(select(BindingCode))).scalar_one()
    assert guardianship.parent_user_id == w.actors["stranger"].user_id
    assert guardianship.consent_policy_version == deps.settings.privacy_policy_version
    assert before - timedelta(seconds=5) <= guardianship.consent_at <= datetime.now().astimezone()
    assert code_row.redeemed_by == w.actors["stranger"].user_id and code_row.redeemed_at is not None


async def test_expired_code_is_invalid(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    past = datetime.now().astimezone() - timedelta(minutes=1)
    code, _ = await _guardian_code(deps, w, expires_at=past)
    response = await api.post(BINDINGS, _consent(deps, code), token=w.token("stranger"))
    assert response.status == 404 and response.code == "binding_code_invalid"
    assert (await _me(api, w.token("stranger")))["children"] == []

    teacher_code, _ = await _teacher_code(deps, w, expires_at=past)
    response = await api.post(BINDINGS, {"code": teacher_code}, token=w.token("stranger"))
    assert response.status == 404 and response.code == "binding_code_invalid"


async def test_codes_forgive_case_dashes_and_spaces(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    code, _ = await _teacher_code(deps, w)
    typed = f" {code[:3].lower()}-{code[3:6]} {code[6:].lower()} "
    response = await api.post(BINDINGS, {"code": typed}, token=w.token("stranger"))
    assert response.status == 201, (typed, response.body)


async def test_binding_the_same_child_twice_is_a_conflict(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    async with deps.sessions() as s, s.begin():
        first = await make_binding_code(s, w.school_a, student=w.student_a)
        second = await make_binding_code(s, w.school_a, student=w.student_a)
    token = w.token("stranger")
    assert (await api.post(BINDINGS, _consent(deps, first), token=token)).status == 201
    again = await api.post(BINDINGS, _consent(deps, second, "father"), token=token)
    assert again.status == 409 and again.code == "already_bound"
    # parent_a is already this child's guardian too.
    async with deps.sessions() as s, s.begin():
        third = await make_binding_code(s, w.school_a, student=w.student_a)
    response = await api.post(BINDINGS, _consent(deps, third), token=w.token("parent_a"))
    assert response.status == 409 and response.code == "already_bound"
    assert len((await _me(api, token))["children"]) == 1
    # The refused code was not used up: another guardian (the other parent) can still use it.
    assert (await api.post(BINDINGS, _consent(deps, second), token=w.token("parent_b"))).status == 201


async def test_redeeming_is_rate_limited_per_user(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    # The limit counts per clock minute; start well inside one so the eleven tries share it.
    if 60 - time.time() % 60 < 5:
        await asyncio.sleep(60 - time.time() % 60 + 0.1)
    token = w.token("stranger")
    statuses: list[int] = []
    response: Response | None = None
    for i in range(11):
        response = await api.post(BINDINGS, {"code": f"WRONG{i:05d}"}, token=token)
        statuses.append(response.status)
    assert statuses == [404] * 10 + [429]
    assert response is not None and response.code == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    # Even a valid code waits; other users are not affected.
    code, _ = await _teacher_code(deps, w)
    assert (await api.post(BINDINGS, {"code": code}, token=token)).status == 429
    assert (await api.post(BINDINGS, {"code": code}, token=w.token("parent_b"))).status == 201
