"""A run's profile: where its time went, computed from what its event log recorded.

Pure: the caller loads the plan of the version the run ran and the run's node events, and gets
a :class:`~app.domain.views.RunProfile`. The events are read into per-key timelines
(:mod:`~app.engine.analysis.timelines`), folded into top-level spans
(:mod:`~app.engine.analysis.spans`) here, and judged by :mod:`~app.engine.analysis.bottlenecks`.
Choices the records force:

- **Top-level graph only.** Nested keys (``loop[2].x``, ``helper.turn-1/call-0.vote``) are
  folded into their top-level container (the leading identifier of the key): their backoff,
  retries and waiting count as the container's, their running time is already inside the
  container's span. Concurrency is the top-level nodes'.
- **A node's span** runs from its timeline's start to its end (the run's end while unfinished),
  clipped to the run's window; its waits (its nested keys' included) are clipped to the span,
  and its backoff to what the span leaves beside waiting.
- **Gating**: a node's gating dependency is the source that finished last at or before its
  start; the critical path follows those from the node that ended last.

This module is the analysis' entry point: callers import the timeline names from here too.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Mapping

from app.domain import views
from app.domain.events import Event
from app.engine.analysis import bottlenecks, spans
from app.engine.analysis.spans import Span
from app.engine.analysis.timelines import NODE_EVENT_TYPES, NodeTimeline, RunTimes, timelines
from app.engine.compile import graph
from app.engine.compile.plan import Plan

__all__ = [
    "NODE_EVENT_TYPES",
    "SLOWEST",
    "NodeTimeline",
    "RunTimes",
    "profile",
    "profile_events",
    "timelines",
]

SLOWEST = 10  # nodes listed as slowest
_TOP = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def profile_events(plan: Plan, run: RunTimes, events: Iterable[Event]) -> views.RunProfile:
    """:func:`profile` of the :func:`timelines` of ``events``, the garbage collector paused.

    Profiling allocates a few objects per node, all garbage within milliseconds; with the
    collector on, they trigger full passes over the plan and the loaded events that doubled the
    time of a 10,000-node profile (see :func:`~app.engine.compile.graph.gc_paused`).
    """
    with graph.gc_paused():
        return profile(plan, run, timelines(events))


def profile(plan: Plan, run: RunTimes, lines: Mapping[str, NodeTimeline]) -> views.RunProfile:
    """The profile of ``run`` (of ``plan``) from its node timelines.

    Guarantees: critical_path_ms ≤ makespan_ms; efficiency and severities in [0, 1]; per node
    and in total, running + backoff + waiting = span (every time clipped to the run's window).
    """
    first = min((line.started_at for line in lines.values() if line.started_at), default=None)
    t0 = run.started_at if run.started_at is not None else (first or run.now)
    t_end = max(t0, run.finished_at if run.finished_at is not None else run.now)
    nodes, nested = _top_level(plan, lines, t0, t_end)
    _gate(plan, nodes, t0)
    makespan = t_end - t0
    path = _critical_path(nodes)
    busy = sum(node.running for node in nodes.values())
    width = max((len(level) for level in plan.levels), default=0)
    slots = min(run.max_concurrency or width, width)
    efficiency = busy / makespan / slots if makespan > 0 and slots > 0 else 0.0
    window = spans.Window(t0, makespan)
    slowest = heapq.nlargest(SLOWEST, nodes.values(), key=lambda n: (n.running, n.id))
    return views.RunProfile(
        execution_id=run.execution_id,
        status=run.status,
        partial=not run.status.is_terminal,
        makespan_ms=spans.ms(makespan),
        critical_path=[_view(node, t0) for node in path],
        critical_path_ms=spans.ms(sum(node.end - node.start for node in path)),
        slowest=[_view(node, t0) for node in slowest],
        time=views.TimeSplit(
            running_ms=spans.ms(busy),
            backoff_ms=spans.ms(sum(n.backoff for n in nodes.values())),
            queued_ms=spans.ms(sum(n.queued for n in nodes.values())),
            waiting_ms=spans.ms(sum(n.waiting for n in nodes.values())),
        ),
        parallelism=views.Parallelism(
            efficiency=min(1.0, max(0.0, efficiency)),
            busy_ms=spans.ms(busy),
            slots=slots,
            max_concurrency=run.max_concurrency,
            width=width,
        ),
        bottlenecks=bottlenecks.detect(plan, nodes, path, lines, run.max_concurrency, window),
        nodes_profiled=len(nodes),
        nested_folded=nested,
    )


def _top_level(
    plan: Plan, lines: Mapping[str, NodeTimeline], t0: float, t_end: float
) -> tuple[dict[str, Span], int]:
    """The top-level nodes that started or were skipped, with nested keys folded in."""
    nested_of: dict[str, list[NodeTimeline]] = {}
    for key, each in lines.items():
        top = None if key.isidentifier() else _TOP.match(key)
        if top is not None:
            nested_of.setdefault(top.group(), []).append(each)
    nodes: dict[str, Span] = {}
    for node_id, plan_node in plan.nodes.items():
        line = lines.get(node_id)
        if line is None or line.started_at is None:
            continue
        start = min(max(line.started_at, t0), t_end)
        end = min(max(line.finished_at if line.finished_at is not None else t_end, start), t_end)
        inner = nested_of.get(node_id, ())
        found = Span(node_id, plan_node.type, line.status, line.attempts, start, end)
        nodes[node_id] = found
        if inner or line.waits or line.retries:  # most nodes have none of these
            _fold(found, (line, *inner))
    return nodes, sum(map(len, nested_of.values()))


def _fold(node: Span, lines: tuple[NodeTimeline, ...]) -> None:
    """The node's waits, backoff and retries with its nested keys', clipped to its span."""
    start, end = node.start, node.end
    node.waits = spans.merged(
        (max(a, start), min(b if b is not None else end, end))
        for line in lines
        for a, b in line.waits
    )
    node.waiting = sum(b - a for a, b in node.waits)
    backoff = min(sum(line.backoff_s for line in lines), end - start - node.waiting)
    node.backoff = max(0.0, backoff)
    node.retries = sum(line.retries for line in lines)
    node.retried_keys = [line.key for line in lines if line.retries]
    node.last_error = next((line.last_error for line in lines if line.last_error), None)


def _gate(plan: Plan, nodes: dict[str, Span], t0: float) -> None:
    """Each node's gating dependency, the time it became ready, its queued time, and when it
    would have been ready without the gating one (``runner_up``)."""
    table, plan_nodes = plan.table, plan.nodes
    source_of = table.source
    for node in nodes.values():
        ready = runner_up = t0
        gate = None
        for j in table.entering(plan_nodes[node.id].position):
            dep = nodes.get(source_of[j])
            if dep is None or dep.end > node.start or dep.id == gate:
                continue
            if dep.end >= ready:
                runner_up, ready, gate = ready, dep.end, dep.id
            elif dep.end > runner_up:
                runner_up = dep.end
        node.ready, node.runner_up, node.gated_by = ready, runner_up, gate
        node.queued = node.start - ready


def _critical_path(nodes: Mapping[str, Span]) -> list[Span]:
    """From a root to the node that ended last, following each node's gating dependency."""
    if not nodes:
        return []
    node: Span | None = max(nodes.values(), key=lambda n: (n.end, n.start))
    path: list[Span] = []
    while node is not None:
        path.append(node)
        node = nodes[node.gated_by] if node.gated_by is not None else None
    path.reverse()
    return path


def _view(node: Span, t0: float) -> views.ProfileNode:
    return views.ProfileNode(
        node_id=node.id,
        type=node.type,
        status=node.status,
        attempts=node.attempts,
        started_ms=spans.ms(node.start - t0),
        finished_ms=spans.ms(node.end - t0),
        running_ms=spans.ms(node.running),
        backoff_ms=spans.ms(node.backoff),
        waiting_ms=spans.ms(node.waiting),
        queued_ms=spans.ms(node.queued),
        gated_by=node.gated_by,
    )
