"""Staff password login: credentials, account lockout, and the per-IP login rate limit."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from handlers.deps import Deps
from infra.config import Settings
from infra.security import verify_password
from models.accounts.tables import AuditLog, User
from tests.builders import STAFF_PASSWORD, make_password_user, make_wechat_user
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


async def test_wrong_password_and_unknown_user_look_the_same(api: Api, deps: Deps) -> None:
    staff = await _staff(deps)
    assert staff.username is not None
    wrong = await _login(api, staff.username, STAFF_PASSWORD + "!")
    unknown = await _login(api, "nobody-by-this-name", STAFF_PASSWORD)
    _assert_problem(wrong, 401, "invalid_credentials")
    _assert_problem(unknown, 401, "invalid_credentials")
    assert {k: v for k, v in wrong.json().items() if k != "request_id"} == {
        k: v for k, v in unknown.json().items() if k != "request_id"
    }
    assert (await _user(deps, staff)).failed_logins == 1


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


async def test_account_locks_after_max_failures_even_for_the_right_password(
    api: Api, deps: Deps, settings: Settings
) -> None:
    staff = await _staff(deps)
    assert staff.username is not None
    assert settings.password_max_failures == 5
    for _ in range(settings.password_max_failures):
        _assert_problem(await _login(api, staff.username, "wrong"), 401, "invalid_credentials")

    locked = await _login(api, staff.username, STAFF_PASSWORD)
    _assert_problem(locked, 429, "account_locked")
    retry_after = int(locked.headers["Retry-After"])
    assert settings.password_lockout_seconds - 60 < retry_after <= settings.password_lockout_seconds + 1
    _assert_problem(await _login(api, staff.username, "wrong"), 429, "account_locked")

    async with deps.sessions() as s:
        assert (await s.execute(select(AuditLog).where(AuditLog.action == "user.locked"))).scalar_one()

    # Once the lockout has run out, the right password works again.
    async with deps.sessions() as s, s.begin():
        await s.execute(
            update(User).where(User.id == staff.id).values(locked_until=deps.clock() - timedelta(seconds=1))
        )
    assert (await _login(api, staff.username, STAFF_PASSWORD)).status == 200
    row = await _user(deps, staff)
    assert row.locked_until is None and row.failed_logins == 0


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
    assert (await _user(deps, staff)).failed_logins == almost
    assert (await _login(api, staff.username, STAFF_PASSWORD)).status == 200
    assert (await _user(deps, staff)).failed_logins == 0

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
    assert (await _user(deps, staff)).failed_logins == 0


async def _start_of_a_fresh_window(seconds_needed: float = 5.0) -> None:
    """The limit counts per clock minute; don't let a burst straddle the boundary."""
    left = 60 - time.time() % 60
    if left < seconds_needed:
        await asyncio.sleep(left + 0.05)


async def test_login_rate_limit_per_ip(api: Api, deps: Deps, settings: Settings) -> None:
    settings.login_rate_per_minute = 3
    staff = await _staff(deps)
    assert staff.username is not None
    await _start_of_a_fresh_window()
    for _ in range(3):
        _assert_problem(await _login(api, staff.username, "wrong"), 401, "invalid_credentials")
    limited = await _login(api, staff.username, STAFF_PASSWORD)
    _assert_problem(limited, 429, "rate_limited")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    # The limit covers every way in, not only passwords.
    _assert_problem(await api.post("/api/v1/auth/wechat-login", {"code": "openid-x"}), 429, "rate_limited")
    _assert_problem(await api.post("/api/v1/auth/refresh", {"refresh_token": "r"}), 429, "rate_limited")
    # Rate-limited attempts never reach the password check, so they do not count towards a lockout.
    assert (await _user(deps, staff)).failed_logins == 3


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
