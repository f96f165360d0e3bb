"""ApiHandler: runs each verb under its `Operation` — authenticate, check roles, parse, one transaction
(with its idempotency record and audit event), send — from small parts that know nothing of one another
(handlers.authentication, handlers.idempotency, handlers.problems)."""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, ClassVar, TypeVar

import orjson
import tornado.web
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from tornado.httputil import HTTPServerRequest

from handlers import problems
from handlers.authentication import Caller, authenticate, bearer_token
from handlers.console import sessions as console_sessions
from handlers.deps import Deps
from handlers.idempotency import Claim, Replay
from handlers.policy import AuthMode, Operation, Scope
from handlers.validation import validation_errors
from infra.config import Settings
from infra.errors import (
    AppError,
    BadRequest,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    UnsupportedMediaType,
    ValidationFailed,
)
from models.accounts.access import district_in_scope, school_in_scope
from models.accounts.principal import Principal
from models.accounts.tables import District, School
from models.audit import service as audit
from models.base import Change, pop_changes
from models.idempotency.service import AlreadyCarriedOut

log = logging.getLogger("api")
M = TypeVar("M", bound=BaseModel)

VERBS = ("get", "post", "put", "patch", "delete")
# A client's X-Request-Id goes into the access log as it is: a short token of safe characters only, so
# that no caller can write `uid=...` or a line break into someone else's log line.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# No form of ours nests deeper than a few levels; a 1 KB body nested 500 deep cost a traceback per request.
MAX_JSON_DEPTH = 32
# Sent with every answer: no MIME sniffing, no referrer leaking ids in URLs, never framed.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "frame-ancestors 'none'",
}


def _request_id(request: HTTPServerRequest) -> str:
    incoming = request.headers.get("X-Request-Id", "")
    return incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than `limit` levels (iteratively: no recursion to exhaust)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _nul_characters(value: Any, loc: list[Any]) -> list[dict[str, Any]]:
    """PostgreSQL text cannot hold U+0000; a string carrying one is invalid input, not a server error."""
    if isinstance(value, str):
        return [{"loc": loc, "msg": "不能含有 NUL 字符", "type": "string_nul"}] if "\x00" in value else []
    if isinstance(value, dict):
        return [
            e for k, v in value.items() for e in _nul_characters(v, [*loc, k]) + _nul_characters(k, [*loc, k])
        ]
    if isinstance(value, list):
        return [e for i, v in enumerate(value) for e in _nul_characters(v, [*loc, i])]
    return []


class ApiHandler(tornado.web.RequestHandler):
    """Subclasses declare `openapi = {"verb": Operation(...)}` and write the verbs: parse, one service
    call, send. Everything the Operation says is done here."""

    deps: Deps
    openapi: ClassVar[dict[str, Operation]] = {}
    operation: Operation
    caller: Caller | None = None
    request_id: str = ""
    _sent: tuple[int, bytes] | None = None
    _claim: Claim | None = None  # an idempotent request holding its key
    _audit_scope: tuple[School | None, District | None] = (None, None)
    _audit_school_id: uuid.UUID | None = None
    _audit_details: dict[str, str] | None = None
    _audited: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for verb, op in cls.__dict__.get("openapi", {}).items():
            method = cls.__dict__.get(verb)
            if op.idempotent and method is not None:
                setattr(cls, verb, _idempotent(method))

    def initialize(self, deps: Deps) -> None:
        self.deps = deps
        deps.in_flight.enter()

    def on_finish(self) -> None:
        self.deps.in_flight.leave()

    def set_default_headers(self) -> None:
        self.clear_header("Server")  # no Tornado version for a scanner to match against
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)

    # ---- lifecycle ---------------------------------------------------------------------------
    @classmethod
    def body_limit(cls, settings: Settings) -> int:
        return settings.max_body_bytes

    @classmethod
    def declares_too_much(cls, request: HTTPServerRequest, settings: Settings) -> bool:
        """A Content-Length over this route's limit: refused from the headers, before any body is read
        (server.app routes such requests to BodyTooLargeHandler)."""
        declared = request.headers.get("Content-Length", "")
        return declared.isdigit() and int(declared) > cls.body_limit(settings)

    async def prepare(self) -> None:
        self.request_id = _request_id(self.request)
        op = self.openapi.get((self.request.method or "").lower())
        if op is not None:
            self.operation = op
        self._common_headers()
        if op is None:
            allowed = tuple(v.upper() for v in self.openapi)
            raise problems.HttpLevel(405, "不支持此请求方法", allow=allowed)
        limit = self.body_limit(self.deps.settings)
        if self.declares_too_much(self.request, self.deps.settings) or len(self.request.body) > limit:
            raise PayloadTooLarge(f"请求内容不能超过 {limit // 1024} KiB")
        if op.auth is AuthMode.session:
            self.caller = await console_sessions.authenticate(
                self.deps,
                self.get_cookie(console_sessions.COOKIE),
                self.request.method or "",
                self.request.headers.get(console_sessions.CSRF_HEADER)
                or self.get_body_argument(console_sessions.CSRF_FIELD, None),
            )
        elif op.authenticated:
            token = bearer_token(self.request.headers.get("Authorization", ""))
            self.caller = await authenticate(self.deps, token)
        if op.authenticated:
            if op.roles and not self.me.has_any(op.roles):
                raise Forbidden()

    def _common_headers(self) -> None:
        self.set_header("X-Request-Id", self.request_id)
        op = getattr(self, "operation", None)
        if op is not None and op.authenticated:  # personal data: a verb may set its own policy after this
            self.set_header("Cache-Control", "no-store")
        if self.deps.in_flight.stopping:  # this process is stopping: the next request goes elsewhere
            self.set_header("Connection", "close")

    @property
    def me(self) -> Principal:
        assert self.caller is not None, "the operation requires authentication"
        return self.caller.principal

    @property
    def user_id(self) -> str | None:
        return self.caller.user_id if self.caller is not None else None

    @property
    def recorded_user_id(self) -> str | None:
        """Who called, as logs and records may name them: nobody, where the Operation forbids it."""
        op = getattr(self, "operation", None)
        return self.user_id if op is None or op.records_identity else None

    @property
    def session_id(self) -> uuid.UUID:
        assert self.caller is not None
        return uuid.UUID(self.caller.session_id)

    # ---- input ------------------------------------------------------------------------------------
    def body(self, model: type[M]) -> M:
        ctype = self.request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
        raw = self.request.body or b"{}"
        if ctype not in ("application/json", ""):
            raise UnsupportedMediaType("请以 application/json 提交")
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BadRequest("请求体不是有效的 JSON", code="malformed_json") from exc
        if _deeper_than(data, MAX_JSON_DEPTH):
            raise BadRequest(f"请求体嵌套超过 {MAX_JSON_DEPTH} 层", code="json_too_deep")
        nul = _nul_characters(data, ["body"])
        if nul:
            raise ValidationFailed(errors=nul)
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise ValidationFailed(errors=validation_errors(exc, "body")) from exc

    def query(self, model: type[M]) -> M:
        args: dict[str, Any] = {}
        for name, values in self.request.query_arguments.items():
            args[name] = values[-1].decode(errors="replace")
        nul = _nul_characters(args, ["query"])
        if nul:
            raise ValidationFailed(errors=nul)
        try:
            return model.model_validate(args)
        except ValidationError as exc:
            raise ValidationFailed(errors=validation_errors(exc, "query")) from exc

    @staticmethod
    def path_uuid(value: str) -> uuid.UUID:
        """Ids in paths are UUIDs; anything else names nothing that exists."""
        try:
            return uuid.UUID(value)
        except ValueError as exc:
            raise NotFound() from exc

    # ---- output -----------------------------------------------------------------------------------
    def send(self, payload: BaseModel | dict[str, Any] | bytes, status: int = 200) -> None:
        if isinstance(payload, BaseModel):
            data = payload.model_dump_json().encode()
        elif isinstance(payload, bytes):
            data = payload
        else:
            data = orjson.dumps(payload)
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self._sent = (status, data)
        if self._claim is None:  # an idempotent answer waits until it is stored for replays
            self.finish(data)

    def send_download(self, data: bytes, media_type: str, filename: str) -> None:
        """A file to save or print (Excel, PDF), named in Chinese (RFC 6266 filename*)."""
        self.set_header("Content-Type", media_type)
        ascii_name = filename.encode("ascii", "replace").decode().replace("?", "_")
        self.set_header(
            "Content-Disposition",
            f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{urllib.parse.quote(filename)}",
        )
        self.finish(data)

    def send_with_etag(self, data: bytes) -> None:
        """200 with a strong ETag, or 304 when the client already holds this representation."""
        etag = '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'
        self.set_header("ETag", etag)
        self.set_header("Cache-Control", "private, no-cache")
        presented = {t.strip() for t in self.request.headers.get("If-None-Match", "").split(",")}
        if etag in presented or "*" in presented:
            self.set_status(304)
            self.finish()
            return
        self.send(data)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, problems.HttpLevel):
            error: AppError = exc
            status = exc.status
        elif isinstance(exc, AppError):
            error, status = exc, problems.status_of(exc)
        elif isinstance(exc, tornado.web.HTTPError) and exc.status_code < 500:
            status = exc.status_code
            error = problems.HttpLevel(status, exc.reason or exc.log_message or "请求有误")
        else:
            status = 500
            error = problems.Internal(f"服务器内部错误，请求编号 {self.request_id}")
        self.set_status(status)
        self.error_code = error.code  # the access log and /metrics (server/app.py) count it by this code
        if self.request_id:  # send_error() cleared the headers prepare() had set
            self._common_headers()
        for name, value in problems.headers_of(error).items():
            self.set_header(name, value)
        self.set_header("Content-Type", problems.PROBLEM_JSON)
        body = problems.problem(error, status)
        body["request_id"] = self.request_id
        self.finish(orjson.dumps(body))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, AppError) or (
            isinstance(value, tornado.web.HTTPError) and value.status_code < 500
        ):
            return  # expected outcomes, logged once by the access log with their status
        log.error(
            "request %s failed: %s %s",
            self.request_id,
            self.request.method,
            self.request.path,
            exc_info=(typ, value, tb),
        )

    # ---- transactions ------------------------------------------------------------------------------
    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One transaction; committed on success (and on errors that keep their writes), then the
        caches outside the database hear what changed. An idempotent request records its key first; an
        audited one writes its event last, so both commit with the request's writes or not at all.

        When more transactions are already queued for this process's connections than it can get
        through in about a second, answer 429 with Retry-After at once instead of letting the request
        wait towards a timeout (a sign-up rush must shed load, not hang)."""
        gate = self.deps.db_gate
        if gate.queued >= self.deps.settings.max_queued_transactions:
            raise RateLimited(1, "当前人数较多，请稍后重试", code="overloaded")
        async with gate, self.deps.sessions() as session:
            try:
                async with session.begin():
                    if self._claim is not None:
                        await self.deps.idempotency.record(session, self._claim)
                    try:
                        yield session
                    except AppError as exc:
                        if not exc.keeps_writes:
                            raise
                        await session.commit()
                        raise
                    self._audit(session)
            finally:
                await self._publish_changes(session)

    def _audit(self, session: AsyncSession) -> None:
        action = self.operation.audit
        if action is None or self._audited:
            return
        school, district = self._audit_scope
        entry = audit.AuditEntry(
            action=action,
            actor_user_id=uuid.UUID(self.recorded_user_id) if self.recorded_user_id else None,
            subject={k: v for k, v in self.path_kwargs.items()} | (self._audit_details or {}),
            request_id=self.request_id,
            school_id=school.id if school is not None else self._audit_school_id,
            district_id=district.id if district is not None else (school.district_id if school else None),
        )
        audit.record(session, entry, self.deps.clock())
        self._audited = True

    async def _publish_changes(self, session: AsyncSession) -> None:
        changes = pop_changes(session)
        if not changes or session.in_transaction():
            return
        keys = self.deps.keys
        users = changes.get(Change.principal, set())
        sessions = changes.get(Change.revoked_session, set())
        async with self.deps.redis.pipeline(transaction=False) as pipe:
            for user_id in users:
                pipe.delete(keys.principal(user_id))
            for sid in sessions:
                pipe.set(keys.revoked_session(sid), b"1", ex=self.deps.settings.access_token_ttl)
            if Change.catalogue in changes:
                pipe.incr(keys.catalogue_version())
            await pipe.execute()
        await self.deps.local.announce(
            [f"user:{u}" for u in users]
            + [f"session:{s}" for s in sessions]
            + (["catalogue"] if Change.catalogue in changes else [])
        )

    def audit_about(self, school_id: uuid.UUID | None = None, **details: str) -> None:
        """What the Operation's audit event adds to the ids in the path: the school of a record the path
        names (record scope), the record a POST created, which sensitive fields the answer carried."""
        if school_id is not None:
            self._audit_school_id = school_id
        self._audit_details = (self._audit_details or {}) | details

    @asynccontextmanager
    async def school_scope(self, school_id: str) -> AsyncIterator[tuple[AsyncSession, School]]:
        """A transaction on the school in the path, which the caller must reach with one of the
        Operation's roles (else 404, as if it did not exist)."""
        op = self.operation
        assert op.scope is Scope.school, f"{op.summary}: declared scope {op.scope}, used school"
        async with self.transaction() as session:
            school = await school_in_scope(session, self.me, self.path_uuid(school_id), op.roles)
            self._audit_scope = (school, None)
            yield session, school

    @asynccontextmanager
    async def district_scope(self, district_id: str) -> AsyncIterator[tuple[AsyncSession, District]]:
        op = self.operation
        assert op.scope is Scope.district, f"{op.summary}: declared scope {op.scope}, used district"
        async with self.transaction() as session:
            district = await district_in_scope(session, self.me, self.path_uuid(district_id), op.roles)
            self._audit_scope = (None, district)
            yield session, district

    # ---- limits ---------------------------------------------------------------------------------
    async def rate_limit(self, bucket: str, limit: int, per_seconds: int = 60) -> None:
        now = int(self.deps.clock().timestamp())
        window = now // per_seconds
        key = self.deps.keys.rate(bucket, window)
        async with self.deps.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, per_seconds + 1)
            count, _ = await pipe.execute()
        if count > limit:
            raise RateLimited(per_seconds - now % per_seconds)

    @property
    def client_ip(self) -> str:
        return str(self.request.remote_ip or "unknown")


def _idempotent(method: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Runs a verb whose Operation is idempotent under its Idempotency-Key: claim, carry out, store the
    answer, then send it (the answer is stored before it leaves: a client that retries as soon as it has
    the answer must find it to replay, not a request still in progress)."""

    @functools.wraps(method)
    async def run(self: ApiHandler, *args: Any, **kwargs: Any) -> None:
        header = self.request.headers.get("Idempotency-Key")
        if not header:
            return await method(self, *args, **kwargs)
        store = self.deps.idempotency
        # Keys are the caller's own; an anonymous answer's key is nobody's (a random UUID, by the client).
        owner = self.recorded_user_id or ("anonymous" if self.user_id else self.client_ip)
        claimed = await store.claim(
            owner, self.request.method or "", self.request.path, header, self.request.body or b""
        )
        if isinstance(claimed, Replay):
            return _replay(self, claimed)
        self._claim = claimed
        try:
            await method(self, *args, **kwargs)
        except AlreadyCarriedOut:
            self._claim = None
            await store.release(claimed)
            return _replay(self, await store.recorded_answer(claimed))
        except BaseException:
            self._claim = None
            await store.release(claimed)
            raise
        self._claim = None
        status, data = self._sent or (self.get_status(), b"")
        await store.complete(claimed, status, data)
        if self._sent is not None:
            self.finish(data)

    return run


def _replay(handler: ApiHandler, replay: Replay) -> None:
    handler.set_header("Idempotent-Replayed", "true")
    handler.send(replay.body, status=replay.status)


@tornado.web.stream_request_body
class BodyTooLargeHandler(ApiHandler):
    """Answers a request whose Content-Length is over its route's limit, in place of the route's own
    handler: streaming, so its 413 leaves before the body is read (the connection then closes)."""

    openapi: ClassVar = {verb: Operation("请求内容过大", auth=AuthMode.none) for verb in VERBS}

    def initialize(self, deps: Deps, limit: int) -> None:  # type: ignore[override]
        super().initialize(deps)
        self._limit = limit

    async def prepare(self) -> None:
        self.request_id = _request_id(self.request)
        self._common_headers()
        raise PayloadTooLarge(f"请求内容不能超过 {self._limit // 1024} KiB")


class NotFoundHandler(ApiHandler):
    openapi: ClassVar = {verb: Operation("没有这个接口", auth=AuthMode.none) for verb in VERBS}

    async def prepare(self) -> None:
        await super().prepare()
        raise NotFound("没有这个接口")
