"""Refresh-token rotation and reuse detection, logout, and attacks on the access token."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from datetime import timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select, update

from handlers.deps import Deps
from infra.security import TokenSigner, hash_token
from models.accounts.tables import AuditLog, RefreshToken, User
from tests.builders import make_wechat_user, token_for
from tests.client import Api, Response

REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/me"


async def _login(api: Api, openid: str = "openid-tokens") -> dict[str, Any]:
    response = await api.post("/api/v1/auth/wechat-login", {"code": openid})
    assert response.status == 200, response.body
    body: dict[str, Any] = response.json()
    return body


async def _refresh(api: Api, refresh_token: str) -> Response:
    return await api.post(REFRESH, {"refresh_token": refresh_token})


def _assert_problem(response: Response, status: int, code: str | None = None) -> None:
    assert response.status == status, response.body
    assert response.headers["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


# ---- refresh ----------------------------------------------------------------------------------------
async def test_refresh_rotates_the_pair(api: Api) -> None:
    first = await _login(api)
    response = await _refresh(api, first["refresh_token"])
    assert response.status == 200, response.body
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert 0 < second["expires_in"] <= 7200
    assert second["user"]["id"] == first["user"]["id"]
    # The same login session: the access token names the same session id.
    assert (
        jwt.decode(second["access_token"], options={"verify_signature": False})["sid"]
        == jwt.decode(first["access_token"], options={"verify_signature": False})["sid"]
    )

    assert (await api.get(ME, token=second["access_token"])).status == 200
    third = await _refresh(api, second["refresh_token"])  # the new refresh token works
    assert third.status == 200
    _assert_problem(await _refresh(api, first["refresh_token"]), 401)  # the old one does not


async def test_reusing_a_refresh_token_revokes_the_whole_session(api: Api, deps: Deps) -> None:
    first = await _login(api)
    other_session = await _login(api)  # same user, another phone
    second = (await _refresh(api, first["refresh_token"])).json()
    third = (await _refresh(api, second["refresh_token"])).json()
    assert (await api.get(ME, token=third["access_token"])).status == 200

    _assert_problem(await _refresh(api, first["refresh_token"]), 401, "refresh_token_reused")

    # The newest refresh token of the family is dead too, and so is every access token of the session.
    _assert_problem(await _refresh(api, third["refresh_token"]), 401)
    for pair in (first, second, third):
        _assert_problem(await api.get(ME, token=pair["access_token"]), 401, "session_revoked")

    # The user's other login session is untouched.
    assert (await api.get(ME, token=other_session["access_token"])).status == 200
    assert (await _refresh(api, other_session["refresh_token"])).status == 200

    async with deps.sessions() as s:
        reused = (
            (await s.execute(select(AuditLog).where(AuditLog.action == "session.refresh_reused")))
            .scalars()
            .all()
        )
        live = (
            (await s.execute(select(RefreshToken).where(RefreshToken.revoked_at.is_(None)))).scalars().all()
        )
    assert reused  # each presentation of a dead token is recorded
    assert {str(row.actor_user_id) for row in reused} == {first["user"]["id"]}
    # Only the other session's tokens are unrevoked.
    other_sid = jwt.decode(other_session["access_token"], options={"verify_signature": False})["sid"]
    assert {str(row.family_id) for row in live} == {other_sid}


async def test_concurrent_refresh_with_one_token_succeeds_once(api: Api) -> None:
    pair = await _login(api)
    responses = await asyncio.gather(*(_refresh(api, pair["refresh_token"]) for _ in range(5)))
    statuses = sorted(r.status for r in responses)
    assert statuses == [200, 401, 401, 401, 401], [r.body for r in responses]
    for response in responses:
        if response.status == 401:
            _assert_problem(response, 401, "refresh_token_reused")


async def test_expired_refresh_token_is_refused(api: Api, deps: Deps) -> None:
    pair = await _login(api)
    async with deps.sessions() as s, s.begin():
        await s.execute(
            update(RefreshToken)
            .where(RefreshToken.token_hash == hash_token(pair["refresh_token"]))
            .values(expires_at=deps.clock() - timedelta(seconds=1))
        )
    _assert_problem(await _refresh(api, pair["refresh_token"]), 401, "invalid_refresh_token")
    # An expired token is simply refused; the session's access token still works until it expires.
    assert (await api.get(ME, token=pair["access_token"])).status == 200


async def test_unknown_refresh_token_is_refused(api: Api) -> None:
    for token in ("not-a-token-we-issued", "x" * 256):
        _assert_problem(await _refresh(api, token), 401, "invalid_refresh_token")


async def test_an_access_token_is_not_a_refresh_token(api: Api) -> None:
    pair = await _login(api)
    _assert_problem(await _refresh(api, pair["access_token"][:256]), 401, "invalid_refresh_token")


async def test_malformed_refresh_body_is_422(api: Api) -> None:
    for body in ({}, {"refresh_token": ""}, {"refresh_token": "a", "more": 1}, {"refresh_token": "x" * 257}):
        _assert_problem(await api.post(REFRESH, body), 422, "validation_error")
    response = await api.post(REFRESH, body=b"{not json", headers={"Content-Type": "application/json"})
    _assert_problem(response, 400, "malformed_json")


async def test_disabled_user_cannot_refresh(api: Api, deps: Deps) -> None:
    pair = await _login(api)
    async with deps.sessions() as s, s.begin():
        await s.execute(
            update(User).where(User.id == uuid.UUID(pair["user"]["id"])).values(disabled_at=deps.clock())
        )
    _assert_problem(await _refresh(api, pair["refresh_token"]), 401, "invalid_refresh_token")


# ---- logout -----------------------------------------------------------------------------------------
async def test_logout_ends_only_this_session(api: Api) -> None:
    phone = await _login(api)
    tablet = await _login(api)

    response = await api.post(LOGOUT, {}, token=phone["access_token"])
    assert response.status == 204
    assert response.body == b""

    _assert_problem(await api.get(ME, token=phone["access_token"]), 401, "session_revoked")
    _assert_problem(await _refresh(api, phone["refresh_token"]), 401)

    assert (await api.get(ME, token=tablet["access_token"])).status == 200
    assert (await _refresh(api, tablet["refresh_token"])).status == 200


async def test_logout_after_refresh_revokes_the_rotated_tokens(api: Api) -> None:
    first = await _login(api)
    second = (await _refresh(api, first["refresh_token"])).json()
    assert (await api.post(LOGOUT, {}, token=first["access_token"])).status == 204
    _assert_problem(await api.get(ME, token=second["access_token"]), 401, "session_revoked")
    _assert_problem(await _refresh(api, second["refresh_token"]), 401)


async def test_logout_needs_a_token(api: Api) -> None:
    _assert_problem(await api.post(LOGOUT, {}), 401, "missing_token")


async def test_logout_with_unknown_fields_is_422_and_keeps_the_session(api: Api) -> None:
    pair = await _login(api)
    _assert_problem(await api.post(LOGOUT, {"all": True}, token=pair["access_token"]), 422)
    assert (await api.get(ME, token=pair["access_token"])).status == 200


# ---- attacks on the access token ---------------------------------------------------------------------
@pytest.fixture
async def victim(api: Api, deps: Deps) -> dict[str, Any]:
    return await _login(api, "openid-victim")


def _claims(deps: Deps, user_id: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": user_id,
        "sid": str(uuid.uuid4()),
        "iss": deps.settings.jwt_issuer,
        "iat": now,
        "exp": now + 600,
        "typ": "access",
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    return claims


def _secret(deps: Deps) -> str:
    return deps.settings.jwt_secret.get_secret_value()


async def test_control_a_token_signed_like_ours_is_accepted(
    api: Api, deps: Deps, victim: dict[str, Any]
) -> None:
    """The forged tokens below differ from this one in exactly one way."""
    token = jwt.encode(_claims(deps, victim["user"]["id"]), _secret(deps), algorithm="HS256")
    assert (await api.get(ME, token=token)).status == 200


async def test_missing_token(api: Api) -> None:
    for header in (None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc.def.ghi", "bearer"):
        headers = {"Authorization": header} if header is not None else {}
        _assert_problem(await api.get(ME, headers=headers), 401, "missing_token")


async def test_alg_none_is_refused(api: Api, deps: Deps, victim: dict[str, Any]) -> None:
    for alg in ("none", "None", "NONE"):
        header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
        payload = _b64(json.dumps(_claims(deps, victim["user"]["id"])).encode())
        for token in (f"{header}.{payload}.", f"{header}.{payload}"):
            _assert_problem(await api.get(ME, token=token), 401, "invalid_token")


async def test_wrong_key_is_refused(api: Api, deps: Deps, victim: dict[str, Any]) -> None:
    forged = jwt.encode(
        _claims(deps, victim["user"]["id"]), "an-attackers-guess-at-the-secret-000000", algorithm="HS256"
    )
    _assert_problem(await api.get(ME, token=forged), 401, "invalid_token")


async def test_expired_token_is_refused(api: Api, deps: Deps, victim: dict[str, Any]) -> None:
    signer = TokenSigner(_secret(deps), deps.settings.jwt_issuer, ttl=60)
    sid = jwt.decode(victim["access_token"], options={"verify_signature": False})["sid"]
    expired = signer.issue(victim["user"]["id"], sid, now=time.time() - 61)
    _assert_problem(await api.get(ME, token=expired), 401, "invalid_token")


async def test_tampered_payload_is_refused(api: Api, deps: Deps, victim: dict[str, Any]) -> None:
    async with deps.sessions() as s, s.begin():
        admin = await make_wechat_user(s)
    header, payload, signature = victim["access_token"].split(".")
    claims = json.loads(_unb64(payload))
    claims["sub"] = str(admin.id)
    tampered = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    _assert_problem(await api.get(ME, token=tampered), 401, "invalid_token")
    # Extending the expiry is the same forgery.
    claims = json.loads(_unb64(payload))
    claims["exp"] += 365 * 24 * 3600
    tampered = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    _assert_problem(await api.get(ME, token=tampered), 401, "invalid_token")


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # the forger's problem
async def test_other_hmac_algorithms_with_the_right_secret_are_refused(
    api: Api, deps: Deps, victim: dict[str, Any]
) -> None:
    for alg in ("HS384", "HS512"):
        forged = jwt.encode(_claims(deps, victim["user"]["id"]), _secret(deps), algorithm=alg)
        _assert_problem(await api.get(ME, token=forged), 401, "invalid_token")


async def test_rs256_token_is_refused(api: Api, deps: Deps, victim: dict[str, Any]) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(_claims(deps, victim["user"]["id"]), key, algorithm="RS256")
    _assert_problem(await api.get(ME, token=forged), 401, "invalid_token")


async def test_tokens_with_wrong_or_missing_claims_are_refused(
    api: Api, deps: Deps, victim: dict[str, Any]
) -> None:
    cases: list[dict[str, Any]] = [{"iss": "someone-else"}, {"typ": "refresh"}, {"sid": None}, {"exp": None}]
    for overrides in cases:
        claims = _claims(deps, victim["user"]["id"])
        for name, value in overrides.items():
            if value is None:
                del claims[name]
            else:
                claims[name] = value
        forged = jwt.encode(claims, _secret(deps), algorithm="HS256")
        _assert_problem(await api.get(ME, token=forged), 401, "invalid_token")


async def test_garbage_tokens_are_refused(api: Api) -> None:
    for garbage in ("abc", "a.b.c", "....", "é.é.é"):
        _assert_problem(await api.get(ME, token=garbage), 401, "invalid_token")


async def test_token_of_a_disabled_user_is_refused_once_the_cache_drops(api: Api, deps: Deps) -> None:
    async with deps.sessions() as s, s.begin():
        user = await make_wechat_user(s)
    token = await token_for(deps, user.id)
    assert (await api.get(ME, token=token)).status == 200

    async with deps.sessions() as s, s.begin():
        await s.execute(update(User).where(User.id == user.id).values(disabled_at=deps.clock()))
    # What dropping the cached principal does in every process: the Redis copy and the local copies.
    await deps.redis.delete(deps.keys.principal(str(user.id)))
    await deps.local.announce([f"user:{user.id}"])
    _assert_problem(await api.get(ME, token=token), 401, "invalid_token")


async def test_token_of_a_user_that_does_not_exist_is_refused(api: Api, deps: Deps) -> None:
    token = deps.signer.issue(str(uuid.uuid4()), str(uuid.uuid4()), now=time.time())
    _assert_problem(await api.get(ME, token=token), 401, "invalid_token")
