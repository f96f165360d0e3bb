"""What the processes count for operators (Prometheus, through prometheus_client).

Every metric a worker updates is declared here. Under `python -m server` the library runs in its
multiprocess mode: each process writes its values to files of its own in PROMETHEUS_MULTIPROC_DIR
(server/__main__.py sets it before prometheus_client is first imported, which is when the library
chooses), and the metrics listener adds them up at scrape time. Counters and histograms of a worker
that has exited are kept (its requests happened); its gauges are dropped when the supervisor marks it
dead, hence the `live…` modes. Without that variable (in-process tests) the values live in memory, in
the default registry.

Labels are bounded: a route is the template of the route table (`/api/v1/schools/{school_id}`), never
the raw path; an unknown method is `other`; an error reason is one of our problem codes.
"""

from __future__ import annotations

import os

from prometheus_client import Counter, Gauge, Histogram

NAMESPACE = "parent_school"
UNMATCHED_ROUTE = "unmatched"  # the 404s of paths that no route template matches
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
SHED_STATUSES = frozenset({429, 503})


def multiprocess_dir() -> str | None:
    """The directory the processes write their values to, if running in multiprocess mode."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


REQUESTS = Counter(
    "http_requests",
    "Requests answered, by route template, method and status.",
    ["route", "method", "status"],
    namespace=NAMESPACE,
)
REQUEST_SECONDS = Histogram(
    "http_request_duration_seconds",
    "Time from a request's arrival to its answer, by route template and method.",
    ["route", "method"],
    namespace=NAMESPACE,
)
SHED = Counter(
    "http_requests_shed",
    "Requests turned away with 429 or 503, by route template, status and problem code "
    "(overloaded: too many waiting for the database or for a sign-up batch; rate_limited; ...).",
    ["route", "status", "reason"],
    namespace=NAMESPACE,
)
IN_FLIGHT = Gauge(
    "http_requests_in_flight",
    "Requests taken in and not answered yet (all live workers, sampled every second).",
    namespace=NAMESPACE,
    multiprocess_mode="livesum",
)
DB_POOL_IN_USE = Gauge(
    "db_pool_connections_in_use",
    "Database connections checked out of the workers' pools (sampled every second).",
    namespace=NAMESPACE,
    multiprocess_mode="livesum",
)
DB_WAITING = Gauge(
    "db_transactions_waiting",
    "Transactions waiting for a database connection (beyond MAX_QUEUED_TRANSACTIONS per worker, "
    "requests are answered 429; sampled every second).",
    namespace=NAMESPACE,
    multiprocess_mode="livesum",
)
GROUP_COMMIT_WAITING = Gauge(
    "group_commit_waiting",
    "Requests waiting for the next group-commit batch, by writer (sampled every second).",
    ["writer"],
    namespace=NAMESPACE,
    multiprocess_mode="livesum",
)
GROUP_COMMIT_BATCH = Histogram(
    "group_commit_batch_size",
    "Requests written together in one group-commit batch, by writer.",
    ["writer"],
    namespace=NAMESPACE,
    buckets=(1, 2, 5, 10, 20, 50, 100, 200),
)


class RequestMetrics:
    """Counts one finished request. The labelled children are looked up once per combination: a
    `labels()` call costs more than the increment itself."""

    def __init__(self) -> None:
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._histograms: dict[tuple[str, str], Histogram] = {}

    def observe(self, route: str, method: str, status: int, seconds: float, reason: str | None) -> None:
        if method not in KNOWN_METHODS:
            method = "other"
        counter = self._counters.get((route, method, status))
        if counter is None:
            counter = self._counters[route, method, status] = REQUESTS.labels(route, method, str(status))
        counter.inc()
        histogram = self._histograms.get((route, method))
        if histogram is None:
            histogram = self._histograms[route, method] = REQUEST_SECONDS.labels(route, method)
        histogram.observe(seconds)
        if status in SHED_STATUSES:
            SHED.labels(route, str(status), reason or f"http_{status}").inc()


requests = RequestMetrics()
