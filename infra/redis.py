"""The Redis client (redis-py asyncio), its command batcher, and the key prefix every key carries."""

from __future__ import annotations

import asyncio
from typing import Any

from hiredis import pack_command
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import ResponseError

# A command waits this long for a pooled connection (all `max_connections` busy) before it fails.
POOL_WAIT_SECONDS = 5


def make_redis(url: str, *, max_connections: int) -> Redis:
    """A client on a pool of at most `max_connections` (Settings.redis_max_connections, per process)."""
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=POOL_WAIT_SECONDS, health_check_interval=30
    )
    return Redis.from_pool(pool)  # the client owns its pool: aclose() closes the connections too


class Pipelined:
    """Single commands from concurrent requests, sent together: every command issued in one turn of the
    event loop goes in one pipeline (one round trip) at the end of that turn.

    The batch goes out on a pooled connection as one write, packed by hiredis, and its replies are read
    back in order, without redis-py's per-command machinery (response callbacks, retries, pipeline
    bookkeeping). Measured with 32 commands per turn: about 13 µs of CPU per command, against about
    40 µs through a redis-py pipeline and 100 µs for a command sent on its own. Replies are Redis's
    own (SET answers b"OK" or None, EXISTS a count). Each command gets its own reply or error reply;
    a failed round trip fails the commands it carried, and its connection is dropped, not reused."""

    def __init__(self, redis: Redis) -> None:
        self._pool = redis.connection_pool
        self._pending: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def execute(self, *command: Any) -> asyncio.Future[Any]:
        """Send `command` (e.g. "SET", key, value, "NX") with the others of this turn; await its reply."""
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((command, reply))
        return reply

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.ensure_future(self._send(batch))
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        replies: list[Any] = []
        try:
            connection = await self._pool.get_connection()  # type: ignore[no-untyped-call]
            try:
                await connection.send_packed_command(b"".join(pack_command(c) for c, _ in batch))
                for _ in batch:
                    try:
                        replies.append(await connection.read_response())
                    except ResponseError as error:  # this command's own error; the next reply follows
                        replies.append(error)
            except BaseException:
                await connection.disconnect()  # replies may be left unread on it
                raise
            finally:
                await self._pool.release(connection)
        except BaseException as exc:  # the round trip failed: every command it carried did
            for _, reply in batch:
                if not reply.done():
                    reply.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, reply), result in zip(batch, replies, strict=True):
            if reply.done():  # its caller gave up waiting
                continue
            if isinstance(result, Exception):
                reply.set_exception(result)
            else:
                reply.set_result(result)


class Keys:
    """All Redis key names in one place, under a prefix (one per deployment, one per test)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def principal(self, user_id: str) -> str:
        return f"{self.prefix}principal:{user_id}"

    def console_session(self, session_key: str) -> str:
        return f"{self.prefix}console-session:{session_key}"

    def console_user_sessions(self, user_id: str) -> str:
        return f"{self.prefix}console-sessions-of:{user_id}"

    def revoked_session(self, session_id: str) -> str:
        return f"{self.prefix}revoked-sid:{session_id}"

    def idempotency(self, user_id: str, method: str, path: str, key: str) -> str:
        return f"{self.prefix}idem:{user_id}:{method}:{path}:{key}"

    def login_failures(self, attempt: str) -> str:
        return f"{self.prefix}login-fail:{attempt}"

    def login_lock(self, attempt: str) -> str:
        return f"{self.prefix}login-lock:{attempt}"

    def login_lockouts(self, attempt: str) -> str:
        return f"{self.prefix}login-lockouts:{attempt}"

    def rate(self, bucket: str, window: int) -> str:
        return f"{self.prefix}rate:{bucket}:{window}"

    def wechat_token(self, appid: str) -> str:
        return f"{self.prefix}wx:token:{appid}"

    def wechat_token_lock(self, appid: str) -> str:
        return f"{self.prefix}wx:token-lock:{appid}"

    def lesson_state(self, parent_id: str, course_id: str) -> str:
        return f"{self.prefix}lesson:{parent_id}:{course_id}"

    def progress_dirty(self) -> str:
        return f"{self.prefix}lesson-dirty"

    def progress_hydrated(self) -> str:
        return f"{self.prefix}lesson-hydrated"

    def progress_hydrate_lock(self) -> str:
        return f"{self.prefix}lesson-hydrate-lock"

    def invalidations(self) -> str:
        return f"{self.prefix}invalidations"

    def catalogue_version(self) -> str:
        return f"{self.prefix}catalogue-version"

    def catalogue_cache(self, version: int, digest: str) -> str:
        return f"{self.prefix}catalogue:{version}:{digest}"

    def survey_results(self, survey_id: str, version: str, view: str) -> str:
        return f"{self.prefix}survey-results:{survey_id}:{version}:{view}"
