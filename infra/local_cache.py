"""Per-process caches kept honest by Redis pub/sub.

Every authenticated request needs two facts: the login session is not revoked, and who the user is.
Both live in Redis (shared by all processes); asking Redis on every request costs more CPU than the
rest of a cached GET. So each process keeps what it last read, and every change is announced on one
pub/sub channel: the process that made it applies it at once, the others within milliseconds.

Correctness does not rest on the messages arriving: entries expire after LOCAL_TTL, everything is
dropped while the subscription is down (and until it is back, every lookup goes to Redis), and an
entry read from Redis is only kept if no announcement arrived while it was being read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from redis.asyncio import Redis

from infra.redis import Keys

log = logging.getLogger(__name__)

LOCAL_TTL = 60.0
MAX_ENTRIES = 100_000  # per map; cleared wholesale when full (cheap, and rare in practice)
RECONNECT_DELAY = 1.0


@dataclass
class LocalCache:
    redis: Redis
    keys: Keys
    healthy: bool = False
    generation: int = 0
    _principals: dict[str, tuple[float, bytes]] = field(default_factory=dict)
    _live_sessions: dict[str, float] = field(default_factory=dict)
    _catalogue_version: tuple[float, int] | None = None

    # ---- reads ---------------------------------------------------------------------------------------
    def principal(self, session_id: str, user_id: str) -> bytes | None:
        """The cached principal JSON of a live session, or None (then ask Redis)."""
        if not self.healthy:
            return None
        now = time.monotonic()
        live = self._live_sessions.get(session_id)
        entry = self._principals.get(user_id)
        if live is None or entry is None or now - live > LOCAL_TTL or now - entry[0] > LOCAL_TTL:
            return None
        return entry[1]

    def remember(self, generation: int, session_id: str, user_id: str, principal_json: bytes) -> None:
        """Keep what was read from Redis, unless an announcement arrived while it was being read."""
        if not self.healthy or generation != self.generation:
            return
        now = time.monotonic()
        for store in (self._principals, self._live_sessions):
            if len(store) >= MAX_ENTRIES:
                store.clear()
        self._principals[user_id] = (now, principal_json)
        self._live_sessions[session_id] = now

    def catalogue_version(self) -> int | None:
        if not self.healthy or self._catalogue_version is None:
            return None
        at, version = self._catalogue_version
        return version if time.monotonic() - at < LOCAL_TTL else None

    def remember_catalogue_version(self, generation: int, version: int) -> None:
        if self.healthy and generation == self.generation:
            self._catalogue_version = (time.monotonic(), version)

    # ---- changes ---------------------------------------------------------------------------------------
    def apply(self, message: str) -> None:
        self.generation += 1
        kind, _, ident = message.partition(":")
        if kind == "user":
            self._principals.pop(ident, None)
        elif kind == "session":
            self._live_sessions.pop(ident, None)
        elif kind == "catalogue":
            self._catalogue_version = None
        else:
            self.clear()

    def clear(self) -> None:
        self.generation += 1
        self._principals.clear()
        self._live_sessions.clear()
        self._catalogue_version = None

    async def announce(self, messages: Iterable[str]) -> None:
        """Apply here at once, then tell the other processes."""
        messages = list(messages)
        for message in messages:
            self.apply(message)
        if messages:
            async with self.redis.pipeline(transaction=False) as pipe:
                for message in messages:
                    pipe.publish(self.keys.invalidations(), message)
                await pipe.execute()

    def _reconnected(self, _connection: object) -> None:
        log.warning("invalidation channel reconnected; local caches dropped")
        self.clear()

    async def listen(self) -> None:
        """Follow the channel until cancelled; while not subscribed, nothing is served from memory."""
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.keys.invalidations())
                # redis-py reconnects and resubscribes by itself after a dropped connection; what was
                # announced meanwhile is lost, so forget everything each time that happens.
                assert pubsub.connection is not None
                pubsub.connection.register_connect_callback(self._reconnected)
                self.clear()  # whatever happened while we were not listening is unknown
                self.healthy = True
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        data = message["data"]
                        self.apply(data.decode() if isinstance(data, bytes) else str(data))
            except Exception as exc:  # any failure means: stop trusting memory, and retry
                log.warning("invalidation channel lost (%s); serving from Redis until it is back", exc)
                await asyncio.sleep(RECONNECT_DELAY)
            finally:
                self.healthy = False
                self.clear()
                await pubsub.aclose()  # type: ignore[no-untyped-call]
