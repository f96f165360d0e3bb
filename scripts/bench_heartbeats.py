"""Benchmark online-lesson heartbeats: 20,000 viewers each beating every 15 s, open loop.

    .venv/bin/python -m scripts.bench_heartbeats [--seconds 75] [--viewers 20000] [--period 15]
                                                 [--connections 256] [--cold] [--json]

What it does, in one run (the service machinery is bench_platform's, in scripts/benchlib.py):
1. Starts the service (`python -m server`) with PROCESSES=2, its own embedded PostgreSQL and Redis
   under var/bench, and a JWT_SECRET chosen for this run.
2. Creates (once; ids are stable, so later runs reuse them) --viewers parent accounts directly in the
   bench database, each the guardian of a student of the demo school A's 三年级1班, and mints their
   access tokens with the service's TokenSigner. It picks the longest online lesson of the shipped
   catalogue and clears the viewers' earlier progress on it (Redis state and PostgreSQL rows).
3. A load-generator process opens --connections keep-alive connections; each viewer always uses the
   same one (viewer i → connection i mod N), every request carrying the viewer's own token. Unless
   --cold, it first sends one GET /api/v1/me per viewer (what the mini-program does when it opens:
   the principal caches fill, at one PostgreSQL read per parent), outside the measurement.
4. The measured run, open loop: viewer i beats at i·15/N s, then every 15 s (the first beats ramp up
   evenly over the first 15 s, after which every viewer beats on its own clock) until --seconds,
   POST /api/v1/lessons/{id}/progress {"position": p} with p advancing 15 s per beat from a random
   start, as a real player does. A request waits on its connection while the one before it is in
   flight; latency runs from the scheduled send time, so queueing (client or server side) counts.
5. Every 5 s: RSS of each Tornado worker and of Redis (and Redis's own used_memory), CPU of every
   process. PostgreSQL transactions: pg_stat_database (xact_commit + xact_rollback) of the service's
   database before and after the run, each read once the statistics settled (backends report them
   up to 10 s late), minus the benchmark's own reads (psql, one transaction each).
6. Prints heartbeats/s, p50/p99/max latency (and per 5-s slice), errors, completions, transactions and
   heartbeats per transaction, the memory series, and the verdicts: p99 < 50 ms, >= 100 heartbeats
   per PostgreSQL transaction, memory flat from the 15 s mark to the end, no errors.

Completions: credit starts at zero for every viewer and a run lasts minutes, while a lesson completes
at 90 % of its length (the longest is ~19 minutes), so normally none completes; start positions leave
room for the whole run before the video's end. Each completion would be one synchronous PostgreSQL
transaction (counted), and the report says how many there were.

Caveats: the servers, Redis, PostgreSQL and the load generator share the machine's cores; the CPU
table shows who used them, and a warning says when other processes took a noticeable share.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import math
import os
import random
import secrets
import select
import subprocess
import sys
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.benchlib import (
    CLIENT_SIDE,
    DATA_DIR,
    MIB,
    PROCESSES,
    ROOT,
    Sample,
    cpu_shares,
    install_signal_handlers,
    label_processes,
    log,
    percentile,
    refresh_postgres,
    sample,
    start_and_wait_service,
    stopping,
    warn_if_busy,
)

REDIS_PREFIX = "ps:"
JWT_ISSUER = "parent-school"
TOKEN_TTL = 7200
BENCH_NS = uuid.UUID("0b6c3a8e-2f1d-4a57-9a0e-6d3f1c2b5e41")
CLASSROOM_NAME = "三年级1班"
MEMORY_INTERVAL = 5.0
WARM_CONCURRENCY = 32
SLICE_SECONDS = 5.0
STATS_IDLE_FLUSH = 11.0  # PostgreSQL backends report statistics after at most 10 s idle
# A psql read costs two transactions: the backend's start-up (authentication, database lookup) and the
# SELECT; both are reported when psql disconnects.
PSQL_TRANSACTIONS = 2
SETTLE_TRIES = 8  # autovacuum, when it runs, keeps the count moving: then the last reading stands
STATS_QUERY = """
SELECT json_build_object(
  'transactions', (SELECT xact_commit + xact_rollback FROM pg_stat_database
                   WHERE datname = current_database()),
  'course_reads', (SELECT seq_scan + coalesce(idx_scan, 0) FROM pg_stat_user_tables
                   WHERE relname = 'course'),
  'app_user_reads', (SELECT seq_scan + coalesce(idx_scan, 0) FROM pg_stat_user_tables
                     WHERE relname = 'app_user'),
  'progress_rows_inserted', (SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'lesson_progress'),
  'progress_rows_updated', (SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'lesson_progress'),
  'autovacuum_runs', (SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0)
                      FROM pg_stat_user_tables))
"""
GOAL_P99_MS = 50.0
GOAL_BEATS_PER_TRANSACTION = 100.0
# "Flat": from the 15 s mark to the end, no process grows by more than this (whichever is larger).
FLAT_MIB = 4.0
FLAT_SHARE = 0.05
PROGRESS_PATH = "/api/v1/lessons/{}/progress"
PRINCIPAL_TTL_NEEDED = 420  # s: the run, settling and a slow machine, well inside the service's 600 s


# ==== load generator (`--load-gen PORT`) =============================================================


@dataclass
class _Beat:
    viewer: int
    scheduled: float  # perf_counter seconds; for warm-up requests the time it was queued
    request: bytes
    warm: bool = False
    sent: float = 0.0


class _Conn(asyncio.Protocol):
    """One keep-alive connection shared by many viewers: one request in flight, the rest wait in order."""

    def __init__(self, gen: _OpenLoop, index: int, queue: deque[_Beat]) -> None:
        self.gen = gen
        self.index = index
        self.queue = queue
        self.inflight: _Beat | None = None
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.need = -1
        self.head_end = 0
        self.status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.pump()

    def submit(self, beat: _Beat) -> None:
        self.queue.append(beat)
        if self.inflight is None and self.transport is not None:
            self.pump()

    def pump(self) -> None:
        if self.queue and self.inflight is None and self.transport is not None:
            beat = self.queue.popleft()
            beat.sent = time.perf_counter()
            self.inflight = beat
            self.transport.write(beat.request)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while True:
            if self.need < 0:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(buf[:end]).lower()
                start = head.find(b"\r\ncontent-length:")
                if start < 0 or not head.startswith(b"http/1.1 "):
                    self.gen.protocol_errors += 1
                    assert self.transport is not None
                    self.transport.close()
                    return
                stop = head.find(b"\r\n", start + 2)
                self.status = int(head[9:12])
                self.head_end = end + 4
                self.need = self.head_end + int(head[start + 17 : stop if stop >= 0 else None])
            if len(buf) < self.need:
                return
            now = time.perf_counter()
            body = bytes(buf[self.head_end : self.need])
            del buf[: self.need]
            self.need = -1
            beat, self.inflight = self.inflight, None
            if beat is not None:
                self.gen.completed(beat, self.status, body, now)
            self.pump()

    def connection_lost(self, exc: Exception | None) -> None:
        self.gen.lost(self)


@dataclass
class _OpenLoop:
    port: int
    connections: int
    conns: list[_Conn] = field(default_factory=list)
    outstanding: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    closing: bool = False
    t0: float = 0.0
    latencies: array.array[float] = field(default_factory=lambda: array.array("d"))
    lags: array.array[float] = field(default_factory=lambda: array.array("d"))
    scheduled_at: array.array[float] = field(default_factory=lambda: array.array("d"))
    statuses: Counter[int] = field(default_factory=Counter)
    warm_statuses: Counter[int] = field(default_factory=Counter)
    warm_pending: deque[_Beat] = field(default_factory=deque)
    error_samples: list[str] = field(default_factory=list)
    protocol_errors: int = 0
    connection_errors: int = 0
    lost_requests: int = 0
    completed_viewers: set[int] = field(default_factory=set)
    verified: dict[int, int] = field(default_factory=dict)
    last_response: float = 0.0
    reconnects: set[asyncio.Task[None]] = field(default_factory=set)

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        for index in range(self.connections):
            queue: deque[_Beat] = deque()
            _, conn = await loop.create_connection(
                lambda i=index, q=queue: _Conn(self, i, q), "127.0.0.1", self.port
            )
            self.conns.append(conn)

    def submit(self, beat: _Beat) -> None:
        self.outstanding += 1
        self.idle.clear()
        self.conns[beat.viewer % self.connections].submit(beat)

    def _done(self) -> None:
        self.outstanding -= 1
        if self.outstanding == 0:
            self.idle.set()

    def completed(self, beat: _Beat, status: int, body: bytes, now: float) -> None:
        self._done()
        if beat.warm:
            self.warm_statuses[status] += 1
            if status != 200 and len(self.error_samples) < 5:
                self.error_samples.append(f"warm-up {status}: {body[:200]!r}")
            if self.warm_pending:
                self.submit(self.warm_pending.popleft())
            return
        self.latencies.append(now - beat.scheduled)
        self.lags.append(beat.sent - beat.scheduled)
        self.scheduled_at.append(beat.scheduled - self.t0)
        self.statuses[status] += 1
        self.last_response = now
        if status == 200:
            if b'"completed":true' in body:
                self.completed_viewers.add(beat.viewer)
            at = body.find(b'"verified_seconds":')
            if at >= 0:
                end = body.find(b",", at)
                self.verified[beat.viewer] = int(body[at + 19 : end])
        elif len(self.error_samples) < 5:
            self.error_samples.append(f"{status}: {body[:200]!r}")

    def lost(self, conn: _Conn) -> None:
        if self.closing:
            return
        self.connection_errors += 1
        if conn.inflight is not None:  # never answered: an error, with no latency
            self.lost_requests += 1
            conn.inflight = None
            self._done()
        task = asyncio.get_running_loop().create_task(self._reconnect(conn))
        self.reconnects.add(task)
        task.add_done_callback(self.reconnects.discard)

    async def _reconnect(self, old: _Conn) -> None:
        loop = asyncio.get_running_loop()
        while not self.closing:
            try:
                _, conn = await loop.create_connection(
                    lambda: _Conn(self, old.index, old.queue), "127.0.0.1", self.port
                )
                self.conns[old.index] = conn
                return
            except OSError:
                await asyncio.sleep(0.05)

    def close(self) -> None:
        self.closing = True
        for conn in self.conns:
            if conn.transport is not None:
                conn.transport.close()


def _post(prefix: bytes, position: float) -> bytes:
    body = b'{"position": %.1f}' % position
    return prefix + b"Content-Length: %d\r\n\r\n" % len(body) + body


async def _generate(args: argparse.Namespace) -> dict[str, Any]:
    tokens = args.token_list
    viewers = len(tokens)
    path = PROGRESS_PATH.format(args.course)
    host = f"Host: 127.0.0.1:{args.load_gen}\r\n"
    prefixes = [
        (
            f"POST {path} HTTP/1.1\r\n{host}Authorization: Bearer {token}\r\n"
            "User-Agent: bench-heartbeats\r\nContent-Type: application/json\r\n"
        ).encode()
        for token in tokens
    ]
    rng = random.Random(args.seed)
    # start positions leave room for the whole run (plus a beat) before the end of the video
    room = max(0.0, args.video_seconds - args.seconds - 2 * args.period)
    starts = [round(rng.uniform(0.0, room), 1) for _ in range(viewers)]

    gen = _OpenLoop(args.load_gen, args.connections)
    await gen.open()
    loop = asyncio.get_running_loop()
    warm_seconds = 0.0
    if not args.cold:
        began = time.perf_counter()
        for viewer, token in enumerate(tokens):
            request = (
                f"GET /api/v1/me HTTP/1.1\r\n{host}Authorization: Bearer {token}\r\n"
                "User-Agent: bench-heartbeats\r\n\r\n"
            ).encode()
            gen.warm_pending.append(_Beat(viewer, began, request, warm=True))
        # a few at a time: setup, not a stress test (cold principals cost a PostgreSQL read each)
        for _ in range(min(WARM_CONCURRENCY, viewers)):
            gen.submit(gen.warm_pending.popleft())
        await asyncio.wait_for(gen.idle.wait(), 600)
        warm_seconds = time.perf_counter() - began
    print(json.dumps({"ready": True, "warm_seconds": warm_seconds, "warm_statuses": gen.warm_statuses}))
    sys.stdout.flush()
    line = await loop.run_in_executor(None, sys.stdin.readline)
    if line.strip() != "go":
        gen.close()
        return {"aborted": True}

    interval = args.period / viewers
    total = math.ceil(args.seconds / interval)
    gen.t0 = start = time.perf_counter()
    n = 0
    while n < total:
        due = min(total, int((time.perf_counter() - start) / interval) + 1)
        while n < due:
            round_, viewer = divmod(n, viewers)
            position = starts[viewer] + round_ * args.period
            gen.submit(_Beat(viewer, start + n * interval, _post(prefixes[viewer], position)))
            n += 1
        delay = start + n * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    scheduled_end = time.perf_counter()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(gen.idle.wait(), 60)
    unanswered = gen.outstanding
    gen.close()
    await asyncio.sleep(0.1)

    ordered = sorted(gen.latencies)
    lags = sorted(gen.lags)
    servers = sorted(lat - lag for lat, lag in zip(gen.latencies, gen.lags, strict=True))
    slices = []
    buckets: dict[int, list[float]] = {}
    for at, lat in zip(gen.scheduled_at, gen.latencies, strict=True):
        buckets.setdefault(int(at // SLICE_SECONDS), []).append(lat)
    for index in sorted(buckets):
        values = sorted(buckets[index])
        slices.append(
            {
                "from_s": index * SLICE_SECONDS,
                "beats": len(values),
                "p50_ms": round(1000 * percentile(values, 0.5), 2),
                "p99_ms": round(1000 * percentile(values, 0.99), 2),
                "max_ms": round(1000 * values[-1], 2),
            }
        )
    verified = list(gen.verified.values())
    ok = gen.statuses.get(200, 0)
    return {
        "viewers": viewers,
        "scheduled": total,
        "answered": len(ordered),
        "ok": ok,
        "statuses": {str(k): v for k, v in sorted(gen.statuses.items())},
        "errors": len(ordered) - ok + gen.lost_requests + unanswered,
        "connection_errors": gen.connection_errors,
        "protocol_errors": gen.protocol_errors,
        "lost_requests": gen.lost_requests,
        "unanswered": unanswered,
        "error_samples": gen.error_samples,
        "schedule_seconds": total * interval,
        "scheduler_finished_late_s": round(scheduled_end - (start + total * interval), 3),
        "last_response_s": round(gen.last_response - start, 3),
        "heartbeats_per_second": round(ok / max(gen.last_response - start, total * interval), 1),
        "scheduled_per_second": round(viewers / args.period, 1),
        "p50_ms": round(1000 * percentile(ordered, 0.50), 2),
        "p90_ms": round(1000 * percentile(ordered, 0.90), 2),
        "p99_ms": round(1000 * percentile(ordered, 0.99), 2),
        "max_ms": round(1000 * (ordered[-1] if ordered else math.nan), 2),
        "send_lag_p99_ms": round(1000 * percentile(lags, 0.99), 2),
        "send_lag_max_ms": round(1000 * (lags[-1] if lags else math.nan), 2),
        "server_p99_ms": round(1000 * percentile(servers, 0.99), 2),
        "slices": slices,
        "completed_viewers": len(gen.completed_viewers),
        "viewers_credited": sum(1 for v in verified if v > 0),
        "mean_verified_seconds": round(sum(verified) / len(verified), 1) if verified else 0.0,
        "warm_seconds": round(warm_seconds, 1),
        "warm_statuses": {str(k): v for k, v in sorted(gen.warm_statuses.items())},
    }


def run_load_gen(args: argparse.Namespace) -> None:
    args.token_list = Path(args.tokens).read_text().split()
    summary = asyncio.run(_generate(args))
    print(json.dumps(summary), flush=True)


# ==== driver: database and Redis =====================================================================


def pg_socket_dir() -> str:
    """The embedded PostgreSQL's socket directory, from its postmaster.pid (line 5)."""
    lines = (DATA_DIR / "pg" / "postmaster.pid").read_text().splitlines()
    return lines[4].strip() if len(lines) > 4 and lines[4].strip() else str((DATA_DIR / "pg").resolve())


def database_url() -> str:
    return f"postgresql://postgres:@/postgres?host={pg_socket_dir()}"


def redis_client() -> Any:
    import redis

    return redis.Redis(unix_socket_path=str((DATA_DIR / "redis" / "redis.sock").resolve()))


class TransactionCounter:
    """pg_stat_database of the service's database, read with psql (simple protocol, a fresh backend
    each time: PSQL_TRANSACTIONS per read, reported when psql disconnects), so the benchmark's own
    share is known exactly."""

    def __init__(self) -> None:
        from infra.embedded import pg_bin

        self.psql = pg_bin("psql")
        self.reads = 0

    def read(self) -> dict[str, int]:
        """Transactions, and (to tell where they came from) reads of the tables a heartbeat may touch,
        progress rows written, and autovacuum/autoanalyze runs: one query, one read."""
        out = subprocess.run(
            [
                self.psql,
                "-X",
                "-A",
                "-t",
                "-h",
                pg_socket_dir(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                STATS_QUERY,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        self.reads += 1
        values: dict[str, int] = json.loads(out.stdout)
        return values

    def settled(self, idle_wait: float) -> dict[str, int]:
        """Wait until every backend reported (they do within 10 s of going idle), then read until two
        reads differ by just the earlier read's own transactions."""
        time.sleep(idle_wait)
        previous = self.read()
        for _ in range(SETTLE_TRIES):
            time.sleep(1.2)
            value = self.read()
            if value["transactions"] - previous["transactions"] == PSQL_TRANSACTIONS:
                return value
            previous = value
        log("PostgreSQL transaction count did not settle; using the last reading")
        return previous


@dataclass
class Setup:
    course_id: uuid.UUID
    title: str
    video_seconds: int
    class_hours: str
    user_ids: list[uuid.UUID]
    created: int


async def _prepare_database(viewers: int, policy_version: str) -> Setup:
    from datetime import UTC, datetime

    from sqlalchemy import delete, func, select
    from sqlalchemy.dialects.postgresql import insert

    from infra.db import make_engine
    from models.accounts.tables import Guardianship, Student, User
    from models.catalog.tables import Course
    from models.demo import SCHOOL_A, demo_id
    from models.learning.tables import LessonProgress

    classroom = demo_id(f"a-{CLASSROOM_NAME}")
    user_ids = [uuid.uuid5(BENCH_NS, f"viewer-{i}") for i in range(viewers)]
    engine = make_engine(database_url(), pool_size=1)
    try:
        async with engine.begin() as conn:
            lesson = (
                await conn.execute(
                    select(Course.id, Course.title, Course.video_seconds, Course.class_hours)
                    .where(
                        Course.tier == "online",
                        Course.archived_at.is_(None),
                        Course.district_id.is_(None),
                    )
                    .order_by(Course.video_seconds.desc(), Course.id)
                    .limit(1)
                )
            ).one()
            have = (
                await conn.execute(
                    select(func.count())
                    .select_from(Guardianship)
                    .where(Guardianship.parent_user_id.in_(user_ids))
                )
            ).scalar_one()
            created = 0
            if have < viewers:
                now = datetime.now(UTC)
                for first in range(0, viewers, 2000):
                    chunk = range(first, min(viewers, first + 2000))
                    await conn.execute(
                        insert(User).on_conflict_do_nothing(),
                        [
                            {"id": user_ids[i], "display_name": f"压测家长{i}", "failed_logins": 0}
                            for i in chunk
                        ],
                    )
                    await conn.execute(
                        insert(Student).on_conflict_do_nothing(),
                        [
                            {
                                "id": uuid.uuid5(BENCH_NS, f"student-{i}"),
                                "school_id": SCHOOL_A,
                                "classroom_id": classroom,
                                "student_no": f"HB{i:06d}",
                                "name": "压测学生",
                            }
                            for i in chunk
                        ],
                    )
                    await conn.execute(
                        insert(Guardianship).on_conflict_do_nothing(),
                        [
                            {
                                "id": uuid.uuid5(BENCH_NS, f"guardian-{i}"),
                                "parent_user_id": user_ids[i],
                                "student_id": uuid.uuid5(BENCH_NS, f"student-{i}"),
                                "relation": "mother",
                                "consent_policy_version": policy_version,
                                "consent_at": now,
                            }
                            for i in chunk
                        ],
                    )
                created = viewers - have
        # Earlier runs' progress on this lesson: Redis first (so no flusher writes it back), then rows.
        # A cached principal that would expire during the run goes too: the warm-up caches it afresh.
        client = redis_client()
        try:
            principals = [f"{REDIS_PREFIX}principal:{user_id}" for user_id in user_ids]
            with client.pipeline(transaction=False) as pipe:
                for name in principals:
                    pipe.ttl(name)
                ttls = pipe.execute()
            with client.pipeline(transaction=False) as pipe:
                for user_id, name, ttl in zip(user_ids, principals, ttls, strict=True):
                    pipe.unlink(f"{REDIS_PREFIX}lesson:{user_id}:{lesson.id}")
                    if ttl < PRINCIPAL_TTL_NEEDED:
                        pipe.unlink(name)
                pipe.execute()
        finally:
            client.close()
        async with engine.begin() as conn:
            await conn.execute(
                delete(LessonProgress).where(
                    LessonProgress.course_id == lesson.id, LessonProgress.parent_user_id.in_(user_ids)
                )
            )
    finally:
        await engine.dispose()
    return Setup(lesson.id, lesson.title, lesson.video_seconds, str(lesson.class_hours), user_ids, created)


async def _outcome(setup: Setup) -> dict[str, Any]:
    from sqlalchemy import func, select

    from infra.db import make_engine
    from models.learning.tables import LessonProgress

    engine = make_engine(database_url(), pool_size=1)
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    select(
                        func.count(),
                        func.count(LessonProgress.completed_at),
                        func.coalesce(func.avg(LessonProgress.verified_seconds), 0),
                    ).where(
                        LessonProgress.course_id == setup.course_id,
                        LessonProgress.parent_user_id.in_(setup.user_ids),
                    )
                )
            ).one()
    finally:
        await engine.dispose()
    return {"rows": row[0], "completed_rows": row[1], "mean_verified_seconds": round(float(row[2]), 1)}


def tidy_redis(setup: Setup) -> None:
    """Drop the viewers' lesson states (they are in PostgreSQL now) and compact Redis's append-only file,
    which every run grows by some 50 MB: a large one slows the next start-up."""
    client = redis_client()
    try:
        with client.pipeline(transaction=False) as pipe:
            for user_id in setup.user_ids:
                pipe.unlink(f"{REDIS_PREFIX}lesson:{user_id}:{setup.course_id}")
            pipe.execute()
        with contextlib.suppress(Exception):  # e.g. a rewrite Redis started by itself is under way
            client.bgrewriteaof()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            info = client.info("persistence")
            if not info.get("aof_rewrite_in_progress") and not info.get("aof_rewrite_scheduled"):
                break
            time.sleep(0.2)
    finally:
        client.close()


def mint_tokens(secret: str, user_ids: list[uuid.UUID], path: Path) -> None:
    from infra.security import TokenSigner

    signer = TokenSigner(secret, JWT_ISSUER, TOKEN_TTL)
    path.write_text(
        "\n".join(signer.issue(str(u), session_id=str(uuid.uuid4()), now=time.time()) for u in user_ids)
        + "\n"
    )


# ==== driver =========================================================================================


def _wait_line(proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buf = b""
    while not buf.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or proc.poll() is not None:
            raise RuntimeError(f"load generator: no answer (exit code {proc.poll()})")
        ready, _, _ = select.select([proc.stdout], [], [], min(remaining, 1.0))
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError(f"load generator closed its output (exit code {proc.wait()})")
            buf += chunk
    result: dict[str, Any] = json.loads(buf)
    return result


@dataclass
class MemoryPoint:
    at: float
    rss: dict[str, int]
    redis_used: int


def _memory_point(at: float, snap: Sample, redis: Any) -> MemoryPoint:
    keys = [k for k in snap.rss if k.startswith("tornado worker") or k == "redis-server"]
    used = 0
    with contextlib.suppress(Exception):
        used = int(redis.info("memory")["used_memory"])
    return MemoryPoint(at, {k: snap.rss[k] for k in keys}, used)


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    tokens_file = DATA_DIR / "heartbeat-tokens.txt"
    started: list[tuple[subprocess.Popen[bytes], str]] = []
    loadgen: subprocess.Popen[bytes] | None = None
    try:
        with stopping(started):
            service, port = start_and_wait_service({"JWT_SECRET": secret, "REDIS_PREFIX": REDIS_PREFIX})
            started.append((service, "service"))
            began = time.monotonic()
            from infra.config import Settings

            policy = Settings().privacy_policy_version
            setup = asyncio.run(_prepare_database(args.viewers, policy))
            mint_tokens(secret, setup.user_ids, tokens_file)
            log(
                f"{args.viewers} viewers ready ({setup.created} created) "
                f"in {time.monotonic() - began:.1f} s; "
                f"lesson {setup.title!r}: {setup.video_seconds} s, {setup.class_hours} class hours"
            )
            loadgen = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "scripts.bench_heartbeats",
                    "--load-gen",
                    str(port),
                    "--tokens",
                    str(tokens_file),
                    "--course",
                    str(setup.course_id),
                    "--video-seconds",
                    str(setup.video_seconds),
                    "--seconds",
                    str(args.seconds),
                    "--period",
                    str(args.period),
                    "--connections",
                    str(args.connections),
                    "--seed",
                    str(args.seed),
                    *(["--cold"] if args.cold else []),
                ],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                start_new_session=True,
            )
            log(
                f"load generator: {args.connections} connections"
                + ("" if args.cold else "; warm-up: GET /api/v1/me once per viewer")
            )
            ready = _wait_line(loadgen, 900)
            if not args.cold:
                log(f"warm-up done in {ready['warm_seconds']:.1f} s: {ready['warm_statuses']}")
                if set(ready["warm_statuses"]) != {"200"}:
                    raise RuntimeError(f"warm-up failed: {ready['warm_statuses']}")
            counter = TransactionCounter()
            log(f"waiting {STATS_IDLE_FLUSH:g} s for PostgreSQL statistics to settle")
            before = counter.settled(STATS_IDLE_FLUSH)
            reads_before = counter.reads - 1  # the baseline read's own transactions are counted after it
            groups = label_processes(service.pid, loadgen.pid, with_postgres=True)
            redis = redis_client()
            log(
                f"run: {args.viewers} viewers beating every {args.period:g} s "
                f"({args.viewers / args.period:.0f}/s) for {args.seconds:g} s"
            )
            assert loadgen.stdin is not None
            go = time.monotonic()
            loadgen.stdin.write(b"go\n")
            loadgen.stdin.flush()
            samples: list[Sample] = [sample(groups, port, count_connections=False)]
            memory = [_memory_point(0.0, samples[0], redis)]
            mark = 1
            while mark * MEMORY_INTERVAL <= args.seconds + 1e-6:
                time.sleep(max(0.0, go + mark * MEMORY_INTERVAL - time.monotonic()))
                refresh_postgres(groups)
                samples.append(sample(groups, port, count_connections=False))
                memory.append(_memory_point(mark * MEMORY_INTERVAL, samples[-1], redis))
                mark += 1
            try:
                loadgen.wait(120)
            except subprocess.TimeoutExpired:
                raise RuntimeError("load generator did not finish") from None
            out, _ = loadgen.communicate()
            if loadgen.returncode != 0:
                raise RuntimeError(f"load generator failed with code {loadgen.returncode}")
            summary: dict[str, Any] = json.loads(out)
            # the last flushes: the dirty set drains within a flush interval or two
            drained_at = time.monotonic()
            while redis.scard(f"{REDIS_PREFIX}lesson-dirty") and time.monotonic() < drained_at + 30:
                time.sleep(0.2)
            redis.close()
            log(f"run done; waiting {STATS_IDLE_FLUSH:g} s for PostgreSQL statistics to settle")
            after = counter.settled(STATS_IDLE_FLUSH)
            own = PSQL_TRANSACTIONS * (counter.reads - 1 - reads_before)
            outcome = asyncio.run(_outcome(setup))
            tidy_redis(setup)
    finally:
        if loadgen is not None and loadgen.poll() is None:
            loadgen.kill()
            loadgen.wait()
        tokens_file.unlink(missing_ok=True)
    return results(args, setup, summary, before, after, own, samples, memory, outcome)


def results(
    args: argparse.Namespace,
    setup: Setup,
    summary: dict[str, Any],
    before: dict[str, int],
    after: dict[str, int],
    own: int,
    samples: list[Sample],
    memory: list[MemoryPoint],
    outcome: dict[str, Any],
) -> dict[str, Any]:
    transactions = after["transactions"] - before["transactions"] - own
    deltas = {k: after[k] - before[k] for k in after if k != "transactions"}
    beats_per_tx = summary["ok"] / transactions if transactions > 0 else math.inf
    used, others, steal = cpu_shares(samples[0], samples[-1])
    server_cpu = (
        sum(v for k, v in used.items() if k not in CLIENT_SIDE) / 100.0 * (samples[-1].at - samples[0].at)
    )
    keys = list(memory[0].rss)
    base = next((m for m in memory if m.at >= 15.0), memory[0])
    last = memory[-1]
    growth = {k: last.rss.get(k, 0) - base.rss.get(k, 0) for k in keys}
    growth["redis used_memory"] = last.redis_used - base.redis_used
    limits = {k: max(FLAT_MIB * MIB, FLAT_SHARE * base.rss.get(k, 0)) for k in keys}
    limits["redis used_memory"] = max(FLAT_MIB * MIB, FLAT_SHARE * base.redis_used)
    flat = all(growth[k] <= limits[k] for k in growth)
    p99_ok = summary["p99_ms"] < GOAL_P99_MS
    tx_ok = beats_per_tx >= GOAL_BEATS_PER_TRANSACTION
    errors_ok = summary["errors"] == 0 and summary["connection_errors"] == 0
    return {
        "config": {
            "viewers": args.viewers,
            "period_s": args.period,
            "seconds": args.seconds,
            "connections": args.connections,
            "warm_up": not args.cold,
            "server_processes": PROCESSES,
            "cpu_count": os.cpu_count(),
            "lesson": {
                "course_id": str(setup.course_id),
                "title": setup.title,
                "video_seconds": setup.video_seconds,
                "class_hours": setup.class_hours,
            },
            "load_generator": "one Python process (asyncio protocol, keep-alive HTTP/1.1, open loop)",
        },
        "load": summary,
        "postgres": {
            "transactions_before": before["transactions"],
            "transactions_after": after["transactions"],
            "benchmark_transactions_subtracted": own,
            "transactions": transactions,
            "during_the_run": deltas,
            "heartbeats_per_transaction": round(beats_per_tx, 1),
            **outcome,
        },
        "cpu": {
            "processes": {k: round(v, 1) for k, v in used.items()},
            "other_processes_cpu_percent": round(others, 1),
            "steal_cpu_percent": round(steal, 1),
            "server_cpu_us_per_heartbeat": round(1e6 * server_cpu / max(summary["ok"], 1), 1),
        },
        "memory": {
            "series": [
                {
                    "at_s": m.at,
                    **{k: round(v / MIB, 1) for k, v in m.rss.items()},
                    "redis used_memory": round(m.redis_used / MIB, 1),
                }
                for m in memory
            ],
            "growth_from_s": base.at,
            "growth_mib": {k: round(v / MIB, 2) for k, v in growth.items()},
            "flat_limit_mib": {k: round(v / MIB, 2) for k, v in limits.items()},
        },
        "goal": {
            "p99_max_ms": GOAL_P99_MS,
            "p99_ok": p99_ok,
            "heartbeats_per_transaction_min": GOAL_BEATS_PER_TRANSACTION,
            "transactions_ok": tx_ok,
            "memory_flat": flat,
            "errors_ok": errors_ok,
            "passed": p99_ok and tx_ok and flat and errors_ok,
        },
    }


def report(r: dict[str, Any]) -> None:
    cfg, load, pg, cpu, mem, goal = r["config"], r["load"], r["postgres"], r["cpu"], r["memory"], r["goal"]
    lesson = cfg["lesson"]
    print()
    print(
        f"POST {PROGRESS_PATH.format('{id}')}: {cfg['viewers']} viewers × one beat per {cfg['period_s']:g} s "
        f"({load['scheduled_per_second']:.0f}/s scheduled, open loop) for {cfg['seconds']:g} s, first beats "
        f"ramped over {cfg['period_s']:g} s;\n{cfg['connections']} keep-alive connections; lesson "
        f"“{lesson['title']}” ({lesson['video_seconds']} s); principal caches "
        f"{'warmed by one GET /me per viewer' if cfg['warm_up'] else 'cold'};\n"
        f"{cfg['server_processes']} Tornado processes; {cfg['cpu_count']} CPUs shared by the service, Redis, "
        "PostgreSQL and the load generator"
    )
    print()
    print(
        f"heartbeats: {load['ok']} ok of {load['scheduled']} scheduled, "
        f"{load['heartbeats_per_second']:.0f}/s; "
        f"errors {load['errors']} {load['statuses']}"
        + (f", connection errors {load['connection_errors']}" if load["connection_errors"] else "")
    )
    print(
        f"latency from scheduled send: p50 {load['p50_ms']:.2f} ms, p90 {load['p90_ms']:.2f} ms, "
        f"p99 {load['p99_ms']:.2f} ms, max {load['max_ms']:.2f} ms"
    )
    print(
        "  of which waiting to be sent (client-side queue, scheduler): "
        f"p99 {load['send_lag_p99_ms']:.2f} ms, "
        f"max {load['send_lag_max_ms']:.2f} ms; sent → answered p99 {load['server_p99_ms']:.2f} ms"
    )
    print(f"  {'slice from s':>14}{'beats':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for s in load["slices"]:
        print(f"  {s['from_s']:>14g}{s['beats']:>8}{s['p50_ms']:>9.2f}{s['p99_ms']:>9.2f}{s['max_ms']:>9.2f}")
    print(
        f"viewers credited with watch time: {load['viewers_credited']} "
        f"(mean {load['mean_verified_seconds']:.0f} s verified); completions: {load['completed_viewers']} "
        f"(PostgreSQL rows completed: {pg['completed_rows']})"
    )
    print(
        f"PostgreSQL: {pg['transactions']} transactions during the run ({pg['transactions_after']} − "
        f"{pg['transactions_before']} − {pg['benchmark_transactions_subtracted']} of the benchmark's "
        "reads); "
        f"{pg['heartbeats_per_transaction']:.0f} heartbeats per transaction; progress rows for the viewers "
        f"{pg['rows']} (mean {pg['mean_verified_seconds']:.0f} s verified)"
    )
    d = pg["during_the_run"]
    inserted = d["progress_rows_inserted"]
    print(
        f"  in the run: progress rows inserted {inserted}, updated {d['progress_rows_updated']}; "
        f"reads of course {d['course_reads'] - inserted} and app_user {d['app_user_reads'] - inserted} "
        f"besides the inserts' foreign-key checks (lesson directory, principal loads); "
        f"autovacuum/analyze runs {d['autovacuum_runs']}"
    )
    print()
    print(f"{'process':<34}{'CPU %':>8}")
    for name, value in cpu["processes"].items():
        print(f"{name:<34}{value:>8.1f}")
    print(f"{'other processes on the machine':<34}{cpu['other_processes_cpu_percent']:>8.1f}")
    print(f"{'hypervisor steal':<34}{cpu['steal_cpu_percent']:>8.1f}")
    print(
        f"server CPU per heartbeat (service, Redis, PostgreSQL): {cpu['server_cpu_us_per_heartbeat']:.0f} µs"
    )
    warn_if_busy(
        cpu["other_processes_cpu_percent"] + cpu["steal_cpu_percent"],
        "compare server CPU per heartbeat",
    )
    print()
    columns = [k for k in mem["series"][0] if k != "at_s"]
    names = {k: k.replace("tornado ", "").replace(" (", "\n(").split("\n")[0] for k in columns}
    print("memory, MiB (RSS of each worker and of redis-server; Redis's own used_memory):")
    print(f"{'at s':>6}" + "".join(f"{names[k]:>20}" for k in columns))
    for point in mem["series"]:
        print(f"{point['at_s']:>6g}" + "".join(f"{point[k]:>20.1f}" for k in columns))
    print(
        f"{'growth':>6}"
        + "".join(f"{mem['growth_mib'][k]:>+20.2f}" for k in columns)
        + f"   (from the {mem['growth_from_s']:g} s mark to the end)"
    )
    print()
    print(f"p99: {load['p99_ms']:.2f} ms (goal < {GOAL_P99_MS:g} ms) {'PASS' if goal['p99_ok'] else 'FAIL'}")
    print(
        f"heartbeats per PostgreSQL transaction: {pg['heartbeats_per_transaction']:.0f} "
        f"(goal ≥ {GOAL_BEATS_PER_TRANSACTION:g}) {'PASS' if goal['transactions_ok'] else 'FAIL'}"
    )
    print(
        f"memory flat from the {mem['growth_from_s']:g} s mark "
        f"(each ≤ +{FLAT_MIB:g} MiB or +{FLAT_SHARE:.0%}): "
        f"{'PASS' if goal['memory_flat'] else 'FAIL'}"
    )
    print(f"errors: {load['errors']} (goal 0) {'PASS' if goal['errors_ok'] else 'FAIL'}")
    print(f"overall: {'PASS' if goal['passed'] else 'FAIL'}")
    for line in load["error_samples"]:
        print(f"  e.g. {line}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=75.0, help="measured run, including the first-beat ramp"
    )
    parser.add_argument("--viewers", type=int, default=20_000, help="simulated viewers")
    parser.add_argument("--period", type=float, default=15.0, help="seconds between a viewer's beats")
    parser.add_argument("--connections", type=int, default=256, help="keep-alive connections")
    parser.add_argument(
        "--cold", action="store_true", help="no GET /me warm-up: principal loads fall inside the run"
    )
    parser.add_argument("--seed", type=int, default=20250901, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    # internal mode: the load generator runs as a subprocess of this script
    parser.add_argument("--load-gen", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--tokens", help=argparse.SUPPRESS)
    parser.add_argument("--course", help=argparse.SUPPRESS)
    parser.add_argument("--video-seconds", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.load_gen:
        run_load_gen(args)
        return
    if args.seconds < args.period or args.viewers < 1 or args.connections < 1:
        parser.error("--seconds must cover at least one --period, with at least one viewer and connection")
    install_signal_handlers()
    try:
        result = run_benchmark(args)
    except KeyboardInterrupt:
        log("interrupted; servers stopped")
        sys.exit(130)
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        report(result)


if __name__ == "__main__":
    main()
