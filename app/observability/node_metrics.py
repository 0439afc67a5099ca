"""The engine's run observer for the metrics: every node attempt's duration by node type and
outcome, and retries by node type (the engine calls it once per node, so it keeps the labelled
children it made: an observation is a clock read and a histogram update)."""

from __future__ import annotations

import time

# ruff: noqa: ARG002 (watches take what every observer is told, and ignore what they need not)
from prometheus_client import CollectorRegistry, Counter, Histogram

from app.engine.ports import AttemptWatch, NodeWatch
from app.engine.run.observe import UNWATCHED
from app.observability import exemplars


class NodeMetrics:
    """A :class:`app.engine.ports.RunObserver` that records into ``registry``."""

    def __init__(self, registry: CollectorRegistry, buckets: tuple[float, ...]) -> None:
        self._durations = Histogram(
            "oxify_node_duration_seconds",
            "Time node attempts took, by node type and outcome (completed, failed, suspended, "
            "interrupted).",
            ["node_type", "outcome"],
            buckets=buckets,
            registry=registry,
        )
        self._retries = Counter(
            "oxify_node_retries",
            "Node attempts that failed and were retried, by node type.",
            ["node_type"],
            registry=registry,
        )
        self._children: dict[tuple[str, str], Histogram] = {}
        self._retried: dict[str, Counter] = {}

    def node(self, key: str, node_type: str) -> NodeWatch:
        return _Node(self, node_type)

    def checkpoint(self, number: int) -> AttemptWatch:
        return UNWATCHED

    def attempt_ended(self, node_type: str, outcome: str, seconds: float) -> None:
        child = self._children.get((node_type, outcome))
        if child is None:
            child = self._children[node_type, outcome] = self._durations.labels(node_type, outcome)
        child.observe(seconds, exemplars.current())

    def retried(self, node_type: str) -> None:
        child = self._retried.get(node_type)
        if child is None:
            child = self._retried[node_type] = self._retries.labels(node_type)
        child.inc()


class _Node:
    __slots__ = ("_metrics", "_node_type")

    def __init__(self, metrics: NodeMetrics, node_type: str) -> None:
        self._metrics = metrics
        self._node_type = node_type

    def attempt(self, attempt: int) -> AttemptWatch:
        return _Attempt(self._metrics, self._node_type)

    def retry(self, attempt: int, delay_s: float, error_code: str) -> None:
        self._metrics.retried(self._node_type)

    def end(self, outcome: str, error_code: str | None = None) -> None:
        return None  # attempts are what is timed


class _Attempt:
    __slots__ = ("_metrics", "_node_type", "_started")

    def __init__(self, metrics: NodeMetrics, node_type: str) -> None:
        self._metrics = metrics
        self._node_type = node_type
        self._started = time.perf_counter()

    def end(self, outcome: str, error_code: str | None = None) -> None:
        elapsed = time.perf_counter() - self._started
        self._metrics.attempt_ended(self._node_type, outcome, elapsed)
