"""Prometheus metrics (`GET /metrics`, text format 0.0.4) with prometheus-client.

What is counted (every name starts with ``tidings_``; durations in seconds):

* ``method_calls_total{method}``, ``method_duration_seconds{method}`` (histogram): each JMAP
  method invocation of /jmap/api and the WebSocket; an unknown method name counts as "unknown",
  so that a client cannot grow the label set.
* ``http_requests_total{route,status}``, ``http_request_duration_seconds{route}`` (histogram):
  each HTTP request by route ("api", "session", "upload", "download", "eventsource", "websocket",
  "vcard", "calendar", "healthz", "metrics", "other"); a push stream's duration is its lifetime.
* ``errors_total{kind,type}``: kind "method" (a JMAP method-level error type: invalidArguments,
  serverFail, ...), "request" (a request-level problem type: limit, notJSON, about:blank, ...) or
  "http" (the status code of a response >= 400).
* ``push_connections{transport}`` (gauge): open EventSource and WebSocket connections.
* ``email_imports_total``: emails created by Email/import.
* ``limit_queued_total``: requests (and uploads) that found every one of their user's
  concurrency slots taken and waited (`app.server.QUEUE_SECONDS`); ``limit_rejected_total``: those
  of them refused with the `limit` problem because no slot freed up in time.
* ``index_queue_depth`` (gauge): entries waiting for the background indexer, all accounts;
  ``index_lag_seconds`` (gauge): how long the oldest of them has waited (0 when none).  Both are
  read from the store at scrape time, so every worker reports the same values.

Several workers (``tidings serve --workers N``): prometheus-client's multiprocess mode.  `tidings
serve` points $PROMETHEUS_MULTIPROC_DIR at an empty directory (in /dev/shm, off the data disk,
unless the variable is set: see app.cli._metrics_dir) before any worker starts; each worker
writes its values there, a scrape (answered by any worker) adds them up, and a worker that exits
marks itself dead, so that its gauges drop out.  Without the variable (one worker, or tests that
build the app in process) the process's own registry is used.
"""

from __future__ import annotations

import os
import time

# $PROMETHEUS_MULTIPROC_DIR must be set (by `tidings serve`, app.cli) before this import:
# prometheus-client chooses its value storage when it is first imported
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as _multiprocess
from prometheus_client.core import GaugeMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ENV = "PROMETHEUS_MULTIPROC_DIR"

# JMAP methods take from a millisecond to a few seconds (a search of a large mailbox, an import)
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

METHOD_CALLS = Counter("tidings_method_calls_total", "JMAP method invocations", ["method"])
METHOD_SECONDS = Histogram("tidings_method_duration_seconds", "Time to run one JMAP method invocation",
                           ["method"], buckets=BUCKETS)
HTTP_REQUESTS = Counter("tidings_http_requests_total", "HTTP requests answered", ["route", "status"])
HTTP_SECONDS = Histogram("tidings_http_request_duration_seconds",
                         "Time from request to the end of the response (push streams: their lifetime)",
                         ["route"], buckets=BUCKETS)
ERRORS = Counter("tidings_errors_total", "Errors: JMAP method errors, request-level problems, HTTP statuses >= 400",
                 ["kind", "type"])
# livesum: the open connections of the workers that are alive, added up
PUSH_CONNECTIONS = Gauge("tidings_push_connections", "Open push connections", ["transport"],
                         multiprocess_mode="livesum")
IMPORTS = Counter("tidings_email_imports_total", "Emails created by Email/import")
LIMIT_QUEUED = Counter("tidings_limit_queued_total",
                       "Requests that waited for one of their user's concurrency slots")
LIMIT_REJECTED = Counter("tidings_limit_rejected_total",
                         "Requests refused because no concurrency slot freed up in time")


def multiprocess() -> bool:
    return bool(os.environ.get(ENV))


def worker_exit() -> None:
    """A worker that stops: its live gauges no longer count."""
    if multiprocess():
        _multiprocess.mark_process_dead(os.getpid())


def method_name(name: str, known) -> str:
    """The label for a method name: itself if the server has it, else "unknown"."""
    return name if name in known else "unknown"


def observe_call(method: str, seconds: float, error: str | None, result: object) -> None:
    """One JMAP method invocation (method: a label from `method_name`).  error: the method-level
    error type, or None; result: the method's response arguments (Email/import's "created")."""
    METHOD_CALLS.labels(method).inc()
    METHOD_SECONDS.labels(method).observe(seconds)
    if error is not None:
        ERRORS.labels("method", error).inc()
    elif method == "Email/import" and isinstance(result, dict) and result.get("created"):
        IMPORTS.inc(len(result["created"]))


def observe_problem(problem_type: str) -> None:
    """A request-level problem answered (its short type: "limit", "notJSON", "about:blank")."""
    ERRORS.labels("request", problem_type).inc()


def observe_http(route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(route, str(status)).inc()
    HTTP_SECONDS.labels(route).observe(seconds)
    if status >= 400:
        ERRORS.labels("http", str(status)).inc()


class IndexCollector:
    """index_queue_depth and index_lag_seconds, read from the store when scraped: a cursor seek
    per account with queued work (`accounts_with_index_queue`), so a scrape stays cheap."""

    def __init__(self, store):
        self.store = store

    def collect(self):
        depth, oldest = 0, None
        for account_id in self.store.accounts_with_index_queue():
            depth += self.store.index_queue_length(account_id)
            head = self.store.index_queue(account_id, 1)
            queued_at = head[0][1].get("at") if head else None  # entries queued before 0.1 have none
            if isinstance(queued_at, int | float) and (oldest is None or queued_at < oldest):
                oldest = queued_at
        yield GaugeMetricFamily("tidings_index_queue_depth", "Entries waiting for the full-text indexer",
                                value=depth)
        lag = max(0.0, time.time() - oldest) if oldest is not None else 0.0
        yield GaugeMetricFamily("tidings_index_lag_seconds",
                                "How long the oldest entry of the indexer's queue has waited", value=lag)


def exposition(store) -> bytes:
    """The text format of every metric: the workers' values added up (multiprocess mode) or this
    process's, and the index gauges read from `store`."""
    if multiprocess():
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY as registry
    index = CollectorRegistry(auto_describe=False)
    index.register(IndexCollector(store))
    return generate_latest(registry) + generate_latest(index)
