"""The authorisation matrix of the console: every route of server.app.CONSOLE_ROUTES that needs a session
× every role × own / another organisation, with the API matrix's world and expectations (its `Ctx`,
`targets`, `expected_status`): no session → the login page (GET) or 401; a role the operation does not
list → 403; the right role on another school's or district's id → 404; on its own → the declared status.

Each request carries a fresh console session of the actor and its CSRF token, as a browser would."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest

from handlers.console import sessions
from handlers.deps import Deps
from server.app import CONSOLE_ROUTES
from tests.api.test_authz_matrix import ACTORS, Ctx, Route, expected_status, make_ctx, targets
from tests.builders import STAFF_PASSWORD
from tests.client import Api, Response

TERM = "2025-2026-1"


@dataclass
class FormCall:
    ids: dict[str, Any] = field(default_factory=dict)
    form: dict[str, str] | None = None
    upload: tuple[str, bytes] | None = None  # (file name, content) of the form's file field


FormRecipe = Callable[[Ctx, Any], Awaitable[FormCall]]


async def _nothing(ctx: Ctx, target: Any) -> FormCall:
    return FormCall()


async def _term(ctx: Ctx, target: Any) -> FormCall:
    return FormCall(ids={"term": TERM}, form={"required": "4"})


async def _schedule(ctx: Ctx, target: Any) -> FormCall:
    day = (ctx.deps.clock() + timedelta(days=3)).date().isoformat()
    return FormCall(
        form={
            "course_id": str(ctx.catalogue_course.id),
            "date": day,
            "starts": "19:00",
            "ends": "20:30",
            "place": "报告厅",
            "capacity": "40",
        }
    )


async def _roster(ctx: Ctx, target: Any) -> FormCall:
    csv = f"学号,姓名,班级,年级\nR{uuid.uuid4().hex[:8]},导入同学,导入班{uuid.uuid4().hex[:4]},3\n"
    return FormCall(form={}, upload=("名单.csv", csv.encode()))


async def _new_password(ctx: Ctx, target: Any) -> FormCall:
    new = f"new password {uuid.uuid4().hex[:6]}"
    return FormCall(form={"current": STAFF_PASSWORD, "new": new, "repeat": new})


RECIPES: dict[tuple[str, str], FormRecipe] = {
    ("/console/logout", "post"): _nothing,
    ("/console/password", "get"): _nothing,
    ("/console/password", "post"): _new_password,
    ("/console/", "get"): _nothing,
    ("/console/districts/{district_id}", "get"): _nothing,
    ("/console/districts/{district_id}/summary.xlsx", "get"): _nothing,
    ("/console/districts/{district_id}/terms/{term}/requirement", "post"): _term,
    ("/console/schools/{school_id}", "get"): _nothing,
    ("/console/schools/{school_id}/evening-classes", "post"): _schedule,
    ("/console/schools/{school_id}/roster-imports", "post"): _roster,
    ("/console/evening-classes/{class_id}/sign-in-sheet.pdf", "get"): _nothing,
    ("/console/schools/{school_id}/roster-template.xlsx", "get"): _nothing,
    ("/console/evening-classes/{class_id}/checkin", "get"): _nothing,
    ("/console/evening-classes/{class_id}/checkin/state", "get"): _nothing,
}

CONSOLE_PAGES = [
    Route(path, verb, handler, op)
    for path, handler in CONSOLE_ROUTES
    for verb, op in handler.openapi.items()
    if op.authenticated
]


def test_every_console_route_has_a_recipe() -> None:
    missing = [r.id for r in CONSOLE_PAGES if (r.path, r.verb) not in RECIPES]
    assert not missing, f"add a recipe to RECIPES in {__name__} for: {missing}"
    assert len(CONSOLE_PAGES) >= 8


async def _send(
    api: Api,
    deps: Deps,
    route: Route,
    ctx: Ctx,
    target: Any,
    actor: str | None,
    ids: dict[str, str] | None = None,
) -> Response:
    call = await RECIPES[(route.path, route.verb)](ctx, target)
    path_ids = {k: str(v) for k, v in call.ids.items()}
    if route.scope is not None:
        path_ids[route.scope_param] = str(target.id)
    path_ids |= ids or {}
    headers: dict[str, str] = {}
    body: bytes | None = None
    form = dict(call.form or {})
    if actor is not None:
        cookie, record = await sessions.open_session(deps, ctx.world.actors[actor].user_id)
        headers["Cookie"] = f"{sessions.COOKIE}={cookie}"
        form[sessions.CSRF_FIELD] = record.csrf_token
    if route.verb != "get":
        if call.upload is not None:
            boundary = uuid.uuid4().hex
            parts = [
                f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                for k, v in form.items()
            ]
            name, content = call.upload
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="roster"; filename="{name}"\r\n'
                f"Content-Type: text/csv\r\n\r\n".encode()
                + content
                + b"\r\n"
            )
            body = b"".join(parts) + f"--{boundary}--\r\n".encode()
            headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
        else:
            body = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
    return await api.request(
        route.verb.upper(), route.path.format(**path_ids), body=body, headers=headers, follow_redirects=False
    )


@pytest.mark.parametrize("route", CONSOLE_PAGES, ids=lambda r: r.id)
async def test_console_authorisation_matrix(api: Api, deps: Deps, route: Route) -> None:
    ctx = await make_ctx(deps)
    failures: list[str] = []
    first = targets(ctx, route)[0]
    anonymous = await _send(api, deps, route, ctx, first, None)
    # A page sends the browser to the login page; a script's request (JSON) and a write answer 401.
    wanted = 302 if route.verb == "get" and route.op.media_type != "application/json" else 401
    if anonymous.status != wanted:
        failures.append(f"no session: expected {wanted}, got {anonymous.status}")
    for actor in ACTORS:
        for target in targets(ctx, route):
            expected = expected_status(ctx, route, actor, target)
            response = await _send(api, deps, route, ctx, target, actor)
            if response.status != expected:
                where = getattr(target, "name", "-")
                failures.append(
                    f"{actor} on {where}: expected {expected}, got {response.status} "
                    f"{response.body[:300].decode(errors='replace')}"
                )
    if route.scope is not None:  # an id naming nothing answers like another organisation's
        actor, target = next(
            (a, t)
            for a in ACTORS
            for t in targets(ctx, route)
            if expected_status(ctx, route, a, t) == route.op.status
        )
        for bogus in (str(uuid.uuid4()), "not-a-uuid"):
            response = await _send(api, deps, route, ctx, target, actor, ids={route.scope_param: bogus})
            if response.status != 404:
                failures.append(
                    f"{actor} with {route.scope_param}={bogus}: expected 404, got {response.status}"
                )
    assert not failures, f"{route.id}:\n  " + "\n  ".join(failures)
