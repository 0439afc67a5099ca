"""Complexity: golden documents give known counts, cyclomatic numbers and scores."""

from __future__ import annotations

from app.engine.analysis import complexity
from app.engine.compile import graph
from tests.support import node, workflow
from tests.unit.engine.analysis.documents import branchy


def test_the_branchy_document_counts() -> None:
    report = complexity.complexity(graph.plan_workflow(branchy()))
    assert report.model_dump() == {
        "nodes": 8,
        "edges": 7,
        "graphs": 2,
        "depth": 5,
        "width": 2,
        "decision_points": 2,
        # top: 6 - 6 + 2 = 2; body: 1 - 2 + 2 = 1; the foreach's back edge: 1
        "cyclomatic": 4,
        "nesting_depth": 1,
        "score": 11,  # 8 // 10 + 2 x 2 + (4 - 2) + 5 x 1
        "rating": "simple",
    }


def test_separate_pieces_are_components_not_negative_complexity() -> None:
    report = complexity.complexity(graph.plan_workflow(workflow([node("a"), node("b")], [])))
    assert (report.cyclomatic, report.width, report.depth) == (2, 2, 1)


def test_a_try_with_a_catch_adds_its_error_path() -> None:
    block = {"nodes": [node("t")], "edges": []}
    guarded = node("guard", "try", **{"try": block, "catch": block})
    report = complexity.complexity(graph.plan_workflow(workflow([guarded], [])))
    # graphs: workflow, try, catch: 1 each; plus the catch path
    assert (report.graphs, report.cyclomatic, report.decision_points) == (3, 4, 1)
