"""Bottlenecks: the rules that read a profile's spans and name what slowed the run, each with a
fix. A bottleneck names at most ``MAX_LISTED`` nodes and has a severity in [0, 1]; the rules
that fire per node or edge (slow critical nodes, retry storms, unread edges) list at most
``MAX_LISTED`` bottlenecks each.

- **slow_critical_node**: a node on the critical path that ran ``SLOW_SHARE`` of the run or more.
- **retry_storm**: a node retried ``STORM_RETRIES`` times or more (its nested nodes' retries
  included), or retried and in backoff ``STORM_BACKOFF_SHARE`` of the run or more.
- **starved_slots**: with a ``max_concurrency``, ready nodes that waited while every slot was
  busy (a node waiting for people holds no slot).
- **unread_edge**: an edge whose target refers to nothing of its source, so it only orders the
  two; edges from ``start``, ``if`` and ``switch``, branch edges, ``set_var`` sources of nodes
  reading ``vars``, ``end`` targets and ``code`` nodes without ``inputs`` are never flagged.
- **repeated_llm_call** is what the records can show: nested ``llm`` answers with
  ``cached: true`` (an identical request answered before; a top-level one repeats another run's
  request, which this run cannot avoid), and top-level ``llm`` nodes with identical configs (they
  render the same request unless ``vars`` changed between them). Prompts are not recorded.
"""

from __future__ import annotations

import bisect
import heapq
import json
import re
from collections.abc import Collection, Mapping

from app.domain import views
from app.engine.analysis import spans
from app.engine.analysis.spans import Span, Window
from app.engine.analysis.timelines import NodeTimeline
from app.engine.compile.plan import NO_PARTS, Plan, PlanNode

SLOW_SHARE = 0.2  # of the makespan: a critical node running this long is a bottleneck
STORM_RETRIES = 2  # retries of one node (nested ones included) that make a storm
STORM_BACKOFF_SHARE = 0.1  # of the makespan, spent in one node's backoff
MAX_LISTED = 20  # bottlenecks of one type, and nodes named by one bottleneck
_ITERATION = re.compile(r"\[\d+\]")
_GATES = frozenset({"start", "if", "switch"})  # edges from these order, never carry data


def detect(
    plan: Plan,
    nodes: Mapping[str, Span],
    path: list[Span],
    lines: Mapping[str, NodeTimeline],
    max_concurrency: int | None,
    run: Window,
) -> list[views.Bottleneck]:
    """Every rule's bottlenecks in ``run`` (of ``plan``), most severe first.

    ``nodes`` are the top-level spans, ``path`` the critical path through them and ``lines``
    every key's timeline (nested ones included); ties sort by type, then by the nodes named.
    """
    found = [
        *_slow_critical(path, run),
        *_retry_storms(nodes, run),
        *_starved(nodes, max_concurrency, run),
        *_unread_edges(plan, nodes, run),
        *_repeated_llm_calls(plan, nodes, lines),
    ]
    found.sort(key=lambda b: (-b.severity, b.type, b.nodes))
    return found


def _slow_critical(path: list[Span], run: Window) -> list[views.Bottleneck]:
    slow = [node for node in path if run.share(node.running) >= SLOW_SHARE]
    return [
        views.Bottleneck(
            type="slow_critical_node",
            severity=run.share(node.running),
            nodes=[node.id],
            detail=f"{node.id} ({node.type}) ran {spans.ms(node.running):g} ms on the critical "
            f"path, {run.share(node.running):.0%} of the run.",
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


def _retry_storms(nodes: Mapping[str, Span], run: Window) -> list[views.Bottleneck]:
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
            f"{spans.ms(node.backoff):g} ms of backoff; error: {node.last_error or 'unknown'}.",
            fix=f"Fix what makes {node.id} fail before tuning `retry`: check its error "
            "(`node.retry` events); if it is rate-limited, lower `max_concurrency` or raise "
            "`retry.initial_delay_ms` instead of retrying sooner.",
        )
        for node in storms[:MAX_LISTED]
    ]


def _starved(nodes: Mapping[str, Span], limit: int | None, run: Window) -> list[views.Bottleneck]:
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
            detail=f"{len(starved)} ready nodes waited {spans.ms(sum(starved.values())):g} ms in "
            f"total while all {limit} slots were busy ({spans.ms(wall):g} ms of the run).",
            fix=f"Raise the run's `max_concurrency` from {limit} to {demand} (the slots plus "
            "the most nodes starved at once), if what they call can take it.",
        )
    ]


def _busy_pieces(node: Span) -> list[tuple[float, float]]:
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
    return spans.merged(found)


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


def _unread_edges(plan: Plan, nodes: Mapping[str, Span], run: Window) -> list[views.Bottleneck]:
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
            + (f"; waiting for it delayed {target} by {spans.ms(gain):g} ms." if gain else "."),
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
    plan: Plan, nodes: Mapping[str, Span], lines: Mapping[str, NodeTimeline]
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
