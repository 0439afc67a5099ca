"""Prometheus metrics of one app, in a registry of its own (two apps in a process never collide).

HTTP requests are counted and timed by route template (``/v1/executions/{execution_id}``, never
the raw path) by a pure ASGI middleware; the number of runs this process drives is read from the
runner when scraped, and the LLM answer caches' hits and misses from the caches.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from fastapi import FastAPI
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.domain.events import Event
from app.observability.exposition import TextExposition

# The ``_created`` series would add one series per child that the text format's readers ignore.
disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNMATCHED_ROUTE = "<unmatched>"  # one label for every unknown path: bounded cardinality
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """The metric objects of one app."""

    def __init__(self, app: FastAPI) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "oxify_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "oxify_http_request_duration_seconds",
            "Time to answer HTTP requests (seconds), by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.runs_started = Counter(
            "oxify_runs_started", "Runs created through this API.", registry=self.registry
        )
        self.runs_finished = Counter(
            "oxify_runs_finished",
            "Runs that reached a terminal status, by status (fed by observe_events).",
            ["status"],
            registry=self.registry,
        )
        self.registry.register(_RunningRuns(app))
        self.registry.register(_AnswerCaches(app))
        self.registry.register(_Cluster(app))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        Info("oxify_build", "The running build.", registry=self.registry).info(
            {"version": app.version, "python": platform.python_version()}
        )
        self._text = TextExposition(self.registry)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_latency.labels(method, route).observe(seconds)

    def observe_events(self, events: Sequence[Event]) -> None:
        """Count terminal events; meant to be chained to the journal's publisher."""
        for event in events:
            if event.type.is_terminal:
                self.runs_finished.labels(event.type.value.removeprefix("workflow.")).inc()

    async def render(self) -> bytes:
        """The text exposition (tens of ms of CPU for 10,000 series, in slices that let the
        event loop run in between)."""
        return await self._text.render_async()


class _RunningRuns(Collector):
    """What the runner counts, read when scraped (zeros before start-up): runs driven now,
    claims, lease renewals, recoveries, journal commits and notifying transactions."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
        services = getattr(self._app.state, "services", None)
        counts = services.runner.counts() if services is not None else {}
        yield GaugeMetricFamily(
            "oxify_runs_running",
            "Runs this process is executing now.",
            value=counts.get("running", 0),
        )
        for name, help_text in _RUNNER_COUNTERS.items():
            yield CounterMetricFamily(f"oxify_{name}", help_text, value=counts.get(name, 0))


class _AnswerCaches(Collector):
    """Requests to the process's answer caches (``llm``, ``embeddings``) that found an answer
    and that did not, read from the caches made so far when scraped (none before first use)."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
        services = getattr(self._app.state, "services", None)
        counts = services.answer_cache_counts() if services is not None else {}
        family = CounterMetricFamily(
            "oxify_llm_cache_requests",
            "Lookups in the LLM and embedding answer caches, by kind and result (hit, miss).",
            labels=["kind", "result"],
        )
        for kind, (hits, misses) in sorted(counts.items()):
            family.add_metric([kind, "hit"], hits)
            family.add_metric([kind, "miss"], misses)
        yield family


class _Cluster(Collector):
    """Cluster-wide gauges, the same on every replica: runs by non-terminal status (queued is
    the queue's depth), forms pending by kind and the age of the oldest. Read from what the
    background refresh last got (at most a few seconds old): a scrape runs no query."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
        services = getattr(self._app.state, "services", None)
        counts = services.gauges.counts if services is not None else None
        if counts is None:  # not read yet: no numbers rather than false zeros
            return
        runs = GaugeMetricFamily(
            "oxify_runs", "Runs not finished, by status (all replicas).", labels=["status"]
        )
        for status, count in sorted(counts.runs.items()):
            runs.add_metric([status], count)
        yield runs
        yield GaugeMetricFamily(
            "oxify_queue_depth",
            "Runs queued and not claimed yet (all replicas).",
            value=counts.runs.get("queued", 0),
        )
        pending = GaugeMetricFamily(
            "oxify_forms_pending",
            "Forms and approvals waiting for people, by kind.",
            labels=["kind"],
        )
        for kind, count in sorted(counts.forms_pending.items()):
            pending.add_metric([kind], count)
        yield pending
        oldest = counts.oldest_pending_form
        age = (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "oxify_forms_oldest_pending_age_seconds",
            "Age of the oldest pending form or approval (0 when none waits).",
            value=max(age, 0.0),
        )


_RUNNER_COUNTERS = {
    "claims": "Claiming statements sent (queued runs and lapsed leases).",
    "runs_claimed": "Runs this replica claimed, recovered ones included.",
    "runs_recovered": "Runs this replica took over after their owner's lease lapsed.",
    "lease_renewals": "Lease renewal statements (one renews all of this replica's leases).",
    "journal_commits": "Transactions the journal wrote (events, checkpoints, node results).",
    "notifications": "Notifying transactions sent to the other replicas.",
}


class MetricsMiddleware:
    """Counts and times every HTTP request by route template and status."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts

        async def watched_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path_format", None) or getattr(route, "path", None)
            self.metrics.observe_request(
                scope["method"],
                template or UNMATCHED_ROUTE,
                status,
                time.perf_counter() - started,
            )


def install(app: FastAPI) -> Metrics:
    """Give ``app`` its metrics (``app.state.metrics``) and the middleware that feeds them."""
    metrics = Metrics(app)
    app.state.metrics = metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return metrics


def of(app: FastAPI) -> Metrics:
    metrics: Metrics = app.state.metrics
    return metrics
