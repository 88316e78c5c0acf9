"""Prometheus metrics, shared by every process of a host (prometheus-client's multiprocess mode).

Each process (every web worker, ``manage.py worker``) writes its samples to memory-mapped files in
``PROMETHEUS_MULTIPROC_DIR`` (default ``DATA_DIR/prometheus``); ``/metrics`` on any web process
reads all of them, so one scrape shows the sum over the host's processes. The library reads the
variable when it is first imported, so this module sets it before importing it and must be the
first to import it (nothing else in the platform does).

Limits of the mode (prometheus-client's documentation): no custom collectors inside the
processes' files (scrape-time values below are computed by the scraping process itself), gauges
need a ``multiprocess_mode``, and files of processes that have exited stay until removed. At
start each process removes the files of processes that no longer run (their counters then
leave the sum, which Prometheus' ``rate()`` reads as a counter reset). Use one directory per
host (or container), never shared between machines.

``/metrics`` answers only with ``Authorization: Bearer $METRICS_TOKEN`` (401 otherwise); with
no token configured it does not exist (404). It is served by :class:`MetricsMiddleware` ahead
of tenant resolution, on every host: the token is not a tenant credential.

Hot path: label children are cached in plain dicts (one lookup per request or run end); a
sample is a write into a memory-mapped file.
"""

from __future__ import annotations

import glob
import hmac
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse

from config import tracing

logger = logging.getLogger(__name__)

MULTIPROC_DIR = Path(settings.PROMETHEUS_MULTIPROC_DIR)
MULTIPROC_DIR.mkdir(parents=True, exist_ok=True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(MULTIPROC_DIR)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_files(directory: Path = MULTIPROC_DIR, pattern: str = "*.db") -> int:
    """Delete the sample files of processes that no longer run; returns how many."""
    removed = 0
    for path in glob.glob(str(directory / pattern)):
        try:
            pid = int(Path(path).stem.rsplit("_", 1)[1])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _alive(pid):
            try:
                os.unlink(path)
                removed += 1
            except FileNotFoundError:  # another process starting at the same time
                pass
    return removed


remove_stale_files()

from prometheus_client import (  # noqa: E402  (after PROMETHEUS_MULTIPROC_DIR is set)
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric  # noqa: E402

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

HTTP_REQUESTS = Counter(
    "cba_http_requests", "HTTP requests answered.", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "cba_http_request_duration_seconds",
    "Time to the response (its headers, for streams).",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
EXECUTIONS = Counter("cba_executions", "Executions ended, by status and mode.", ["status", "mode"])
EXECUTION_DURATION = Histogram(
    "cba_execution_duration_seconds",
    "Execution run time, start to end.",
    ["mode"],
    buckets=LATENCY_BUCKETS,
)
TOKENS = Counter("cba_tokens", "Model tokens of ended executions.", ["direction"])
COST = Counter("cba_cost", "Cost of ended executions (the tenants' price tables' currency).")
PROVIDER_ERRORS = Counter(
    "cba_provider_errors",
    "Failed provider calls, by provider and error kind.",
    ["provider", "kind"],
)
# 0 closed, 1 half-open, 2 open; the highest over the host's live processes (state is per
# process: each process learns on its own).
BREAKER_STATE = Gauge(
    "cba_circuit_breaker_state",
    "Circuit breaker state per provider credential: 0 closed, 1 half-open, 2 open.",
    ["breaker"],
    multiprocess_mode="livemax",
)
BREAKER_VALUES = {"closed": 0, "half_open": 1, "open": 2}
# Counted by the serving process as streams open and close (every tenant's, capped or not;
# the leases in the database exist only for tenants whose plan caps streams).
OPEN_STREAMS = Gauge(
    "cba_open_streams",
    "Open execution streams: SSE, WebSocket connections, MCP session streams.",
    multiprocess_mode="livesum",
)

# Names of the scrape-time metrics (computed by the scraping process, not stored in files).
QUEUE_JOBS = "cba_queue_jobs"
QUEUE_OLDEST_AGE = "cba_queue_oldest_job_age_seconds"

KNOWN_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
UNMATCHED = "<unmatched>"


# ---- HTTP ----

_http_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    key = (method, route, status)
    children = _http_children.get(key)
    if children is None:
        children = _http_children[key] = (
            HTTP_REQUESTS.labels(method, route, str(status)),
            HTTP_LATENCY.labels(method, route),
        )
    children[0].inc()
    children[1].observe(seconds)


def route_of(request: HttpRequest) -> str:
    """The URL pattern that served the request (never the raw path: ids would explode the
    label set); ``<unmatched>`` for requests no pattern served (refused before routing)."""
    match = getattr(request, "resolver_match", None)
    route = getattr(match, "route", None) if match is not None else None
    return f"/{route}" if route else UNMATCHED


def metrics_response(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if not token:
        # Not configured: there is nothing here (fail closed).
        from config.errors import error_response

        return error_response(request, 404, "not_found", "Not found.")
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        from config.errors import error_response

        return error_response(
            request,
            401,
            "not_authenticated",
            "The metrics token is required.",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    # "live" gauges of processes that have exited leave the sum now (what prometheus-client's
    # mark_process_dead does, for processes that no supervisor reports).
    remove_stale_files(MULTIPROC_DIR, "gauge_live*.db")
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(MULTIPROC_DIR))  # type: ignore[no-untyped-call]
    registry.register(ScrapeTimeCollector())
    refresh_breakers()
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


class MetricsMiddleware:
    """First in ``MIDDLEWARE``: times every request and counts it by route template and
    status; answers ``/metrics`` itself (before tenant resolution, which would take the
    metrics token for a tenant credential and refuse it)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path == "/metrics":
            return metrics_response(request)
        started = time.perf_counter()
        response = self.get_response(request)
        method = request.method or "GET"
        method = method if method in KNOWN_METHODS else "OTHER"
        route = route_of(request)
        observe_request(method, route, response.status_code, time.perf_counter() - started)
        if tracing.enabled():
            tracing.name_server_span(method, route)
        return response


# ---- executions ----

_execution_children: dict[tuple[str, str], Any] = {}
_duration_children: dict[str, Any] = {}
_error_children: dict[tuple[str, str], Any] = {}
TOKENS_IN = TOKENS.labels("input")
TOKENS_OUT = TOKENS.labels("output")


def observe_execution(
    *,
    status: str,
    mode: str,
    input_tokens: int,
    output_tokens: int,
    cost: float,
    duration_ms: int | None,
    attempts: Iterable[dict[str, Any]],
) -> None:
    """An execution this process ended (counted once: by the run that stored its end)."""
    child = _execution_children.get((status, mode))
    if child is None:
        child = _execution_children[(status, mode)] = EXECUTIONS.labels(status, mode)
    child.inc()
    if input_tokens:
        TOKENS_IN.inc(input_tokens)
    if output_tokens:
        TOKENS_OUT.inc(output_tokens)
    if cost:
        COST.inc(cost)
    if duration_ms is not None:
        duration = _duration_children.get(mode)
        if duration is None:
            duration = _duration_children[mode] = EXECUTION_DURATION.labels(mode)
        duration.observe(duration_ms / 1000)
    failed = False
    for attempt in attempts:
        kind = attempt.get("error_kind")
        if kind:
            failed = True
            key = (str(attempt.get("provider") or "unknown"), str(kind))
            errors = _error_children.get(key)
            if errors is None:
                errors = _error_children[key] = PROVIDER_ERRORS.labels(*key)
            errors.inc()
    if failed or _breakers_unhealthy:
        # Breakers only change state when calls fail (or while one is not closed): a healthy
        # process spends nothing here.
        refresh_breakers()


# ---- circuit breakers ----

_breakers_unhealthy = False
_breaker_values: dict[str, int] = {}


def refresh_breakers() -> None:
    """Write this process's breaker states into its gauge file."""
    global _breakers_unhealthy
    from agents.engine import default_breakers

    current = {label: BREAKER_VALUES[state] for label, state in default_breakers.states()}
    for label in _breaker_values.keys() - current.keys():
        current[label] = 0  # forgotten by the registry: nothing open any more
    for label, value in current.items():
        if _breaker_values.get(label) != value:
            BREAKER_STATE.labels(label).set(value)
    _breaker_values.clear()
    _breaker_values.update((label, value) for label, value in current.items() if value)
    _breakers_unhealthy = bool(_breaker_values)


# ---- computed at scrape time ----

QUEUE_SQL = """
WITH waiting AS (
    SELECT queue_name, count(*) AS jobs, min(id) AS oldest
    FROM public.procrastinate_jobs WHERE status = 'todo' GROUP BY queue_name
)
SELECT queue_name, jobs, coalesce(extract(epoch FROM now() - (
    SELECT min(at) FROM public.procrastinate_events
    WHERE job_id = waiting.oldest AND type = 'deferred'
)), 0)
FROM waiting
"""
QUEUES = ("executions", "maintenance")


class ScrapeTimeCollector:
    """Values read from the database when scraped (one cheap query each): the job queue's
    depth and the age of its oldest waiting job (ids grow with deferral, and a retried job
    keeps its id)."""

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(QUEUE_JOBS, "Jobs waiting in the queue.", labels=["queue"])
        age = GaugeMetricFamily(
            QUEUE_OLDEST_AGE, "Age of the oldest waiting job.", labels=["queue"]
        )
        try:
            with connection.cursor() as cursor:
                cursor.execute(QUEUE_SQL)
                rows = {name: (int(jobs), float(oldest)) for name, jobs, oldest in cursor}
        except Exception:
            logger.warning("metrics: the database could not be read", exc_info=True)
            return
        for name in sorted({*QUEUES, *rows}):
            jobs, oldest = rows.get(name, (0, 0.0))
            depth.add_metric([name], jobs)
            age.add_metric([name], oldest)
        yield depth
        yield age


def metric_names() -> set[str]:
    """Every series name the platform exports (dashboards and alerts are checked against it)."""
    names = {QUEUE_JOBS, QUEUE_OLDEST_AGE}
    for metric in (
        OPEN_STREAMS,
        HTTP_REQUESTS,
        HTTP_LATENCY,
        EXECUTIONS,
        EXECUTION_DURATION,
        TOKENS,
        COST,
        PROVIDER_ERRORS,
        BREAKER_STATE,
    ):
        for family in metric.describe():
            kind = family.type
            if kind == "counter":
                names.add(f"{family.name}_total")
            elif kind == "histogram":
                names.update(f"{family.name}_{part}" for part in ("bucket", "sum", "count"))
            else:
                names.add(family.name)
    return names
