"""`python -m server` as operators run it: the listening port, the spread of connections over the
workers, the graceful stop, and a retry after a process was killed mid-request."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing, suppress
from datetime import timedelta

import psutil
import pytest
from sqlalchemy import select
from tornado.simple_httpclient import HTTPStreamClosedError

from handlers.deps import Deps
from infra.config import Settings
from models.accounts.tables import Classroom, School
from models.evening_classes.tables import EveningClass
from server.__main__ import free_port
from server.app import API
from tests.builders import (
    World,
    make_course,
    make_evening_class,
    make_world,
    until_a_statement_waits_for_a_lock,
)
from tests.client import Api
from tests.conftest import ROOT

CONNECTIONS = 64
STARTUP_SECONDS = 60


async def _start(settings: Settings, port: int, processes: int, **extra: str) -> asyncio.subprocess.Process:
    assert settings.wechat_secret is not None
    env = {
        **os.environ,
        "APP_ENV": "test",
        "PORT": str(port),
        "PROCESSES": str(processes),
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "REDIS_PREFIX": settings.redis_prefix,
        "WECHAT_APPID": settings.wechat_appid or "",
        "WECHAT_SECRET": settings.wechat_secret.get_secret_value(),
        "WECHAT_API_BASE": settings.wechat_api_base,
        "LOAD_DEMO_DATA": "false",
        "METRICS_PORT": str(free_port()),  # not 9100: a developer's `make run` may hold it
        **extra,
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group: a failed test kills the workers too
    )


async def _health(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A keep-alive connection that has had one GET /healthz answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await _get_health(reader, writer)
    return reader, writer


async def _get_health(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """GET /healthz on an open connection; the response's head."""
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    [length] = [int(line[15:]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    assert await reader.readexactly(length) == b'{"status":"ok"}'
    return head


async def _until_serving(proc: asyncio.subprocess.Process, port: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP_SECONDS
    while loop.time() < deadline:
        assert proc.returncode is None, "the server exited during start-up"
        try:
            _, writer = await _health(port)
        except OSError:
            await asyncio.sleep(0.2)
            continue
        writer.close()
        return
    pytest.fail("the server did not answer /healthz in time")


@asynccontextmanager
async def serving(
    settings: Settings, processes: int, **env: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    port = free_port()
    proc = await _start(settings, port, processes, **env)
    try:
        await _until_serving(proc, port)
        yield proc, port
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


@pytest.fixture
async def two_workers(settings: Settings) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    async with serving(settings, processes=2) as running:
        yield running


@pytest.fixture
async def one_process(settings: Settings) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    async with serving(settings, processes=1) as running:
        yield running


async def test_connections_are_spread_over_the_workers_and_sigterm_stops_them(
    two_workers: tuple[asyncio.subprocess.Process, int],
) -> None:
    proc, port = two_workers
    # Opened together, as a proxy's keep-alive pool or a rush opens them: each worker must get its
    # share (with one socket shared by all, the first worker awake used to take the whole burst).
    connections = await asyncio.gather(*(_health(port) for _ in range(CONNECTIONS)))
    children = psutil.Process(proc.pid).children()
    workers = [
        w
        for w in children
        if any(c.laddr.port == port and c.status == psutil.CONN_LISTEN for c in w.net_connections("tcp"))
    ]
    assert len(workers) == 2 and len(children) == 3  # and the metrics process
    held = {
        w.pid: sum(1 for c in w.net_connections("tcp") if c.laddr.port == port and c.raddr) for w in workers
    }
    assert sum(held.values()) == CONNECTIONS
    assert min(held.values()) >= CONNECTIONS // 4, held

    for _, writer in connections:
        writer.close()
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in children)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


@pytest.mark.parametrize("reuse_port", [False, True], ids=["plain listener", "SO_REUSEPORT listener"])
async def test_a_port_in_use_stops_the_start_with_a_clear_error(settings: Settings, reuse_port: bool) -> None:
    """Also when the listener would let us bind beside it (another instance of the service): the two
    would then share the connections."""
    with closing(socket.socket()) as taken:
        if reuse_port:
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("0.0.0.0", 0))  # noqa: S104 - the server binds every address; so must the squatter
        taken.listen()
        port = taken.getsockname()[1]
        proc = await _start(settings, port, processes=2)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), STARTUP_SECONDS)
        finally:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    assert b"Address already in use" in out


async def test_a_request_in_flight_when_the_server_is_told_to_stop_is_still_answered(
    deps: Deps, one_process: tuple[asyncio.subprocess.Process, int]
) -> None:
    """A deploy stops the workers in the middle of a rush: a sign-up already taken in must be written
    and answered before its worker exits (a client cut off would not know whether it holds a seat)."""
    proc, port = one_process
    world = await make_world(deps)
    starts_at = deps.clock() + timedelta(days=3)
    async with deps.sessions() as s, s.begin():
        course = await make_course(s, tier="foundation", title="家庭教育促进法解读")
        evening = await make_evening_class(
            s, world.school_a, course, starts_at=starts_at, signup_opens_at=deps.clock() - timedelta(hours=1)
        )
    service = Api(f"http://127.0.0.1:{port}")
    try:
        async with deps.engine.connect() as other:  # holds the class while the sign-up's batch waits
            transaction = await other.begin()
            await other.execute(select(EveningClass).where(EveningClass.id == evening.id).with_for_update())
            answer = asyncio.ensure_future(
                service.post(
                    f"{API}/evening-classes/{evening.id}/signups",
                    {},
                    token=world.token("parent_a"),
                    headers={"Idempotency-Key": "deploy-1"},
                )
            )
            await until_a_statement_waits_for_a_lock(deps)
            kept = [await _health(port) for _ in range(4)]  # keep-alive connections of other clients
            assert [b"connection: close" in (await _get_health(*c)).lower() for c in kept] == [False] * 4
            proc.send_signal(signal.SIGTERM)
            await _until_refused(port)  # stopping: no new connections, the sign-up still waits
            assert not answer.done()
            # A request on a connection already open is still answered, and told to go elsewhere next;
            # a load balancer asking whether to send more hears no.
            assert [b"connection: close" in (await _get_health(*c)).lower() for c in kept] == [True] * 4
            reader, writer = kept[0]
            writer.write(b"GET /readyz HTTP/1.1\r\nHost: test\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503 "), head
            for _, writer in kept:
                writer.close()
            await transaction.rollback()
        response = await answer
    finally:
        service.http.close()
    assert response.status == 201, response.body
    assert response.json()["status"] == "confirmed"
    assert await asyncio.wait_for(proc.wait(), 30) == 0


async def test_a_stopping_process_waits_for_a_running_request_only_as_long_as_the_settings_say(
    deps: Deps, settings: Settings
) -> None:
    world = await make_world(deps)
    async with serving(settings, processes=1, DRAIN_SECONDS="1") as (proc, port):
        service = Api(f"http://127.0.0.1:{port}")
        try:
            async with deps.engine.connect() as other:  # holds the school: the request cannot end
                transaction = await other.begin()
                await other.execute(select(School).where(School.id == world.school_a.id).with_for_update())
                stuck = asyncio.ensure_future(
                    service.post(
                        _classrooms(world),
                        {"name": "五年级3班", "grade": 5},
                        token=world.token("school_admin_a"),
                    )
                )
                await until_a_statement_waits_for_a_lock(deps)
                proc.send_signal(signal.SIGTERM)
                # Well before the default 20 s: the process gave the request its 1 s, then stopped.
                assert await asyncio.wait_for(proc.wait(), 10) == 0
                with pytest.raises(HTTPStreamClosedError):
                    await stuck
                await transaction.rollback()
        finally:
            service.http.close()
    assert proc.stdout is not None
    assert b"stopping with 1 requests still running after 1 s" in await proc.stdout.read()


async def _until_refused(port: int) -> None:
    for _ in range(250):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return
        writer.close()
        await asyncio.sleep(0.02)
    pytest.fail("the server kept accepting connections after SIGTERM")


async def _cut_off_by_a_crash(
    deps: Deps, settings: Settings, world: World, body: dict[str, object], key: str, *, claim_seconds: int
) -> None:
    """School admin A creates a classroom under Idempotency-Key `key` on a process that claims keys for
    `claim_seconds`; the process is killed while the request holds its claim and waits for the school's
    lock, so nothing is committed."""
    async with serving(settings, processes=1, IDEMPOTENCY_PENDING_SECONDS=str(claim_seconds)) as (proc, port):
        service = Api(f"http://127.0.0.1:{port}")
        try:
            async with deps.engine.connect() as other:  # holds the school: the insert waits
                transaction = await other.begin()
                await other.execute(select(School).where(School.id == world.school_a.id).with_for_update())
                headers = {"Idempotency-Key": key}
                token = world.token("school_admin_a")
                cut = asyncio.ensure_future(
                    service.post(_classrooms(world), body, token=token, headers=headers)
                )
                await until_a_statement_waits_for_a_lock(deps)
                os.killpg(proc.pid, signal.SIGKILL)
                with pytest.raises(HTTPStreamClosedError):  # the connection died with the process
                    await cut
                await transaction.rollback()
        finally:
            service.http.close()


def _classrooms(world: World) -> str:
    return f"{API}/schools/{world.school_a.id}/classrooms"


async def _until_expired(deps: Deps, key: str) -> None:
    """Until Redis has dropped `key` at the end of its time to live (on Redis's clock, not ours)."""
    for _ in range(300):
        if not await deps.redis.exists(key):
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"Redis kept {key} for 30 s")


async def test_a_request_cut_off_by_a_crash_can_be_retried_under_its_key_once_its_claim_runs_out(
    deps: Deps, settings: Settings
) -> None:
    """The process is killed while a request holds its Idempotency-Key (nothing was committed): a retry
    is told the request is in progress until the claim runs out, then carried out, once.

    Two requests are cut off, so that neither half races the clock (a 2 s claim once ran out during a
    slow restart): one claimed for ten times as long as `serving` lets a start take, so it is still in
    progress when retried after the restarts; and one claimed for a second, retried once Redis shows its
    claim has run out, whether that happened during the restart or after it."""
    world = await make_world(deps)
    url, token = _classrooms(world), world.token("school_admin_a")
    pending, ran_out = {"name": "五年级3班", "grade": 5}, {"name": "五年级4班", "grade": 5}
    await _cut_off_by_a_crash(
        deps, settings, world, pending, "create-5-3", claim_seconds=10 * STARTUP_SECONDS
    )
    await _cut_off_by_a_crash(deps, settings, world, ran_out, "create-5-4", claim_seconds=1)
    async with serving(settings, processes=1) as (_, port):
        service = Api(f"http://127.0.0.1:{port}")
        try:
            claimed = await service.post(url, pending, token=token, headers={"Idempotency-Key": "create-5-3"})
            assert claimed.status == 409 and claimed.code == "idempotency_in_progress"

            owner = str(world.actors["school_admin_a"].user_id)
            await _until_expired(deps, deps.keys.idempotency(owner, "POST", url, "create-5-4"))
            key = {"Idempotency-Key": "create-5-4"}
            retried = await service.post(url, ran_out, token=token, headers=key)
            assert retried.status == 201 and "Idempotent-Replayed" not in retried.headers
            replayed = await service.post(url, ran_out, token=token, headers=key)
            assert replayed.headers["Idempotent-Replayed"] == "true"
        finally:
            service.http.close()
    async with deps.sessions() as s:
        names = (
            await s.scalars(select(Classroom.name).where(Classroom.school_id == world.school_a.id))
        ).all()
    assert (names.count("五年级3班"), names.count("五年级4班")) == (0, 1)
