"""Idempotency-Key: claim, record, replay — for creating POSTs whose `Operation` says `idempotent`.

Redis holds the claim while the request runs (`idempotency_pending_seconds`, longer than any request runs)
and then its answer, for fast replays. The key is also recorded in PostgreSQL in the request's own
transaction (models.idempotency), so a request is carried out at most once under a key even when Redis
lost its record, or when a process was killed mid-request and its claim ran out.

Stored answers are sealed with the field cipher (AES-GCM, bound to the record's key): an answer may carry
a secret (a teacher's one-time binding code), and neither a database dump nor a copy of Redis's files may
give it away during the day it is kept."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infra.clock import Clock
from infra.errors import Conflict, ValidationFailed
from infra.redis import Keys, Pipelined
from infra.security import FieldCipher
from models.idempotency import service as records

REPLAY_SECONDS = int(records.RETENTION.total_seconds())
MAX_KEY_LENGTH = 128
SEALED = "sealed:"  # prefix of a stored answer sealed by the cipher; anything else predates sealing


@dataclass(frozen=True)
class Replay:
    """The first answer to this key, to be sent again."""

    status: int
    body: bytes


@dataclass
class Claim:
    """This request holds the key: carry it out, then `complete` it with the answer."""

    redis_key: str
    durable: str  # sha256 of (caller, method, path, key): the client's key itself is not stored
    fingerprint: str  # sha256 of the body: the same key with another body is refused
    recorded: bool = False  # recorded in PostgreSQL by the transaction that carried it out


def key_reused() -> ValidationFailed:
    return ValidationFailed("同一个 Idempotency-Key 不能用于不同的请求内容", code="idempotency_key_reused")


def in_progress(detail: str = "相同的请求正在处理中") -> Conflict:
    return Conflict(detail, code="idempotency_in_progress")


class IdempotencyStore:
    def __init__(
        self,
        redis: Pipelined,
        keys: Keys,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        pending_seconds: int,
        cipher: FieldCipher,
    ) -> None:
        self._redis, self._keys, self._sessions, self._clock = redis, keys, sessions, clock
        self._pending_seconds = pending_seconds
        self._cipher = cipher

    def _seal(self, claim: Claim, body: bytes) -> str:
        sealed = self._cipher.encrypt(body.decode(), context=f"idempotency:{claim.durable}")
        return SEALED + base64.b64encode(sealed).decode()

    def _open(self, claim: Claim, stored: str) -> bytes:
        if not stored.startswith(SEALED):  # an answer stored before sealing, within its day
            return stored.encode()
        sealed = base64.b64decode(stored.removeprefix(SEALED))
        return self._cipher.decrypt(sealed, context=f"idempotency:{claim.durable}").encode()

    async def claim(self, owner: str, verb: str, path: str, header: str, body: bytes) -> Claim | Replay:
        """Take the key for this request, or find the answer to send again (409 while it runs; 422 for the
        same key with another body)."""
        if len(header) > MAX_KEY_LENGTH:
            raise ValidationFailed(
                "Idempotency-Key 过长",
                errors=[{"loc": ["header", "Idempotency-Key"], "msg": f"at most {MAX_KEY_LENGTH}"}],
            )
        fingerprint = hashlib.sha256(body).hexdigest()
        claim = Claim(
            redis_key=self._keys.idempotency(owner, verb, path, header),
            durable=hashlib.sha256("\n".join((owner, verb, path, header)).encode()).hexdigest(),
            fingerprint=fingerprint,
        )
        pending = orjson.dumps({"state": "pending", "fp": fingerprint})
        taken = await self._redis.execute("SET", claim.redis_key, pending, "NX", "EX", self._pending_seconds)
        if taken:
            return claim
        stored = await self._redis.execute("GET", claim.redis_key)
        found = orjson.loads(stored) if stored else {"state": "pending", "fp": fingerprint}
        if found["fp"] != fingerprint:
            raise key_reused()
        if found["state"] == "pending":
            raise in_progress()
        return Replay(int(found["status"]), self._open(claim, found["body"]))

    async def record(self, session: AsyncSession, claim: Claim) -> None:
        """First statement of the request's transaction, so that a request carried out before is found
        before anything it checks (a duplicate name, say) answers otherwise; rolled back with any error.
        Raises models.idempotency.AlreadyCarriedOut when PostgreSQL knows the key."""
        if not claim.recorded:
            await records.record(session, claim.durable, claim.fingerprint, self._clock())
            claim.recorded = True

    async def complete(self, claim: Claim, status: int, body: bytes) -> None:
        """Keep the answer for replays: in Redis, and with the record where the request wrote one."""
        sealed = self._seal(claim, body)
        done = {"state": "done", "fp": claim.fingerprint, "status": status, "body": sealed}
        await self._redis.execute("SET", claim.redis_key, orjson.dumps(done), "EX", REPLAY_SECONDS)
        if claim.recorded:
            async with self._sessions() as session, session.begin():
                await records.remember_response(session, claim.durable, status, sealed)

    async def release(self, claim: Claim) -> None:
        """The request failed without effect: the key may be used again at once."""
        await self._redis.execute("DEL", claim.redis_key)

    async def recorded_answer(self, claim: Claim) -> Replay:
        """The key's request was carried out before, though Redis did not know: its answer from PostgreSQL."""
        async with self._sessions() as session:
            found = await records.stored(session, claim.durable, self._clock())
        if found is not None and found.fingerprint != claim.fingerprint:
            raise key_reused()
        if found is None or found.status is None or found.body is None:
            # Its answer is being stored right now, or was lost with the process that carried it out.
            raise in_progress("相同的请求已经处理；如果一直看到这个提示，请刷新页面查看结果")
        return Replay(found.status, self._open(claim, found.body))
