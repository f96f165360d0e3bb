"""GET /metrics for Prometheus, on the metrics listener (METRICS_HOST:METRICS_PORT), never the public port.

A scrape answers with what the workers counted (infra/metrics.py; in multiprocess mode, read from
every worker's files and added up) and with figures read at the moment of the scrape, once for the
whole service rather than once per worker:
- parent_school_notification_outbox_backlog / _oldest_due_seconds: the WeChat messages due and not
  delivered yet, and how long the longest-waiting one has been due (one indexed SQL count);
- parent_school_dependency_up{dependency="postgresql"|"redis"}: 1 if it answered within
  PROBE_SECONDS, else 0.
The scrape uses its own database connection and Redis client, apart from the request pools, so that it
still answers (and tells the truth) while the workers' pools are exhausted.

Each worker samples its own gauges (connections in use, transactions waiting, requests in flight,
sign-ups waiting for a batch) every SAMPLE_SECONDS; where the exporter runs inside the one serving
process (PROCESSES=1, tests), it samples them at scrape time too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import suppress
from datetime import datetime

import tornado.web
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import text
from sqlalchemy.pool import QueuePool

from handlers.deps import Deps
from infra.clock import shanghai_now
from infra.config import Settings
from infra.db import make_engine, make_session_factory
from infra.metrics import (
    DB_POOL_IN_USE,
    DB_WAITING,
    GROUP_COMMIT_WAITING,
    IN_FLIGHT,
    NAMESPACE,
    multiprocess_dir,
)
from infra.redis import make_redis
from models.notifications.backlog import Backlog, backlog

log = logging.getLogger("metrics")

PROBE_SECONDS = 2.0  # well inside Prometheus's default scrape timeout (10 s)
SAMPLE_SECONDS = 1.0


def sample(deps: Deps) -> None:
    """This process's gauges, as they are now."""
    pool = deps.engine.pool
    DB_POOL_IN_USE.set(pool.checkedout() if isinstance(pool, QueuePool) else 0)
    DB_WAITING.set(deps.db_gate.queued)
    IN_FLIGHT.set(deps.in_flight.count)
    GROUP_COMMIT_WAITING.labels(deps.signups.name).set(deps.signups.waiting)


async def sample_every(deps: Deps, stop: asyncio.Event, interval: float = SAMPLE_SECONDS) -> None:
    while not stop.is_set():
        sample(deps)
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


class _Everything(Collector):
    """What a registry holds, as one collector of the scrape's own registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        yield from self._source.collect()


class _Figures(Collector):
    """The figures of one scrape, handed to prometheus_client's text rendering."""

    def __init__(self, up: dict[str, bool], outbox: Backlog | None) -> None:
        self._up = up
        self._outbox = outbox

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            f"{NAMESPACE}_dependency_up",
            "1 if the dependency answered the scrape's probe in time, else 0.",
            labels=["dependency"],
        )
        for name, ok in self._up.items():
            up.add_metric([name], 1.0 if ok else 0.0)
        yield up
        if self._outbox is None:  # unknown (PostgreSQL did not answer): no sample rather than a wrong one
            return
        yield GaugeMetricFamily(
            f"{NAMESPACE}_notification_outbox_backlog",
            "WeChat messages due and not delivered yet (pending past their due time, or being sent).",
            value=self._outbox.due,
        )
        yield GaugeMetricFamily(
            f"{NAMESPACE}_notification_outbox_oldest_due_seconds",
            "How long the longest-waiting message of the backlog has been due (0 when there is none).",
            value=self._outbox.oldest_due_seconds,
        )


class Exporter:
    """Renders one scrape. `local`: the serving process's own Deps, when the exporter runs inside it."""

    def __init__(
        self,
        settings: Settings,
        *,
        local: Deps | None = None,
        clock: Callable[[], datetime] = shanghai_now,
    ) -> None:
        if not settings.database_url or not settings.redis_url:
            raise RuntimeError("database_url and redis_url must be resolved before building the exporter")
        self._engine = make_engine(settings.database_url, pool_size=1)
        self._sessions = make_session_factory(self._engine)
        self._redis = make_redis(settings.redis_url, max_connections=2)  # one scrape at a time
        self._local = local
        self._clock = clock
        directory = multiprocess_dir()
        if directory:
            self._registry = CollectorRegistry()
            MultiProcessCollector(self._registry, path=directory)  # type: ignore[no-untyped-call]
        else:
            self._registry = REGISTRY

    async def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The scrape's body and content type: Prometheus text, or OpenMetrics if `accept` asks for it."""
        if self._local is not None:
            sample(self._local)
        (postgresql_up, outbox), redis_up = await asyncio.gather(self._postgresql(), self._redis_up())
        scrape = CollectorRegistry(auto_describe=False)
        scrape.register(_Everything(self._registry))
        scrape.register(_Figures({"postgresql": postgresql_up, "redis": redis_up}, outbox))
        encode, content_type = choose_encoder(accept or "")
        return encode(scrape), content_type

    async def _postgresql(self) -> tuple[bool, Backlog | None]:
        """Whether PostgreSQL answers, and the outbox backlog if it does."""
        try:
            async with asyncio.timeout(PROBE_SECONDS), self._sessions() as session:
                await session.execute(text("SELECT 1"))
                try:
                    return True, await backlog(session, self._clock())
                except Exception:  # up, but the query failed: the log says why
                    log.warning("outbox backlog query failed", exc_info=True)
                    return True, None
        except Exception as exc:
            log.warning("PostgreSQL probe failed: %s", type(exc).__name__)
            return False, None

    async def _redis_up(self) -> bool:
        try:
            async with asyncio.timeout(PROBE_SECONDS):
                await self._redis.ping()
        except Exception as exc:
            log.warning("Redis probe failed: %s", type(exc).__name__)
            return False
        return True

    async def close(self) -> None:
        await self._redis.aclose()
        await self._engine.dispose()


class MetricsHandler(tornado.web.RequestHandler):
    exporter: Exporter

    def initialize(self, exporter: Exporter) -> None:
        self.exporter = exporter

    async def get(self) -> None:
        body, content_type = await self.exporter.render(self.request.headers.get("Accept"))
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "no-store")
        self.finish(body)
