"""What an operator of `python -m server` sees: one metrics listener adding up what every worker counted
(prometheus_client's multiprocess mode, its files under DATA_DIR/metrics/), a worker's gauges gone with
the worker, and a JSON log."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from collections.abc import Callable
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import select
from tornado.simple_httpclient import HTTPStreamClosedError

from handlers.deps import Deps
from infra.config import Settings
from models.accounts.tables import School
from server.__main__ import free_port
from server.app import API
from tests.builders import make_world, until_a_statement_waits_for_a_lock
from tests.client import Api
from tests.infra.test_serve import STARTUP_SECONDS, _start, serving
from tests.scrape import Scrape, until

REQUESTS = 64  # over as many connections: the kernel spreads them over both workers
ME = f"{API}/me"
COUNTED = "parent_school_http_requests_total"
IN_FLIGHT = "parent_school_http_requests_in_flight"


class LogLines:
    """The service's output (stdout and stderr), line by line, as it comes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        self._stdout = proc.stdout
        self.lines: list[str] = []
        self._task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while line := await self._stdout.readline():
            self.lines.append(line.decode())

    async def until(self, condition: Callable[[list[dict[str, Any]]], bool], seconds: float = 10) -> None:
        deadline = asyncio.get_running_loop().time() + seconds
        while not condition(self.parsed()):
            assert asyncio.get_running_loop().time() < deadline, "".join(self.lines)
            await asyncio.sleep(0.05)

    def parsed(self) -> list[dict[str, Any]]:
        """Every line, each of which must be one JSON object."""
        return [json.loads(line) for line in self.lines]

    def close(self) -> None:
        self._task.cancel()


def _workers(proc: asyncio.subprocess.Process, port: int) -> list[psutil.Process]:
    """The supervisor's children that listen on the API port (not the metrics process)."""
    return [
        child
        for child in psutil.Process(proc.pid).children()
        if any(c.laddr.port == port and c.status == psutil.CONN_LISTEN for c in child.net_connections("tcp"))
    ]


async def test_two_workers_count_into_one_metrics_listener_and_log_json_lines(
    deps: Deps, settings: Settings, tmp_path: Path
) -> None:
    world = await make_world(deps)
    metrics_port = free_port()
    env = {"METRICS_PORT": str(metrics_port), "LOG_FORMAT": "json", "DATA_DIR": str(tmp_path)}
    async with serving(settings, 2, **env) as (proc, port):
        log = LogLines(proc)
        service = Api(f"http://127.0.0.1:{port}")
        metrics = Api(f"http://127.0.0.1:{metrics_port}")
        try:
            responses = await asyncio.gather(*(service.get(ME) for _ in range(REQUESTS)))
            assert {r.status for r in responses} == {401}
            foreign = await service.get(
                f"{API}/schools/{world.school_b.id}/students", token=world.token("school_admin_a")
            )
            assert foreign.status == 404
            assert (await service.get("/metrics")).status == 404  # not on the public port
            counted = await until(
                metrics, lambda s: s.value(COUNTED, route=ME, method="GET", status="401") >= REQUESTS
            )
            # Both workers' access lines, each one JSON object.
            await log.until(lambda lines: sum(1 for x in lines if x.get("route") == ME) == REQUESTS)
            lines = log.parsed()
        finally:
            log.close()
            service.http.close()
            metrics.http.close()
    assert counted.value(COUNTED, route=ME, method="GET", status="401") == REQUESTS
    assert counted.value("parent_school_http_request_duration_seconds_count", route=ME, method="GET") == (
        REQUESTS
    )
    assert counted.value("parent_school_dependency_up", dependency="postgresql") == 1
    assert counted.value("parent_school_dependency_up", dependency="redis") == 1
    access = [x for x in lines if x["logger"] == "access"]
    served_by = {x["pid"] for x in access if x["route"] == ME}
    assert len(served_by) == 2, "every request went to one worker: the sum proves nothing"
    assert all(x["status"] == 401 and x["code"] == "missing_token" for x in access if x["route"] == ME)
    [line] = [x for x in access if x["status"] == 404 and x["route"] != "unmatched"]
    assert line["route"] == f"{API}/schools/{{school_id}}/students"
    assert line["uid"] == str(world.actors["school_admin_a"].user_id)
    assert line["request_id"] == foreign.headers["X-Request-Id"]
    assert {"timestamp", "level", "message", "method", "duration_ms"} <= line.keys()


async def test_a_worker_killed_mid_request_keeps_its_counts_and_takes_its_gauges_along(
    deps: Deps, settings: Settings, tmp_path: Path
) -> None:
    world = await make_world(deps)
    metrics_port = free_port()
    env = {"METRICS_PORT": str(metrics_port), "DATA_DIR": str(tmp_path)}
    async with serving(settings, 2, **env) as (proc, port):
        service = Api(f"http://127.0.0.1:{port}")
        metrics = Api(f"http://127.0.0.1:{metrics_port}")
        try:
            assert {r.status for r in await asyncio.gather(*(service.get(ME) for _ in range(32)))} == {401}
            async with deps.engine.connect() as other:  # holds the school: the insert waits
                transaction = await other.begin()
                await other.execute(select(School).where(School.id == world.school_a.id).with_for_update())
                cut = asyncio.ensure_future(
                    service.post(
                        f"{API}/schools/{world.school_a.id}/classrooms",
                        {"name": "五年级3班", "grade": 5},
                        token=world.token("school_admin_a"),
                    )
                )
                await until_a_statement_waits_for_a_lock(deps)
                busy = await until(metrics, lambda s: s.value(IN_FLIGHT) == 1)
                assert busy.value("parent_school_db_pool_connections_in_use") >= 1
                [victim] = [
                    w
                    for w in _workers(proc, port)
                    if any(
                        c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED
                        for c in w.net_connections("tcp")
                    )
                ]
                victim.kill()
                with pytest.raises(HTTPStreamClosedError):
                    await cut
                await transaction.rollback()
            # The supervisor marked it dead: its request is no longer in flight; what it counted stays.
            after = await until(metrics, lambda s: s.value(IN_FLIGHT) == 0)
            assert after.value(COUNTED, route=ME, method="GET", status="401") == 32
            for _ in range(100):  # and it started another worker
                if len(_workers(proc, port)) == 2 and victim.pid not in {w.pid for w in _workers(proc, port)}:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("the killed worker was not replaced")
            folder = tmp_path / "metrics" / str(proc.pid)
            assert folder.is_dir()
            assert not list(folder.glob(f"gauge_livesum_{victim.pid}.db"))
            assert list(folder.glob(f"counter_{victim.pid}.db"))
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        finally:
            service.http.close()
            metrics.http.close()
    assert not (tmp_path / "metrics" / str(proc.pid)).exists()  # the supervisor cleaned up after itself


async def test_one_process_serves_its_metrics_beside_the_api(settings: Settings, tmp_path: Path) -> None:
    metrics_port = free_port()
    env = {"METRICS_PORT": str(metrics_port), "DATA_DIR": str(tmp_path)}
    async with serving(settings, 1, **env) as (proc, port):
        metrics = Api(f"http://127.0.0.1:{metrics_port}")
        service = Api(f"http://127.0.0.1:{port}")
        try:
            assert (await service.get(ME)).status == 401
            counted: Scrape = await until(metrics, lambda s: s.has(COUNTED))
            assert counted.value(COUNTED, route=ME, method="GET", status="401") == 1
            assert counted.has("parent_school_db_pool_connections_in_use")
            assert counted.value("parent_school_dependency_up", dependency="redis") == 1
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        finally:
            metrics.http.close()
            service.http.close()
    assert list((tmp_path / "metrics").iterdir()) == []


async def test_a_metrics_port_in_use_stops_the_start_with_a_clear_error(settings: Settings) -> None:
    with closing(socket.socket()) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        metrics_port = taken.getsockname()[1]
        proc = await _start(settings, free_port(), processes=2, METRICS_PORT=str(metrics_port))
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), STARTUP_SECONDS)
        finally:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    assert f"Address already in use: metrics port 127.0.0.1:{metrics_port}".encode() in out
