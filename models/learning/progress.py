"""Online micro-lessons: heartbeats absorbed in Redis, flushed to PostgreSQL in batches.

Each heartbeat is judged against the previous one (rules.judge_beat) and marks the 5-second buckets of
the video it proves were watched; the state lives in one Redis hash per parent and lesson, updated
optimistically: read it, judge, then write it with a compare-and-set script that refuses if its revision
moved meanwhile (two round trips), so concurrent beats from two devices cannot both take the same time.
A flusher in every process moves dirty states to PostgreSQL every flush interval (a second unless
Settings.progress_flush_seconds says otherwise), many per transaction. A completion is different: it is
written to PostgreSQL, with its hours credit, inside the heartbeat request, so a crash can cost at most
one flush interval of watch time and never a completion.

Redis holds every unfinished state once the `hydrated` marker is set (set after loading PostgreSQL's
unfinished rows into an empty Redis); until then a missing state is looked up in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from redis.asyncio import Redis
from sqlalchemy import Table, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infra.errors import Conflict
from infra.redis import Keys
from models.learning.rules import BUCKET_SECONDS, buckets_needed, judge_beat, school_year_of
from models.learning.service import credit_hours
from models.learning.tables import LessonProgress

log = logging.getLogger(__name__)

FLUSH_BATCH = 2000
FLUSH_READ_CHUNK = 100
State = dict[bytes, bytes]
COMPLETED_STATE_TTL = 30 * 24 * 3600
MAX_WRITE_RETRIES = 8

# Write a lesson state only if its revision is still the one the beat read ('' = none yet: a new state,
# or one hydrated or loaded from PostgreSQL), and mark it dirty for the flusher; 0 when it moved.
# KEYS: state, dirty set. ARGV: revision read, new revision, pos, at, covered, verified, done, member.
_WRITE_STATE = """
if (redis.call('HGET', KEYS[1], 'rev') or '') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'rev', ARGV[2], 'pos', ARGV[3], 'at', ARGV[4], 'covered', ARGV[5],
           'verified', ARGV[6], 'done', ARGV[7])
redis.call('SADD', KEYS[2], ARGV[8])
return 1
"""


@dataclass(frozen=True)
class Lesson:
    course_id: uuid.UUID
    video_seconds: int
    class_hours: Decimal


@dataclass(frozen=True)
class Progress:
    position: float
    verified_seconds: int
    required_seconds: int
    completed: bool


# What a state holds; read with HMGET (a flat reply: about half the parsing of HGETALL's field/value map).
STATE_FIELDS = (b"pos", b"at", b"covered", b"verified", b"done", b"rev")


def _state(values: list[Any]) -> State:
    """HMGET's reply (bytes, or None for a missing field; the client does not decode) as a state."""
    return {field: value for field, value in zip(STATE_FIELDS, values, strict=True) if value is not None}


def _set_buckets(covered: bytearray, first: int, last: int) -> None:
    for bucket in range(first, last + 1):
        covered[bucket // 8] |= 1 << (bucket % 8)


def _count(covered: bytes | bytearray) -> int:
    return sum(bin(byte).count("1") for byte in covered)


class ProgressTracker:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        sessions: async_sessionmaker[AsyncSession],
        clock: Callable[[], float] = time.time,
        *,
        flush_interval: float,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._sessions = sessions
        self._clock = clock
        self._flush_interval = flush_interval
        self._write_state = redis.register_script(_WRITE_STATE)

    # ---- heartbeats -----------------------------------------------------------------------------------
    async def beat(self, parent_id: uuid.UUID, lesson: Lesson, position: float) -> Progress:
        key = self._keys.lesson_state(str(parent_id), str(lesson.course_id))
        needed = buckets_needed(lesson.video_seconds)
        size = (-(-lesson.video_seconds // BUCKET_SECONDS) + 7) // 8
        dirty = f"{parent_id}:{lesson.course_id}"
        for _ in range(MAX_WRITE_RETRIES):
            state = _state(await self._redis.hmget(key, STATE_FIELDS))
            if not state and not await self._redis.exists(self._keys.progress_hydrated()):
                state = await self._state_from_database(parent_id, lesson.course_id)
            now = self._clock()
            covered = bytearray(state.get(b"covered", b"").ljust(size, b"\0")[:size])
            judged = judge_beat(
                previous_position=float(state[b"pos"]) if b"pos" in state else None,
                previous_at=float(state[b"at"]) if b"at" in state else None,
                position=position,
                at=now,
                video_seconds=lesson.video_seconds,
            )
            if not judged.empty:
                _set_buckets(covered, judged.first_bucket, judged.last_bucket)
            buckets = _count(covered)
            was_complete = state.get(b"done") == b"1"
            completes = not was_complete and buckets >= needed
            verified = min(lesson.video_seconds, buckets * BUCKET_SECONDS)
            revision = state.get(b"rev", b"")
            written = await self._write_state(
                keys=[key, self._keys.progress_dirty()],
                args=[
                    revision,
                    int(revision or 0) + 1,
                    f"{min(position, lesson.video_seconds):.1f}",
                    f"{now:.3f}",
                    bytes(covered),
                    verified,
                    b"1" if was_complete or completes else b"0",
                    dirty,
                ],
            )
            if not written:
                continue  # another beat (another device) wrote first: judge again against its state
            if completes:
                try:
                    await self._complete(parent_id, lesson, key)
                except Exception:
                    # Not in PostgreSQL: let the next heartbeat complete it again rather than lose it
                    # (the new revision makes a beat that read `done` meanwhile write again).
                    async with self._redis.pipeline(transaction=True) as pipe:
                        pipe.hset(key, "done", b"0")
                        pipe.hincrby(key, "rev", 1)
                        await pipe.execute()
                    raise
            return Progress(
                position=min(position, lesson.video_seconds),
                verified_seconds=verified,
                required_seconds=min(lesson.video_seconds, needed * BUCKET_SECONDS),
                completed=was_complete or completes,
            )
        raise Conflict("同一课程的进度正在被频繁更新，请稍后重试", code="progress_busy")

    async def _state_from_database(self, parent_id: uuid.UUID, course_id: uuid.UUID) -> State:
        async with self._sessions() as session:
            row = await session.get(LessonProgress, (parent_id, course_id))
        if row is None:
            return {}
        return _row_state(row)

    async def _complete(self, parent_id: uuid.UUID, lesson: Lesson, key: str) -> None:
        """Write the completion and its credit now, in PostgreSQL; the state may follow later."""
        state = cast(State, await self._redis.hgetall(key))
        async with self._sessions() as session, session.begin():
            await _upsert(session, [(parent_id, lesson.course_id, state)], completed=True)
            await credit_hours(
                session,
                parent_id=parent_id,
                school_year=school_year_of(datetime.fromtimestamp(self._clock()).astimezone()),
                tier="online",
                class_hours=lesson.class_hours,
                source="online_lesson",
                source_key=f"online:{parent_id}:{lesson.course_id}",
                course_id=lesson.course_id,
            )
        await self._redis.expire(key, COMPLETED_STATE_TTL)

    # ---- flushing ---------------------------------------------------------------------------------
    async def flush(self) -> int:
        """Move dirty states to PostgreSQL in one transaction. Returns how many were written."""
        members = await self._redis.spop(self._keys.progress_dirty(), FLUSH_BATCH)
        if not members:
            return 0
        pairs: list[tuple[uuid.UUID, uuid.UUID]] = []
        for member in members:
            parent, course = (member.decode() if isinstance(member, bytes) else str(member)).split(":")
            pairs.append((uuid.UUID(parent), uuid.UUID(course)))
        # In chunks: parsing the replies is CPU-bound, and one pipeline of thousands of states would hold
        # the event loop (and every heartbeat waiting on it) for tens of milliseconds.
        states: list[State] = []
        for first in range(0, len(pairs), FLUSH_READ_CHUNK):
            async with self._redis.pipeline(transaction=False) as pipe:
                for parent_id, course_id in pairs[first : first + FLUSH_READ_CHUNK]:
                    pipe.hmget(self._keys.lesson_state(str(parent_id), str(course_id)), STATE_FIELDS)
                states += [_state(values) for values in await pipe.execute()]
        rows: list[tuple[uuid.UUID, uuid.UUID, State]] = [
            (p, c, s) for (p, c), s in zip(pairs, states, strict=True) if s
        ]
        if rows:
            async with self._sessions() as session, session.begin():
                await _upsert(session, rows, completed=False)
        return len(rows)

    async def hydrate(self) -> None:
        """After Redis lost its data (or on first start), load unfinished progress back from PostgreSQL."""
        marker = self._keys.progress_hydrated()
        if await self._redis.exists(marker):
            return
        async with self._redis.lock(self._keys.progress_hydrate_lock(), timeout=300, blocking_timeout=300):
            if await self._redis.exists(marker):
                return
            async with self._sessions() as session:
                result = await session.stream(
                    select(LessonProgress)
                    .where(LessonProgress.completed_at.is_(None))
                    .execution_options(yield_per=1000)
                )
                async for partition in result.scalars().partitions():
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for row in partition:
                            key = self._keys.lesson_state(str(row.parent_user_id), str(row.course_id))
                            for field, value in _row_state(row).items():
                                pipe.hsetnx(key, field.decode(), value)
                        await pipe.execute()
            await self._redis.set(marker, b"1")
            log.info("lesson progress hydrated from PostgreSQL")

    async def run(self, stop: asyncio.Event) -> None:
        """The per-process flusher: hydrate once, then flush every `flush_interval` seconds until stopped."""
        await self.hydrate()
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self._flush_interval)
            except TimeoutError:
                pass
            try:
                while await self.flush() >= FLUSH_BATCH:
                    pass
            except Exception:
                log.exception("lesson progress flush failed; will retry")


def _row_state(row: LessonProgress) -> State:
    return {
        b"pos": f"{float(row.position):.1f}".encode(),
        b"at": f"{float(row.last_beat_at):.3f}".encode(),
        b"covered": bytes(row.covered),
        b"verified": str(row.verified_seconds).encode(),
        b"done": b"1" if row.completed_at else b"0",
    }


def _upsert_statement() -> Any:
    table = cast(Table, LessonProgress.__table__)
    stmt = insert(table)
    return stmt.on_conflict_do_update(
        index_elements=["parent_user_id", "course_id"],
        set_={
            "position": stmt.excluded.position,
            "last_beat_at": stmt.excluded.last_beat_at,
            "covered": stmt.excluded.covered,
            "verified_seconds": stmt.excluded.verified_seconds,
            "completed_at": func.coalesce(table.c.completed_at, stmt.excluded.completed_at),
            "updated_at": func.now(),
        },
    )


# Built once: executed with many parameter sets, it is compiled once per process, not once per flush.
_UPSERT = _upsert_statement()


async def _upsert(
    session: AsyncSession, rows: list[tuple[uuid.UUID, uuid.UUID, State]], *, completed: bool
) -> None:
    values: list[dict[str, Any]] = []
    for parent, course, state in rows:
        covered = state.get(b"covered", b"")
        # The last bucket of a lesson may be shorter than BUCKET_SECONDS: prefer the tracker's figure.
        verified = int(state[b"verified"]) if b"verified" in state else _count(covered) * BUCKET_SECONDS
        values.append(
            {
                "parent_user_id": parent,
                "course_id": course,
                "position": Decimal(state.get(b"pos", b"0").decode()),
                "last_beat_at": Decimal(state.get(b"at", b"0").decode()),
                "covered": covered,
                "verified_seconds": verified,
                "completed_at": None,
            }
        )
    if completed:
        for value in values:
            value["completed_at"] = func.now()
        await session.execute(_UPSERT.values(values))
    else:
        await session.execute(_UPSERT, values)
