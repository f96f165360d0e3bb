"""The one declaration of an endpoint's policy (handlers.policy.Operation), as the base enforces it: the
audit event it names, written with the request's writes; the 405 that names what is allowed; a token
whose subject is not ours; and the route table refusing a scope its path does not hold."""

from __future__ import annotations

import uuid
from typing import ClassVar

import pytest
from sqlalchemy import select

from handlers.base import ApiHandler
from handlers.deps import Deps
from handlers.policy import AuthMode, Operation, Scope
from models.accounts.rules import ADMIN_ROLES, Role
from models.audit.tables import AuditEvent
from server.app import API, check_declarations
from tests.builders import make_world
from tests.client import Api


async def _events(deps: Deps) -> list[AuditEvent]:
    async with deps.sessions() as s:
        return list((await s.scalars(select(AuditEvent).order_by(AuditEvent.at))).all())


async def test_an_audited_write_records_who_did_what_on_which_school(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    created = await api.post(
        f"{API}/schools/{w.school_a.id}/classrooms",
        {"name": "二年级3班", "grade": 2},
        token=w.token("school_admin_a"),
        headers={"X-Request-Id": "audit-check-1"},
    )
    assert created.status == 201
    [event] = await _events(deps)
    assert event.action == "classroom_created"
    assert event.actor_user_id == w.actors["school_admin_a"].user_id
    assert event.school_id == w.school_a.id and event.district_id == w.district.id
    assert event.subject == {"school_id": str(w.school_a.id)}
    assert event.request_id == "audit-check-1"


async def test_a_refused_or_failed_request_records_nothing(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    url = f"{API}/schools/{w.school_a.id}/classrooms"
    admin = w.token("school_admin_a")
    assert (await api.post(url, {"name": "二年级3班", "grade": 2}, token=admin)).status == 201
    duplicate = await api.post(url, {"name": "二年级3班", "grade": 2}, token=admin)
    assert duplicate.status == 409
    foreign = await api.post(
        f"{API}/schools/{w.school_c.id}/classrooms", {"name": "x", "grade": 2}, token=admin
    )
    assert foreign.status == 404
    assert [e.action for e in await _events(deps)] == ["classroom_created"]


async def test_reading_a_childs_guardians_is_audited(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    path = f"{API}/schools/{w.school_a.id}/students/{w.student_a.id}/guardians"
    assert (await api.get(path, token=w.token("district_admin"))).status == 200
    [event] = await _events(deps)
    assert event.action == "guardians_read"
    assert event.actor_user_id == w.actors["district_admin"].user_id
    assert event.subject == {"school_id": str(w.school_a.id), "student_id": str(w.student_a.id)}


async def test_an_undeclared_verb_answers_405_naming_the_allowed_ones(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    response = await api.request(
        "DELETE", f"{API}/schools/{w.school_a.id}/classrooms", token=w.token("school_admin_a")
    )
    assert response.status == 405 and response.code == "method_not_allowed"
    assert response.headers["Allow"] == "GET, POST"
    assert response.headers["X-Request-Id"]


@pytest.mark.parametrize("subject", ["not-a-uuid", ""])
async def test_a_signed_token_whose_subject_is_not_a_user_id_is_refused(
    api: Api, deps: Deps, subject: str
) -> None:
    token = deps.signer.issue(subject, str(uuid.uuid4()), now=deps.clock().timestamp())
    response = await api.get(f"{API}/me", token=token)
    assert response.status == 401 and response.code == "invalid_token"


def test_operations_refuse_contradictions() -> None:
    with pytest.raises(ValueError, match="without credentials"):
        Operation("登录", auth=AuthMode.none, roles=ADMIN_ROLES)
    with pytest.raises(ValueError, match="roles"):
        Operation("学校", scope=Scope.school)
    assert Operation("x", roles=("parent",)).roles == frozenset({Role.parent})


def test_the_route_table_refuses_a_scope_its_path_does_not_hold() -> None:
    class Wrong(ApiHandler):
        openapi: ClassVar = {"get": Operation("班级", roles=ADMIN_ROLES, scope=Scope.none)}

    with pytest.raises(ValueError, match="scope none but path ids"):
        check_declarations([(f"{API}/schools/{{school_id}}/x", Wrong)])

    class Unchecked(ApiHandler):
        openapi: ClassVar = {"get": Operation("班级", roles=ADMIN_ROLES, scope=Scope.school)}

    with pytest.raises(ValueError, match="scope school"):
        check_declarations([(f"{API}/districts/{{district_id}}/x", Unchecked)])
