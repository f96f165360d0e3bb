"""Benchmark the evening-class registration rush, and PostgreSQL's own ceiling for the same SQL.

    .venv/bin/python -m scripts.bench_signups [--parents 5000] [--classes 100] [--seats 60]
                                              [--retry-share 0.2] [--hot-classes 30] [--hot-share 0.5]
                                              [--clients 256] [--cold] [--max-queued-transactions N]
                                              [--pgbench-clients 16] [--pgbench-seconds 10] [--keep]
                                              [--json]

What it does, in one run (the service machinery is bench_platform's, in scripts/benchlib.py):
1. Starts the service (`python -m server`) with PROCESSES=2, its own embedded PostgreSQL and Redis
   under var/bench, and a JWT_SECRET chosen for this run. Refuses to start while another benchmark's
   PostgreSQL is running there.
2. Creates with bulk SQL (once; ids are stable, later runs reuse them) --parents parent accounts, each
   the guardian of a student of the demo school A, and mints their access tokens with the service's
   TokenSigner. Creates afresh --classes evening classes of --seats seats at school A (audience: the
   whole school, sign-up window open since a moment ago, starting in 3 days at 19:00, a catalogue
   foundation course), plus a warm-up class and the pgbench set (below); the previous run's are deleted.
3. Each parent picks one class: --hot-share of them one of the --hot-classes "popular" classes, the rest
   one of the others (uniformly within each group, seeded), so that the popular classes overflow into
   waitlists while the others keep free seats; the report shows the demand per class. Each parent sends
   one POST /api/v1/evening-classes/{id}/signups {} with its own Idempotency-Key; --retry-share of them
   send the same request again (same key) once the first answer came back, at a random later point of
   the queue: it must be replayed (Idempotent-Replayed: true, the same status and body).
4. A load-generator process opens --clients keep-alive connections. Unless --cold, it first warms the
   service the way the mini-program would before a rush (one GET /api/v1/me per parent, which caches
   the principals) and sends a few hundred sign-ups to the warm-up class (so that both workers have
   compiled the sign-up SQL and filled their connection pools), outside the measurement. Then all
   connections send their first sign-up at the same instant; each takes the next request from one
   shared queue when its answer arrives (closed loop, one request in flight per connection). A 429
   goes back to the front of the queue after its Retry-After; shed load is counted, not an error.
5. After the rush, the invariants are read from the database: oversold seats (confirmed sign-ups above
   capacity), double sign-ups (two live sign-ups of one parent in one class), the seat and waitlist
   counters against the rows, waitlisted parents in classes with free seats, parents without a sign-up,
   reminder jobs.
6. The PostgreSQL ceiling: pgbench (shipped with the embedded server) runs the service's sign-up SQL,
   statement for statement, as a custom script (-M prepared, --pgbench-clients clients,
   --pgbench-seconds) on a separate set of 100 classes and 20,000 parents created for it. The service
   writes sign-ups in batches (models/evening_classes/signups.py, sign_up_batch); each pgbench
   transaction is a batch of one sign-up, the two statements the service sends per batch: read the
   class (the service checks the audience and the window in Python), then TAKE_PLACES in autocommit,
   one statement that locks the class, skips a parent who already holds a place, INSERTs the sign-up,
   confirmed or waitlisted by the seats left, moves the class's counters and INSERTs the reminder of a
   confirmed seat into notification_job (ON CONFLICT DO UPDATE ... WHERE cancelled). So pgbench
   measures what PostgreSQL does with one transaction per sign-up, the way a service without group
   commit would have to write them; the service can go past it. Its classes have seats enough never to
   fill during the run, so every pgbench transaction takes the confirmed path.
7. Prints requests/s, sign-ups/s, p50/p99 latency, the time until the seats of every class that filled
   were taken, the invariants, errors, timeouts and 429s, CPU per process, pgbench's TPS and the
   ratios, and the verdicts: p99 < 300 ms, seats of the full classes taken within 3 s, the service at
   >= 60 % of pgbench's TPS (sign-up transactions per second ÷ pgbench TPS; the ratio with every
   answered request, replays included, is printed too), zero oversold, double sign-ups, errors and
   timeouts. Everything the benchmark created in the database (classes, sign-ups, reminder jobs; the
   parent accounts stay for the next run) and its Idempotency-Key records in Redis are removed.

Latency runs from the moment a request is written to the moment its answer is complete; p50/p99 are of
all answered requests except the 429s (which are answered at once); the latency of a whole sign-up,
from its first attempt to its final answer (429 waits included), is shown separately. A request
answered after --timeout seconds, or never, is a timeout.

Caveats: the service's workers, Redis, PostgreSQL, pgbench and the load generator share the machine's
cores; the CPU table shows who used them, and a warning says when other processes took a noticeable
share. pgbench runs while the service is idle, so it has the cores the service's workers had.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import functools
import hashlib
import json
import math
import os
import random
import re
import secrets
import select
import subprocess
import sys
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any

import psutil

from scripts.benchlib import (
    CLIENT_SIDE,
    DATA_DIR,
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
CLASSROOM_NAME = "三年级2班"  # the bench parents' children's classroom at demo school A
PLACE = "压测报告厅（bench_signups）"  # marks the benchmark's classes, so a later run can find them
SIGNUP_PATH = "/api/v1/evening-classes/{}/signups"
STARTS_IN_DAYS = 3
WARM_CONCURRENCY = 32
WARM_SIGNUPS = 200  # sign-ups to the warm-up class (half of them confirmed, half waitlisted)
PGBENCH_CLASSES = 100
PGBENCH_PARENTS = 20_000
PGBENCH_SEATS = 1_000_000  # never fills during the run: every transaction takes the confirmed path
SLICE_SECONDS = 1.0
SAMPLE_INTERVAL = 0.5
GOAL_P99_MS = 300.0
GOAL_FILL_SECONDS = 3.0
GOAL_RATIO = 0.60


def bench_uuid(kind: str, index: int | None = None) -> uuid.UUID:
    """Ids the benchmark's rows get: md5 of a name, so SQL (md5(...)::uuid) derives the same ones."""
    name = f"bench-signups:{kind}" + ("" if index is None else f":{index}")
    return uuid.UUID(hashlib.md5(name.encode()).hexdigest())  # noqa: S324 - an id, not a secret


# ==== load generator (`--load-gen PORT --plan FILE`) ================================================


@dataclass
class _Job:
    parent: int  # index into the plan's parents; -1 for warm-up requests
    kind: str  # "first", "retry", "warm-me", "warm-signup"
    request: bytes
    attempts: int = 0
    first_sent: float = 0.0
    sent: float = 0.0


class _Conn(asyncio.Protocol):
    """One keep-alive connection; one request in flight; the next one comes from the shared queue."""

    def __init__(self, rush: _Rush, index: int) -> None:
        self.rush = rush
        self.index = index
        self.inflight: _Job | None = None
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.need = -1
        self.head_end = 0
        self.head = b""
        self.status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def pump(self) -> bool:
        """Send the next queued request if idle; False when there is nothing to send."""
        if self.inflight is not None or self.transport is None or self.transport.is_closing():
            return True
        job = self.rush.take(self)
        if job is None:
            return False
        job.sent = time.perf_counter()
        if job.attempts == 0:
            job.first_sent = job.sent
        job.attempts += 1
        self.inflight = job
        self.transport.write(job.request)
        return True

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
                    self.rush.protocol_errors += 1
                    assert self.transport is not None
                    self.transport.close()
                    return
                stop = head.find(b"\r\n", start + 2)
                self.status = int(head[9:12])
                self.head = head
                self.head_end = end + 4
                self.need = self.head_end + int(head[start + 17 : stop if stop >= 0 else None])
            if len(buf) < self.need:
                return
            now = time.perf_counter()
            body = bytes(buf[self.head_end : self.need])
            del buf[: self.need]
            self.need = -1
            job, self.inflight = self.inflight, None
            if job is not None:
                self.rush.completed(job, self.status, self.head, body, now)
            self.pump()

    def connection_lost(self, exc: Exception | None) -> None:
        self.rush.lost(self)


def _header(head: bytes, name: bytes) -> bytes | None:
    at = head.find(b"\r\n" + name + b":")
    if at < 0:
        return None
    start = at + len(name) + 3
    stop = head.find(b"\r\n", start)
    return head[start : stop if stop >= 0 else None].strip()


@dataclass
class _Rush:
    port: int
    clients: int
    timeout: float
    rng: random.Random
    conns: list[_Conn] = field(default_factory=list)
    queue: deque[_Job] = field(default_factory=deque)
    active: int = 0  # connections allowed to take requests (fewer during the warm-up)
    outstanding: int = 0  # requests queued, in flight or waiting out a Retry-After
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    closing: bool = False
    measuring: bool = False
    t0: float = 0.0
    # measured requests
    latencies: array.array[float] = field(default_factory=lambda: array.array("d"))
    answered_at: array.array[float] = field(default_factory=lambda: array.array("d"))
    shed_latencies: array.array[float] = field(default_factory=lambda: array.array("d"))
    signup_latencies: array.array[float] = field(default_factory=lambda: array.array("d"))
    statuses: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    first: dict[int, tuple[int, bytes]] = field(default_factory=dict)
    confirmed_at: dict[int, list[float]] = field(default_factory=dict)  # class index → answer times
    timeouts: int = 0
    replays_ok: int = 0
    replay_mismatches: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    protocol_errors: int = 0
    connection_errors: int = 0
    last_answer: float = 0.0
    warm_statuses: Counter[str] = field(default_factory=Counter)
    retries: dict[int, bytes] = field(default_factory=dict)  # parent → its retry request
    choice: list[int] = field(default_factory=list)  # parent → class index
    reconnects: set[asyncio.Task[None]] = field(default_factory=set)

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        for index in range(self.clients):
            _, conn = await loop.create_connection(
                functools.partial(_Conn, self, index), "127.0.0.1", self.port
            )
            self.conns.append(conn)

    def take(self, conn: _Conn) -> _Job | None:
        if conn.index >= self.active or not self.queue:
            return None
        return self.queue.popleft()

    def submit(self, job: _Job, *, front: bool = False) -> None:
        """Queue a request that is already counted as outstanding, and wake an idle connection."""
        if front:
            self.queue.appendleft(job)
        else:
            self.queue.append(job)
        for conn in self.conns[: self.active]:
            if conn.inflight is None and conn.transport is not None and not conn.transport.is_closing():
                conn.pump()
                break

    def add(self, jobs: list[_Job]) -> None:
        self.outstanding += len(jobs)
        self.idle.clear()
        self.queue.extend(jobs)

    def start(self, active: int) -> None:
        self.active = active
        if self.outstanding == 0:
            self.idle.set()
        for conn in self.conns[:active]:
            if not conn.pump():
                break

    def _done(self) -> None:
        self.outstanding -= 1
        if self.outstanding == 0:
            self.idle.set()

    def _error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 8:
            self.error_samples.append(what)

    def completed(self, job: _Job, status: int, head: bytes, body: bytes, now: float) -> None:
        if job.kind.startswith("warm"):
            self.warm_statuses[f"{job.kind} {status}"] += 1
            if status == 429:
                self._later(job, head)
                return
            self._done()
            return
        latency = now - job.sent
        self.statuses[str(status)] += 1
        self.last_answer = now
        if latency > self.timeout:
            self.timeouts += 1
        if status == 429:
            self.shed_latencies.append(latency)
            self._later(job, head)
            return
        self.latencies.append(latency)
        self.answered_at.append(now - self.t0)
        self.signup_latencies.append(now - job.first_sent)
        self._done()
        if job.kind == "first":
            self.first[job.parent] = (status, body)
            if status == 201:
                answer = json.loads(body)
                self.outcomes[answer["status"]] += 1
                if answer["status"] == "confirmed":
                    self.confirmed_at.setdefault(self.choice[job.parent], []).append(now - self.t0)
            else:
                self._error(f"first attempt {status}: {body[:200]!r}")
            retry = self.retries.get(job.parent)
            if retry is not None:
                # the same request again, some time later: a random place in what is still queued
                self.outstanding += 1
                self.queue.insert(self.rng.randint(0, len(self.queue)), _Job(job.parent, "retry", retry))
        else:
            replayed = _header(head, b"idempotent-replayed") == b"true"
            if replayed and self.first.get(job.parent) == (status, body):
                self.replays_ok += 1
            else:
                self.replay_mismatches += 1
                self._error(f"retry {status} (replayed: {replayed}): {body[:200]!r}")

    def _later(self, job: _Job, head: bytes) -> None:
        """A 429: the same request again after Retry-After, ahead of the requests not sent yet."""
        value = _header(head, b"retry-after")
        delay = float(value) if value and value.isdigit() else 1.0
        asyncio.get_running_loop().call_later(delay, lambda: self.submit(job, front=True))

    def lost(self, conn: _Conn) -> None:
        if self.closing:
            return
        self.connection_errors += 1
        job, conn.inflight = conn.inflight, None
        if job is not None:  # never answered: an error; sent again (same key) on a new connection
            if not job.kind.startswith("warm"):
                self._error(f"connection lost during a {job.kind} request")
            self.queue.appendleft(job)
        task = asyncio.get_running_loop().create_task(self._reconnect(conn))
        self.reconnects.add(task)
        task.add_done_callback(self.reconnects.discard)

    async def _reconnect(self, old: _Conn) -> None:
        loop = asyncio.get_running_loop()
        while not self.closing:
            try:
                _, conn = await loop.create_connection(lambda: _Conn(self, old.index), "127.0.0.1", self.port)
                self.conns[old.index] = conn
                conn.pump()
                return
            except OSError:
                await asyncio.sleep(0.05)

    def close(self) -> None:
        self.closing = True
        for conn in self.conns:
            if conn.transport is not None:
                conn.transport.close()


def _post(path: str, host: str, token: str, key: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\n{host}Authorization: Bearer {token}\r\nUser-Agent: bench-signups\r\n"
        f"Content-Type: application/json\r\nIdempotency-Key: {key}\r\nContent-Length: 2\r\n\r\n{{}}"
    ).encode()


async def _generate(args: argparse.Namespace, plan: dict[str, Any]) -> dict[str, Any]:
    tokens: list[str] = plan["tokens"]
    classes: list[str] = plan["classes"]
    capacity: int = plan["seats"]
    host = f"Host: 127.0.0.1:{args.load_gen}\r\n"
    rng = random.Random(plan["seed"])
    rush = _Rush(args.load_gen, plan["clients"], plan["timeout"], rng)
    rush.choice = plan["choice"]
    await rush.open()

    warm_seconds = 0.0
    if not plan["cold"]:
        began = time.perf_counter()
        rush.add(
            [
                _Job(
                    -1,
                    "warm-me",
                    (
                        f"GET /api/v1/me HTTP/1.1\r\n{host}Authorization: Bearer {token}\r\n"
                        "User-Agent: bench-signups\r\n\r\n"
                    ).encode(),
                )
                for token in tokens
            ]
        )
        warm_path = SIGNUP_PATH.format(plan["warm_class"])
        rush.add(
            [
                _Job(-1, "warm-signup", _post(warm_path, host, token, key))
                for token, key in zip(tokens, plan["warm_keys"], strict=False)
            ]
        )
        # a few at a time: the warm-up prepares, it does not measure
        rush.start(min(WARM_CONCURRENCY, rush.clients))
        await asyncio.wait_for(rush.idle.wait(), 600)
        warm_seconds = time.perf_counter() - began
    rush.active = 0
    print(
        json.dumps(
            {"ready": True, "warm_seconds": round(warm_seconds, 2), "warm_statuses": rush.warm_statuses}
        ),
        flush=True,
    )
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if line.strip() != "go":
        rush.close()
        return {"aborted": True}

    order = list(range(len(tokens)))
    rng.shuffle(order)
    paths = [SIGNUP_PATH.format(c) for c in classes]
    requests = {}
    for parent in order:
        requests[parent] = _post(paths[rush.choice[parent]], host, tokens[parent], plan["keys"][parent])
    rush.retries = {p: requests[p] for p in plan["retry"]}
    rush.add([_Job(p, "first", requests[p]) for p in order])
    rush.t0 = time.perf_counter()
    rush.start(rush.clients)  # every connection writes its first sign-up now
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(rush.idle.wait(), plan["deadline"])
    unanswered = rush.outstanding
    rush.timeouts += unanswered
    rush.close()
    await asyncio.sleep(0.1)
    return _summary(rush, len(tokens), classes, capacity, unanswered)


def _summary(rush: _Rush, parents: int, classes: list[str], capacity: int, unanswered: int) -> dict[str, Any]:
    ordered = sorted(rush.latencies)
    shed = sorted(rush.shed_latencies)
    everything = sorted([*rush.latencies, *rush.shed_latencies])
    signups = sorted(rush.signup_latencies)
    duration = max(rush.last_answer - rush.t0, 1e-9)
    # A class is full (as the clients saw it) when it confirmed as many sign-ups as it has seats; its
    # seats were all taken at the answer that confirmed the last one.
    full = {c: max(times) for c, times in rush.confirmed_at.items() if len(times) >= capacity}
    slices = []
    seats = 0
    for index in range(math.ceil(duration / SLICE_SECONDS)):
        lo, hi = index * SLICE_SECONDS, (index + 1) * SLICE_SECONDS
        values = sorted(
            lat for at, lat in zip(rush.answered_at, rush.latencies, strict=True) if lo <= at < hi
        )
        seats += sum(1 for times in rush.confirmed_at.values() for t in times if lo <= t < hi)
        slices.append(
            {
                "from_s": lo,
                "answers": len(values),
                "seats_taken": seats,
                "p50_ms": round(1000 * percentile(values, 0.5), 1) if values else None,
                "p99_ms": round(1000 * percentile(values, 0.99), 1) if values else None,
            }
        )
    answered = len(ordered)
    return {
        "parents": parents,
        "answered": answered,
        "shed_429": len(shed),
        "statuses": dict(sorted(rush.statuses.items())),
        "outcomes": dict(rush.outcomes),
        "replays_ok": rush.replays_ok,
        "replay_mismatches": rush.replay_mismatches,
        "errors": rush.errors,
        "error_samples": rush.error_samples,
        "timeouts": rush.timeouts,
        "unanswered": unanswered,
        "connection_errors": rush.connection_errors,
        "protocol_errors": rush.protocol_errors,
        "duration_s": round(duration, 3),
        "requests_per_second": round(answered / duration, 1),
        "signups_per_second": round(len(rush.first) / duration, 1),
        "p50_ms": round(1000 * percentile(ordered, 0.50), 1),
        "p90_ms": round(1000 * percentile(ordered, 0.90), 1),
        "p99_ms": round(1000 * percentile(ordered, 0.99), 1),
        "max_ms": round(1000 * (ordered[-1] if ordered else math.nan), 1),
        "p99_with_429_ms": round(1000 * percentile(everything, 0.99), 1),
        "shed_p99_ms": round(1000 * percentile(shed, 0.99), 1) if shed else None,
        "signup_p50_ms": round(1000 * percentile(signups, 0.50), 1),
        "signup_p99_ms": round(1000 * percentile(signups, 0.99), 1),
        "full_classes_seen": len(full),
        "seats_taken_s": round(max(full.values()), 3) if full else None,
        "confirmed_answers": sum(len(t) for t in rush.confirmed_at.values()),
        "slices": slices,
        "warm_statuses": dict(rush.warm_statuses),
    }


def run_load_gen(args: argparse.Namespace) -> None:
    summary = asyncio.run(_generate(args, json.loads(Path(args.plan).read_text())))
    print(json.dumps(summary), flush=True)


# ==== driver: database ===============================================================================


def pg_socket_dir() -> str:
    """The embedded PostgreSQL's socket directory, from its postmaster.pid (line 5)."""
    lines = (DATA_DIR / "pg" / "postmaster.pid").read_text().splitlines()
    return lines[4].strip() if len(lines) > 4 and lines[4].strip() else str((DATA_DIR / "pg").resolve())


def postgres_running() -> int | None:
    """The pid of a PostgreSQL already serving var/bench (another benchmark's), if any."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int((DATA_DIR / "pg" / "postmaster.pid").read_text().split()[0])
        if psutil.pid_exists(pid) and "postgres" in psutil.Process(pid).name():
            return pid
    return None


async def _connect() -> Any:
    import asyncpg

    return await asyncpg.connect(host=pg_socket_dir(), user="postgres", database="postgres")


@dataclass
class Setup:
    parent_ids: list[uuid.UUID]
    class_ids: list[uuid.UUID]
    warm_class: uuid.UUID
    pgbench_class_ids: list[uuid.UUID]
    course_id: uuid.UUID
    course_title: str
    starts_at: datetime
    created_parents: int


def _classes_sql(kind: str) -> str:
    """Insert evening classes $1.. at school A; ids md5('bench-signups:<kind>:<i>') for i < $2."""
    return f"""
        INSERT INTO evening_class (id, school_id, course_id, title, term, starts_at, ends_at, place,
                                   capacity, confirmed_count, audience, signup_opens_at, signup_closes_at,
                                   cancel_deadline)
        SELECT md5('bench-signups:{kind}:' || i)::uuid, $1::uuid, $3::uuid, $4::text || ' #' || (i + 1),
               $5::text, $6::timestamptz, $6::timestamptz + interval '90 minutes', '{PLACE}', $7::int, 0,
               'school', now() - interval '1 minute', $6::timestamptz, $6::timestamptz - interval '24 hours'
        FROM generate_series(0, $2::int - 1) AS i
    """  # noqa: S608 - fixed names, the values are parameters


async def _clear_classes(conn: Any, school: uuid.UUID) -> int:
    ids = [r[0] for r in await conn.fetch("SELECT id FROM evening_class WHERE place = $1", PLACE)]
    if not ids:
        return 0
    await conn.execute("DELETE FROM notification_job WHERE subject_id = ANY($1::uuid[])", ids)
    await conn.execute(
        "DELETE FROM notification_job WHERE subject_id IN (SELECT id FROM signup WHERE class_id = ANY($1))",
        ids,
    )
    await conn.execute("DELETE FROM attendance WHERE class_id = ANY($1::uuid[])", ids)
    await conn.execute("DELETE FROM signup WHERE class_id = ANY($1::uuid[])", ids)
    await conn.execute("DELETE FROM evening_class WHERE id = ANY($1::uuid[]) AND school_id = $2", ids, school)
    return len(ids)


async def _prepare_database(args: argparse.Namespace, policy_version: str) -> Setup:
    from infra.clock import SHANGHAI
    from models.demo import SCHOOL_A, demo_id
    from models.evening_classes.rules import term_of

    classroom = demo_id(f"a-{CLASSROOM_NAME}")
    parent_ids = [bench_uuid("parent", i) for i in range(args.parents)]
    conn = await _connect()
    try:
        course = await conn.fetchrow(
            """SELECT id, title FROM course WHERE tier = 'foundation' AND archived_at IS NULL
               AND district_id IS NULL AND school_id IS NULL ORDER BY key LIMIT 1"""
        )
        if course is None:
            raise RuntimeError("no foundation course in the catalogue")
        async with conn.transaction():
            have = await conn.fetchval(
                "SELECT count(*) FROM guardianship WHERE parent_user_id = ANY($1::uuid[])", parent_ids
            )
            await conn.execute(
                """INSERT INTO app_user (id, display_name, failed_logins)
                   SELECT md5('bench-signups:parent:' || i)::uuid, '夜校压测家长' || i, 0
                   FROM generate_series(0, $1 - 1) AS i ON CONFLICT DO NOTHING""",
                args.parents,
            )
            await conn.execute(
                """INSERT INTO student (id, school_id, classroom_id, student_no, name)
                   SELECT md5('bench-signups:student:' || i)::uuid, $2, $3, 'ES' || lpad(i::text, 6, '0'),
                          '压测学生'
                   FROM generate_series(0, $1 - 1) AS i ON CONFLICT DO NOTHING""",
                args.parents,
                SCHOOL_A,
                classroom,
            )
            await conn.execute(
                """INSERT INTO guardianship (id, parent_user_id, student_id, relation,
                                             consent_policy_version, consent_at)
                   SELECT md5('bench-signups:guardian:' || i)::uuid, md5('bench-signups:parent:' || i)::uuid,
                          md5('bench-signups:student:' || i)::uuid, 'mother', $2, now()
                   FROM generate_series(0, $1 - 1) AS i ON CONFLICT DO NOTHING""",
                args.parents,
                policy_version,
            )
            await conn.execute(
                """INSERT INTO app_user (id, display_name, failed_logins)
                   SELECT md5('bench-signups:pgb-parent:' || i)::uuid, '夜校压测家长P' || i, 0
                   FROM generate_series(0, $1 - 1) AS i ON CONFLICT DO NOTHING""",
                PGBENCH_PARENTS,
            )
            removed = await _clear_classes(conn, SCHOOL_A)
            if removed:
                log(f"removed {removed} classes (and their sign-ups) left by an earlier run")
            today = datetime.now(SHANGHAI).date()
            starts_at = datetime.combine(today + timedelta(days=STARTS_IN_DAYS), clock_time(19, 0), SHANGHAI)
            common = (course["id"], course["title"][:60], term_of(starts_at), starts_at)
            await conn.execute(_classes_sql("class"), SCHOOL_A, args.classes, *common, args.seats)
            await conn.execute(_classes_sql("warm-class"), SCHOOL_A, 1, *common, WARM_SIGNUPS // 2)
            await conn.execute(_classes_sql("pgb-class"), SCHOOL_A, PGBENCH_CLASSES, *common, PGBENCH_SEATS)
        # Earlier runs' rows are deleted, but the same ids come back: without a vacuum their dead
        # tuples (and index entries) would slow each run a little more than the one before.
        await conn.execute("VACUUM (ANALYZE) evening_class, signup, notification_job, app_user")
    finally:
        await conn.close()
    return Setup(
        parent_ids=parent_ids,
        class_ids=[bench_uuid("class", i) for i in range(args.classes)],
        warm_class=bench_uuid("warm-class", 0),
        pgbench_class_ids=[bench_uuid("pgb-class", i) for i in range(PGBENCH_CLASSES)],
        course_id=course["id"],
        course_title=course["title"],
        starts_at=starts_at,
        created_parents=args.parents - have,
    )


async def _invariants(class_ids: list[uuid.UUID], parent_ids: list[uuid.UUID] | None) -> dict[str, Any]:
    conn = await _connect()
    try:
        rows = await conn.fetch(
            """SELECT c.id, c.capacity, c.confirmed_count, c.waitlisted_count,
                      count(s.id) FILTER (WHERE s.status = 'confirmed') AS confirmed,
                      count(s.id) FILTER (WHERE s.status = 'waitlisted') AS waitlisted
               FROM evening_class c LEFT JOIN signup s ON s.class_id = c.id
               WHERE c.id = ANY($1::uuid[]) GROUP BY c.id""",
            class_ids,
        )
        doubles = await conn.fetchval(
            """SELECT count(*) FROM (SELECT 1 FROM signup WHERE class_id = ANY($1::uuid[])
               AND status <> 'cancelled' GROUP BY class_id, parent_user_id HAVING count(*) > 1) AS d""",
            class_ids,
        )
        reminders = await conn.fetchval(
            """SELECT count(*) FROM notification_job
               WHERE kind = 'class_reminder' AND subject_id = ANY($1::uuid[])""",
            class_ids,
        )
        out: dict[str, Any] = {}
        if parent_ids is not None:
            per_parent = await conn.fetch(
                """SELECT n, count(*) AS parents FROM (
                       SELECT p, (SELECT count(*) FROM signup s WHERE s.parent_user_id = p
                                  AND s.class_id = ANY($1::uuid[]) AND s.status <> 'cancelled') AS n
                       FROM unnest($2::uuid[]) AS p) AS x GROUP BY n""",
                class_ids,
                parent_ids,
            )
            counts = {r["n"]: r["parents"] for r in per_parent}
            out["parents_without_signup"] = counts.get(0, 0)
            out["parents_with_several_signups"] = sum(v for k, v in counts.items() if k > 1)
    finally:
        await conn.close()
    confirmed = sum(r["confirmed"] for r in rows)
    return {
        "classes": len(rows),
        "seats": sum(r["capacity"] for r in rows),
        "confirmed": confirmed,
        "waitlisted": sum(r["waitlisted"] for r in rows),
        "full_classes": sum(1 for r in rows if r["confirmed"] >= r["capacity"]),
        "oversold_classes": sum(1 for r in rows if r["confirmed"] > r["capacity"]),
        "oversold_seats": sum(max(0, r["confirmed"] - r["capacity"]) for r in rows),
        "double_signups": doubles,
        "seat_counter_mismatches": sum(
            1
            for r in rows
            if (r["confirmed_count"], r["waitlisted_count"]) != (r["confirmed"], r["waitlisted"])
        ),
        "waitlisted_with_free_seats": sum(
            1 for r in rows if r["waitlisted"] and r["confirmed"] < r["capacity"]
        ),
        "reminder_jobs": reminders,
        "reminders_match_confirmed": reminders == confirmed,
        **out,
    }


async def _cleanup_database() -> None:
    from models.demo import SCHOOL_A

    conn = await _connect()
    try:
        async with conn.transaction():
            await _clear_classes(conn, SCHOOL_A)
    finally:
        await conn.close()


def tidy_redis(parent_ids: list[uuid.UUID], keys: list[str], paths: list[str]) -> None:
    """Drop the run's Idempotency-Key records (24 h otherwise), keeping Redis's append-only file small."""
    import redis

    client = redis.Redis(unix_socket_path=str((DATA_DIR / "redis" / "redis.sock").resolve()))
    try:
        with client.pipeline(transaction=False) as pipe:
            for user_id, key, path in zip(parent_ids, keys, paths, strict=True):
                pipe.unlink(f"{REDIS_PREFIX}idem:{user_id}:POST:{path}:{key}")
            pipe.execute()
        with contextlib.suppress(Exception):  # e.g. a rewrite Redis started by itself is under way
            client.bgrewriteaof()
    finally:
        client.close()


def mint_tokens(secret: str, user_ids: list[uuid.UUID]) -> list[str]:
    from infra.security import TokenSigner

    signer = TokenSigner(secret, JWT_ISSUER, TOKEN_TTL)
    return [signer.issue(str(u), session_id=str(uuid.uuid4()), now=time.time()) for u in user_ids]


# ==== driver: the plan ===============================================================================


@dataclass
class Plan:
    choice: list[int]  # parent → class index
    retry: list[int]  # parents who send their request twice
    keys: list[str]  # parent → Idempotency-Key
    demand: list[int]  # class index → parents choosing it
    warm_keys: list[str]  # Idempotency-Keys of the warm-up sign-ups (parents 0, 1, ...)


def make_plan(args: argparse.Namespace) -> Plan:
    rng = random.Random(args.seed)
    hot = min(args.hot_classes, args.classes)
    choice = []
    for _ in range(args.parents):
        if hot and (hot == args.classes or rng.random() < args.hot_share):
            choice.append(rng.randrange(hot))
        else:
            choice.append(rng.randrange(hot, args.classes))
    retry = sorted(rng.sample(range(args.parents), round(args.retry_share * args.parents)))
    demand = [0] * args.classes
    for c in choice:
        demand[c] += 1
    keys = [uuid.uuid4().hex for _ in range(args.parents)]
    warm_keys = [uuid.uuid4().hex for _ in range(0 if args.cold else min(WARM_SIGNUPS, args.parents))]
    return Plan(choice, retry, keys, demand, warm_keys)


def describe_demand(plan: Plan, args: argparse.Namespace) -> dict[str, Any]:
    hot = min(args.hot_classes, args.classes)
    groups = {"popular": plan.demand[:hot], "others": plan.demand[hot:]}
    out: dict[str, Any] = {
        "rule": (
            f"{args.hot_share:.0%} of the parents pick one of {hot} popular classes, the rest one of "
            f"the other {args.classes - hot}, uniformly within each group (seed {args.seed})"
        ),
        "oversubscribed_classes": sum(1 for d in plan.demand if d > args.seats),
        "expected_confirmed": sum(min(d, args.seats) for d in plan.demand),
        "expected_waitlisted": sum(max(0, d - args.seats) for d in plan.demand),
    }
    for name, values in groups.items():
        if values:
            ordered = sorted(values)
            out[name] = {
                "classes": len(values),
                "parents": sum(values),
                "min": ordered[0],
                "median": ordered[len(ordered) // 2],
                "max": ordered[-1],
            }
    return out


# ==== driver: pgbench ================================================================================


def pgbench_script(setup: Setup, clients: int) -> str:
    """The service's sign-up SQL (models/evening_classes/signups.py: CLASSES and TAKE_PLACES, the
    reminders' INSERT included) for pgbench, each transaction a batch of one sign-up: the statements
    themselves, their $n parameters replaced by pgbench expressions. -M prepared, so the :variables
    become parameters, as asyncpg sends them. This is PostgreSQL's ceiling for sign-ups made one
    transaction each; the service, which writes them in batches, may go past it.

    Each client draws its parents from a range of its own: two clients signing up one parent for one
    class at the same instant would make one of them fail on the unique index (the service then writes
    its batch again, which pgbench cannot do). A parent drawn twice by one client is told it is already
    signed up, as in the service.

    No colon may appear but in casts and variables (pgbench reads `:name` as a variable even inside a
    string), hence chr(58)."""
    from infra.clock import SHANGHAI
    from models.evening_classes.signups import CLASSES, TAKE_PLACES

    local = setup.starts_at.astimezone(SHANGHAI)
    title = setup.course_title[:20].replace("'", "''")
    # bench_uuid() in SQL: md5 of 'bench-signups:<kind>:<i>', its colons spelled chr(58)
    cls = "md5(concat_ws(chr(58), 'bench-signups', 'pgb-class', :c::text))::uuid"
    parent = "md5(concat_ws(chr(58), 'bench-signups', 'pgb-parent', :p::text))::uuid"
    due = f"greatest(now(), to_timestamp({int(setup.starts_at.timestamp())}) - interval '1 day')"
    reminder = (
        f"jsonb_build_object('thing1', '{title}', 'time2', '{local:%m月%d日 %H}' || chr(58) || '{local:%M}', "
        "'thing3', '压测报告厅')::text"
    )
    read = _bind(CLASSES, {1: f"ARRAY[{cls}]"})
    take = _bind(
        TAKE_PLACES,
        {
            1: f"ARRAY[{cls}]",
            2: f"ARRAY[{parent}]",
            # the reminder of the seat, in notifications.job_arrays()'s order (written if it is a seat)
            3: "ARRAY['class_reminder']",
            4: f"ARRAY[{parent}]",
            5: f"ARRAY[{cls}]",
            6: "ARRAY['class-reminder']",
            7: f"ARRAY['pages/evening-class/detail?id=' || {cls}]",
            8: f"ARRAY[{reminder}]",
            9: f"ARRAY[{due}]",
            10: f"ARRAY[to_timestamp({int(setup.starts_at.timestamp())})]",
        },
    )
    own = PGBENCH_PARENTS // clients
    return f"""\\set p :client_id * {own} + random(0, {own - 1})
\\set c random(0, {PGBENCH_CLASSES - 1})
{read.strip()};
{take.strip()};
"""


def _bind(statement: str, values: dict[int, str]) -> str:
    """`statement` with each $n replaced by values[n] (every parameter must have one)."""
    return re.sub(r"\$(\d+)", lambda m: values[int(m.group(1))], statement)


@dataclass
class PgbenchRun:
    tps: float
    transactions: int
    failed: int
    latency_ms: float
    window: list[Sample]
    output: str


def run_pgbench(setup: Setup, service_pid: int, clients: int, seconds: float) -> PgbenchRun:
    from infra.embedded import pg_bin

    script = DATA_DIR / "signups-pgbench.sql"
    script.write_text(pgbench_script(setup, clients))
    threads = max(1, min(clients, os.cpu_count() or 1))
    command = [
        pg_bin("pgbench"),
        "-n",
        "-r",  # per-statement latencies, in var/bench/signups-pgbench.out
        "-M",
        "prepared",
        "-c",
        str(clients),
        "-j",
        str(threads),
        "-T",
        str(int(seconds)),
        "-f",
        str(script),
        "-h",
        pg_socket_dir(),
        "-U",
        "postgres",
        "postgres",
    ]
    log(f"pgbench: {clients} clients, {threads} threads, {int(seconds)} s, -M prepared, {script.name}")
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    samples: list[Sample] = []
    try:
        groups = label_processes(service_pid, proc.pid, with_postgres=True)
        groups["pgbench"] = groups.pop(CLIENT_SIDE[0])
        deadline = time.monotonic() + seconds + 60
        while proc.poll() is None:
            if time.monotonic() > deadline:
                raise RuntimeError("pgbench did not finish")
            refresh_postgres(groups)
            with contextlib.suppress(psutil.Error):
                samples.append(sample(groups, 0, count_connections=False, private_memory=False))
            time.sleep(SAMPLE_INTERVAL)
        out, _ = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = out.decode(errors="replace")
    (DATA_DIR / "signups-pgbench.out").write_text(text)
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench failed with code {proc.returncode}:\n{text[-3000:]}")

    def number(pattern: str, missing: float = math.nan) -> float:
        found = re.search(pattern, text)
        return float(found.group(1)) if found else missing

    # the window: from the second sample (connections made) to the last one before pgbench printed
    window = samples[1:] if len(samples) > 2 else samples
    return PgbenchRun(
        tps=number(r"tps = ([\d.]+) \(without initial connection time\)"),
        transactions=int(number(r"number of transactions actually processed: (\d+)", 0)),
        failed=int(number(r"number of failed transactions: (\d+)", 0)),
        latency_ms=number(r"latency average = ([\d.]+) ms"),
        window=window,
        output=text,
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
            chunk = os.read(proc.stdout.fileno(), 1 << 20)
            if not chunk:
                raise RuntimeError(f"load generator closed its output (exit code {proc.wait()})")
            buf += chunk
    result: dict[str, Any] = json.loads(buf)
    return result


def _cpu(samples: list[Sample], work: int) -> dict[str, Any]:
    """CPU % of one core per process group over the samples, and server CPU per unit of work."""
    used, others, steal = cpu_shares(samples[0], samples[-1])
    span = samples[-1].at - samples[0].at
    server = sum(v for k, v in used.items() if k not in (*CLIENT_SIDE, "pgbench")) / 100.0 * span
    return {
        "processes": {k: round(v, 1) for k, v in used.items()},
        "other_processes_cpu_percent": round(others, 1),
        "steal_cpu_percent": round(steal, 1),
        "window_s": round(span, 2),
        "server_cpu_us_per_unit": round(1e6 * server / max(work, 1), 1),
    }


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    other = postgres_running()
    if other is not None:
        raise SystemExit(
            f"a PostgreSQL (pid {other}) is already running in {DATA_DIR}: another benchmark is using it; "
            "run this one when it is done"
        )
    secret = secrets.token_urlsafe(32)
    plan_file = DATA_DIR / "signups-plan.json"
    plan = make_plan(args)
    started: list[tuple[subprocess.Popen[bytes], str]] = []
    loadgen: subprocess.Popen[bytes] | None = None
    setup: Setup | None = None
    try:
        with stopping(started):
            env = {"JWT_SECRET": secret, "REDIS_PREFIX": REDIS_PREFIX}
            if args.max_queued_transactions is not None:
                env["MAX_QUEUED_TRANSACTIONS"] = str(args.max_queued_transactions)
            service, port = start_and_wait_service(env)
            started.append((service, "service"))
            try:
                began = time.monotonic()
                from infra.config import Settings

                setup = asyncio.run(_prepare_database(args, Settings().privacy_policy_version))
                tokens = mint_tokens(secret, setup.parent_ids)
                plan_file.write_text(
                    json.dumps(
                        {
                            "tokens": tokens,
                            "classes": [str(c) for c in setup.class_ids],
                            "warm_class": str(setup.warm_class),
                            "seats": args.seats,
                            "choice": plan.choice,
                            "retry": plan.retry,
                            "keys": plan.keys,
                            "warm_keys": plan.warm_keys,
                            "clients": args.clients,
                            "cold": args.cold,
                            "timeout": args.timeout,
                            "deadline": args.deadline,
                            "seed": args.seed,
                        }
                    )
                )
                log(
                    f"{args.parents} parents ready ({setup.created_parents} created), {args.classes} classes "
                    f"× {args.seats} seats created, in {time.monotonic() - began:.1f} s"
                )
                loadgen = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "scripts.bench_signups",
                        "--load-gen",
                        str(port),
                        "--plan",
                        str(plan_file),
                    ],
                    cwd=ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    start_new_session=True,
                )
                log(
                    f"load generator: {args.clients} connections"
                    + (
                        ""
                        if args.cold
                        else f"; warm-up: GET /api/v1/me per parent, {WARM_SIGNUPS} sign-ups to a warm-up "
                        "class"
                    )
                )
                ready = _wait_line(loadgen, 900)
                if not args.cold:
                    log(f"warm-up done in {ready['warm_seconds']:.1f} s: {ready['warm_statuses']}")
                    bad = {
                        k: v for k, v in ready["warm_statuses"].items() if not k.endswith((" 200", " 201"))
                    }
                    if set(bad) - {"warm-me 429", "warm-signup 429"}:
                        raise RuntimeError(f"warm-up failed: {ready['warm_statuses']}")
                time.sleep(1.0)  # let the warm-up's last commits and flushes settle
                groups = label_processes(service.pid, loadgen.pid, with_postgres=True)
                samples: list[Sample] = [sample(groups, port, count_connections=False, private_memory=False)]
                log(
                    f"rush: {args.parents} sign-ups (+{len(plan.retry)} retries) from {args.clients} "
                    "connections at once"
                )
                assert loadgen.stdin is not None
                loadgen.stdin.write(b"go\n")
                loadgen.stdin.flush()
                deadline = time.monotonic() + args.deadline + 60
                while loadgen.poll() is None:
                    if time.monotonic() > deadline:
                        raise RuntimeError("load generator did not finish")
                    time.sleep(SAMPLE_INTERVAL)
                    refresh_postgres(groups)
                    with contextlib.suppress(psutil.Error):
                        samples.append(sample(groups, port, count_connections=False, private_memory=False))
                out, _ = loadgen.communicate()
                if loadgen.returncode != 0:
                    raise RuntimeError(f"load generator failed with code {loadgen.returncode}")
                summary: dict[str, Any] = json.loads(out)
                log(
                    f"rush done in {summary['duration_s']:.2f} s; reading the invariants, then pgbench "
                    f"({args.pgbench_seconds:g} s)"
                )
                invariants = asyncio.run(_invariants(setup.class_ids, setup.parent_ids))
                pgb = run_pgbench(setup, service.pid, args.pgbench_clients, args.pgbench_seconds)
                pgb_invariants = asyncio.run(_invariants(setup.pgbench_class_ids, None))
            finally:
                if setup is not None and not args.keep:
                    with contextlib.suppress(Exception):
                        warm = SIGNUP_PATH.format(setup.warm_class)
                        tidy_redis(
                            setup.parent_ids + setup.parent_ids[: len(plan.warm_keys)],
                            plan.keys + plan.warm_keys,
                            [SIGNUP_PATH.format(setup.class_ids[c]) for c in plan.choice]
                            + [warm] * len(plan.warm_keys),
                        )
                    asyncio.run(_cleanup_database())
    finally:
        if loadgen is not None and loadgen.poll() is None:
            loadgen.kill()
            loadgen.wait()
        plan_file.unlink(missing_ok=True)
    rush_cpu = _cpu(samples, summary["answered"] - summary["replays_ok"])
    pgb_cpu = _cpu(pgb.window, pgb.transactions) if len(pgb.window) >= 2 else None
    return results(args, plan, setup, summary, invariants, rush_cpu, pgb, pgb_invariants, pgb_cpu)


def results(
    args: argparse.Namespace,
    plan: Plan,
    setup: Setup,
    load: dict[str, Any],
    invariants: dict[str, Any],
    rush_cpu: dict[str, Any],
    pgb: PgbenchRun,
    pgb_invariants: dict[str, Any],
    pgb_cpu: dict[str, Any] | None,
) -> dict[str, Any]:
    if load["seats_taken_s"] is not None:
        fill_s, fill_what = load["seats_taken_s"], "seats of the full classes taken"
    else:
        fill_s, fill_what = load["duration_s"], "no class filled: all requests answered"
    ratio = load["signups_per_second"] / pgb.tps if pgb.tps > 0 else 0.0
    ratio_requests = load["requests_per_second"] / pgb.tps if pgb.tps > 0 else 0.0
    errors = load["errors"] + load["protocol_errors"]
    goal = {
        "p99_max_ms": GOAL_P99_MS,
        "p99_ok": load["p99_ms"] < GOAL_P99_MS,
        "fill_max_s": GOAL_FILL_SECONDS,
        "fill_ok": fill_s <= GOAL_FILL_SECONDS,
        "ratio_min": GOAL_RATIO,
        "ratio_ok": ratio >= GOAL_RATIO,
        "oversold_ok": invariants["oversold_seats"] == 0 and pgb_invariants["oversold_seats"] == 0,
        "double_ok": invariants["double_signups"] == 0 and pgb_invariants["double_signups"] == 0,
        "errors_ok": errors == 0 and load["timeouts"] == 0 and load["connection_errors"] == 0,
        "consistent_ok": invariants["seat_counter_mismatches"] == 0
        and invariants["waitlisted_with_free_seats"] == 0
        and invariants["parents_without_signup"] == 0
        and invariants["reminders_match_confirmed"]
        and invariants["confirmed"] == load["confirmed_answers"],
    }
    goal["passed"] = all(v for k, v in goal.items() if k.endswith("_ok"))
    return {
        "config": {
            "parents": args.parents,
            "classes": args.classes,
            "seats": args.seats,
            "retrying_parents": len(plan.retry),
            "clients": args.clients,
            "warm_up": not args.cold,
            "timeout_s": args.timeout,
            "max_queued_transactions": args.max_queued_transactions,
            "server_processes": PROCESSES,
            "cpu_count": os.cpu_count(),
            "course": setup.course_title,
            "starts_at": setup.starts_at.isoformat(),
            "demand": describe_demand(plan, args),
            "load_generator": "one Python process (asyncio protocol, keep-alive HTTP/1.1, closed loop)",
        },
        "load": load,
        "fill": {"seconds": fill_s, "what": fill_what},
        "database": invariants,
        "cpu": rush_cpu,
        "pgbench": {
            "clients": args.pgbench_clients,
            "seconds": args.pgbench_seconds,
            "tps": pgb.tps,
            "transactions": pgb.transactions,
            "failed": pgb.failed,
            "latency_avg_ms": pgb.latency_ms,
            "database": pgb_invariants,
            "cpu": pgb_cpu,
            "script": pgbench_script(setup, args.pgbench_clients),
        },
        "ratio": {
            "signups_per_second_over_pgbench_tps": round(ratio, 3),
            "requests_per_second_over_pgbench_tps": round(ratio_requests, 3),
        },
        "goal": goal,
    }


def _pass(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(r: dict[str, Any]) -> None:
    cfg, load, db, cpu, pgb, goal = r["config"], r["load"], r["database"], r["cpu"], r["pgbench"], r["goal"]
    demand = cfg["demand"]
    print()
    print(
        f"Registration rush: {cfg['parents']} parents → {cfg['classes']} classes × {cfg['seats']} seats "
        f"(course “{cfg['course']}”), {cfg['retrying_parents']} of them sending their sign-up twice with the "
        f"same Idempotency-Key;\n{cfg['clients']} keep-alive connections all sending at once; principal "
        "caches "
        f"{'warmed (GET /me per parent) and sign-up path warmed' if cfg['warm_up'] else 'cold'}; "
        f"{cfg['server_processes']} Tornado processes; {cfg['cpu_count']} CPUs shared by the service, Redis, "
        "PostgreSQL and the load generator"
        + (
            ""
            if cfg["max_queued_transactions"] is None
            else f"; MAX_QUEUED_TRANSACTIONS={cfg['max_queued_transactions']}"
        )
    )
    print(f"demand: {demand['rule']}")
    for name in ("popular", "others"):
        if name in demand:
            d = demand[name]
            print(
                f"  {name}: {d['classes']} classes, {d['parents']} parents, per class min {d['min']} / "
                f"median {d['median']} / max {d['max']}"
            )
    print(
        f"  oversubscribed classes: {demand['oversubscribed_classes']}; expected confirmed "
        f"{demand['expected_confirmed']}, waitlisted {demand['expected_waitlisted']}"
    )
    print()
    print(
        f"answered {load['answered']} requests (+{load['shed_429']} × 429) in {load['duration_s']:.2f} s: "
        f"{load['requests_per_second']:.0f} requests/s, {load['signups_per_second']:.0f} sign-ups/s; "
        f"statuses {load['statuses']}"
    )
    print(
        f"latency (written → answered, 429s excluded): p50 {load['p50_ms']:.1f} ms, "
        f"p90 {load['p90_ms']:.1f} ms, "
        f"p99 {load['p99_ms']:.1f} ms, max {load['max_ms']:.1f} ms (p99 with the 429s: "
        f"{load['p99_with_429_ms']:.1f} ms)"
    )
    print(
        f"a whole sign-up (first attempt → final answer, Retry-After waits included): "
        f"p50 {load['signup_p50_ms']:.1f} ms, p99 {load['signup_p99_ms']:.1f} ms"
    )
    print(
        f"answers: {load['outcomes']}; retries replayed correctly {load['replays_ok']}, mismatched "
        f"{load['replay_mismatches']}; 429 (shed, retried after Retry-After) {load['shed_429']}"
    )
    print(
        f"errors {load['errors']}, timeouts (> {cfg['timeout_s']:g} s or never) {load['timeouts']}, "
        f"connection errors {load['connection_errors']}, protocol errors {load['protocol_errors']}"
    )
    print(
        f"{r['fill']['what']}: {r['fill']['seconds']:.2f} s after the rush began "
        f"({load['full_classes_seen']} classes full)"
    )
    print(f"  {'from s':>7}{'answers':>9}{'seats taken':>13}{'p50 ms':>9}{'p99 ms':>9}")
    for s in load["slices"]:
        p50 = "" if s["p50_ms"] is None else f"{s['p50_ms']:.1f}"
        p99 = "" if s["p99_ms"] is None else f"{s['p99_ms']:.1f}"
        print(f"  {s['from_s']:>7g}{s['answers']:>9}{s['seats_taken']:>13}{p50:>9}{p99:>9}")
    print()
    print(
        f"database after the rush: {db['confirmed']} confirmed of {db['seats']} seats, {db['waitlisted']} "
        f"waitlisted, {db['full_classes']} classes full; oversold seats {db['oversold_seats']} "
        f"(in {db['oversold_classes']} classes), double sign-ups {db['double_signups']}, "
        f"seat or waitlist counters off {db['seat_counter_mismatches']}, "
        f"waitlists beside free seats {db['waitlisted_with_free_seats']}, "
        f"parents without a sign-up {db['parents_without_signup']}, with several "
        f"{db['parents_with_several_signups']}, reminder jobs {db['reminder_jobs']} "
        f"({'= confirmed' if db['reminders_match_confirmed'] else '≠ confirmed'}); confirmed answers seen by "
        f"the clients {load['confirmed_answers']}"
    )
    print()
    print(f"{'process (rush)':<34}{'CPU %':>8}")
    for name, value in cpu["processes"].items():
        print(f"{name:<34}{value:>8.1f}")
    print(f"{'other processes on the machine':<34}{cpu['other_processes_cpu_percent']:>8.1f}")
    print(f"{'hypervisor steal':<34}{cpu['steal_cpu_percent']:>8.1f}")
    print(
        "server CPU per request (service, Redis, PostgreSQL; replays excluded): "
        f"{cpu['server_cpu_us_per_unit']:.0f} µs"
    )
    warn_if_busy(
        cpu["other_processes_cpu_percent"] + cpu["steal_cpu_percent"], "compare server CPU per request"
    )
    print()
    pdb = pgb["database"]
    print(
        f"pgbench, the same sign-up SQL, one sign-up per transaction (-M prepared, {pgb['clients']} clients, "
        f"{pgb['seconds']:g} s, "
        f"{PGBENCH_CLASSES} classes × {PGBENCH_PARENTS} parents): {pgb['tps']:.0f} TPS, "
        f"{pgb['transactions']} transactions ({pgb['failed']} failed), "
        f"latency avg {pgb['latency_avg_ms']:.2f} ms; oversold {pdb['oversold_seats']}, "
        f"double sign-ups {pdb['double_signups']}, confirmed {pdb['confirmed']}"
    )
    if pgb["cpu"] is not None:
        pc = pgb["cpu"]
        shares = ", ".join(f"{k} {v:.0f} %" for k, v in pc["processes"].items() if v >= 1.0)
        print(
            f"  CPU: {shares}; other processes {pc['other_processes_cpu_percent']:.0f} %; "
            "PostgreSQL + service "
            f"CPU per transaction {pc['server_cpu_us_per_unit']:.0f} µs"
        )
        warn_if_busy(
            pc["other_processes_cpu_percent"] + pc["steal_cpu_percent"], "pgbench's TPS is disturbed"
        )
    ratio = r["ratio"]
    print()
    print(f"p99: {load['p99_ms']:.1f} ms (goal < {GOAL_P99_MS:g} ms) {_pass(goal['p99_ok'])}")
    print(
        f"{r['fill']['what']}: {r['fill']['seconds']:.2f} s (goal ≤ {GOAL_FILL_SECONDS:g} s) "
        f"{_pass(goal['fill_ok'])}"
    )
    print(
        f"service ÷ pgbench: {ratio['signups_per_second_over_pgbench_tps']:.1%} (sign-ups/s ÷ TPS) "
        f"(goal ≥ {GOAL_RATIO:.0%}) {_pass(goal['ratio_ok'])}; with every answered request (replays "
        f"included): {ratio['requests_per_second_over_pgbench_tps']:.1%}"
    )
    print(
        f"oversold seats: {db['oversold_seats']} + pgbench {pdb['oversold_seats']} (goal 0) "
        f"{_pass(goal['oversold_ok'])}"
    )
    print(
        f"double sign-ups: {db['double_signups']} + pgbench {pdb['double_signups']} (goal 0) "
        f"{_pass(goal['double_ok'])}"
    )
    print(
        f"errors, timeouts, lost connections: {load['errors'] + load['protocol_errors']}, "
        f"{load['timeouts']}, "
        f"{load['connection_errors']} (goal 0) {_pass(goal['errors_ok'])}"
    )
    print(f"seat counters, waitlists, reminders consistent with the rows: {_pass(goal['consistent_ok'])}")
    print(f"overall: {_pass(goal['passed'])}")
    for line in load["error_samples"]:
        print(f"  e.g. {line}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parents", type=int, default=5000, help="parents, each signing up to one class")
    parser.add_argument("--classes", type=int, default=100, help="evening classes opened at once")
    parser.add_argument("--seats", type=int, default=60, help="seats per class")
    parser.add_argument(
        "--retry-share", type=float, default=0.2, help="share of parents sending their sign-up twice"
    )
    parser.add_argument("--hot-classes", type=int, default=30, help="popular classes (0: uniform demand)")
    parser.add_argument(
        "--hot-share", type=float, default=0.5, help="share of parents choosing a popular one"
    )
    parser.add_argument("--clients", type=int, default=256, help="keep-alive connections")
    parser.add_argument("--cold", action="store_true", help="no warm-up: caches and pools fill in the rush")
    parser.add_argument("--timeout", type=float, default=10.0, help="an answer later than this is a timeout")
    parser.add_argument("--deadline", type=float, default=180.0, help="give up on the rush after this many s")
    parser.add_argument(
        "--max-queued-transactions",
        type=int,
        help="the service's MAX_QUEUED_TRANSACTIONS (default: its own setting); lower sheds load sooner",
    )
    parser.add_argument("--pgbench-clients", type=int, default=16)
    parser.add_argument("--pgbench-seconds", type=float, default=10.0)
    parser.add_argument("--keep", action="store_true", help="leave the classes and sign-ups in the database")
    parser.add_argument("--seed", type=int, default=20250901, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    # internal mode: the load generator runs as a subprocess of this script
    parser.add_argument("--load-gen", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--plan", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.load_gen:
        run_load_gen(args)
        return
    if args.parents < 1 or args.classes < 1 or args.seats < 1 or args.clients < 1:
        parser.error("--parents, --classes, --seats and --clients must be positive")
    if not 0 <= args.retry_share <= 1 or not 0 <= args.hot_share <= 1:
        parser.error("--retry-share and --hot-share are shares between 0 and 1")
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
