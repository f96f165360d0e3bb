"""Online micro-lessons over HTTP: heartbeats credit only verifiable watch time, a completion credits the
lesson's hours once and is in PostgreSQL at once, and progress survives Redis losing its data.

Time is driven by a settable deps.clock, which the progress tracker reads on every heartbeat."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import event, select, text

from handlers.deps import Deps
from infra.clock import SHANGHAI
from models.catalog.tables import Course
from models.learning.tables import HourCredit, LessonProgress
from tests.builders import FakeClock, World, make_course, make_parents, make_world
from tests.client import Api

API = "/api/v1"
START = datetime(2025, 10, 14, 19, 0, tzinfo=SHANGHAI)


async def setup(
    deps: Deps, video_seconds: int = 600, class_hours: str = "1"
) -> tuple[World, Course, FakeClock]:
    world = await make_world(deps)
    async with deps.sessions() as s, s.begin():
        lesson = await make_course(
            s,
            tier="online",
            title="青春期沟通微课",
            video_seconds=video_seconds,
            class_hours=class_hours,
        )
    clock = FakeClock(START)
    deps.clock = clock
    return world, lesson, clock


async def beat(api: Api, token: str, lesson: Course | uuid.UUID, position: float) -> dict[str, Any]:
    lesson_id = lesson if isinstance(lesson, uuid.UUID) else lesson.id
    response = await api.post(f"{API}/lessons/{lesson_id}/progress", {"position": position}, token=token)
    assert response.status == 200, response.body
    return dict(response.json())


async def play(
    api: Api, token: str, lesson: Course, clock: FakeClock, start: float, end: float, step: float = 15
) -> dict[str, Any]:
    """Play from `start` to `end` at normal speed with a heartbeat every `step` seconds; the first beat is
    sent at the current time, each later one `step` seconds after the previous."""
    progress = await beat(api, token, lesson, start)
    position = start
    while position < end:
        clock.tick(step)
        position = min(end, position + step)
        progress = await beat(api, token, lesson, position)
    return progress


async def progress_row(deps: Deps, parent: uuid.UUID, lesson: Course) -> LessonProgress | None:
    async with deps.sessions() as s:
        return await s.get(LessonProgress, (parent, lesson.id))


async def credits_of(deps: Deps, parent: uuid.UUID) -> list[HourCredit]:
    async with deps.sessions() as s:
        rows = await s.execute(select(HourCredit).where(HourCredit.parent_user_id == parent))
        return list(rows.scalars())


async def lose_redis(deps: Deps) -> None:
    """Redis restarted empty: every key of this deployment is gone, the `hydrated` marker too."""
    async for key in deps.redis.scan_iter(match=f"{deps.keys.prefix}*", count=500):
        await deps.redis.delete(key)


# ---- what a heartbeat credits ----------------------------------------------------------------------------
async def test_normal_playback_credits_each_interval(api: Api, deps: Deps) -> None:
    world, lesson, clock = await setup(deps)
    token = world.token("parent_a")

    first = await beat(api, token, lesson, 0)
    assert first == {
        "course_id": str(lesson.id),
        "position": 0,
        "verified_seconds": 0,
        "required_seconds": 540,  # 90% of 600 s
        "video_seconds": 600,
        "completed": False,
    }
    verified = []
    for position in (15, 30, 45, 60):
        clock.tick(15)
        progress = await beat(api, token, lesson, position)
        verified.append(progress["verified_seconds"])
        assert progress["position"] == position and not progress["completed"]
    assert verified == [15, 30, 45, 60]


async def test_seeking_ahead_credits_nothing(api: Api, deps: Deps) -> None:
    world, lesson, clock = await setup(deps)
    token = world.token("parent_a")
    assert (await play(api, token, lesson, clock, 0, 30))["verified_seconds"] == 30

    clock.tick(15)
    jumped = await beat(api, token, lesson, 400)  # dragged the slider 370 s ahead
    assert jumped["verified_seconds"] == 30 and jumped["position"] == 400

    # Playing on from there counts again, but never the part skipped.
    clock.tick(15)
    assert (await beat(api, token, lesson, 415))["verified_seconds"] == 45

    # Fast-forwarding at 4x: 60 s of video every 15 s earns nothing at all.
    for position in (475, 535, 595):
        clock.tick(15)
        progress = await beat(api, token, lesson, position)
    assert progress["verified_seconds"] == 45 and not progress["completed"]


async def test_replaying_a_heartbeat_credits_nothing(api: Api, deps: Deps) -> None:
    world, lesson, clock = await setup(deps)
    token = world.token("parent_a")
    await beat(api, token, lesson, 0)
    clock.tick(15)
    assert (await beat(api, token, lesson, 15))["verified_seconds"] == 15

    for _ in range(5):  # the same beat sent again at the same instant
        assert (await beat(api, token, lesson, 15))["verified_seconds"] == 15
    clock.tick(15)
    assert (await beat(api, token, lesson, 15))["verified_seconds"] == 15  # replayed later: paused
    clock.tick(15)
    assert (await beat(api, token, lesson, 30))["verified_seconds"] == 30


async def test_rewatching_a_part_never_counts_it_twice(api: Api, deps: Deps) -> None:
    world, lesson, clock = await setup(deps)
    token = world.token("parent_a")
    assert (await play(api, token, lesson, clock, 0, 90))["verified_seconds"] == 90

    clock.tick(15)
    assert (await beat(api, token, lesson, 30))["verified_seconds"] == 90  # rewound
    again = await play(api, token, lesson, clock, 30, 90)  # the part already seen
    assert again["verified_seconds"] == 90
    clock.tick(15)
    assert (await beat(api, token, lesson, 105))["verified_seconds"] == 105  # new ground counts


async def test_a_gap_between_heartbeats_is_not_watch_time(api: Api, deps: Deps) -> None:
    world, lesson, clock = await setup(deps)
    token = world.token("parent_a")
    assert (await play(api, token, lesson, clock, 0, 15))["verified_seconds"] == 15

    clock.tick(120)  # the phone was locked; the player claims it kept playing
    assert (await beat(api, token, lesson, 135))["verified_seconds"] == 15
    clock.tick(31)  # just over the longest allowed gap
    assert (await beat(api, token, lesson, 166))["verified_seconds"] == 15
    clock.tick(15)  # beating again: credited from here on
    assert (await beat(api, token, lesson, 181))["verified_seconds"] == 30


async def test_two_devices_never_earn_more_than_wall_clock_time(api: Api, deps: Deps) -> None:
    world, lesson, clock = await setup(deps)

    # A phone from the start and a tablet from 300 s, both playing, their beats interleaved.
    token = world.token("parent_a")
    await beat(api, token, lesson, 0)
    elapsed = 0.0
    for n in range(1, 21):
        clock.tick(7.5)
        elapsed += 7.5
        progress = await beat(api, token, lesson, (300 if n % 2 else 0) + elapsed)
        assert progress["verified_seconds"] <= elapsed, n

    # Two devices only 8 s apart in the video: together they still prove no more than the time passed.
    token = world.token("parent_b")
    await beat(api, token, lesson, 0)
    elapsed = 0.0
    for n in range(1, 21):
        clock.tick(7.5)
        elapsed += 7.5
        progress = await beat(api, token, lesson, elapsed + (8 if n % 2 else 0))
        assert progress["verified_seconds"] <= elapsed, n


async def test_heartbeats_from_two_devices_at_once_credit_the_interval_once(api: Api, deps: Deps) -> None:
    world, lesson, clock = await setup(deps)
    token = world.token("parent_a")
    await play(api, token, lesson, clock, 0, 30)
    clock.tick(15)
    # Six beats land at the same instant (a phone, a tablet, retries): all are answered, and together
    # they credit the 15 s that passed once.
    results = await asyncio.gather(*(beat(api, token, lesson, p) for p in (45, 45, 46, 45, 47, 45)))
    assert max(r["verified_seconds"] for r in results) == 45
    clock.tick(15)
    assert (await beat(api, token, lesson, 60))["verified_seconds"] == 60


# ---- completion --------------------------------------------------------------------------------------
async def test_completion_at_ninety_percent_credits_the_lesson_once(api: Api, deps: Deps) -> None:
    world, lesson, clock = await setup(deps, video_seconds=120, class_hours="1.5")
    token = world.token("parent_a")
    parent = world.actors["parent_a"].user_id

    almost = await play(api, token, lesson, clock, 0, 105)
    assert (almost["verified_seconds"], almost["required_seconds"], almost["completed"]) == (105, 110, False)
    assert await credits_of(deps, parent) == []

    clock.tick(15)
    done = await beat(api, token, lesson, 120)
    assert done["completed"] is True and done["verified_seconds"] == 120

    # Written to PostgreSQL by the completing heartbeat itself, without waiting for a flush.
    row = await progress_row(deps, parent, lesson)
    assert row is not None and row.completed_at is not None and row.verified_seconds >= 110
    [credit] = await credits_of(deps, parent)
    assert (credit.tier, credit.source, credit.class_hours) == ("online", "online_lesson", Decimal("1.5"))
    assert (credit.school_year, credit.course_id) == ("2025-2026", lesson.id)

    # Watching it again (and replaying the completing beat) credits nothing more.
    for position in (120, 0, 15, 30):
        clock.tick(15)
        assert (await beat(api, token, lesson, position))["completed"] is True
    assert len(await credits_of(deps, parent)) == 1
    async with deps.sessions() as s:
        completed_at = await s.get(LessonProgress, (parent, lesson.id))
        assert completed_at is not None and completed_at.completed_at == row.completed_at

    learning = await api.get(f"{API}/me/learning", token=token)
    assert learning.status == 200
    body = learning.json()
    online = next(t for t in body["tiers"] if t["tier"] == "online")
    assert online["earned"] == 1.5
    assert [(c["source"], c["course_title"], c["class_hours"]) for c in body["credits"]] == [
        ("online_lesson", "青春期沟通微课", 1.5)
    ]


async def test_a_short_lesson_completes_when_watched_to_its_end(api: Api, deps: Deps) -> None:
    """A length that is not a multiple of the 5-second buckets: the last, shorter bucket counts."""
    world, lesson, clock = await setup(deps, video_seconds=42)
    token = world.token("parent_a")
    progress = await play(api, token, lesson, clock, 0, 42)
    assert progress["completed"] is True
    assert progress["verified_seconds"] == 42 and progress["required_seconds"] <= 42
    assert len(await credits_of(deps, world.actors["parent_a"].user_id)) == 1
    row = await progress_row(deps, world.actors["parent_a"].user_id, lesson)
    assert row is not None and row.completed_at is not None and row.verified_seconds == 42


async def test_a_completion_postgresql_refused_is_written_by_the_next_heartbeat(api: Api, deps: Deps) -> None:
    world, lesson, clock = await setup(deps, video_seconds=60)
    token = world.token("parent_a")
    parent = world.actors["parent_a"].user_id
    await play(api, token, lesson, clock, 0, 45)

    # PostgreSQL fails the completing heartbeat's write (a real failure, raised by the database).
    async with deps.engine.begin() as conn:
        await conn.execute(
            text(
                "CREATE FUNCTION refuse_credit() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'database unavailable'; END $$"
            )
        )
        await conn.execute(
            text(
                "CREATE TRIGGER refuse_credit BEFORE INSERT ON hour_credit "
                "FOR EACH ROW EXECUTE FUNCTION refuse_credit()"
            )
        )
    try:
        clock.tick(15)
        failed = await api.post(f"{API}/lessons/{lesson.id}/progress", {"position": 60}, token=token)
        assert failed.status == 500
    finally:
        async with deps.engine.begin() as conn:
            await conn.execute(text("DROP TRIGGER refuse_credit ON hour_credit"))
            await conn.execute(text("DROP FUNCTION refuse_credit()"))
    assert await credits_of(deps, parent) == []

    clock.tick(15)
    retried = await beat(api, token, lesson, 60)  # the player keeps beating at the end
    assert retried["completed"] is True
    assert len(await credits_of(deps, parent)) == 1
    row = await progress_row(deps, parent, lesson)
    assert row is not None and row.completed_at is not None


# ---- Redis and PostgreSQL --------------------------------------------------------------------------------
async def test_flush_writes_every_dirty_state_in_one_go(api: Api, deps: Deps) -> None:
    world, lesson, clock = await setup(deps)
    async with deps.sessions() as s, s.begin():
        second = await make_course(s, tier="online", title="家庭安全微课", video_seconds=300)
    parent_a, parent_b = world.actors["parent_a"].user_id, world.actors["parent_b"].user_id

    await play(api, world.token("parent_a"), lesson, clock, 0, 45)
    await play(api, world.token("parent_b"), lesson, clock, 100, 130)
    await play(api, world.token("parent_a"), second, clock, 0, 15)
    assert await progress_row(deps, parent_a, lesson) is None  # heartbeats stay in Redis until a flush

    assert await deps.progress.flush() == 3
    rows = {
        (p, c.title): await progress_row(deps, p, c)
        for p, c in ((parent_a, lesson), (parent_b, lesson), (parent_a, second))
    }
    assert {k: (r.verified_seconds, float(r.position)) for k, r in rows.items() if r} == {
        (parent_a, "青春期沟通微课"): (45, 45.0),
        (parent_b, "青春期沟通微课"): (30, 130.0),
        (parent_a, "家庭安全微课"): (15, 15.0),
    }
    assert all(r is not None and r.completed_at is None for r in rows.values())
    assert await deps.progress.flush() == 0  # nothing dirty any more

    await play(api, world.token("parent_a"), lesson, clock, 45, 60)  # resumes after a pause
    assert await deps.progress.flush() == 1
    row = await progress_row(deps, parent_a, lesson)
    assert row is not None and row.verified_seconds == 60


async def test_progress_continues_from_postgresql_after_redis_loses_its_data(api: Api, deps: Deps) -> None:
    world, lesson, clock = await setup(deps)
    token = world.token("parent_a")
    await play(api, token, lesson, clock, 0, 45)
    assert await deps.progress.flush() == 1

    await lose_redis(deps)
    clock.tick(15)
    resumed = await beat(api, token, lesson, 60)
    assert resumed["verified_seconds"] == 60  # 45 s from PostgreSQL's copy plus the new 15 s
    clock.tick(15)
    assert (await beat(api, token, lesson, 75))["verified_seconds"] == 75


async def test_a_completion_survives_redis_losing_its_data(api: Api, deps: Deps) -> None:
    world, lesson, clock = await setup(deps, video_seconds=60)
    token = world.token("parent_a")
    assert (await play(api, token, lesson, clock, 0, 60))["completed"] is True

    await lose_redis(deps)  # before any flush
    clock.tick(15)
    again = await beat(api, token, lesson, 60)
    assert again["completed"] is True and again["verified_seconds"] == 60
    await play(api, token, lesson, clock, 0, 60)
    assert len(await credits_of(deps, world.actors["parent_a"].user_id)) == 1


async def test_hydrate_reloads_unfinished_progress_into_an_empty_redis(api: Api, deps: Deps) -> None:
    world, lesson, clock = await setup(deps)
    token = world.token("parent_a")
    parent = world.actors["parent_a"].user_id
    await play(api, token, lesson, clock, 0, 45)
    await deps.progress.flush()
    await lose_redis(deps)

    await deps.progress.hydrate()
    state = await deps.redis.hgetall(deps.keys.lesson_state(str(parent), str(lesson.id)))
    assert state[b"pos"] == b"45.0"
    assert await deps.redis.exists(deps.keys.progress_hydrated())

    # With the marker set the tracker trusts Redis alone, and Redis has the progress back.
    clock.tick(15)
    assert (await beat(api, token, lesson, 60))["verified_seconds"] == 60
    await deps.progress.hydrate()  # a second run (another process starting) changes nothing
    assert (await deps.redis.hgetall(deps.keys.lesson_state(str(parent), str(lesson.id))))[b"pos"] == b"60.0"


# ---- who may send heartbeats -------------------------------------------------------------------------
async def test_only_parents_who_can_see_the_lesson_may_watch_it(api: Api, deps: Deps) -> None:
    world, lesson, _ = await setup(deps)
    async with deps.sessions() as s, s.begin():
        lesson_b = await make_course(s, tier="online", title="乙校微课", school=world.school_b)
        lesson_other = await make_course(s, tier="online", title="外区微课", district=world.other_district)
        lecture = await make_course(s, tier="general", title="家庭教育讲座")
    path = f"{API}/lessons/{{}}/progress"

    for actor in ("teacher_a", "school_admin_a", "district_admin"):
        response = await api.post(path.format(lesson.id), {"position": 0}, token=world.token(actor))
        assert response.status == 403, actor

    for course_id in (lesson_b.id, lesson_other.id, lecture.id, uuid.uuid4()):
        response = await api.post(path.format(course_id), {"position": 0}, token=world.token("parent_a"))
        assert response.status == 404, course_id
    assert (await beat(api, world.token("parent_b"), lesson_b, 0))["video_seconds"] == 600

    negative = await api.post(path.format(lesson.id), {"position": -1}, token=world.token("parent_a"))
    assert negative.status == 422
    assert (await api.post(path.format(lesson.id), {"position": 0})).status == 401


async def test_a_burst_of_heartbeats_reads_an_unknown_lesson_from_postgresql_once(
    api: Api, deps: Deps
) -> None:
    """When the lesson directory has no entry (start-up, or expiry), the heartbeats in flight share one
    query instead of each asking PostgreSQL: a rush of viewers must not become a rush of queries."""
    world, lesson, _ = await setup(deps)
    viewers = await make_parents(deps, world.classroom_a, 20)
    course_reads: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM course" in statement:
            course_reads.append(statement)

    event.listen(deps.engine.sync_engine, "before_cursor_execute", count)
    try:
        answers = await asyncio.gather(*(beat(api, viewer.token, lesson, 0) for viewer in viewers))
    finally:
        event.remove(deps.engine.sync_engine, "before_cursor_execute", count)
    assert {a["video_seconds"] for a in answers} == {600}
    assert len(course_reads) == 1, course_reads
