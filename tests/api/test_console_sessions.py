"""Console sessions over HTTP: the cookie's attributes, a new id at login, logout, the idle timeout, CSRF
on every write, and login attempts limited like the API's (the browser tests drive the same pages)."""

from __future__ import annotations

import re
from datetime import datetime
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from handlers.console import sessions
from handlers.deps import Deps
from infra.clock import SHANGHAI
from tests.builders import STAFF_PASSWORD, FakeClock, make_world
from tests.client import Api, Response


class Browser:
    """Just enough of a browser: keeps the console cookie, does not follow redirects."""

    def __init__(self, api: Api) -> None:
        self.base = api.base
        self.http = AsyncHTTPClient(force_instance=True)
        self.cookie: str | None = None
        self.set_cookies: list[str] = []

    async def request(self, method: str, path: str, form: dict[str, str] | None = None) -> Response:
        headers = {"Cookie": f"{sessions.COOKIE}={self.cookie}"} if self.cookie else {}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        response = await self.http.fetch(
            HTTPRequest(self.base + path, method=method, body=body, headers=headers, follow_redirects=False),
            raise_error=False,
        )
        self.set_cookies = response.headers.get_list("Set-Cookie")
        for line in self.set_cookies:
            parsed = SimpleCookie(line)
            if sessions.COOKIE in parsed:
                self.cookie = parsed[sessions.COOKIE].value or None
        return Response(response.code, response.headers, response.body or b"")

    async def csrf_of(self, path: str) -> str:
        page = await self.request("GET", path)
        assert page.status == 200, page.status
        found = re.search(rb'name="csrf_token" value="([^"]+)"', page.body)
        assert found, "the page has no CSRF field"
        return found.group(1).decode()

    async def login(self, username: str, password: str = STAFF_PASSWORD) -> Response:
        token = await self.csrf_of("/console/login")
        return await self.request(
            "POST", "/console/login", {"username": username, "password": password, "csrf_token": token}
        )


async def _usernames(deps: Deps) -> dict[str, str]:
    from sqlalchemy import select

    from models.accounts.tables import User

    world = await make_world(deps)
    async with deps.sessions() as s:
        names = {
            label: (await s.execute(select(User.username).where(User.id == actor.user_id))).scalar_one()
            for label, actor in world.actors.items()
        }
    names["district_id"] = str(world.district.id)
    names["school_a_id"] = str(world.school_a.id)
    return names


async def test_login_sets_a_new_httponly_lax_cookie_and_lands_on_the_district_page(
    api: Api, deps: Deps
) -> None:
    names = await _usernames(deps)
    browser = Browser(api)
    await browser.csrf_of("/console/login")
    anonymous = browser.cookie
    assert anonymous
    [line] = browser.set_cookies
    assert "HttpOnly" in line and "SameSite=Lax" in line and "Path=/console" in line
    assert "Secure" not in line  # only in production (see the next test)

    logged_in = await browser.login(names["district_admin"])
    assert logged_in.status == 303
    assert logged_in.headers["Location"] == "/console/"
    assert browser.cookie and browser.cookie != anonymous  # a new id at login
    landing = await browser.request("GET", "/console/")
    assert landing.headers["Location"] == f"/console/districts/{names['district_id']}"
    page = await browser.request("GET", landing.headers["Location"])
    assert page.status == 200 and "首页" in page.body.decode()
    assert "unsafe-inline" not in page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]

    # The anonymous session the visitor had before logging in is gone: its cookie opens nothing.
    stale = Browser(api)
    stale.cookie = anonymous
    refused = await stale.request("GET", f"/console/districts/{names['district_id']}")
    assert refused.status == 302 and refused.headers["Location"].startswith("/console/login")


async def test_the_cookie_is_secure_in_production(api: Api, deps: Deps) -> None:
    deps.settings = deps.settings.model_copy(update={"app_env": "production"})
    browser = Browser(api)
    await browser.csrf_of("/console/login")
    [line] = browser.set_cookies
    assert "Secure" in line and "HttpOnly" in line


async def test_wrong_password_shows_the_form_again_in_chinese(api: Api, deps: Deps) -> None:
    names = await _usernames(deps)
    browser = Browser(api)
    refused = await browser.login(names["school_admin_a"], "not the password")
    assert refused.status == 401
    assert "用户名或密码错误" in refused.body.decode()
    assert (await browser.request("GET", "/console/")).status == 302  # still not signed in


async def test_login_without_its_csrf_token_is_refused(api: Api, deps: Deps) -> None:
    names = await _usernames(deps)
    browser = Browser(api)
    await browser.csrf_of("/console/login")
    refused = await browser.request(
        "POST", "/console/login", {"username": names["school_admin_a"], "password": STAFF_PASSWORD}
    )
    assert refused.status == 403
    assert "请刷新页面后重试" in refused.body.decode()


async def test_login_attempts_are_limited_as_the_apis_are(api: Api, deps: Deps) -> None:
    names = await _usernames(deps)
    deps.settings.login_rate_per_minute = 2
    deps.clock = FakeClock(datetime(2025, 10, 14, 19, 0, 5, tzinfo=SHANGHAI))
    browser = Browser(api)
    for _ in range(2):
        assert (await browser.login(names["school_admin_a"], "wrong")).status == 401
    limited = await browser.login(names["school_admin_a"])
    assert limited.status == 429
    assert limited.headers["Retry-After"] == "55"
    assert "请求过于频繁" in limited.body.decode()
    # The API's password login counts in the same window for the same address.
    api_limited = await api.post(
        "/api/v1/auth/password-login", {"username": names["school_admin_a"], "password": STAFF_PASSWORD}
    )
    assert api_limited.status == 429


async def test_logout_ends_the_session(api: Api, deps: Deps) -> None:
    names = await _usernames(deps)
    browser = Browser(api)
    await browser.login(names["school_admin_a"])
    school_page = f"/console/schools/{names['school_a_id']}"
    token = await browser.csrf_of(school_page)
    cookie = browser.cookie
    out = await browser.request("POST", "/console/logout", {"csrf_token": token})
    assert out.status == 303 and out.headers["Location"] == "/console/login"
    again = Browser(api)
    again.cookie = cookie
    assert (await again.request("GET", school_page)).status == 302


async def test_a_write_without_the_csrf_token_is_refused(api: Api, deps: Deps) -> None:
    names = await _usernames(deps)
    browser = Browser(api)
    await browser.login(names["school_admin_a"])
    refused = await browser.request("POST", "/console/logout", {})
    assert refused.status == 403
    assert (await browser.request("GET", f"/console/schools/{names['school_a_id']}")).status == 200


@pytest.mark.parametrize(("idle_minutes", "still_signed_in"), [(29, True), (31, False)])
async def test_an_idle_session_expires(
    api: Api, deps: Deps, idle_minutes: int, still_signed_in: bool
) -> None:
    names = await _usernames(deps)
    clock = FakeClock(datetime(2025, 10, 14, 19, 0, tzinfo=SHANGHAI))
    deps.clock = clock
    browser = Browser(api)
    await browser.login(names["school_admin_a"])
    page = f"/console/schools/{names['school_a_id']}"
    assert (await browser.request("GET", page)).status == 200
    clock.tick(idle_minutes * 60)
    answer = await browser.request("GET", page)
    if still_signed_in:
        assert answer.status == 200
        clock.tick(idle_minutes * 60)  # each request restarts the idle clock
        assert (await browser.request("GET", page)).status == 200
    else:
        assert answer.status == 302
        assert answer.headers["Location"].startswith("/console/login?next=")
