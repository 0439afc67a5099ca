"""Pure scheduling decisions for one graph: which nodes are ready, which are skipped.

The state machine of the contract's "Branching and joins": a node is ready when every incoming
edge is resolved and at least one is live; with all incoming edges dead it is skipped and its own
edges die (dead-path elimination). No I/O, no clock, no randomness: the same results applied in
the same order give the same decisions, which is what makes resume-by-replay exact.

Functions mutate the :class:`GraphState` they are given and return what changed. Copying the
state on every step would make a 10,000-node chain quadratic; the state is owned by one graph
loop, so mutation is safe and each step is O(out-degree).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from app.domain.status import NodeStatus
from app.engine.compile.plan import Plan

DependencyStrategy = Literal["skip", "defaults", "fail"]


class EdgeState(Enum):
    LIVE = "live"
    DEAD = "dead"
    POISONED = "poisoned"  # the source failed under the ``fail`` dependency strategy


@dataclass(slots=True)
class GraphState:
    """Per-node counters and statuses of one execution of one graph."""

    plan: Plan
    unresolved: dict[str, int]
    live: dict[str, int]
    poisoned: dict[str, int]
    status: dict[str, NodeStatus]
    level_remaining: list[int]
    final_count: int = 0

    @property
    def is_finished(self) -> bool:
        return self.final_count == len(self.plan.nodes)


@dataclass(slots=True)
class Transition:
    """What resolving one node changed: nodes now ready, skipped, doomed; levels finished."""

    ready: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    doomed: list[str] = field(default_factory=list)
    levels_completed: list[int] = field(default_factory=list)


def initial_state(plan: Plan) -> GraphState:
    """A fresh state: every node pending, no edge resolved."""
    start = plan.table.in_start
    unresolved = dict(zip(plan.nodes, map(operator.sub, start[1:], start), strict=True))
    return GraphState(
        plan=plan,
        unresolved=unresolved,
        live=dict.fromkeys(plan.nodes, 0),
        poisoned=dict.fromkeys(plan.nodes, 0),
        status=dict.fromkeys(plan.nodes, NodeStatus.PENDING),
        level_remaining=[len(level) for level in plan.levels],
    )


def roots(state: GraphState) -> list[str]:
    """Nodes with no incoming edge, ready at the start, in topological order."""
    return [node_id for node_id in state.plan.order if state.unresolved[node_id] == 0]


def mark_started(state: GraphState, node_id: str) -> None:
    """Mark ``node_id`` running."""
    state.status[node_id] = NodeStatus.RUNNING


def mark_waiting(state: GraphState, node_id: str) -> None:
    """The node suspended: it is neither running nor final, and its edges stay unresolved."""
    state.status[node_id] = NodeStatus.WAITING


def resolve(
    state: GraphState,
    node_id: str,
    status: NodeStatus,
    *,
    branch: str | None = None,
    strategy: DependencyStrategy = "skip",
) -> Transition:
    """Record that ``node_id`` ended with ``status`` and propagate along its edges.

    ``completed``: an edge is live when it has no branch or its branch is ``branch``.
    ``failed`` (a failure the run tolerates): edges die under ``skip``, stay live under
    ``defaults`` (the dependant runs with a null input) and are poisoned under ``fail`` (the
    dependant fails). ``skipped`` and ``cancelled``: edges die. Skips cascade in this call.
    """
    transition = Transition([], [], [], [])
    _finish(state, node_id, status, transition)
    nodes, table = state.plan.nodes, state.plan.table
    targets, branches = table.target, table.branch
    live, poisoned, unresolved = state.live, state.poisoned, state.unresolved
    work: list[tuple[str, NodeStatus, str | None]] = [(node_id, status, branch)]
    while work:
        source, source_status, source_branch = work.pop()
        for j in table.leaving(nodes[source].position):
            edge_state = _edge_state(source_status, branches[j], source_branch, strategy)
            target = targets[j]
            if edge_state is EdgeState.LIVE:
                live[target] += 1
            elif edge_state is EdgeState.POISONED:
                poisoned[target] += 1
            unresolved[target] -= 1
            if unresolved[target]:
                continue
            if poisoned[target]:
                transition.doomed.append(target)
            elif live[target]:
                transition.ready.append(target)
            else:
                _finish(state, target, NodeStatus.SKIPPED, transition)
                transition.skipped.append(target)
                work.append((target, NodeStatus.SKIPPED, None))
    return transition


def halt(state: GraphState, node_id: str, status: NodeStatus) -> Transition:
    """``node_id`` ended and the graph is stopping: no propagation along its edges."""
    transition = Transition()
    _finish(state, node_id, status, transition)
    return transition


def cancel_unfinished(state: GraphState, node_ids: Iterable[str] | None = None) -> list[str]:
    """Mark every non-final node (or those given) cancelled; returns them in plan order."""
    candidates = state.plan.order if node_ids is None else list(node_ids)
    cancelled = [n for n in candidates if not state.status[n].is_final]
    transition = Transition()
    for node_id in cancelled:
        _finish(state, node_id, NodeStatus.CANCELLED, transition)
    return cancelled


def _edge_state(
    source_status: NodeStatus,
    edge_branch: str | None,
    taken: str | None,
    strategy: DependencyStrategy,
) -> EdgeState:
    if source_status is NodeStatus.COMPLETED:
        return EdgeState.LIVE if edge_branch is None or edge_branch == taken else EdgeState.DEAD
    if source_status is NodeStatus.FAILED:
        if strategy == "defaults":
            return EdgeState.LIVE
        return EdgeState.POISONED if strategy == "fail" else EdgeState.DEAD
    return EdgeState.DEAD


def _finish(state: GraphState, node_id: str, status: NodeStatus, transition: Transition) -> None:
    state.status[node_id] = status
    state.final_count += 1
    level = state.plan.nodes[node_id].level
    state.level_remaining[level] -= 1
    if state.level_remaining[level] == 0:
        transition.levels_completed.append(level)
