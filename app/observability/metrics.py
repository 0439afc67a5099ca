"""The Prometheus metrics of one serving process, in a registry of its own (two apps in one
process never collide), and what records into them.

Names follow Prometheus' rules: ``oxify_`` prefix, base units in the name, ``_total`` on
counters; no label holds an execution or node id, and the open-ended ones (workflow and model
names) are capped (:mod:`app.observability.labels`). Every latency target the project sets is
a bucket boundary, so a target reads as one bucket's ratio: 10 ms submit → first node (queue
wait), 25 ms event lag, 50 ms scrape, 3 s takeover. Histograms observed inside a recording span
carry its ``trace_id`` as an exemplar (shown to OpenMetrics scrapes).

Recording happens where things happen (the event loop); a scrape only reads what was recorded,
so it never waits for a query. The text format is written by :mod:`app.observability.exposition`
in slices on the loop (one slice is about a millisecond); OpenMetrics by the library's writer
in a worker thread.
"""

from __future__ import annotations

import asyncio
import platform
from collections.abc import Sequence
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import choose_encoder

from app.observability import exemplars
from app.observability.exposition import TextExposition
from app.observability.labels import OTHER, CappedValues
from app.observability.node_metrics import NodeMetrics
from app.store.claims import ClaimedRun, Kind

# Seconds. HTTP: 10 ms and 50 ms (a scrape) are targets; streams are left out.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# A run: from a transform chain (10 ms) to a day-long wait for people.
RUN_BUCKETS = (
    *(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    *(120, 300, 600, 1800, 3600, 7200, 21600, 43200, 86400),
)
# A node attempt: from an inline transform (100 µs) to a ten-minute call.
NODE_BUCKETS = (
    *(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
    *(0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
# Queued → claimed: 10 ms is the submit → first node target on an idle replica.
QUEUE_BUCKETS = (
    *(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
    *(2.5, 5, 10, 30, 60, 300, 900, 3600),
)
# Form created → answered: people, from seconds to a week.
FORM_BUCKETS = (1, 5, 10, 30, 60, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400, 259200, 604800)
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 30, 60)
# Commit → subscriber: 25 ms is the target; notifications are coalesced per 10 ms.
LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
# Last renewal → claimed elsewhere: 3 s is the target (with a short lease).
TAKEOVER_BUCKETS = (0.5, 1, 2, 3, 5, 10, 15, 20, 30, 60, 120, 300)

STREAM_KINDS = ("sse", "websocket")

# The ``_created`` series would add a series per child that the text format's readers ignore.
disable_created_metrics()  # type: ignore[no-untyped-call]


class Metrics:
    """The metric objects of one process, and the methods that record into them."""

    def __init__(self, *, version: str, max_workflows: int, max_models: int) -> None:
        self.registry = registry = CollectorRegistry()
        self.workflow_label = CappedValues(max_workflows)
        self.model_label = CappedValues(max_models)
        self.http_requests = Counter(
            "oxify_http_requests",
            "HTTP requests answered (WebSocket sessions included), by method, route template "
            "and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.http_latency = Histogram(
            "oxify_http_request_duration_seconds",
            "Time to answer HTTP requests, by method and route template (streams left out).",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )
        self.streams = Gauge(
            "oxify_stream_subscribers",
            "Clients following a run's events now (Server-Sent Events, WebSocket).",
            ["kind"],
            registry=registry,
        )
        for kind in STREAM_KINDS:
            self.streams.labels(kind)
        self.runs_started = Counter(
            "oxify_runs_started", "Runs created through this API.", registry=registry
        )
        self.runs_finished = Counter(
            "oxify_runs_finished",
            "Runs that reached a terminal status here, by workflow name (capped) and status.",
            ["workflow", "status"],
            registry=registry,
        )
        self.run_duration = Histogram(
            "oxify_run_duration_seconds",
            "Time from a run's creation to its terminal status (observed where it ended).",
            buckets=RUN_BUCKETS,
            registry=registry,
        )
        self.nodes = NodeMetrics(registry, NODE_BUCKETS)
        self.queue_wait = Histogram(
            "oxify_queue_wait_seconds",
            "Time a run waited queued before a replica claimed it.",
            buckets=QUEUE_BUCKETS,
            registry=registry,
        )
        self.form_response = Histogram(
            "oxify_form_response_seconds",
            "Time from a form or approval's creation to its answer, by kind.",
            ["kind"],
            buckets=FORM_BUCKETS,
            registry=registry,
        )
        self.llm_tokens = Counter(
            "oxify_llm_tokens",
            "Tokens of answered model calls, by provider, model (capped) and type (input, output).",
            ["provider", "model", "type"],
            registry=registry,
        )
        self.llm_cost = Counter(
            "oxify_llm_cost_dollars",
            "Estimated price of answered model calls (models with a price), by provider and "
            "model (capped).",
            ["provider", "model"],
            registry=registry,
        )
        self.llm_first_token = Histogram(
            "oxify_llm_time_to_first_token_seconds",
            "Time from a streamed model call's request to its first text, by provider and model.",
            ["provider", "model"],
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self.publish_lag = Histogram(
            "oxify_event_publish_lag_seconds",
            "Time from an event batch's commit to a local stream subscriber taking it.",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.notify_lag = Histogram(
            "oxify_event_notify_lag_seconds",
            "Time from an event's commit on another replica to its read here after a "
            "notification (from the event's timestamp: replica clocks must agree).",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.takeovers = Counter(
            "oxify_lease_takeovers",
            "Runs this replica took over from a lease (expired: its owner stopped renewing; "
            "released: ended by a stopping or restarted replica; own: this replica's own lease "
            "lapsed).",
            ["reason"],
            registry=registry,
        )
        self.takeover_delay = Histogram(
            "oxify_takeover_delay_seconds",
            "Time a run went undriven before a takeover: its lease's last renewal → claimed.",
            buckets=TAKEOVER_BUCKETS,
            registry=registry,
        )
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        Info("oxify_build", "The running build.", registry=registry).info(
            {"version": version, "python": platform.python_version()}
        )

        # -- HTTP -------------------------------------------------------------------------------

        self._text = TextExposition(registry)

    def observe_request(
        self,
        method: str,
        route: str,
        status: int,
        seconds: float | None,
        exemplar: exemplars.Exemplar | None = None,
    ) -> None:
        """A request answered; ``seconds`` None for a stream (its length says nothing);
        ``exemplar``: its trace."""
        self.http_requests.labels(method, route, str(status)).inc()
        if seconds is not None:
            self.http_latency.labels(method, route).observe(seconds, exemplar)

    # -- runs, queue, leases, forms ---------------------------------------------------------

    def run_finished(self, workflow: str | None, status: str, seconds: float | None) -> None:
        """A run ended here (``workflow`` None: its name could not be read)."""
        label = OTHER if workflow is None else self.workflow_label(workflow)
        self.runs_finished.labels(label, status).inc()
        if seconds is not None:
            self.run_duration.observe(max(seconds, 0.0))

    def claimed(
        self, kind: Kind, runs: Sequence[ClaimedRun], *, replica_id: str, lease_s: float
    ) -> None:
        """Runs a claim took: queued ones waited in the queue; recovered ones were taken over."""
        for run in runs:
            claimed_at = run.claimed_at
            if claimed_at is None:
                continue
            if kind == "queued":
                if run.queued_at is not None:
                    self.queue_wait.observe(_seconds(run.queued_at, claimed_at))
                continue
            expired_at = run.lease_expired_at
            if expired_at is None:
                self.takeovers.labels("released").inc()  # when it was released is not known
                continue
            own = run.previous_owner == replica_id
            self.takeovers.labels("own" if own else "expired").inc()
            # The lease was last renewed lease_s before it expired (replicas share lease_s).
            delay = _seconds(expired_at, claimed_at) + lease_s
            self.takeover_delay.observe(delay)

    def form_answered(self, kind: str, created_at: datetime, answered_at: datetime) -> None:
        self.form_response.labels(kind).observe(
            _seconds(created_at, answered_at), exemplars.current()
        )

    # -- the event bus (LagWatch) -----------------------------------------------------------

    def published(self, seconds: float) -> None:
        self.publish_lag.observe(seconds, exemplars.current())

    def notified(self, seconds: float) -> None:
        self.notify_lag.observe(max(seconds, 0.0))

    # -- model calls (LlmMeter) -------------------------------------------------------------

    def llm_call(
        self,
        provider: str,
        model: str,
        *,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float | None,
    ) -> None:
        model = self.model_label(model)
        self.llm_tokens.labels(provider, model, "input").inc(input_tokens)
        self.llm_tokens.labels(provider, model, "output").inc(output_tokens)
        if cost_usd is not None:
            self.llm_cost.labels(provider, model).inc(cost_usd)

    def first_token(self, provider: str, model: str, seconds: float) -> None:
        self.llm_first_token.labels(provider, self.model_label(model)).observe(
            seconds, exemplars.current()
        )

    # -- scrapes ----------------------------------------------------------------------------

    async def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition (OpenMetrics, with exemplars, when ``accept`` asks for it) and its
        content type."""
        encode, content_type = choose_encoder(accept or "")
        if encode is generate_latest:  # the plain text format, as Prometheus asks by default
            return await self._text.render_async(), content_type
        return await asyncio.to_thread(encode, self.registry), content_type


def _seconds(start: datetime, end: datetime) -> float:
    return max((end - start).total_seconds(), 0.0)
