"""ApiHandler: authentication, body parsing, problem+json errors, transactions, idempotency, rate limits."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import orjson
import tornado.web
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.deps import Deps
from infra.errors import (
    AppError,
    Conflict,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthenticated,
    UnsupportedMediaType,
    ValidationFailed,
)
from infra.security import TokenError
from models.accounts.access import district_in_scope, school_in_scope
from models.accounts.principal import Principal, load_principal
from models.accounts.rules import Role
from models.accounts.tables import District, School
from models.base import Change, pop_changes
from models.idempotency import service as idempotency

log = logging.getLogger("api")
M = TypeVar("M", bound=BaseModel)

PRINCIPAL_CACHE_SECONDS = 600
REPLAY_SECONDS = int(idempotency.RETENTION.total_seconds())
PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True)
class Operation:
    """OpenAPI description of one verb of a handler; the spec is generated from these."""

    summary: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    roles: tuple[str, ...] = ()
    errors: tuple[int, ...] = ()
    idempotent: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _validation_errors(exc: ValidationError, where: str) -> list[dict[str, Any]]:
    return [{"loc": [where, *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]


def _nul_characters(value: Any, loc: list[Any]) -> list[dict[str, Any]]:
    """PostgreSQL text cannot hold U+0000; a string carrying one is invalid input, not a server error."""
    if isinstance(value, str):
        return (
            [{"loc": loc, "msg": "must not contain NUL characters", "type": "string_nul"}]
            if "\x00" in value
            else []
        )
    if isinstance(value, dict):
        return [
            e for k, v in value.items() for e in _nul_characters(v, [*loc, k]) + _nul_characters(k, [*loc, k])
        ]
    if isinstance(value, list):
        return [e for i, v in enumerate(value) for e in _nul_characters(v, [*loc, i])]
    return []


class ApiHandler(tornado.web.RequestHandler):
    deps: Deps
    auth_required: ClassVar[bool] = True
    openapi: ClassVar[dict[str, Operation]] = {}
    principal: Principal | None = None
    user_id: str | None = None
    request_id: str = ""
    _session_id: str | None = None
    _principal_json: bytes = b""
    _sent: tuple[int, bytes] | None = None
    _hold_response: bool = False  # @idempotent: the response waits until it is stored for replays
    _idempotency: tuple[str, str] | None = None  # @idempotent: (durable key, body fingerprint)
    _idempotency_recorded: bool = False  # ... recorded in the transaction that committed

    def initialize(self, deps: Deps) -> None:
        self.deps = deps
        deps.in_flight.enter()

    def on_finish(self) -> None:
        self.deps.in_flight.leave()

    # ---- lifecycle ---------------------------------------------------------------------------
    @property
    def body_limit(self) -> int:
        return self.deps.settings.max_body_bytes

    async def prepare(self) -> None:
        incoming = self.request.headers.get("X-Request-Id", "")
        self.request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex
        self._common_headers()
        declared = self.request.headers.get("Content-Length")
        if (declared and declared.isdigit() and int(declared) > self.body_limit) or len(
            self.request.body
        ) > self.body_limit:
            raise PayloadTooLarge(f"请求内容不能超过 {self.body_limit // 1024} KiB")
        if self.auth_required:
            await self._authenticate()

    def _common_headers(self) -> None:
        self.set_header("X-Request-Id", self.request_id)
        if self.deps.in_flight.stopping:  # this process is stopping: the next request goes elsewhere
            self.set_header("Connection", "close")

    async def _authenticate(self) -> None:
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("缺少访问令牌", code="missing_token")
        try:
            claims = self.deps.signer.verify(token.strip())
        except TokenError as exc:
            raise Unauthenticated("访问令牌无效或已过期", code="invalid_token") from exc
        self._session_id, self.user_id = claims.session_id, claims.user_id
        local = self.deps.local
        known = local.principal(claims.session_id, claims.user_id)
        if known is not None:
            self._principal_json = known
            return
        generation = local.generation
        keys, redis = self.deps.keys, self.deps.pipelined
        revoked, cached = await asyncio.gather(
            redis.execute("EXISTS", keys.revoked_session(claims.session_id)),
            redis.execute("GET", keys.principal(claims.user_id)),
        )
        if revoked:
            raise Unauthenticated("登录已退出，请重新登录", code="session_revoked")
        if not cached:
            async with self.deps.sessions() as session:
                principal = await load_principal(session, uuid.UUID(claims.user_id))
            if principal is None:
                raise Unauthenticated("账号不存在或已停用", code="invalid_token")
            self.principal = principal
            cached = principal.model_dump_json().encode()
            await redis.execute("SET", keys.principal(claims.user_id), cached, "EX", PRINCIPAL_CACHE_SECONDS)
        self._principal_json = cached
        local.remember(generation, claims.session_id, claims.user_id, cached)

    @property
    def me(self) -> Principal:
        """The caller, parsed from the cached JSON on first use (GET /me never needs the object)."""
        if self.principal is None:
            assert self._principal_json, "handler requires authentication"
            self.principal = _parsed_principal(self._principal_json)
        return self.principal

    @property
    def session_id(self) -> uuid.UUID:
        assert self._session_id is not None
        return uuid.UUID(self._session_id)

    # ---- input ------------------------------------------------------------------------------------
    def body(self, model: type[M]) -> M:
        ctype = self.request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
        raw = self.request.body or b"{}"
        if ctype not in ("application/json", ""):
            raise UnsupportedMediaType("请以 application/json 提交")
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise AppError("请求体不是有效的 JSON", code="malformed_json", status=400) from exc
        nul = _nul_characters(data, ["body"])
        if nul:
            raise ValidationFailed(errors=nul)
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise ValidationFailed(errors=_validation_errors(exc, "body")) from exc

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
            raise ValidationFailed(errors=_validation_errors(exc, "query")) from exc

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
        if not self._hold_response:
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
        if isinstance(exc, AppError):
            error = exc
        elif isinstance(exc, tornado.web.HTTPError) and exc.status_code < 500:
            error = AppError(
                exc.reason or exc.log_message, status=exc.status_code, code=_http_code(exc.status_code)
            )
            error.title = exc.reason or error.title
        else:
            error = AppError(
                f"服务器内部错误，请求编号 {self.request_id}",
                status=500,
                code="internal_error",
                title="服务器内部错误",
            )
        self.set_status(error.status)
        self.error_code = error.code  # the access log and /metrics (server/app.py) count it by this code
        if self.request_id:  # send_error() cleared the headers prepare() had set
            self._common_headers()
        for name, value in error.headers.items():
            self.set_header(name, value)
        self.set_header("Content-Type", PROBLEM_JSON)
        body = error.problem()
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
        caches outside the database hear what changed.

        When more transactions are already queued for this process's connections than it can get
        through in about a second, answer 429 with Retry-After at once instead of letting the request
        wait towards a timeout (a sign-up rush must shed load, not hang)."""
        gate = self.deps.db_gate
        if gate.queued >= self.deps.settings.max_queued_transactions:
            raise RateLimited(1, "当前人数较多，请稍后重试", code="overloaded")
        async with gate, self.deps.sessions() as session:
            try:
                async with session.begin():
                    if self._idempotency is not None and not self._idempotency_recorded:
                        # First, so that a request carried out before is found before anything it
                        # checks (a duplicate name, say) answers otherwise; rolled back with any error.
                        await idempotency.record(session, *self._idempotency, self.deps.clock())
                        self._idempotency_recorded = True
                    try:
                        yield session
                    except AppError as exc:
                        if not exc.keeps_writes:
                            raise
                        await session.commit()
                        raise
            finally:
                await self._publish_changes(session)

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

    @asynccontextmanager
    async def school_scope(
        self, school_id: str, roles: frozenset[Role]
    ) -> AsyncIterator[tuple[AsyncSession, School]]:
        """A transaction on one school the caller may act on with one of `roles` (else 403 / 404)."""
        async with self.transaction() as session:
            school = await school_in_scope(session, self.me, self.path_uuid(school_id), roles)
            yield session, school

    @asynccontextmanager
    async def district_scope(
        self, district_id: str, roles: frozenset[Role]
    ) -> AsyncIterator[tuple[AsyncSession, District]]:
        async with self.transaction() as session:
            district = await district_in_scope(session, self.me, self.path_uuid(district_id), roles)
            yield session, district

    async def _replay_recorded(self, durable: str, fingerprint: str) -> None:
        """The key's request was carried out before, though Redis did not know: answer from its record."""
        now = self.deps.clock()
        async with self.deps.sessions() as session:
            found = await idempotency.stored(session, durable, now)
        if found is not None and found.fingerprint != fingerprint:
            raise _key_reused()
        if found is None or found.status is None or found.body is None:
            # Its response is being stored right now, or was lost with the process that carried it out.
            raise Conflict(
                "相同的请求已经处理；如果一直看到这个提示，请刷新页面查看结果", code="idempotency_in_progress"
            )
        self.set_header("Idempotent-Replayed", "true")
        self.send(found.body.encode(), status=found.status)

    # ---- limits ---------------------------------------------------------------------------------
    async def rate_limit(self, bucket: str, limit: int, per_seconds: int = 60) -> None:
        now = int(time.time())
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


@functools.lru_cache(maxsize=1024)
def _parsed_principal(cached: bytes) -> Principal:
    """A cached principal JSON parsed once per process, not once per request (a changed principal is
    other JSON, so never stale). For the users active right now: about 8 KiB each, 8 MiB at most."""
    return Principal.model_validate_json(cached)


def idempotent(method: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Replay the first response to a creating POST retried with the same Idempotency-Key and body.

    Redis holds the claim while the request runs (`idempotency_pending_seconds`, longer than any request
    runs) and then its response, for fast replays. Where the handler writes in `self.transaction()`, the
    key is also recorded in that transaction (models.idempotency): so a request is carried out at most
    once under a key even when Redis lost its record, or when a process was killed mid-request and its
    claim ran out."""

    @functools.wraps(method)
    async def wrapper(self: ApiHandler, *args: Any, **kwargs: Any) -> None:
        header = self.request.headers.get("Idempotency-Key")
        if not header:
            return await method(self, *args, **kwargs)
        if len(header) > 128:
            raise ValidationFailed(
                "Idempotency-Key 过长", errors=[{"loc": ["header", "Idempotency-Key"], "msg": "max 128"}]
            )
        owner = self.user_id or self.client_ip
        verb, path = self.request.method or "", self.request.path
        key = self.deps.keys.idempotency(owner, verb, path, header)
        durable = hashlib.sha256("\n".join((owner, verb, path, header)).encode()).hexdigest()
        fingerprint = hashlib.sha256(self.request.body or b"").hexdigest()
        redis = self.deps.pipelined
        pending = orjson.dumps({"state": "pending", "fp": fingerprint})
        claimed = await redis.execute(
            "SET", key, pending, "NX", "EX", self.deps.settings.idempotency_pending_seconds
        )
        if not claimed:
            stored = await redis.execute("GET", key)
            record = orjson.loads(stored) if stored else {"state": "pending", "fp": fingerprint}
            if record["fp"] != fingerprint:
                raise _key_reused()
            if record["state"] == "pending":
                raise Conflict("相同的请求正在处理中", code="idempotency_in_progress")
            self.set_header("Idempotent-Replayed", "true")
            return self.send(record["body"].encode(), status=int(record["status"]))
        # The response is stored before it leaves: a client that retries as soon as it has the answer
        # must find it to replay, not a request still in progress.
        self._hold_response = True
        self._idempotency = (durable, fingerprint)
        try:
            await method(self, *args, **kwargs)
        except idempotency.AlreadyCarriedOut:
            await redis.execute("DEL", key)
            self._hold_response = False
            return await self._replay_recorded(durable, fingerprint)
        except BaseException:
            await redis.execute("DEL", key)
            raise
        finally:
            self._hold_response = False
        status, data = self._sent or (self.get_status(), b"")
        record = {"state": "done", "fp": fingerprint, "status": status, "body": data.decode()}
        await redis.execute("SET", key, orjson.dumps(record), "EX", REPLAY_SECONDS)
        if self._idempotency_recorded:
            async with self.deps.sessions() as session, session.begin():
                await idempotency.remember_response(session, durable, status, data.decode())
        if self._sent is not None:
            self.finish(data)

    return wrapper


def _key_reused() -> ValidationFailed:
    return ValidationFailed("同一个 Idempotency-Key 不能用于不同的请求内容", code="idempotency_key_reused")


def _http_code(status: int) -> str:
    return {
        400: "bad_request",
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
    }.get(status, f"http_{status}")


class NotFoundHandler(ApiHandler):
    auth_required = False

    async def prepare(self) -> None:
        await super().prepare()
        raise NotFound("没有这个接口")
