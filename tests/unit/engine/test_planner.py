"""The pure planner: readiness, dead-path elimination, dependency strategies, levels."""

from __future__ import annotations

from typing import Any

from app.domain.status import NodeStatus
from app.engine import planner
from app.engine.graph import plan_workflow
from app.engine.plan import Plan
from tests.support import edge, node, workflow


def plan(nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> Plan:
    return plan_workflow(workflow(nodes, edges))


def diamond() -> Plan:
    return plan(
        [node("a", "if", condition="true"), node("b"), node("c"), node("d")],
        [edge("a", "b", "true"), edge("a", "c", "false"), edge("b", "d"), edge("c", "d")],
    )


def test_roots_are_nodes_without_incoming_edges() -> None:
    state = planner.initial_state(diamond())
    assert planner.roots(state) == ["a"]


def test_taken_branch_readies_its_target_and_kills_the_other() -> None:
    state = planner.initial_state(diamond())
    t = planner.resolve(state, "a", NodeStatus.COMPLETED, branch="true")
    assert t.ready == ["b"] and t.skipped == ["c"]
    assert state.status["c"] is NodeStatus.SKIPPED
    t = planner.resolve(state, "b", NodeStatus.COMPLETED)
    assert t.ready == ["d"], "a join runs when at least one incoming edge is live"


def test_all_dead_inputs_skip_and_cascade() -> None:
    state = planner.initial_state(diamond())
    planner.resolve(state, "a", NodeStatus.COMPLETED, branch="true")
    t = planner.resolve(state, "b", NodeStatus.SKIPPED)
    assert t.skipped == ["d"] and state.is_finished


def test_unlabelled_edge_from_a_branching_node_is_always_live() -> None:
    p = plan([node("a", "if", condition="true"), node("b")], [edge("a", "b")])
    state = planner.initial_state(p)
    assert planner.resolve(state, "a", NodeStatus.COMPLETED, branch="false").ready == ["b"]


def test_tolerated_failure_follows_the_dependency_strategy() -> None:
    p = plan([node("a"), node("b")], [edge("a", "b")])
    for strategy, field in (("skip", "skipped"), ("defaults", "ready"), ("fail", "doomed")):
        state = planner.initial_state(p)
        t = planner.resolve(state, "a", NodeStatus.FAILED, strategy=strategy)  # type: ignore[arg-type]
        assert getattr(t, field) == ["b"], strategy


def test_levels_complete_when_their_last_node_ends() -> None:
    p = plan([node("a"), node("b"), node("c")], [edge("a", "b"), edge("a", "c")])
    state = planner.initial_state(p)
    assert planner.resolve(state, "a", NodeStatus.COMPLETED).levels_completed == [0]
    assert planner.resolve(state, "b", NodeStatus.COMPLETED).levels_completed == []
    assert planner.resolve(state, "c", NodeStatus.COMPLETED).levels_completed == [1]


def test_halt_and_cancel_unfinished_end_every_node_without_propagation() -> None:
    p = plan([node("a"), node("b"), node("c")], [edge("a", "b")])
    state = planner.initial_state(p)
    planner.halt(state, "a", NodeStatus.FAILED)
    assert state.unresolved["b"] == 1
    assert sorted(planner.cancel_unfinished(state)) == ["b", "c"]
    assert state.is_finished
