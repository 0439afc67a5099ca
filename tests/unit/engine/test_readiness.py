"""The pure planner: readiness, dead-path elimination, dependency strategies, levels."""

from __future__ import annotations

from typing import Any

from app.domain.status import NodeStatus
from app.engine.compile.graph import plan_workflow
from app.engine.compile.plan import Plan
from app.engine.run import readiness
from tests.support import edge, node, workflow


def plan(nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> Plan:
    return plan_workflow(workflow(nodes, edges))


def diamond() -> Plan:
    return plan(
        [node("a", "if", condition="true"), node("b"), node("c"), node("d")],
        [edge("a", "b", "true"), edge("a", "c", "false"), edge("b", "d"), edge("c", "d")],
    )


def test_roots_are_nodes_without_incoming_edges() -> None:
    state = readiness.initial_state(diamond())
    assert readiness.roots(state) == ["a"]


def test_taken_branch_readies_its_target_and_kills_the_other() -> None:
    state = readiness.initial_state(diamond())
    t = readiness.resolve(state, "a", NodeStatus.COMPLETED, branch="true")
    assert t.ready == ["b"] and t.skipped == ["c"]
    assert state.status["c"] is NodeStatus.SKIPPED
    t = readiness.resolve(state, "b", NodeStatus.COMPLETED)
    assert t.ready == ["d"], "a join runs when at least one incoming edge is live"


def test_all_dead_inputs_skip_and_cascade() -> None:
    state = readiness.initial_state(diamond())
    readiness.resolve(state, "a", NodeStatus.COMPLETED, branch="true")
    t = readiness.resolve(state, "b", NodeStatus.SKIPPED)
    assert t.skipped == ["d"] and state.is_finished


def test_unlabelled_edge_from_a_branching_node_is_always_live() -> None:
    p = plan([node("a", "if", condition="true"), node("b")], [edge("a", "b")])
    state = readiness.initial_state(p)
    assert readiness.resolve(state, "a", NodeStatus.COMPLETED, branch="false").ready == ["b"]


def test_tolerated_failure_follows_the_dependency_strategy() -> None:
    p = plan([node("a"), node("b")], [edge("a", "b")])
    for strategy, field in (("skip", "skipped"), ("defaults", "ready"), ("fail", "doomed")):
        state = readiness.initial_state(p)
        t = readiness.resolve(state, "a", NodeStatus.FAILED, strategy=strategy)  # type: ignore[arg-type]
        assert getattr(t, field) == ["b"], strategy


def test_levels_complete_when_their_last_node_ends() -> None:
    p = plan([node("a"), node("b"), node("c")], [edge("a", "b"), edge("a", "c")])
    state = readiness.initial_state(p)
    assert readiness.resolve(state, "a", NodeStatus.COMPLETED).levels_completed == [0]
    assert readiness.resolve(state, "b", NodeStatus.COMPLETED).levels_completed == []
    assert readiness.resolve(state, "c", NodeStatus.COMPLETED).levels_completed == [1]


def test_halt_and_cancel_unfinished_end_every_node_without_propagation() -> None:
    p = plan([node("a"), node("b"), node("c")], [edge("a", "b")])
    state = readiness.initial_state(p)
    readiness.halt(state, "a", NodeStatus.FAILED)
    assert state.unresolved["b"] == 1
    assert sorted(readiness.cancel_unfinished(state)) == ["b", "c"]
    assert state.is_finished
