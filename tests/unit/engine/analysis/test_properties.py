"""Properties of the analyses over random DAG documents of transforms, llm and http calls,
some inside foreach bodies: scores stay in range, counts agree with the document, estimates
are ordered, batch groups never hold two nodes with a path between them."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.engine.analysis import batching, complexity, estimate, health
from app.engine.compile import graph
from tests.support import edge, node, workflow
from tests.unit.engine.analysis.documents import llm

SETTINGS = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
HOSTS = ("http://a.example.com/x", "https://b.example.com/y", "http://127.0.0.1/z")


@st.composite
def documents(
    draw: st.DrawFn, max_nodes: int = 25, nested: bool = True, prefix: str = "n"
) -> dict[str, Any]:
    """Node ``n<i>`` only has edges from lower indices (acyclic by construction)."""
    size = draw(st.integers(1, max_nodes))
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    for i in range(size):
        node_id = f"{prefix}{i}"
        kind = draw(
            st.sampled_from(
                ["transform", "llm", "http", "foreach"] if nested else ["transform", "llm", "http"]
            )
        )
        if kind == "llm":
            nodes.append(
                llm(
                    node_id,
                    "p" * draw(st.integers(0, 400)),
                    **({"max_tokens": 50} if draw(st.booleans()) else {}),
                )
            )
        elif kind == "http":
            nodes.append(node(node_id, "http", url=draw(st.sampled_from(HOSTS))))
        elif kind == "foreach":
            nodes.append(
                node(
                    node_id,
                    "foreach",
                    items=[1, 2],
                    body=_body(draw(documents(max_nodes=4, nested=False, prefix=f"{node_id}b"))),
                )
            )
        else:
            nodes.append(node(node_id))
        for p in sorted(draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else ()):
            edges.append(edge(f"{prefix}{p}", node_id))
    return workflow(nodes, edges)


def _body(document: dict[str, Any]) -> dict[str, Any]:
    return {"nodes": document["nodes"], "edges": document["edges"]}


def paths(document: dict[str, Any]) -> set[tuple[str, str]]:
    """Every (a, b) with a path from a to b, by plain search (no engine code)."""
    out: dict[str, list[str]] = {}
    for e in document["edges"]:
        out.setdefault(e["from"], []).append(e["to"])
    found = set()
    for start in (n["id"] for n in document["nodes"]):
        stack = list(out.get(start, ()))
        while stack:
            here = stack.pop()
            if (start, here) not in found:
                found.add((start, here))
                stack.extend(out.get(here, ()))
    return found


def price(provider: str, model: str) -> tuple[float, float] | None:
    return (0.15, 0.6)


@SETTINGS
@given(documents())
def test_the_health_score_is_in_range_and_follows_the_formula(document: dict[str, Any]) -> None:
    report = health.health(graph.plan_workflow(document))
    assert 0 <= report.score <= 100
    assert report.score == health.score(report.issues)
    assert sum(report.counts.values()) == len(report.issues)


@SETTINGS
@given(documents())
def test_complexity_counts_agree_with_the_document(document: dict[str, Any]) -> None:
    plan = graph.plan_workflow(document)
    report = complexity.complexity(plan)
    bodies = [n["config"]["body"] for n in document["nodes"] if n["type"] == "foreach"]
    assert report.nodes == len(document["nodes"]) + sum(len(b["nodes"]) for b in bodies)
    assert report.edges == len(document["edges"]) + sum(len(b["edges"]) for b in bodies)
    assert report.nodes == plan.node_count
    assert report.graphs == 1 + len(bodies)
    assert report.cyclomatic >= report.graphs
    assert sum(len(level) for level in plan.levels) == len(document["nodes"])
    assert 1 <= report.width <= len(document["nodes"])
    assert 1 <= report.depth <= len(document["nodes"])
    assert report.decision_points == len(bodies)
    assert 0 <= report.score <= 100


@SETTINGS
@given(documents())
def test_estimates_are_ordered(document: dict[str, Any]) -> None:
    report = estimate.estimate(graph.plan_workflow(document), price)
    for r in [report.tokens, report.cost_usd] + [n.tokens for n in report.nodes]:
        assert 0 <= r.low <= r.expected <= r.high


@SETTINGS
@given(documents(nested=False))
def test_batch_groups_are_independent_nodes_with_one_target(document: dict[str, Any]) -> None:
    plan = graph.plan_workflow(document)
    related = paths(document)
    for group in batching.batching(plan).groups:
        assert len(group.node_ids) >= 2
        assert len({batching.target(plan.nodes[n]) for n in group.node_ids}) == 1
        for a in group.node_ids:
            assert all((a, b) not in related for b in group.node_ids)
        assert group.calls_saved == len(group.node_ids) - 1
