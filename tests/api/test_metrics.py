"""What an operator sees: GET /metrics on the metrics listener and the JSON access log, after real
requests through HTTP against the real PostgreSQL and Redis.

In this process prometheus_client keeps its values in memory (no PROMETHEUS_MULTIPROC_DIR), and the
counters are shared by every test of the run: each test reads the figures before and after. The
multiprocess mode of `python -m server` is tested in tests/infra/test_serve.py.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from handlers.deps import Deps
from handlers.metrics import Exporter
from infra.config import Settings
from infra.logs import JsonFormatter
from models.accounts.tables import School
from models.notifications.service import Job, enqueue
from models.notifications.tables import JobStatus, NotificationJob
from server.__main__ import free_port
from server.app import API, make_app, make_metrics_app
from tests.builders import (
    make_course,
    make_evening_class,
    make_parents,
    make_world,
    until_a_statement_waits_for_a_lock,
)
from tests.client import Api
from tests.scrape import Scrape, scrape, until

STUDENTS = f"{API}/schools/{{school_id}}/students"
IN_USE = "parent_school_db_pool_connections_in_use"
WAITING = "parent_school_db_transactions_waiting"


class Metrics:
    def __init__(self, client: Api) -> None:
        self.client = client

    async def scrape(self) -> Scrape:
        return await scrape(self.client)


@asynccontextmanager
async def metrics_listener(settings: Settings, local: Deps | None) -> AsyncIterator[Metrics]:
    exporter = Exporter(settings, local=local)
    sockets = bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    server = HTTPServer(make_metrics_app(exporter))
    server.add_sockets(sockets)
    client = Api(f"http://127.0.0.1:{sockets[0].getsockname()[1]}")
    try:
        yield Metrics(client)
    finally:
        client.http.close()
        server.stop()
        await server.close_all_connections()
        await exporter.close()


@pytest.fixture
async def metrics(settings: Settings, deps: Deps) -> AsyncIterator[Metrics]:
    async with metrics_listener(settings, deps) as listener:
        yield listener


@asynccontextmanager
async def serving(deps: Deps) -> AsyncIterator[Api]:
    """The API on its own port, for Deps other than the test's (a pool of one connection)."""
    sockets = bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    server = HTTPServer(make_app(deps))
    server.add_sockets(sockets)
    client = Api(f"http://127.0.0.1:{sockets[0].getsockname()[1]}")
    try:
        yield client
    finally:
        client.http.close()
        server.stop()
        await server.close_all_connections()


async def test_requests_are_counted_by_route_template_and_status_with_their_latency(
    api: Api, deps: Deps, metrics: Metrics
) -> None:
    world = await make_world(deps)
    admin = world.token("school_admin_a")
    route = STUDENTS
    before = await metrics.scrape()
    for _ in range(3):
        assert (await api.get(route.format(school_id=world.school_a.id), token=admin)).status == 200
    for _ in range(2):  # a school the admin may not see, and one that does not exist: both 404
        assert (await api.get(route.format(school_id=world.school_b.id), token=admin)).status == 404
    assert (await api.get(route.format(school_id=uuid.uuid4()))).status == 401
    assert (await api.get(f"{API}/no/such/thing/{uuid.uuid4()}")).status == 404
    after = await metrics.scrape()

    def counted(scrape: Scrape, status: str, route: str = route) -> float:
        return scrape.value("parent_school_http_requests_total", route=route, method="GET", status=status)

    assert counted(after, "200") - counted(before, "200") == 3
    assert counted(after, "404") - counted(before, "404") == 2
    assert counted(after, "401") - counted(before, "401") == 1
    assert counted(after, "404", "unmatched") - counted(before, "404", "unmatched") == 1
    # The latency histogram: every request in the count and in the +Inf bucket, each taking some time.
    histogram = "parent_school_http_request_duration_seconds"
    labels = {"route": route, "method": "GET"}
    assert after.value(f"{histogram}_count", **labels) - before.value(f"{histogram}_count", **labels) == 6
    assert (
        after.value(f"{histogram}_bucket", le="+Inf", **labels)
        - before.value(f"{histogram}_bucket", le="+Inf", **labels)
        == 6
    )
    assert after.value(f"{histogram}_sum", **labels) > before.value(f"{histogram}_sum", **labels)
    assert after.value(f"{histogram}_bucket", le="10.0", **labels) == after.value(
        f"{histogram}_count", **labels
    )
    # Never a raw path: no id of ours in any label.
    for school in (world.school_a, world.school_b):
        assert str(school.id) not in after.text
    assert "/no/such/thing" not in after.text


async def test_the_metrics_are_not_served_on_the_public_port(api: Api) -> None:
    response = await api.get("/metrics")
    assert response.status == 404
    assert b"parent_school_" not in response.body


async def test_a_scraper_that_asks_for_openmetrics_gets_it(metrics: Metrics) -> None:
    response = await metrics.client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.body.endswith(b"# EOF\n")
    assert b"parent_school_dependency_up" in response.body


async def test_requests_shed_with_429_are_counted_by_reason(
    api: Api, deps: Deps, settings: Settings, metrics: Metrics
) -> None:
    world = await make_world(deps)
    token = world.token("parent_a")
    route = f"{API}/me/learning"
    shed = {"route": route, "status": "429", "reason": "overloaded"}
    before = await metrics.scrape()
    settings.max_queued_transactions = 0
    for _ in range(2):
        refused = await api.get(route, token=token)
        assert refused.status == 429 and refused.code == "overloaded"
    settings.max_queued_transactions = 200
    assert (await api.get(route, token=token)).status == 200
    after = await metrics.scrape()
    name = "parent_school_http_requests_shed_total"
    assert after.value(name, **shed) - before.value(name, **shed) == 2
    served = {"route": route, "method": "GET"}
    assert (
        after.value("parent_school_http_requests_total", status="429", **served)
        - before.value("parent_school_http_requests_total", status="429", **served)
        == 2
    )
    # A request answered is not shed.
    assert (
        sum(v for (n, _), v in after.samples.items() if n == name)
        - sum(v for (n, _), v in before.samples.items() if n == name)
        == 2
    )


async def test_sign_ups_show_the_sizes_of_their_group_commit_batches(
    api: Api, deps: Deps, metrics: Metrics
) -> None:
    world = await make_world(deps)
    async with deps.sessions() as s, s.begin():
        course = await make_course(s, tier="general")
        evening = await make_evening_class(
            s,
            world.school_a,
            course,
            starts_at=deps.clock() + timedelta(days=3),
            signup_opens_at=deps.clock() - timedelta(hours=1),
        )
    parents = await make_parents(deps, world.classroom_a, 12)
    writer = {"writer": deps.signups.name}
    before = await metrics.scrape()
    responses = await asyncio.gather(
        *(api.post(f"{API}/evening-classes/{evening.id}/signups", {}, token=p.token) for p in parents)
    )
    assert {r.status for r in responses} == {201}
    after = await metrics.scrape()
    name = "parent_school_group_commit_batch_size"
    batches = after.value(f"{name}_count", **writer) - before.value(f"{name}_count", **writer)
    assert after.value(f"{name}_sum", **writer) - before.value(f"{name}_sum", **writer) == 12
    assert 1 <= batches < 12  # arriving together, they were written together
    assert after.value(f"{name}_bucket", le="200.0", **writer) == after.value(f"{name}_count", **writer)
    assert after.value("parent_school_group_commit_waiting", **writer) == 0


async def test_pool_gauges_show_connections_in_use_and_transactions_waiting(
    deps: Deps, settings: Settings
) -> None:
    """A process with a pool of one: one request holds the connection (blocked on a row lock the test
    holds), the next waits for it."""
    world = await make_world(deps)
    small = Deps.build(settings, pool_size=1)
    try:
        async with serving(small) as service, metrics_listener(settings, small) as metrics:
            idle = await metrics.scrape()
            assert idle.value("parent_school_db_transactions_waiting") == 0
            async with deps.engine.connect() as other:
                transaction = await other.begin()
                await other.execute(select(School).where(School.id == world.school_a.id).with_for_update())
                holding = asyncio.ensure_future(
                    service.post(
                        f"{API}/schools/{world.school_a.id}/classrooms",
                        {"name": "五年级3班", "grade": 5},
                        token=world.token("school_admin_a"),
                    )
                )
                await until_a_statement_waits_for_a_lock(deps)
                waiting = asyncio.ensure_future(
                    service.get(f"{API}/me/learning", token=world.token("parent_a"))
                )
                busy = await until(metrics.client, lambda s: s.value(WAITING) == 1)
                assert busy.value("parent_school_db_pool_connections_in_use") >= 1
                assert busy.value("parent_school_http_requests_in_flight") == 2
                await transaction.rollback()
            assert (await holding).status == 201
            assert (await waiting).status == 200
            # The connections go back to the pool just after the answers leave.
            done = await until(metrics.client, lambda s: s.value(IN_USE) == 0)
            assert done.value("parent_school_db_transactions_waiting") == 0
            assert done.value("parent_school_http_requests_in_flight") == 0
    finally:
        await small.close()


async def test_the_outbox_backlog_counts_the_messages_due_and_not_delivered(
    deps: Deps, metrics: Metrics
) -> None:
    world = await make_world(deps)
    now = deps.clock()
    parent = world.actors["parent_a"].user_id
    idle = await metrics.scrape()
    assert idle.value("parent_school_notification_outbox_backlog") == 0
    assert idle.value("parent_school_notification_outbox_oldest_due_seconds") == 0

    def job(due_in: timedelta) -> Job:
        return Job("class_reminder", parent, uuid.uuid4(), now + due_in, "tpl", "pages/x", {"k": "v"})

    late, due, sent, tomorrow = (
        job(-timedelta(minutes=10)),
        job(-timedelta(minutes=1)),
        job(-timedelta(hours=1)),
        job(timedelta(days=1)),
    )
    async with deps.sessions() as s, s.begin():
        assert await enqueue(s, [late, due, sent, tomorrow]) == 4
        await s.execute(
            update(NotificationJob)
            .where(NotificationJob.subject_id == sent.subject_id)
            .values(status=JobStatus.sent)
        )
    scrape = await metrics.scrape()
    assert scrape.value("parent_school_notification_outbox_backlog") == 2
    oldest = scrape.value("parent_school_notification_outbox_oldest_due_seconds")
    assert 600 <= oldest < 660


async def test_postgresql_and_redis_availability(settings: Settings, metrics: Metrics) -> None:
    up = await metrics.scrape()
    assert up.value("parent_school_dependency_up", dependency="postgresql") == 1
    assert up.value("parent_school_dependency_up", dependency="redis") == 1
    # Servers that do not answer: nothing listens on these ports.
    nowhere = settings.model_copy(
        update={
            "database_url": f"postgresql://nobody:x@127.0.0.1:{free_port()}/none",
            "redis_url": f"redis://127.0.0.1:{free_port()}/0",
        }
    )
    async with metrics_listener(nowhere, None) as unreachable:
        down = await unreachable.scrape()
    assert down.value("parent_school_dependency_up", dependency="postgresql") == 0
    assert down.value("parent_school_dependency_up", dependency="redis") == 0
    assert not down.has("parent_school_notification_outbox_backlog")  # unknown, not 0


@contextmanager
def access_log_lines(level: int = logging.INFO) -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("access")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


async def test_json_access_log_lines_carry_the_request_fields(api: Api, deps: Deps) -> None:
    world = await make_world(deps)
    admin = world.token("school_admin_a")
    with access_log_lines() as out:
        foreign = await api.get(STUDENTS.format(school_id=world.school_b.id), token=admin)
        refused = await api.post(
            f"{API}/auth/password-login", {"username": "nobody-at-all", "password": "hunter2-secret"}
        )
    assert (foreign.status, refused.status) == (404, 401)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 2
    first, second = lines
    assert first["level"] == "INFO" and first["logger"] == "access"
    assert first["route"] == STUDENTS and first["path"] == STUDENTS.format(school_id=world.school_b.id)
    assert (first["method"], first["status"], first["code"]) == ("GET", 404, "not_found")
    assert first["request_id"] == foreign.headers["X-Request-Id"]
    assert first["uid"] == str(world.actors["school_admin_a"].user_id)
    assert isinstance(first["duration_ms"], float) and first["duration_ms"] > 0
    assert first["timestamp"].endswith("+00:00") and "GET" in first["message"]
    assert second["route"] == f"{API}/auth/password-login" and second["status"] == 401
    assert "uid" not in second  # nobody logged in
    # Never a body or a token.
    text = out.getvalue()
    assert "hunter2" not in text and "nobody-at-all" not in text and admin not in text


async def test_successful_requests_are_logged_only_at_debug(api: Api) -> None:
    with access_log_lines() as quiet:
        assert (await api.get("/healthz")).status == 200
    assert quiet.getvalue() == ""
    with access_log_lines(logging.DEBUG) as chatty:
        assert (await api.get("/healthz")).status == 200
    [line] = [json.loads(x) for x in chatty.getvalue().splitlines()]
    assert (line["level"], line["route"], line["status"]) == ("DEBUG", "/healthz", 200)


def test_a_traceback_goes_in_one_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "api", logging.ERROR, __file__, 1, "request %s failed", ("r1",), sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert (parsed["level"], parsed["logger"], parsed["message"]) == ("ERROR", "api", "request r1 failed")
    assert "ValueError: boom" in parsed["exception"]
