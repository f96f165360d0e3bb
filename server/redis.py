"""The Redis client (redis-py asyncio) and the key prefix every key of this service carries."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

# Per process. Past this, a command waits (up to POOL_WAIT_SECONDS) for a connection instead of failing.
MAX_CONNECTIONS = 200
POOL_WAIT_SECONDS = 5


def make_redis(url: str) -> Redis:
    pool = BlockingConnectionPool.from_url(
        url, max_connections=MAX_CONNECTIONS, timeout=POOL_WAIT_SECONDS, health_check_interval=30
    )
    return Redis.from_pool(pool)  # the client owns its pool: aclose() closes the connections too


class Keys:
    """All Redis key names in one place, under a prefix (one per deployment, one per test)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def principal(self, user_id: str) -> str:
        return f"{self.prefix}principal:{user_id}"

    def revoked_session(self, session_id: str) -> str:
        return f"{self.prefix}revoked-sid:{session_id}"

    def idempotency(self, user_id: str, method: str, path: str, key: str) -> str:
        return f"{self.prefix}idem:{user_id}:{method}:{path}:{key}"

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
