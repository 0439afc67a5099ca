"""The app's Prometheus metrics (:mod:`app.observability.metrics`) at the HTTP edge.

HTTP requests are counted and timed by route template (``/v1/executions/{execution_id}``, never
the raw path) by a pure ASGI middleware; streams (Server-Sent Events, WebSockets) are counted but
not timed. What the runner counts, the answer caches' hits and misses and the cluster gauges are
read from the services when scraped; a scrape renders in a worker thread (OpenMetrics, with
exemplars, when its ``Accept`` asks for it).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

from fastapi import FastAPI
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability import exemplars
from app.observability.metrics import Metrics
from app.settings import Settings

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = OPENMETRICS_TYPE
UNMATCHED_ROUTE = "<unmatched>"  # one label for every unknown path: bounded cardinality
EVENT_STREAM = b"text/event-stream"


class _RunningRuns(Collector):
    """What the runner counts, read when scraped (zeros before start-up): runs driven now,
    claims, lease renewals, recoveries, journal commits, notifying transactions and fenced
    writes."""

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
    "fenced_writes": "Journal writes refused because another replica drives the run now.",
}


class MetricsMiddleware:
    """Counts every HTTP request and WebSocket session by route template and status, and times
    the requests that are not streams."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts
        stream = kind == "websocket"
        # The request's trace, taken while its server span is open: it ends with the answer.
        exemplar = None

        async def watched_send(message: Message) -> None:
            nonlocal status, stream, exemplar
            sent = message["type"]
            if sent in ("http.response.start", "websocket.http.response.start"):
                status = message["status"]
                stream = stream or _is_event_stream(message)
                exemplar = exemplars.current()
            elif sent == "websocket.accept":
                status = 101
            elif sent == "websocket.close" and status == 500:
                status = 403  # closed before it was accepted: the handshake was refused
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path_format", None) or getattr(route, "path", None)
            self.metrics.observe_request(
                scope.get("method", "GET"),  # a WebSocket opens with a GET
                template or UNMATCHED_ROUTE,
                status,
                None if stream else time.perf_counter() - started,
                exemplar or exemplars.current(),
            )


def _is_event_stream(message: Message) -> bool:
    return any(
        name == b"content-type" and value.startswith(EVENT_STREAM)
        for name, value in message.get("headers", ())
    )


def install(app: FastAPI, settings: Settings) -> Metrics:
    """Give ``app`` its metrics (``app.state.metrics``) and the middleware that feeds them."""
    metrics = Metrics(
        version=app.version,
        max_workflows=settings.metrics_max_workflows,
        max_models=settings.metrics_max_models,
    )
    for collector in (_RunningRuns(app), _AnswerCaches(app), _Cluster(app)):
        metrics.registry.register(collector)
    app.state.metrics = metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return metrics


def of(app: FastAPI) -> Metrics:
    metrics: Metrics = app.state.metrics
    return metrics


async def render(app: FastAPI, accept: str | None) -> tuple[bytes, str]:
    """The scrape's body and content type."""
    return await of(app).render(accept)
