"""What the embedded servers keep is readable by this account only: a copy of the Redis file held
idempotent answers (binding codes) and cached profiles."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from infra.embedded import EmbeddedServers


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_embedded_redis_keeps_its_files_private(tmp_path: Path) -> None:
    data = tmp_path / "var"
    data.mkdir(mode=0o755)
    (data / "redis").mkdir(mode=0o755)
    stale = data / "redis" / "left-by-an-older-version.aof"
    stale.write_bytes(b"")
    stale.chmod(0o644)
    servers = EmbeddedServers(data)
    try:
        url = servers.start_redis()
        client = redis.Redis(unix_socket_path=url.removeprefix("unix://"), retry=Retry(NoBackoff(), 0))
        client.set("ps:idem:secret", "ABCDEFGHJK")
        client.bgrewriteaof()
        while client.info("persistence")["aof_rewrite_in_progress"]:
            time.sleep(0.05)
        client.close()
    finally:
        servers.stop()
    files = [p for p in (data / "redis").rglob("*") if p.is_file()]
    assert any(p.suffix in (".aof", ".manifest") or "appendonly" in p.name for p in files), files
    assert {p.name: oct(_mode(p)) for p in files} == {p.name: oct(0o600) for p in files}
    assert _mode(data) & 0o077 == 0o011  # others may pass through to PostgreSQL's folder, not list it
    for folder in (data / "redis", *(p for p in (data / "redis").rglob("*") if p.is_dir())):
        assert _mode(folder) == 0o700, folder
