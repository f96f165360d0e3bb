"""API conventions every endpoint shares: idempotent creation, problem+json errors, request ids."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from sqlalchemy import func, select, update

from handlers.deps import Deps
from models.accounts.tables import Classroom
from models.idempotency.tables import IdempotencyRecord
from server.app import API
from tests.builders import FakeClock, make_course, make_world
from tests.client import Api, Response

PROBLEM_FIELDS = {"type", "title", "status", "code", "request_id"}


async def _classrooms(deps: Deps) -> int:
    async with deps.sessions() as s:
        return int((await s.execute(select(func.count()).select_from(Classroom))).scalar_one())


# ---- Idempotency-Key --------------------------------------------------------------------------------
async def test_same_key_and_body_replays_the_first_response_and_creates_once(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    url = f"{API}/schools/{w.school_a.id}/classrooms"
    key = {"Idempotency-Key": "create-class-4-2"}
    body = {"name": "四年级2班", "grade": 4}
    before = await _classrooms(deps)

    first = await api.post(url, body, token=w.token("school_admin_a"), headers=key)
    assert first.status == 201
    assert "Idempotent-Replayed" not in first.headers
    replay = await api.post(url, body, token=w.token("school_admin_a"), headers=key)
    assert replay.status == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert replay.headers["Content-Type"].startswith("application/json")
    assert await _classrooms(deps) == before + 1

    changed = await api.post(url, body | {"grade": 5}, token=w.token("school_admin_a"), headers=key)
    assert changed.status == 422 and changed.code == "idempotency_key_reused"
    assert await _classrooms(deps) == before + 1

    # Without a key the same body is a second request, refused as a duplicate name.
    plain = await api.post(url, body, token=w.token("school_admin_a"))
    assert plain.status == 409 and plain.code == "duplicate"


async def test_keys_belong_to_their_user(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    url = f"{API}/schools/{w.school_a.id}/classrooms"
    key = {"Idempotency-Key": "same-key"}
    mine = await api.post(url, {"name": "一班", "grade": 1}, token=w.token("school_admin_a"), headers=key)
    theirs = await api.post(url, {"name": "二班", "grade": 2}, token=w.token("district_admin"), headers=key)
    assert mine.status == theirs.status == 201
    assert "Idempotent-Replayed" not in theirs.headers
    assert theirs.json()["name"] == "二班" and theirs.json()["id"] != mine.json()["id"]
    # The same body under the same key from another user is not a replay of someone else's response.
    copy = await api.post(url, {"name": "一班", "grade": 1}, token=w.token("school_admin_b"), headers=key)
    assert copy.status == 404 and "Idempotent-Replayed" not in copy.headers


async def test_a_failed_request_does_not_burn_its_key(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    url = f"{API}/schools/{w.school_a.id}/classrooms"
    key = {"Idempotency-Key": "retry-me"}
    taken = await api.post(
        url, {"name": "三年级1班", "grade": 3}, token=w.token("school_admin_a"), headers=key
    )
    assert taken.status == 409
    again = await api.post(
        url, {"name": "三年级1班", "grade": 3}, token=w.token("school_admin_a"), headers=key
    )
    assert again.status == 409 and "Idempotent-Replayed" not in again.headers


async def _forget_idempotency_keys(deps: Deps) -> None:
    """What a Redis restart without persistence does to the replay records."""
    async for key in deps.redis.scan_iter(match=f"{deps.settings.redis_prefix}idem:*"):
        await deps.redis.delete(key)


async def test_a_key_redis_forgot_is_replayed_from_the_database_not_carried_out_twice(
    api: Api, deps: Deps
) -> None:
    w = await make_world(deps)
    url = f"{API}/schools/{w.school_a.id}/classrooms"
    key = {"Idempotency-Key": "create-class-6-1"}
    body = {"name": "六年级1班", "grade": 6}
    before = await _classrooms(deps)
    first = await api.post(url, body, token=w.token("school_admin_a"), headers=key)
    assert first.status == 201

    await _forget_idempotency_keys(deps)
    replay = await api.post(url, body, token=w.token("school_admin_a"), headers=key)
    assert (replay.status, replay.headers.get("Idempotent-Replayed")) == (201, "true")
    assert replay.json() == first.json()
    changed = await api.post(url, body | {"grade": 5}, token=w.token("school_admin_a"), headers=key)
    assert changed.status == 422 and changed.code == "idempotency_key_reused"
    assert await _classrooms(deps) == before + 1


async def test_a_request_whose_answer_was_lost_is_not_carried_out_again(api: Api, deps: Deps) -> None:
    """Killed between its commit and storing its answer, a request leaves a record without a response: a
    retry must not create a second classroom, and says so."""
    w = await make_world(deps)
    url = f"{API}/schools/{w.school_a.id}/classrooms"
    key = {"Idempotency-Key": "create-class-6-2"}
    body = {"name": "六年级2班", "grade": 6}
    before = await _classrooms(deps)
    assert (await api.post(url, body, token=w.token("school_admin_a"), headers=key)).status == 201
    async with deps.sessions() as s, s.begin():
        await s.execute(update(IdempotencyRecord).values(status=None, body=None))
    await _forget_idempotency_keys(deps)

    retry = await api.post(url, body, token=w.token("school_admin_a"), headers=key)
    assert retry.status == 409 and retry.code == "idempotency_in_progress"
    assert await _classrooms(deps) == before + 1
    # Another key is another request (refused here as a duplicate name, as without any key).
    other = await api.post(url, body, token=w.token("school_admin_a"), headers={"Idempotency-Key": "new"})
    assert other.status == 409 and other.code == "duplicate"


async def test_a_key_may_be_used_again_once_its_day_is_over(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    clock = FakeClock(deps.clock())
    deps.clock = clock
    url = f"{API}/schools/{w.school_a.id}/classrooms"
    key = {"Idempotency-Key": "daily"}
    assert (
        await api.post(url, {"name": "一年级9班", "grade": 1}, token=w.token("school_admin_a"), headers=key)
    ).status == 201
    await _forget_idempotency_keys(deps)
    clock.tick(24 * 3600 + 1)
    again = await api.post(
        url, {"name": "一年级8班", "grade": 1}, token=w.token("school_admin_a"), headers=key
    )
    assert again.status == 201 and "Idempotent-Replayed" not in again.headers
    assert again.json()["name"] == "一年级8班"
    async with deps.sessions() as s:
        assert (await s.scalar(select(func.count()).select_from(IdempotencyRecord))) == 1


async def test_overlong_idempotency_key_is_rejected(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    response = await api.post(
        f"{API}/schools/{w.school_a.id}/classrooms",
        {"name": "五班", "grade": 5},
        token=w.token("school_admin_a"),
        headers={"Idempotency-Key": "k" * 129},
    )
    assert response.status == 422
    assert ["header", "Idempotency-Key"] in [e["loc"] for e in response.json()["errors"]]
    assert await _classrooms(deps) == 2


# ---- times --------------------------------------------------------------------------------------------
async def test_times_are_answered_with_the_shanghai_offset(api: Api, deps: Deps) -> None:
    """API.md: RFC 3339 with offset, Asia/Shanghai, whatever offset a client sent."""
    w = await make_world(deps)
    async with deps.sessions() as s, s.begin():
        course = await make_course(s, tier="foundation")
    day = (deps.clock() + timedelta(days=3)).date()
    created = await api.post(
        f"{API}/schools/{w.school_a.id}/evening-classes",
        {
            "course_id": str(course.id),
            "starts_at": f"{day}T11:00:00Z",  # 19:00 in Shanghai
            "ends_at": f"{day}T12:30:00+00:00",
            "place": "报告厅",
            "capacity": 30,
        },
        token=w.token("school_admin_a"),
    )
    assert created.status == 201, created.body
    out = created.json()
    assert (out["starts_at"], out["ends_at"]) == (f"{day}T19:00:00+08:00", f"{day}T20:30:00+08:00")
    assert out["cancel_deadline"] == f"{day - timedelta(days=1)}T19:00:00+08:00"
    listed = await api.get(f"{API}/evening-classes", token=w.token("parent_a"))
    assert [item["starts_at"] for item in listed.json()["items"]] == [f"{day}T19:00:00+08:00"]


# ---- problem+json ---------------------------------------------------------------------------------------
def _problem_failures(label: str, response: Response, status: int) -> list[str]:
    if response.status != status:
        return [f"{label}: expected {status}, got {response.status} {response.body[:200]!r}"]
    if response.headers.get("Content-Type") != "application/problem+json":
        return [f"{label}: Content-Type {response.headers.get('Content-Type')}"]
    body = response.json()
    problems = []
    if missing := PROBLEM_FIELDS - set(body):
        problems.append(f"{label}: missing {sorted(missing)}")
    if body.get("status") != status:
        problems.append(f"{label}: body status {body.get('status')}")
    if not str(body.get("type", "")).endswith(f"/{body.get('code')}"):
        problems.append(f"{label}: type {body.get('type')} does not name code {body.get('code')}")
    if not body.get("request_id") or body.get("request_id") != response.headers.get("X-Request-Id"):
        problems.append(
            f"{label}: request_id {body.get('request_id')} vs {response.headers.get('X-Request-Id')}"
        )
    return problems


async def test_every_kind_of_error_is_problem_json_with_a_request_id(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    admin = w.token("school_admin_a")
    classrooms = f"{API}/schools/{w.school_a.id}/classrooms"
    json_type = {"Content-Type": "application/json"}
    cases: list[tuple[str, Response, int, str]] = [
        ("no token", await api.get(f"{API}/me"), 401, "missing_token"),
        ("bad token", await api.get(f"{API}/me", token="x.y.z"), 401, "invalid_token"),
        ("wrong role", await api.get(classrooms, token=w.token("parent_a")), 403, "forbidden"),
        (
            "other school",
            await api.get(f"{API}/schools/{w.school_c.id}/classrooms", token=admin),
            404,
            "not_found",
        ),
        ("unknown path", await api.get(f"{API}/no-such-thing"), 404, "not_found"),
        (
            "unknown path under a known one",
            await api.get(f"{API}/schools/{w.school_a.id}/no-such-thing", token=admin),
            404,
            "not_found",
        ),
        ("unknown path past a known one", await api.get(f"{API}/me/nothing", token=admin), 404, "not_found"),
        ("unknown path outside the API", await api.get("/favicon.ico"), 404, "not_found"),
        ("wrong method", await api.request("DELETE", f"{API}/me", token=admin), 405, "method_not_allowed"),
        (
            "wrong method, unauthenticated route",
            await api.get(f"{API}/auth/wechat-login"),
            405,
            "method_not_allowed",
        ),
        (
            "duplicate",
            await api.post(classrooms, {"name": "三年级1班", "grade": 3}, token=admin),
            409,
            "duplicate",
        ),
        (
            "malformed",
            await api.request("POST", classrooms, body=b"{", headers=json_type, token=admin),
            400,
            "malformed_json",
        ),
        (
            "too large",
            await api.request(
                "POST", classrooms, body=b"x" * (deps.settings.max_body_bytes + 1), token=admin
            ),
            413,
            "payload_too_large",
        ),
        (
            "media type",
            await api.request(
                "POST", classrooms, body=b"{}", headers={"Content-Type": "text/plain"}, token=admin
            ),
            415,
            "unsupported_media_type",
        ),
        ("validation", await api.post(classrooms, {"name": ""}, token=admin), 422, "validation_error"),
    ]
    failures = [
        f
        for label, response, status, code in cases
        for f in _problem_failures(label, response, status)
        + ([] if response.code == code else [f"{label}: code {response.code}, expected {code}"])
    ]
    assert not failures, "\n".join(failures)


async def test_validation_errors_name_the_field(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    response = await api.post(
        f"{API}/schools/{w.school_a.id}/classrooms",
        {"name": "好班", "grade": "three"},
        token=w.token("school_admin_a"),
    )
    assert response.status == 422
    errors = response.json()["errors"]
    assert [e["loc"] for e in errors] == [["body", "grade"]]
    assert all(e["msg"] for e in errors)


async def test_rate_limit_answers_429_with_retry_after(api: Api, deps: Deps) -> None:
    limit = deps.settings.refresh_rate_per_minute = 5
    # The limit counts per clock minute; start well inside one so every try shares it.
    if 60 - time.time() % 60 < 5:
        await asyncio.sleep(60 - time.time() % 60 + 0.1)
    last = None
    for _ in range(limit + 1):
        last = await api.post(f"{API}/auth/refresh", {"refresh_token": "not-a-refresh-token"})
        assert last.status in (401, 429)
    assert last is not None
    failures = _problem_failures("rate limit", last, 429)
    assert not failures, failures
    assert int(last.headers["Retry-After"]) >= 1


# ---- request ids -----------------------------------------------------------------------------------------
async def test_client_request_id_is_echoed_on_success_and_on_error(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    rid = {"X-Request-Id": "mp-7f3a-0001"}
    ok = await api.get(f"{API}/me", token=w.token("parent_a"), headers=rid)
    assert ok.status == 200 and ok.headers["X-Request-Id"] == "mp-7f3a-0001"
    for response in (
        await api.get(f"{API}/me", headers=rid),
        await api.get(f"{API}/nowhere", headers=rid),
        await api.get(f"{API}/schools/{w.school_a.id}", token=w.token("parent_a"), headers=rid),
    ):
        assert response.status >= 400
        assert response.headers["X-Request-Id"] == "mp-7f3a-0001"
        assert response.json()["request_id"] == "mp-7f3a-0001"


async def test_unusable_request_ids_are_replaced(api: Api, deps: Deps) -> None:
    w = await make_world(deps)
    for sent in ("x" * 65, "tab\there"):
        response = await api.get(f"{API}/me", token=w.token("parent_a"), headers={"X-Request-Id": sent})
        assert response.status == 200
        echoed = response.headers["X-Request-Id"]
        assert echoed != sent and len(echoed) == 32
    first = await api.get(f"{API}/me", token=w.token("parent_a"))
    second = await api.get(f"{API}/me", token=w.token("parent_a"))
    assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"]
