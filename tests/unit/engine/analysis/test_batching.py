"""Batching: independent nodes calling one model or host are grouped; dependent ones never."""

from __future__ import annotations

from app.engine.analysis import batching
from app.engine.compile import graph
from tests.support import edge, node, workflow
from tests.unit.engine.analysis.documents import llm


def test_independent_calls_to_one_model_and_one_host() -> None:
    document = workflow(
        [
            node("start", "start"),
            llm("a"),
            llm("b"),
            llm("c"),
            node("d", "http", url="https://api.example.com/1"),
            node("e", "http", url="https://api.example.com/2"),
            node("f", "http", url="{{ inputs.url }}"),
        ],
        [edge("start", n) for n in "abdef"] + [edge("a", "c")],
    )
    report = batching.batching(graph.plan_workflow(document))
    found = [
        (g.kind, g.target, g.node_ids, g.calls_saved, g.latency_saved_s) for g in report.groups
    ]
    assert found == [
        ("model", "openai/gpt-4o-mini", ["a", "b"], 1, 0.5),
        ("host", "api.example.com", ["d", "e"], 1, 0.1),
    ]
    assert report.assumptions


def test_a_chain_of_calls_is_never_grouped() -> None:
    document = workflow([llm("a"), llm("b"), llm("c")], [edge("a", "b"), edge("b", "c")])
    assert batching.batching(graph.plan_workflow(document)).groups == []


def test_loop_bodies_are_grouped_on_their_own() -> None:
    body = {"nodes": [llm("x"), llm("y")], "edges": []}
    document = workflow([node("loop", "foreach", items=[1], concurrency=2, body=body)], [])
    (group,) = batching.batching(graph.plan_workflow(document)).groups
    assert (group.graph, group.node_ids) == ("/nodes/0/config/body", ["x", "y"])
