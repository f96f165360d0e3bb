"""The console's server-side sessions: a random id in an HttpOnly, SameSite=Lax cookie (Secure in
production), the session itself in Redis under the id's hash (a copy of Redis names no cookie).

A visitor of the login page gets an anonymous session (only its CSRF token), so the login form is
protected like every other; logging in ends it and opens a new session with a new id (no fixation).
A session ends at logout, or after `console_idle_seconds` without a request: idleness is judged by
`deps.clock()` (so tests move time), and Redis forgets the key after as long, so an abandoned session
costs nothing. Every request other than GET/HEAD must present the session's CSRF token, in the form
field `csrf_token` or the `X-CSRF-Token` header (the console's scripts send the latter)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

from pydantic import BaseModel

from handlers.authentication import Caller, principal_json
from handlers.deps import Deps
from infra.errors import Forbidden, Unauthenticated

COOKIE = "ps_console"
COOKIE_PATH = "/console"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ConsoleSession(BaseModel):
    user_id: uuid.UUID | None  # None: a visitor who has not logged in yet
    csrf_token: str
    last_seen: float  # deps.clock() timestamp of the last request
    password_change_required: bool = False  # only the password page until the owner picks their own


@dataclass(frozen=True)
class SessionCaller(Caller):
    """A caller authenticated by a console session (`session_id` is the hash of its cookie)."""

    csrf_token: str = ""
    password_change_required: bool = False


class CsrfRefused(Forbidden):
    code, title = "csrf_failed", "页面已过期或来源不明，请刷新页面后重试"


class SessionRequired(Unauthenticated):
    code, title = "session_required", "请先登录"


def _key(deps: Deps, session_id: str) -> str:
    return deps.keys.console_session(hashlib.sha256(session_id.encode()).hexdigest())


async def open_session(
    deps: Deps, user_id: uuid.UUID | None, *, password_change_required: bool = False
) -> tuple[str, ConsoleSession]:
    """A new session with a new id and CSRF token; returns the id for the cookie."""
    session_id = secrets.token_urlsafe(32)
    record = ConsoleSession(
        user_id=user_id,
        csrf_token=secrets.token_urlsafe(32),
        last_seen=deps.clock().timestamp(),
        password_change_required=password_change_required,
    )
    await _store(deps, session_id, record)
    if user_id is not None:  # remembered so that a password change can end every session of the user
        mine = deps.keys.console_user_sessions(str(user_id))
        await deps.pipelined.execute("SADD", mine, _key(deps, session_id))
        await deps.pipelined.execute("EXPIRE", mine, deps.settings.console_idle_seconds)
    return session_id, record


async def _store(deps: Deps, session_id: str, record: ConsoleSession) -> None:
    ttl = deps.settings.console_idle_seconds
    await deps.pipelined.execute("SET", _key(deps, session_id), record.model_dump_json(), "EX", ttl)


async def load(deps: Deps, session_id: str | None) -> ConsoleSession | None:
    """The live session behind a cookie, its idle clock restarted; None when there is none or it has
    been idle too long (then it is ended)."""
    if not session_id:
        return None
    raw = await deps.pipelined.execute("GET", _key(deps, session_id))
    if not raw:
        return None
    record = ConsoleSession.model_validate_json(raw)
    now = deps.clock().timestamp()
    if now - record.last_seen > deps.settings.console_idle_seconds:
        await end(deps, session_id)
        return None
    record.last_seen = now
    await _store(deps, session_id, record)
    return record


async def end(deps: Deps, session_id: str | None) -> None:
    if session_id:
        await deps.pipelined.execute("DEL", _key(deps, session_id))


async def end_all(deps: Deps, user_id: uuid.UUID) -> None:
    """End every console session of the user (their password changed)."""
    mine = deps.keys.console_user_sessions(str(user_id))
    for key in await deps.pipelined.execute("SMEMBERS", mine):
        await deps.pipelined.execute("DEL", key)
    await deps.pipelined.execute("DEL", mine)


def csrf_matches(record: ConsoleSession, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(record.csrf_token, presented or "")


async def authenticate(deps: Deps, session_id: str | None, method: str, csrf: str | None) -> SessionCaller:
    """The signed-in caller of a console request: 401 without a live signed-in session, 403 for a
    write that does not carry the session's CSRF token."""
    record = await load(deps, session_id)
    if record is None or record.user_id is None or session_id is None:
        raise SessionRequired("登录已过期，请重新登录")
    if method not in SAFE_METHODS and not csrf_matches(record, csrf):
        raise CsrfRefused()
    user_id = str(record.user_id)
    cached = await deps.pipelined.execute("GET", deps.keys.principal(user_id))
    try:
        principal = await principal_json(deps, user_id, cached)
    except Unauthenticated:
        await end(deps, session_id)  # the account was disabled or removed
        raise
    return SessionCaller(
        session_id=hashlib.sha256(session_id.encode()).hexdigest(),
        user_id=user_id,
        principal_json=principal,
        csrf_token=record.csrf_token,
        password_change_required=record.password_change_required,
    )
