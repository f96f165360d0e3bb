"""WeChat login through HTTP, as the mini-program does it, and the shared interface access_token.

The fake WeChat server here also remembers every session_key it hands out, so the tests can look for
that exact secret in responses, logs and the database.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import tornado.web
from sqlalchemy import func, select
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from handlers.deps import Deps
from infra.redis import Keys
from infra.wechat import WechatGateway
from models.accounts.tables import AuditLog, User, WechatSession
from server.wechat_sandbox import Code2Session, SandboxState, StableToken, SubscribeSend
from tests.client import Api, Response

LOGIN = "/api/v1/auth/wechat-login"


@dataclass
class RecordingState(SandboxState):
    session_keys: dict[str, list[str]] = field(default_factory=dict)


class RecordingCode2Session(Code2Session):
    def reply(self, data: dict[str, Any]) -> None:
        if "session_key" in data:
            assert isinstance(self.state, RecordingState)
            self.state.session_keys.setdefault(data["openid"], []).append(data["session_key"])
        super().reply(data)


@pytest.fixture
async def wechat() -> AsyncIterator[tuple[SandboxState, str]]:
    """The sandbox of conftest, with a Code2Session that records the session_keys it issues."""
    state = RecordingState()
    args = {"state": state}
    app = tornado.web.Application(
        [
            (r"/sns/jscode2session", RecordingCode2Session, args),
            (r"/cgi-bin/stable_token", StableToken, args),
            (r"/cgi-bin/message/subscribe/send", SubscribeSend, args),
        ]
    )
    sockets = bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    server = HTTPServer(app)
    server.add_sockets(sockets)
    yield state, f"http://127.0.0.1:{sockets[0].getsockname()[1]}/"
    server.stop()


async def _login(api: Api, code: str) -> Response:
    return await api.post(LOGIN, {"code": code})


async def _user_count(deps: Deps) -> int:
    async with deps.sessions() as s:
        return int((await s.execute(select(func.count()).select_from(User))).scalar_one())


def _assert_problem(response: Response, status: int, code: str) -> None:
    assert response.status == status, response.body
    assert response.headers["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code
    assert body["status"] == status


# ---- success ----------------------------------------------------------------------------------------
async def test_wechat_login_issues_tokens_and_the_me_document(
    api: Api, deps: Deps, wechat: tuple[RecordingState, str]
) -> None:
    response = await _login(api, "openid-alice")
    assert response.status == 200, response.body
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in", "user"}
    assert body["token_type"] == "Bearer"
    assert 0 < body["expires_in"] <= 7200
    assert body["access_token"] and body["refresh_token"]
    user = body["user"]
    assert user["roles"] == [] and user["children"] == [] and user["schools"] == []

    me = await api.get("/api/v1/me", token=body["access_token"])
    assert me.status == 200
    assert me.json() == user

    async with deps.sessions() as s:
        row = (await s.execute(select(User).where(User.wechat_openid == "openid-alice"))).scalar_one()
        created = (await s.execute(select(AuditLog).where(AuditLog.action == "user.created"))).scalar_one()
    assert str(row.id) == user["id"]
    assert created.actor_user_id == row.id
    assert wechat[0].login_calls == 1


async def test_second_login_with_the_same_openid_is_the_same_user(api: Api, deps: Deps) -> None:
    first = await _login(api, "openid-bob")
    second = await _login(api, "openid-bob")
    other = await _login(api, "openid-carol")
    assert first.status == second.status == other.status == 200
    assert first.json()["user"]["id"] == second.json()["user"]["id"]
    assert other.json()["user"]["id"] != first.json()["user"]["id"]
    assert first.json()["refresh_token"] != second.json()["refresh_token"]
    assert await _user_count(deps) == 2
    # Both sessions are live at once.
    for response in (first, second):
        assert (await api.get("/api/v1/me", token=response.json()["access_token"])).status == 200


async def test_racing_first_logins_create_one_user(api: Api, deps: Deps) -> None:
    responses = await asyncio.gather(*(_login(api, "openid-racer") for _ in range(5)))
    assert [r.status for r in responses] == [200] * 5
    assert len({r.json()["user"]["id"] for r in responses}) == 1
    assert await _user_count(deps) == 1


async def test_session_key_never_leaves_the_server(
    api: Api, deps: Deps, wechat: tuple[RecordingState, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    first = await _login(api, "openid-dave")
    second = await _login(api, "openid-dave")  # a later login replaces the stored key
    assert first.status == second.status == 200
    issued = wechat[0].session_keys["openid-dave"]
    assert len(issued) == 2 and issued[0] != issued[1]
    user_id = second.json()["user"]["id"]

    me = await api.get("/api/v1/me", token=second.json()["access_token"])
    logged = caplog.text + "\n".join(record.getMessage() for record in caplog.records)
    for key in issued:
        for response in (first, second, me):
            assert key.encode() not in response.body
            assert "session_key" not in response.body.decode()
        assert key not in logged
    assert caplog.records, "logging was captured"

    async with deps.sessions() as s:
        stored = (await s.execute(select(WechatSession))).scalars().all()
    assert len(stored) == 1 and str(stored[0].user_id) == user_id
    sealed = stored[0].session_key_encrypted
    assert issued[1].encode() not in sealed
    assert sealed != issued[1].encode()
    assert deps.cipher.decrypt(sealed, f"wechat_session:{user_id}") == issued[1]


async def test_disabled_user_cannot_log_in_with_wechat(api: Api, deps: Deps) -> None:
    first = await _login(api, "openid-erin")
    assert first.status == 200
    async with deps.sessions() as s, s.begin():
        user = (await s.execute(select(User).where(User.wechat_openid == "openid-erin"))).scalar_one()
        user.disabled_at = deps.clock()
    _assert_problem(await _login(api, "openid-erin"), 401, "invalid_credentials")


# ---- WeChat errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("errcode", "status", "code"),
    [
        (40029, 401, "invalid_login_code"),
        (40163, 401, "invalid_login_code"),
        (45011, 429, "wechat_rate_limited"),
        (40226, 403, "wechat_user_blocked"),
        (-1, 503, "wechat_unavailable"),
        (40013, 502, "wechat_error"),
        (99999, 502, "wechat_error"),
    ],
)
async def test_wechat_errcodes_map_to_problems(
    api: Api, deps: Deps, wechat: tuple[RecordingState, str], errcode: int, status: int, code: str
) -> None:
    response = await _login(api, f"errcode:{errcode}")
    _assert_problem(response, status, code)
    if status in (429, 503):  # try again later: say when
        assert int(response.headers["Retry-After"]) > 0
    else:
        assert "Retry-After" not in response.headers
    assert wechat[0].login_calls == 1
    assert await _user_count(deps) == 0


async def test_wechat_timeout_is_503_not_a_hang(api: Api, deps: Deps) -> None:
    assert deps.settings.wechat_timeout == 1.0
    started = time.monotonic()
    response = await _login(api, "sleep:3")
    elapsed = time.monotonic() - started
    _assert_problem(response, 503, "wechat_unavailable")
    assert elapsed < 1.5
    assert await _user_count(deps) == 0


async def test_wechat_unreachable_is_503(api: Api, deps: Deps) -> None:
    closed = bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    port = closed[0].getsockname()[1]
    for sock in closed:
        sock.close()  # nothing listens there any more
    deps.wechat = WechatGateway(
        appid=deps.wechat.appid,
        secret=deps.settings.wechat_secret.get_secret_value() if deps.settings.wechat_secret else "",
        api_base=f"http://127.0.0.1:{port}/",
        timeout=1.0,
        redis=deps.redis,
        keys=deps.keys,
    )
    _assert_problem(await _login(api, "openid-frank"), 503, "wechat_unavailable")
    assert await _user_count(deps) == 0


@pytest.mark.parametrize("body", [{}, {"code": ""}, {"code": "x" * 129}, {"code": "a", "extra": 1}])
async def test_malformed_login_body_is_422_and_asks_nothing_of_wechat(
    api: Api, deps: Deps, wechat: tuple[RecordingState, str], body: dict[str, Any]
) -> None:
    _assert_problem(await api.post(LOGIN, body), 422, "validation_error")
    assert wechat[0].login_calls == 0
    assert await _user_count(deps) == 0


# ---- the interface access_token -------------------------------------------------------------------
async def test_concurrent_access_token_calls_fetch_once(
    deps: Deps, wechat: tuple[RecordingState, str]
) -> None:
    state = wechat[0]
    state.token_delay = 0.2  # long enough that every caller arrives while the first is still fetching
    assert await deps.redis.get(deps.keys.wechat_token(deps.wechat.appid)) is None
    tokens = await asyncio.gather(*(deps.wechat.access_token() for _ in range(20)))
    assert len(set(tokens)) == 1
    assert tokens[0] in state.issued_tokens
    assert state.token_calls == 1

    # Another process: its own gateway object, the same Redis and key prefix.
    other_process = WechatGateway(
        appid=deps.wechat.appid,
        secret=state.secret,
        api_base=wechat[1],
        timeout=1.0,
        redis=deps.redis,
        keys=deps.keys,
    )
    assert await other_process.access_token() == tokens[0]
    assert state.token_calls == 1
    ttl = await deps.redis.ttl(deps.keys.wechat_token(deps.wechat.appid))
    assert 0 < ttl <= 7200 - 300


async def test_a_crowd_of_waiters_all_get_the_token_promptly(
    deps: Deps, wechat: tuple[RecordingState, str]
) -> None:
    """Waiters must not queue for the lock one by one just to read a token that is already cached."""
    started = time.monotonic()
    results = await asyncio.gather(*(deps.wechat.access_token() for _ in range(100)), return_exceptions=True)
    elapsed = time.monotonic() - started
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert len(set(results)) == 1
    assert wechat[0].token_calls == 1
    assert elapsed < deps.settings.wechat_timeout


async def test_forgotten_access_token_is_fetched_again(
    deps: Deps, wechat: tuple[RecordingState, str]
) -> None:
    first = await deps.wechat.access_token()
    await deps.wechat.forget_access_token()
    second = await deps.wechat.access_token()
    assert first != second
    assert wechat[0].token_calls == 2


async def test_access_token_cache_is_per_prefix(deps: Deps, wechat: tuple[RecordingState, str]) -> None:
    """A test (or a deployment) under another prefix never sees this one's token."""
    await deps.wechat.access_token()
    elsewhere = WechatGateway(
        appid=deps.wechat.appid,
        secret=wechat[0].secret,
        api_base=wechat[1],
        timeout=1.0,
        redis=deps.redis,
        keys=Keys(f"test:{uuid.uuid4().hex[:12]}:"),
    )
    try:
        await elsewhere.access_token()
        assert wechat[0].token_calls == 2
    finally:
        await elsewhere.forget_access_token()
