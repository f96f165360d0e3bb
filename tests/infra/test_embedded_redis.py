"""The embedded Redis is ready when start_redis() returns, even with a large append-only file to read back."""

from __future__ import annotations

import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from infra.embedded import EmbeddedServers

KEYS = 1_000_000


def _client(url: str) -> redis.Redis:
    # No retries: the client must not paper over a server that is not ready yet.
    return redis.Redis(unix_socket_path=url.removeprefix("unix://"), retry=Retry(NoBackoff(), 0))


def test_redis_answers_at_once_after_a_restart_with_a_large_append_only_file(tmp_path: Path) -> None:
    servers = EmbeddedServers(tmp_path)
    try:
        client = _client(servers.start_redis())
        client.execute_command("DEBUG", "POPULATE", KEYS)
        client.bgrewriteaof()
        while client.info("persistence")["aof_rewrite_in_progress"]:
            time.sleep(0.05)
        client.close()
        servers.stop()

        restarted = _client(servers.start_redis())
        # Without waiting for the file to load, this would fail with "Redis is loading the dataset".
        assert restarted.dbsize() == KEYS
        restarted.close()
    finally:
        servers.stop()
