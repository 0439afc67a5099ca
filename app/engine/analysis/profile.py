"""A run's profile: where its time went, computed from what its event log recorded.

Pure: the caller loads the plan of the version the run ran and the run's node events, and gets
a :class:`~app.domain.views.RunProfile`. Choices the records force:

- **Top-level graph only.** Nested keys (``loop[2].x``, ``helper.turn-1/call-0.vote``) are
  folded into their top-level container (the leading identifier of the key): their backoff,
  retries and waiting count as the container's, their running time is already inside the
  container's span. Concurrency is the top-level nodes'.
- **A node's span** runs from its first ``node.started`` to its ending event (the run's end
  while unfinished), and is running + backoff (the ``delay_ms`` of its ``node.retry`` events)
  + waiting (``node.waiting`` until it starts again). A node started again after it ended (a
  retried run) is profiled by its last run; time an interrupted attempt lost before it was
  taken over counts as running.
- **Gating**: a node's gating dependency is the source that finished last at or before its
  start; the critical path follows those from the node that ended last.
- **Repeated LLM calls** are what the records can show: ``llm`` answers with ``cached: true``
  (an identical request answered before), and top-level ``llm`` nodes with identical configs
  (they render the same request unless ``vars`` changed between them). Prompts are not recorded.
"""

from __future__ import annotations

import bisect
import heapq
import json
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from app.domain import views
from app.domain.events import Event, EventType
from app.domain.status import ExecutionStatus
from app.engine.compile import graph
from app.engine.compile.plan import NO_PARTS, Plan, PlanNode

SLOWEST = 10  # nodes listed as slowest
SLOW_SHARE = 0.2  # of the makespan: a critical node running this long is a bottleneck
STORM_RETRIES = 2  # retries of one node (nested ones included) that make a storm
STORM_BACKOFF_SHARE = 0.1  # of the makespan, spent in one node's backoff
MAX_LISTED = 20  # bottlenecks of one type, and nodes named by one bottleneck
_TOP = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LAST = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")
_ITERATION = re.compile(r"\[\d+\]")
_GATES = frozenset({"start", "if", "switch"})  # edges from these order, never carry data
_NODE_EVENTS = frozenset(
    {
        EventType.NODE_STARTED,
        EventType.NODE_RETRY,
        EventType.NODE_WAITING,
        EventType.NODE_COMPLETED,
        EventType.NODE_FAILED,
        EventType.NODE_SKIPPED,
        EventType.NODE_CANCELLED,
    }
)
NODE_EVENT_TYPES = frozenset(t.value for t in _NODE_EVENTS)
"""The event types a profile reads (a store can load only these)."""


@dataclass(slots=True)
class NodeTimeline:
    """What the log says of one node key; times are POSIX seconds."""

    key: str
    node_id: str
    type: str | None = None
    status: str = "pending"
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    retries: int = 0
    backoff_s: float = 0.0
    # Shared and replaced, never appended to: most nodes never wait (one object less each).
    waits: tuple[tuple[float, float | None], ...] = ()  # None: still waiting
    last_error: str | None = None  # code of the last retried error
    cached: bool = False  # an llm answer served from the cache


@dataclass(frozen=True, slots=True)
class RunTimes:
    """The run as its row says; times are POSIX seconds, ``now`` ends what has not ended."""

    execution_id: str
    status: ExecutionStatus
    started_at: float | None
    finished_at: float | None
    now: float
    max_concurrency: int | None


def timelines(events: Iterable[Event]) -> dict[str, NodeTimeline]:
    """Each node key's timeline from the run's events in ``seq`` order (other types ignored)."""
    found: dict[str, NodeTimeline] = {}
    for event in events:
        key = event.node_id
        if key is None or event.type not in _NODE_EVENTS:
            continue
        at = event.ts.timestamp()
        line = found.get(key)
        if line is None:
            last = key if key.isidentifier() else _LAST.search(key)
            node_id = last if isinstance(last, str) else last.group() if last else key
            line = found[key] = NodeTimeline(key, node_id)
        _apply(line, event, at)
    return found


def _apply(line: NodeTimeline, event: Event, at: float) -> None:
    data = event.data
    kind = event.type
    ending = _ENDING.get(kind)
    if ending is not None:
        line.finished_at = at
        line.status = ending
        if line.started_at is None:  # skipped: it never ran; it resolved its edges here
            line.started_at = at
        if line.waits:
            _stop_waiting(line, at)
        _count_attempt(line, data)
        output = data.get("output")
        line.cached = type(output) is dict and output.get("cached") is True
    elif kind is EventType.NODE_STARTED:
        if line.finished_at is not None:  # run again after it ended: profile the last run
            line.started_at = line.finished_at = None
            line.retries, line.backoff_s, line.waits = 0, 0.0, ()
        if line.started_at is None:
            line.started_at = at
        if line.waits:
            _stop_waiting(line, at)
        line.type = data.get("type", line.type)
        _count_attempt(line, data)
        line.status = "running"
    elif kind is EventType.NODE_RETRY:
        line.retries += 1
        line.backoff_s += float(data.get("delay_ms") or 0.0) / 1000.0
        error = data.get("error")
        line.last_error = error.get("code") if isinstance(error, dict) else None
    elif kind is EventType.NODE_WAITING:
        line.waits = (*line.waits, (at, None))
        line.status = "waiting"


def _count_attempt(line: NodeTimeline, data: Mapping[str, Any]) -> None:
    attempt = data.get("attempt")
    if type(attempt) is int and attempt > line.attempts:
        line.attempts = attempt


def _stop_waiting(line: NodeTimeline, at: float) -> None:
    if line.waits[-1][1] is None:
        line.waits = (*line.waits[:-1], (line.waits[-1][0], at))


_ENDING = {
    EventType.NODE_COMPLETED: "completed",
    EventType.NODE_FAILED: "failed",
    EventType.NODE_SKIPPED: "skipped",
    EventType.NODE_CANCELLED: "cancelled",
}


@dataclass(slots=True)
class _Node:
    """A top-level node's numbers, clipped to the run's window."""

    id: str
    type: str
    status: str
    attempts: int
    start: float
    end: float
    backoff: float = 0.0
    waiting: float = 0.0
    retries: int = 0
    waits: list[tuple[float, float]] | tuple[()] = ()
    retried_keys: list[str] | tuple[()] = ()
    last_error: str | None = None
    queued: float = 0.0
    ready: float = 0.0
    runner_up: float = 0.0
    gated_by: str | None = None

    @property
    def running(self) -> float:
        return self.end - self.start - self.backoff - self.waiting


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
    span = _Window(t0, makespan)
    bottlenecks = [
        *_slow_critical(path, span),
        *_retry_storms(nodes, span),
        *_starved(nodes, run.max_concurrency, span),
        *_unread_edges(plan, nodes, span),
        *_repeated_llm_calls(plan, nodes, lines),
    ]
    bottlenecks.sort(key=lambda b: (-b.severity, b.type, b.nodes))
    slowest = heapq.nlargest(SLOWEST, nodes.values(), key=lambda n: (n.running, n.id))
    return views.RunProfile(
        execution_id=run.execution_id,
        status=run.status,
        partial=not run.status.is_terminal,
        makespan_ms=_ms(makespan),
        critical_path=[_view(node, t0) for node in path],
        critical_path_ms=_ms(sum(node.end - node.start for node in path)),
        slowest=[_view(node, t0) for node in slowest],
        time=views.TimeSplit(
            running_ms=_ms(busy),
            backoff_ms=_ms(sum(n.backoff for n in nodes.values())),
            queued_ms=_ms(sum(n.queued for n in nodes.values())),
            waiting_ms=_ms(sum(n.waiting for n in nodes.values())),
        ),
        parallelism=views.Parallelism(
            efficiency=min(1.0, max(0.0, efficiency)),
            busy_ms=_ms(busy),
            slots=slots,
            max_concurrency=run.max_concurrency,
            width=width,
        ),
        bottlenecks=bottlenecks,
        nodes_profiled=len(nodes),
        nested_folded=nested,
    )


@dataclass(frozen=True, slots=True)
class _Window:
    start: float
    length: float

    def share(self, seconds: float) -> float:
        """``seconds`` as a fraction of the run, in [0, 1] (a run of no length: 0)."""
        return min(1.0, max(0.0, seconds / self.length)) if self.length > 0 else 0.0


def _top_level(
    plan: Plan, lines: Mapping[str, NodeTimeline], t0: float, t_end: float
) -> tuple[dict[str, _Node], int]:
    """The top-level nodes that started or were skipped, with nested keys folded in."""
    nested_of: dict[str, list[NodeTimeline]] = {}
    for key, each in lines.items():
        top = None if key.isidentifier() else _TOP.match(key)
        if top is not None:
            nested_of.setdefault(top.group(), []).append(each)
    nodes: dict[str, _Node] = {}
    for node_id, plan_node in plan.nodes.items():
        line = lines.get(node_id)
        if line is None or line.started_at is None:
            continue
        start = min(max(line.started_at, t0), t_end)
        end = min(max(line.finished_at if line.finished_at is not None else t_end, start), t_end)
        inner = nested_of.get(node_id, ())
        found = _Node(node_id, plan_node.type, line.status, line.attempts, start, end)
        nodes[node_id] = found
        if inner or line.waits or line.retries:  # most nodes have none of these
            _fold(found, (line, *inner))
    return nodes, sum(map(len, nested_of.values()))


def _fold(node: _Node, lines: tuple[NodeTimeline, ...]) -> None:
    """The node's waits, backoff and retries with its nested keys', clipped to its span."""
    start, end = node.start, node.end
    node.waits = _merged(
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


def _merged(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """The union of ``intervals`` as sorted, disjoint intervals (empty ones dropped)."""
    merged: list[tuple[float, float]] = []
    for a, b in sorted(i for i in intervals if i[1] > i[0]):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def _gate(plan: Plan, nodes: dict[str, _Node], t0: float) -> None:
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


def _critical_path(nodes: Mapping[str, _Node]) -> list[_Node]:
    """From a root to the node that ended last, following each node's gating dependency."""
    if not nodes:
        return []
    node: _Node | None = max(nodes.values(), key=lambda n: (n.end, n.start))
    path: list[_Node] = []
    while node is not None:
        path.append(node)
        node = nodes[node.gated_by] if node.gated_by is not None else None
    path.reverse()
    return path


def _slow_critical(path: list[_Node], run: _Window) -> list[views.Bottleneck]:
    slow = [node for node in path if run.share(node.running) >= SLOW_SHARE]
    return [
        views.Bottleneck(
            type="slow_critical_node",
            severity=run.share(node.running),
            nodes=[node.id],
            detail=f"{node.id} ({node.type}) ran {_ms(node.running):g} ms on the critical path, "
            f"{run.share(node.running):.0%} of the run.",
            fix=_SPEEDUPS.get(node.type, _SPEEDUP).format(id=node.id),
        )
        for node in sorted(slow, key=lambda n: -n.running)[:MAX_LISTED]
    ]


_SPEEDUP = (
    "Shorten {id} or take work off the critical path: split it so independent parts run in "
    "parallel, or move what does not need its dependencies onto another branch."
)
_SPEEDUPS = {
    "llm": "Make {id} cheaper to answer: lower `max_tokens`, a smaller or faster model, a "
    "shorter prompt, or `cache: true` for repeated requests.",
    "agent": "Bound {id}: lower `max_turns`, `tool_timeout_s` and `max_tokens`, and keep "
    "`parallel_tool_calls: true`.",
    "http": "Give {id} a tighter `timeout_s`, or fetch less (paging, filters) per call.",
    "delay": "Shorten {id}'s `seconds`: it sleeps on the critical path.",
    "foreach": "Raise {id}'s `concurrency` so its iterations overlap.",
}


def _retry_storms(nodes: Mapping[str, _Node], run: _Window) -> list[views.Bottleneck]:
    storms = [
        n
        for n in nodes.values()
        if n.retries >= STORM_RETRIES or (n.retries and run.share(n.backoff) >= STORM_BACKOFF_SHARE)
    ]
    storms.sort(key=lambda n: (-n.retries, n.id))
    return [
        views.Bottleneck(
            type="retry_storm",
            severity=max(min(1.0, node.retries / 10), run.share(node.backoff)),
            nodes=node.retried_keys[:MAX_LISTED],
            detail=f"{node.id} was retried {node.retries} times (nested nodes included), "
            f"{_ms(node.backoff):g} ms of backoff; error: {node.last_error or 'unknown'}.",
            fix=f"Fix what makes {node.id} fail before tuning `retry`: check its error "
            "(`node.retry` events); if it is rate-limited, lower `max_concurrency` or raise "
            "`retry.initial_delay_ms` instead of retrying sooner.",
        )
        for node in storms[:MAX_LISTED]
    ]


def _starved(nodes: Mapping[str, _Node], limit: int | None, run: _Window) -> list[views.Bottleneck]:
    """Ready nodes that waited while ``limit`` nodes were busy: the slots were the limit."""
    if limit is None or not nodes:
        return []
    starts, ends = [], []
    for node in nodes.values():
        if node.waits:
            for a, b in _busy_pieces(node):
                starts.append(a)
                ends.append(b)
        elif node.end > node.start:
            starts.append(node.start)
            ends.append(node.end)
    full = _Cover(_at_least(_steps(starts, ends), limit))
    if not full.intervals:
        return []
    starved = {
        node.id: full.within(node.ready, node.start)
        for node in nodes.values()
        if node.start > node.ready
    }
    starved = {k: v for k, v in starved.items() if v > 0}
    if not starved:
        return []
    waiting = [nodes[k] for k in starved]
    steps = _steps([n.ready for n in waiting], [n.start for n in waiting])
    wall = sum(full.within(a, b) for a, b in _at_least(steps, 1))
    demand = limit + max(level for _, level in steps)  # slots full, and these ready
    named = heapq.nlargest(MAX_LISTED, starved, key=starved.__getitem__)
    return [
        views.Bottleneck(
            type="starved_slots",
            severity=run.share(wall),
            nodes=named,
            detail=f"{len(starved)} ready nodes waited {_ms(sum(starved.values())):g} ms in "
            f"total while all {limit} slots were busy ({_ms(wall):g} ms of the run).",
            fix=f"Raise the run's `max_concurrency` from {limit} to {demand} (the slots plus "
            "the most nodes starved at once), if what they call can take it.",
        )
    ]


def _busy_pieces(node: _Node) -> list[tuple[float, float]]:
    """The node's span less its waits (a node waiting for people holds no slot)."""
    pieces, at = [], node.start
    for a, b in node.waits:
        pieces.append((at, a))
        at = b
    pieces.append((at, node.end))
    return [(a, b) for a, b in pieces if b > a]


def _steps(starts: list[float], ends: list[float]) -> list[tuple[float, int]]:
    """How many of the intervals (``starts[i]``, ``ends[i]``) are open after each of their
    ends and starts, in time order; an end comes before a start at the same instant."""
    starts.sort()
    ends.sort()
    steps: list[tuple[float, int]] = []
    level = j = 0
    for at in starts:
        while j < len(ends) and ends[j] <= at:
            level -= 1
            steps.append((ends[j], level))
            j += 1
        level += 1
        steps.append((at, level))
    for at in ends[j:]:
        level -= 1
        steps.append((at, level))
    return steps


def _at_least(steps: list[tuple[float, int]], count: int) -> list[tuple[float, float]]:
    """Where at least ``count`` intervals are open, as sorted disjoint intervals."""
    found: list[tuple[float, float]] = []
    before, since = 0, 0.0
    for at, level in steps:
        if before < count <= level:
            since = at
        elif level < count <= before and at > since:
            found.append((since, at))
        before = level
    return _merged(found)


class _Cover:
    """Sorted disjoint intervals, and how much of any interval they cover (prefix sums)."""

    def __init__(self, intervals: list[tuple[float, float]]) -> None:
        self.intervals = intervals
        self.starts = [a for a, _ in intervals]
        self.before = [0.0]  # before[i]: what intervals[:i] cover
        for a, b in intervals:
            self.before.append(self.before[-1] + b - a)

    def within(self, a: float, b: float) -> float:
        """How much of [a, b] the intervals cover."""
        return self._upto(b) - self._upto(a)

    def _upto(self, t: float) -> float:
        i = bisect.bisect_right(self.starts, t)
        if i == 0:
            return 0.0
        a, b = self.intervals[i - 1]
        return self.before[i - 1] + min(t, b) - a


def _unread_edges(plan: Plan, nodes: Mapping[str, _Node], run: _Window) -> list[views.Bottleneck]:
    """Edges whose target refers to nothing of its source: they only order the two nodes."""
    found: list[tuple[float, str, str]] = []
    table = plan.table
    for target, target_node in plan.nodes.items():
        entering = table.entering(target_node.position)
        if not entering or target_node.type == "end" or _reads_everything(target_node):
            continue
        used = _names(target_node)
        for j in entering:
            source = table.source[j]
            if source in used or table.branch[j] is not None:
                continue
            kind = plan.nodes[source].type
            if kind in _GATES or (kind == "set_var" and "vars" in used):
                continue
            node = nodes.get(target)
            # Without the edge the target would have been ready when its runner-up ended.
            gain = node.ready - node.runner_up if node and node.gated_by == source else 0.0
            found.append((-gain, source, target))
    listed = [
        (-gain, source, target) for gain, source, target in heapq.nsmallest(MAX_LISTED, found)
    ]
    return [
        views.Bottleneck(
            type="unread_edge",
            severity=run.share(gain),
            nodes=[source, target],
            detail=f"{target} reads nothing of {source}"
            + (f"; waiting for it delayed {target} by {_ms(gain):g} ms." if gain else "."),
            fix=f"Remove the edge {source} → {target} (unless {target} needs a side effect of "
            f"{source}), so {target} starts when the nodes it reads have finished.",
        )
        for gain, source, target in listed
    ]


def _reads_everything(node: PlanNode) -> bool:
    """A ``code`` node without an ``inputs`` mapping gets the whole run's context."""
    return node.type == "code" and node.raw_config.get("inputs") is None


def _names(node: PlanNode) -> Collection[str]:
    """Every name the node's templates and expressions use, its nested graphs' included."""
    parts = node.parts
    if parts is NO_PARTS:
        return ()
    templated, expressions = parts.templated, parts.expressions
    if len(templated) == 1 and not expressions and not parts.graphs:  # the common node
        for value in templated.values():
            return value.names
    names: set[str] = set()
    for value in templated.values():
        names |= value.names
    for expression in expressions.values():
        names |= expression.names
    for nested in parts.graphs.values():
        for inner in nested.nodes.values():
            names.update(_names(inner))
    return names


def _repeated_llm_calls(
    plan: Plan, nodes: Mapping[str, _Node], lines: Mapping[str, NodeTimeline]
) -> list[views.Bottleneck]:
    found: list[views.Bottleneck] = []
    same: dict[str, list[str]] = {}
    for node_id, node in plan.nodes.items():
        if node.type == "llm" and node_id in nodes:
            config = json.dumps(node.raw_config, sort_keys=True, default=str)
            same.setdefault(config, []).append(node_id)
    for group in same.values():
        if len(group) > 1:
            found.append(
                views.Bottleneck(
                    type="repeated_llm_call",
                    severity=(len(group) - 1) / len(group),
                    nodes=group[:MAX_LISTED],
                    detail=f"{len(group)} llm nodes have the same config: they send the same "
                    "request.",
                    fix=f"Keep {group[0]} and have the others' readers use "
                    f"`{{{{ {group[0]}.output }}}}`.",
                )
            )
    calls: dict[str, list[NodeTimeline]] = {}
    for line in lines.values():
        # Only nested calls (iterations): a top-level answer from the cache repeats another
        # run's request, which this run cannot avoid.
        if line.type == "llm" and line.finished_at is not None and line.key != line.node_id:
            # One node's calls: its key with the iteration numbers left out (loop[*].ask).
            calls.setdefault(_ITERATION.sub("[*]", line.key), []).append(line)
    for node_id, made in sorted(calls.items()):
        cached = [line.key for line in made if line.cached]
        if cached:
            found.append(
                views.Bottleneck(
                    type="repeated_llm_call",
                    severity=len(cached) / len(made),
                    nodes=cached[:MAX_LISTED],
                    detail=f"{len(cached)} of {len(made)} calls of {node_id} repeated an "
                    "earlier identical request (answered from the cache).",
                    fix=f"Make the call once: move {node_id} out of the loop (or before the "
                    "nodes that repeat it) and read its output where it is needed.",
                )
            )
    return found


def _view(node: _Node, t0: float) -> views.ProfileNode:
    return views.ProfileNode(
        node_id=node.id,
        type=node.type,
        status=node.status,
        attempts=node.attempts,
        started_ms=_ms(node.start - t0),
        finished_ms=_ms(node.end - t0),
        running_ms=_ms(node.running),
        backoff_ms=_ms(node.backoff),
        waiting_ms=_ms(node.waiting),
        queued_ms=_ms(node.queued),
        gated_by=node.gated_by,
    )


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)
