"""The one object handlers receive: settings, database sessions, Redis, the WeChat gateway, the clock,
and the per-process services built from them."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from dataclasses import dataclass, field

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from handlers.idempotency import IdempotencyStore
from infra.clock import Clock, shanghai_now
from infra.config import Settings
from infra.db import make_engine, make_session_factory
from infra.group_commit import GroupCommit
from infra.local_cache import LocalCache
from infra.redis import Keys, Pipelined, make_redis
from infra.security import FieldCipher, TokenSigner
from infra.storage import FileStore, LocalStore
from infra.wechat import WechatGateway
from models.accounts.lockout import LoginLockout
from models.catalog.lessons import LessonDirectory
from models.evening_classes.schemas import SignupOut
from models.evening_classes.signups import SignupRequest, sign_up_batch
from models.learning.progress import ProgressTracker
from models.notifications.allowance import Templates
from models.notifications.worker import NotificationWorker
from models.surveys.moderation import TextChecker


class DatabaseGate:
    """Admits as many transactions as the pool has connections; counts the ones waiting."""

    def __init__(self, slots: int) -> None:
        self._slots = asyncio.Semaphore(max(1, slots))
        self.queued = 0

    async def __aenter__(self) -> None:
        self.queued += 1
        try:
            await self._slots.acquire()
        finally:
            self.queued -= 1

    async def __aexit__(self, *exc: object) -> None:
        self._slots.release()


class InFlight:
    """The requests this process has taken in and not answered yet: a stopping worker answers them
    before it exits, instead of cutting them off with its connections."""

    def __init__(self) -> None:
        self.count = 0
        self.stopping = False
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.count += 1
        self._idle.clear()

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def drain(self, within: float) -> int:
        """Wait until every request taken in is answered, `within` seconds at most; from now on answers
        say `Connection: close`, so keep-alive clients take their next request to another process.
        Returns how many requests are still running."""
        self.stopping = True
        with suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), within)
        return self.count


@dataclass
class Deps:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis
    keys: Keys
    clock: Clock = field(default=shanghai_now)
    wechat: WechatGateway = field(init=False)
    signer: TokenSigner = field(init=False)
    cipher: FieldCipher = field(init=False)
    db_gate: DatabaseGate = field(init=False)
    in_flight: InFlight = field(init=False, default_factory=InFlight)
    templates: Templates = field(init=False)
    pipelined: Pipelined = field(init=False)
    local: LocalCache = field(init=False)
    idempotency: IdempotencyStore = field(init=False)
    lockout: LoginLockout = field(init=False)
    lessons: LessonDirectory = field(init=False)
    progress: ProgressTracker = field(init=False)
    notifications: NotificationWorker = field(init=False)
    signups: GroupCommit[SignupRequest, SignupOut] = field(init=False)
    texts: TextChecker = field(init=False)
    files: FileStore = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.wechat = WechatGateway(
            appid=s.wechat_appid or "",
            secret=s.wechat_secret.get_secret_value() if s.wechat_secret else "",
            api_base=s.wechat_api_base,
            timeout=s.wechat_timeout,
            redis=self.redis,
            keys=self.keys,
        )
        self.templates = Templates(
            s.wechat_template_class_reminder,
            s.wechat_template_waitlist_promoted,
            s.wechat_template_followup_answered,
        )
        self.signer = TokenSigner(s.jwt_secret.get_secret_value(), s.jwt_issuer, s.access_token_ttl)
        self.cipher = FieldCipher(s.field_encryption_key.get_secret_value())
        self.db_gate = DatabaseGate(self.engine.pool.size())  # type: ignore[attr-defined]
        self.pipelined = Pipelined(self.redis)
        self.local = LocalCache(self.redis, self.keys)
        self.idempotency = IdempotencyStore(
            self.pipelined,
            self.keys,
            self.sessions,
            lambda: self.clock(),
            s.idempotency_pending_seconds,
            self.cipher,
        )
        self.lockout = LoginLockout(
            self.redis,
            self.keys,
            max_failures=s.password_max_failures,
            base_seconds=s.password_lockout_base_seconds,
            max_seconds=s.password_lockout_seconds,
        )
        self.lessons = LessonDirectory(self.sessions)
        self.files = LocalStore(s.data_dir / "photos")
        self.progress = ProgressTracker(
            self.redis,
            self.keys,
            self.sessions,
            clock=lambda: self.clock().timestamp(),
            flush_interval=s.progress_flush_seconds,
        )
        self.notifications = NotificationWorker(
            self.sessions,
            self.wechat,
            clock=lambda: self.clock(),
            poll_interval=s.notification_poll_seconds,
            send_concurrency=s.notification_send_concurrency,
            max_attempts=s.notification_max_attempts,
        )
        self.texts = TextChecker(self.sessions, self.wechat, self.cipher)
        self.signups = GroupCommit(
            self.engine, sign_up_batch, max_waiting=lambda: self.settings.max_queued_signups
        )

    @classmethod
    def build(cls, settings: Settings, *, pool_size: int = 10) -> Deps:
        """Create the clients for one process (call after forking, never before)."""
        if not settings.database_url or not settings.redis_url:
            raise RuntimeError("database_url and redis_url must be resolved before building deps")
        engine = make_engine(settings.database_url, pool_size=pool_size)
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_session_factory(engine),
            redis=make_redis(settings.redis_url, max_connections=settings.redis_max_connections),
            keys=Keys(settings.redis_prefix),
        )

    async def close(self) -> None:
        await self.redis.aclose()
        await self.engine.dispose()
