"""ApiHandler: runs each verb under its `Operation` — authenticate, check roles, parse, one transaction
(with its idempotency record and audit event), send — from small parts that know nothing of one another
(handlers.authentication, handlers.idempotency, handlers.problems)."""

from __future__ import annotations

import functools
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, ClassVar, TypeVar

import orjson
import tornado.web
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from handlers import problems
from handlers.authentication import Caller, authenticate, bearer_token
from handlers.deps import Deps
from handlers.idempotency import Claim, Replay
from handlers.policy import AuthMode, Operation, Scope
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

    # ---- lifecycle ---------------------------------------------------------------------------
    @property
    def body_limit(self) -> int:
        return self.deps.settings.max_body_bytes

    async def prepare(self) -> None:
        incoming = self.request.headers.get("X-Request-Id", "")
        self.request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex
        self._common_headers()
        op = self.openapi.get((self.request.method or "").lower())
        if op is None:
            allowed = tuple(v.upper() for v in self.openapi)
            raise problems.HttpLevel(405, "不支持此请求方法", allow=allowed)
        self.operation = op
        declared = self.request.headers.get("Content-Length")
        if (declared and declared.isdigit() and int(declared) > self.body_limit) or len(
            self.request.body
        ) > self.body_limit:
            raise PayloadTooLarge(f"请求内容不能超过 {self.body_limit // 1024} KiB")
        if op.authenticated:
            token = bearer_token(self.request.headers.get("Authorization", ""))
            self.caller = await authenticate(self.deps, token)
            if op.roles and not self.me.has_any(op.roles):
                raise Forbidden()

    def _common_headers(self) -> None:
        self.set_header("X-Request-Id", self.request_id)
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
        if self._claim is None:  # an idempotent answer waits until it is stored for replays
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


class NotFoundHandler(ApiHandler):
    openapi: ClassVar = {verb: Operation("没有这个接口", auth=AuthMode.none) for verb in VERBS}

    async def prepare(self) -> None:
        await super().prepare()
        raise NotFound("没有这个接口")
