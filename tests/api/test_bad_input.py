"""Bad request bodies on every JSON write endpoint: the right 4xx, a useful problem, and nothing written.

The endpoints come from `server.app.ROUTES` (every POST/PUT/PATCH/DELETE whose Operation declares a
JSON body), and the valid body each case starts from comes from the recipes of the authorisation matrix.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from sqlalchemy import text

from handlers.deps import Deps
from tests.api.test_authz_matrix import (
    ACTORS,
    RECIPES,
    WRITE_VERBS,
    Call,
    Ctx,
    Route,
    build_call,
    documented_routes,
    expected_status,
    make_ctx,
    send,
    targets,
)
from tests.client import Api, Response

JSON_WRITE_ROUTES = [r for r in documented_routes() if r.verb in WRITE_VERBS and r.op.body is not None]

# Values of the wrong JSON type, tried in order until the field's own model rejects one.
WRONG_TYPES: tuple[Any, ...] = ({"an": "object"}, [1, 2], 12345, True, "not-a-valid-value")


async def row_counts(deps: Deps) -> dict[str, int]:
    """Rows in every table of the schema (whatever areas exist by now), not only the ones we expect."""
    async with deps.engine.connect() as conn:
        names = (
            await conn.execute(
                text(
                    "SELECT tablename FROM pg_tables "
                    "WHERE schemaname = 'public' AND tablename <> 'alembic_version' ORDER BY tablename"
                )
            )
        ).scalars()
        query = " UNION ALL ".join(
            f"SELECT '{name}', count(*) FROM \"{name}\""  # noqa: S608 - names come from pg_tables
            for name in names
        )
        return {name: count for name, count in await conn.execute(text(query))}


def _caller(ctx: Ctx, route: Route) -> tuple[str | None, Any]:
    """Someone allowed to succeed on this route, and where (login endpoints: nobody, nowhere)."""
    if not route.op.authenticated:
        return None, None
    return next(
        (actor, target)
        for actor in ACTORS
        for target in targets(ctx, route)
        if expected_status(ctx, route, actor, target) == route.op.status
    )


def _wrong_type_for(model: type[BaseModel], valid: dict[str, Any], name: str) -> Any:
    for value in WRONG_TYPES:
        try:
            model.model_validate(valid | {name: value})
        except ValidationError as exc:
            if any(e["loc"][:1] == (name,) for e in exc.errors()):
                return value
    raise AssertionError(f"no wrong-typed value found for {model.__name__}.{name}")


def _locs(response: Response) -> list[list[Any]]:
    try:
        return [e["loc"] for e in response.json().get("errors") or []]
    except (ValueError, AttributeError):
        return []


def test_every_json_write_route_has_a_recipe() -> None:
    missing = [r.id for r in JSON_WRITE_ROUTES if (r.path, r.verb) not in RECIPES]
    assert not missing, f"add a request recipe to RECIPES in tests/api/test_authz_matrix.py for: {missing}"
    assert len(JSON_WRITE_ROUTES) >= 10, "the derivation of JSON write routes from ROUTES broke"


@pytest.mark.parametrize("route", JSON_WRITE_ROUTES, ids=lambda r: r.id)
async def test_bad_bodies_are_rejected_and_write_nothing(api: Api, deps: Deps, route: Route) -> None:
    ctx = await make_ctx(deps)
    actor, target = _caller(ctx, route)
    token = ctx.world.token(actor) if actor else None
    path, valid_call = await build_call(ctx, route, target)
    valid = valid_call.json
    assert valid is not None, f"{route.id}: the recipe must give a JSON body"
    model = route.op.body
    assert model is not None
    model.model_validate(valid)  # the starting point really is valid

    limit = deps.settings.max_body_bytes
    # (what, raw body, content type, status, code, loc that must be named)
    cases: list[tuple[str, bytes, str, int, str, list[Any] | None]] = [
        ("malformed JSON", b'{"name": ', "application/json", 400, "malformed_json", None),
        ("invalid UTF-8", b'{"name": "\xff\xfe"}', "application/json", 400, "malformed_json", None),
        ("an array, not an object", b"[1, 2]", "application/json", 422, "validation_error", ["body"]),
        (
            "an unknown field",
            json.dumps(valid | {"unexpected_field": 1}).encode(),
            "application/json",
            422,
            "validation_error",
            ["body", "unexpected_field"],
        ),
        (
            "over the body limit",
            json.dumps(valid | {"padding": "x" * limit}).encode(),
            "application/json",
            413,
            "payload_too_large",
            None,
        ),
        (
            "text/plain",
            json.dumps(valid).encode(),
            "text/plain",
            415,
            "unsupported_media_type",
            None,
        ),
    ]
    for name in model.model_fields:
        wrong = _wrong_type_for(model, valid, name)
        cases.append(
            (
                f"{name} of the wrong type ({json.dumps(wrong)})",
                json.dumps(valid | {name: wrong}).encode(),
                "application/json",
                422,
                "validation_error",
                ["body", name],
            )
        )
        if isinstance(valid.get(name), str):
            with_nul = "\x00" + valid[name][1:]  # PostgreSQL text cannot store it: 422, never a 500
            cases.append(
                (
                    f"{name} with a NUL character",
                    json.dumps(valid | {name: with_nul}).encode(),
                    "application/json",
                    422,
                    "validation_error",
                    ["body", name],
                )
            )
        if model.model_fields[name].is_required():
            cases.append(
                (
                    f"{name} missing",
                    json.dumps({k: v for k, v in valid.items() if k != name}).encode(),
                    "application/json",
                    422,
                    "validation_error",
                    ["body", name],
                )
            )

    before = await row_counts(deps)
    failures: list[str] = []
    for what, body, content_type, status, code, loc in cases:
        response = await send(api, route, path, Call(raw=body, content_type=content_type), token)
        if response.status != status or response.code != code:
            failures.append(
                f"{what}: expected {status} {code}, got {response.status} {response.body[:200]!r}"
            )
        elif loc is not None and not any(found[: len(loc)] == loc for found in _locs(response)):
            failures.append(f"{what}: no error names {loc}; errors were {_locs(response)}")
        after = await row_counts(deps)
        if after != before:
            written = {t: after[t] - before.get(t, 0) for t in after if after[t] != before.get(t, 0)}
            failures.append(f"{what}: rows were written {written}")
            before = after
    assert not failures, f"{route.id} as {actor or 'anonymous'}:\n  " + "\n  ".join(failures)

    if actor is not None:
        # The same caller with the valid body succeeds: the rejections above were about the body alone.
        response = await send(api, route, path, valid_call, token)
        assert response.status == route.op.status, response.body[:300]
