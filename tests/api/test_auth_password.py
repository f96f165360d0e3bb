"""Staff password login: credentials, account lockout, and the per-IP login rate limit."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from tornado.httpclient import HTTPRequest

from handlers.deps import Deps
from infra.config import Settings
from infra.security import verify_password
from models.accounts.lockout import LoginLockout
from models.accounts.tables import AuditLog, User
from tests.builders import STAFF_PASSWORD, FakeClock, make_password_user, make_wechat_user
from tests.client import Api, Response

LOGIN = "/api/v1/auth/password-login"


async def _staff(deps: Deps) -> User:
    async with deps.sessions() as s, s.begin():
        return await make_password_user(s)


async def _login(api: Api, username: str, password: str, **kw: Any) -> Response:
    return await api.post(LOGIN, {"username": username, "password": password}, **kw)


def _assert_problem(response: Response, status: int, code: str) -> None:
    assert response.status == status, response.body
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == code


async def _user(deps: Deps, user: User) -> User:
    async with deps.sessions() as s:
        return (await s.execute(select(User).where(User.id == user.id))).scalar_one()


async def test_password_login_succeeds(api: Api, deps: Deps) -> None:
    staff = await _staff(deps)
    assert staff.username is not None
    response = await _login(api, staff.username, STAFF_PASSWORD)
    assert response.status == 200, response.body
    body = response.json()
    assert body["user"]["id"] == str(staff.id)
    assert body["user"]["display_name"] == "管理员"
    assert 0 < body["expires_in"] <= 7200
    assert (await api.get("/api/v1/me", token=body["access_token"])).json() == body["user"]
    assert (await api.post("/api/v1/auth/refresh", {"refresh_token": body["refresh_token"]})).status == 200
    async with deps.sessions() as s:
        logins = (await s.execute(select(AuditLog).where(AuditLog.action == "login.password"))).scalars()
        assert [row.actor_user_id for row in logins] == [staff.id]


def _same_problem(a: Response, b: Response) -> None:
    assert a.status == b.status
    assert {k: v for k, v in a.json().items() if k != "request_id"} == {
        k: v for k, v in b.json().items() if k != "request_id"
    }


async def _login_from(api: Api, address: str, username: str, password: str) -> Response:
    """A login from another client address of this machine (127.0.0.0/8)."""
    request = HTTPRequest(
        api.base + LOGIN,
        method="POST",
        body=json.dumps({"username": username, "password": password}),
        headers={"Content-Type": "application/json"},
        network_interface=address,
    )
    response = await api.http.fetch(request, raise_error=False)
    return Response(response.code, response.headers, response.body or b"")


async def _failures(deps: Deps, username: str, address: str = "127.0.0.1") -> int:
    counted = await deps.redis.get(deps.keys.login_failures(LoginLockout.attempt(username, address)))
    return int(counted or 0)


async def test_wrong_password_and_unknown_user_look_the_same(api: Api, deps: Deps) -> None:
    staff = await _staff(deps)
    assert staff.username is not None
    wrong = await _login(api, staff.username, STAFF_PASSWORD + "!")
    unknown = await _login(api, "nobody-by-this-name", STAFF_PASSWORD)
    _assert_problem(wrong, 401, "invalid_credentials")
    _same_problem(wrong, unknown)
    assert await _failures(deps, staff.username) == 1
    assert await _failures(deps, "nobody-by-this-name") == 1


async def test_wechat_only_user_cannot_log_in_with_a_password(api: Api, deps: Deps) -> None:
    async with deps.sessions() as s, s.begin():
        user = await make_wechat_user(s)
        user.username = "wechat-only"
    _assert_problem(await _login(api, "wechat-only", "anything"), 401, "invalid_credentials")


async def test_username_is_case_sensitive_and_exact(api: Api, deps: Deps) -> None:
    async with deps.sessions() as s, s.begin():
        await make_password_user(s, username="Admin")
    _assert_problem(await _login(api, "admin", STAFF_PASSWORD), 401, "invalid_credentials")
    assert (await _login(api, "Admin", STAFF_PASSWORD)).status == 200


async def test_unknown_known_and_disabled_usernames_take_about_the_same_time(api: Api, deps: Deps) -> None:
    staff = await _staff(deps)
    assert staff.username is not None
    async with deps.sessions() as s, s.begin():
        disabled = await make_password_user(s)
        disabled.disabled_at = deps.clock()

    async def fastest(username: str) -> float:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            _assert_problem(await _login(api, username, "wrong"), 401, "invalid_credentials")
            times.append(time.perf_counter() - started)
        return min(times)

    known = await fastest(staff.username)
    assert disabled.username is not None
    for other in ("nobody-by-this-name", disabled.username):
        # Without a password hash checked, an answer took a few milliseconds against argon2's tenths.
        assert await fastest(other) > known / 2, other


async def test_a_username_locks_for_the_address_that_guessed_alike_known_or_not(
    api: Api, deps: Deps, settings: Settings
) -> None:
    staff = await _staff(deps)
    assert staff.username is not None
    clock = FakeClock(deps.clock())
    deps.clock = clock
    assert settings.password_max_failures == 5
    for username in (staff.username, "nobody-by-this-name"):
        for _ in range(settings.password_max_failures):
            _assert_problem(await _login(api, username, "wrong"), 401, "invalid_credentials")
    locked = await _login(api, staff.username, STAFF_PASSWORD)
    _assert_problem(locked, 429, "account_locked")
    unknown_locked = await _login(api, "nobody-by-this-name", STAFF_PASSWORD)
    _same_problem(locked, unknown_locked)
    base = settings.password_lockout_base_seconds
    assert base - 5 < int(locked.headers["Retry-After"]) <= base + 1
    assert locked.headers["Retry-After"] == unknown_locked.headers["Retry-After"]
    _assert_problem(await _login(api, staff.username, "wrong"), 429, "account_locked")
    async with deps.sessions() as s:
        [lock] = (await s.execute(select(AuditLog).where(AuditLog.action == "user.locked"))).scalars()
        assert lock.target_id == str(staff.id)

    # Five guesses from one address do not lock the administrator out everywhere.
    elsewhere = await _login_from(api, "127.0.0.2", staff.username, STAFF_PASSWORD)
    assert elsewhere.status == 200, elsewhere.body

    # Once the lockout has run out the right password works again; a second lockout in a row lasts
    # twice as long.
    clock.now += timedelta(seconds=base + 1)
    for _ in range(settings.password_max_failures):
        _assert_problem(await _login(api, "nobody-by-this-name", "wrong"), 401, "invalid_credentials")
    again = await _login(api, "nobody-by-this-name", "x")
    assert 2 * base - 5 < int(again.headers["Retry-After"]) <= 2 * base + 1
    assert (await _login(api, staff.username, STAFF_PASSWORD)).status == 200
    assert await _failures(deps, staff.username) == 0


async def test_lockout_counts_concurrent_failures(api: Api, deps: Deps, settings: Settings) -> None:
    staff = await _staff(deps)
    assert staff.username is not None
    username = staff.username
    failures = await asyncio.gather(
        *(_login(api, username, f"guess-{i}") for i in range(settings.password_max_failures))
    )
    assert sorted(r.status for r in failures) == [401] * settings.password_max_failures
    _assert_problem(await _login(api, username, STAFF_PASSWORD), 429, "account_locked")


async def test_a_success_resets_the_failure_counter(api: Api, deps: Deps, settings: Settings) -> None:
    staff = await _staff(deps)
    assert staff.username is not None
    almost = settings.password_max_failures - 1
    for _ in range(almost):
        _assert_problem(await _login(api, staff.username, "wrong"), 401, "invalid_credentials")
    assert await _failures(deps, staff.username) == almost
    assert (await _login(api, staff.username, STAFF_PASSWORD)).status == 200
    assert await _failures(deps, staff.username) == 0

    for _ in range(almost):
        _assert_problem(await _login(api, staff.username, "wrong"), 401, "invalid_credentials")
    assert (await _login(api, staff.username, STAFF_PASSWORD)).status == 200


async def test_disabled_staff_cannot_log_in(api: Api, deps: Deps) -> None:
    staff = await _staff(deps)
    assert staff.username is not None
    async with deps.sessions() as s, s.begin():
        await s.execute(update(User).where(User.id == staff.id).values(disabled_at=deps.clock()))
    _assert_problem(await _login(api, staff.username, STAFF_PASSWORD), 401, "invalid_credentials")


async def test_malformed_password_login_is_422(api: Api, deps: Deps) -> None:
    staff = await _staff(deps)
    assert staff.username is not None
    for body in (
        {},
        {"username": staff.username},
        {"username": staff.username, "password": ""},
        {"username": staff.username, "password": STAFF_PASSWORD, "remember": True},
        {"username": "x" * 65, "password": STAFF_PASSWORD},
    ):
        _assert_problem(await api.post(LOGIN, body), 422, "validation_error")
    assert await _failures(deps, staff.username) == 0


async def _start_of_a_fresh_window(seconds_needed: float = 5.0) -> None:
    """The limit counts per clock minute; don't let a burst straddle the boundary."""
    left = 60 - time.time() % 60
    if left < seconds_needed:
        await asyncio.sleep(left + 0.05)


async def test_login_rate_limits_per_address_and_endpoint(api: Api, deps: Deps, settings: Settings) -> None:
    settings.login_rate_per_minute = 3
    settings.wechat_login_rate_per_minute = 2
    staff = await _staff(deps)
    assert staff.username is not None
    await _start_of_a_fresh_window()
    for _ in range(3):
        _assert_problem(await _login(api, staff.username, "wrong"), 401, "invalid_credentials")
    limited = await _login(api, staff.username, STAFF_PASSWORD)
    _assert_problem(limited, 429, "rate_limited")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    # Rate-limited attempts never reach the password check, so they do not count towards a lockout.
    assert await _failures(deps, staff.username) == 3
    # WeChat logins and refreshes from the same address (a school's NAT) have buckets of their own.
    assert (await api.post("/api/v1/auth/wechat-login", {"code": "openid-x"})).status == 200
    assert (await api.post("/api/v1/auth/refresh", {"refresh_token": "r"})).status == 401
    assert (await api.post("/api/v1/auth/wechat-login", {"code": "openid-y"})).status == 200
    _assert_problem(await api.post("/api/v1/auth/wechat-login", {"code": "openid-z"}), 429, "rate_limited")
    # Another address has its own.
    assert (await _login_from(api, "127.0.0.3", staff.username, STAFF_PASSWORD)).status == 200


async def test_password_checks_do_not_stall_other_requests(api: Api, deps: Deps) -> None:
    """The service shares this event loop: a ticker here sees any stall an argon2 check causes there."""
    staff = await _staff(deps)
    assert staff.username is not None
    started = time.perf_counter()
    verify_password(staff.password_hash or "", "wrong")
    one_check = time.perf_counter() - started

    longest_gap = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal longest_gap
        while not done.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.005)
            longest_gap = max(longest_gap, time.perf_counter() - before)

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)
    responses = await asyncio.gather(
        _login(api, staff.username, "wrong"), _login(api, "nobody-by-this-name", "wrong")
    )
    done.set()
    await ticking
    assert [r.status for r in responses] == [401, 401]
    assert longest_gap < one_check / 2, (longest_gap, one_check)
