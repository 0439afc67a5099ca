"""Validation refuses what can only fail at run time: names nothing binds, literal arithmetic
past the evaluation bounds; and accepts every name a node's executor does bind."""

from __future__ import annotations

from typing import Any

import pytest

from app.engine.compile import graph
from app.errors import ErrorDetail
from tests.support import edge, node, workflow


def problems(document: dict[str, Any]) -> list[ErrorDetail]:
    return graph.validate_workflow(document)


def body(*nodes: dict[str, Any], edges: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"nodes": list(nodes), "edges": edges or []}


def start_then(*nodes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return workflow(
        [node("start", "start"), *nodes], [edge("start", n["id"]) for n in nodes], **extra
    )


# -- unknown names ---------------------------------------------------------------------------------


def test_a_reference_to_a_node_that_does_not_exist_is_refused_with_a_pointer() -> None:
    found = problems(start_then(node("fetch"), node("t", value="{{ nosuchnode.output }}")))
    assert [(p.pointer, p.code) for p in found] == [("/nodes/2/config/value", "unknown_reference")]
    assert "'nosuchnode'" in found[0].message
    assert "{{ nosuchnode.output }}" in found[0].message


@pytest.mark.parametrize(
    ("document", "pointer", "name"),
    [
        (
            start_then(node("c", "if", condition="fetchh.output > 1")),
            "/nodes/1/config/condition",
            "fetchh",
        ),
        (
            start_then(node("t", value={"a": ["ok", "x {{ itme }} y"]})),
            "/nodes/1/config/value/a/1",
            "itme",
        ),
        (
            start_then(node("t", value=1), outputs={"r": "{{ tt.output }}"}),
            "/outputs/r",
            "tt",
        ),
        (
            start_then(node("t", value="{{ jsonpath('$.ghost.output') }}")),
            "/nodes/1/config/value",
            "ghost",
        ),
        (
            start_then(node("e", "foreach", items="{{ item }}", body=body(node("b", value=1)))),
            "/nodes/1/config/items",
            "item",  # bound inside the body only
        ),
        (
            start_then(
                node("t", value=1),
                node("sub", "subworkflow", graph=body(node("child", value="{{ t.output }}"))),
            ),
            "/nodes/2/config/graph/nodes/0/config/value",
            "t",  # an inline sub-workflow sees only its own graph
        ),
        (
            start_then(
                node(
                    "guard",
                    "try",
                    **{
                        "try": body(node("risky", value=1)),
                        "catch": body(node("handle", value="{{ risky.output }}")),
                    },
                )
            ),
            "/nodes/1/config/catch/nodes/0/config/value",
            "risky",  # a sibling graph's node
        ),
    ],
)
def test_names_nothing_binds_are_refused_where_they_are_used(
    document: dict[str, Any], pointer: str, name: str
) -> None:
    found = problems(document)
    assert [(p.pointer, p.code) for p in found] == [(pointer, "unknown_reference")]
    assert f"refers to {name!r}" in found[0].message


def test_the_refusal_suggests_a_close_name() -> None:
    found = problems(start_then(node("fetch"), node("t", value="{{ fecth.output }}")))
    assert found[0].message.endswith("did you mean 'fetch'?")


@pytest.mark.parametrize(
    "document",
    [
        start_then(node("t", value="{{ inputs.x }} {{ vars.y }} {{ start.output }}")),
        start_then(node("t", value="{{ len(inputs) + max([1, 2]) }} {{ [v for v in inputs] }}")),
        start_then(node("a", value=1), outputs={"x": "{{ a.output }}", "i": "{{ inputs }}"}),
        start_then(
            node(
                "each",
                "foreach",
                items="{{ inputs.list }}",
                body=body(
                    node("b", value="{{ item }} {{ index }} {{ start.output }} {{ inputs.k }}"),
                    node("c", value="{{ b.output }}"),
                    edges=[edge("b", "c")],
                ),
            )
        ),
        start_then(
            node(
                "loop",
                "while",
                condition="index < 3 and (last is None or last.n < 5)",
                body=body(node("b", value="{{ {'n': index, 'prev': last} }}")),
            )
        ),
        start_then(node("r", "repeat", count=2, body=body(node("b", value="{{ index }}")))),
        start_then(
            node(
                "guard",
                "try",
                error_var="err",
                **{
                    "try": body(node("risky", value="{{ err }}")),
                    "catch": body(node("handle", value="{{ err.message }}")),
                    "finally": body(node("done", value="{{ err }}")),
                },
            )
        ),
        start_then(
            node(
                "sub",
                "subworkflow",
                graph={
                    "nodes": [node("child", value="{{ inputs.q }}")],
                    "edges": [],
                    "outputs": {"a": "{{ child.output }}"},
                },
                inputs={"q": "{{ start.output }}"},
                outputs={"answer": "{{ outputs.a }}"},
            )
        ),
        start_then(
            node(
                "outer",
                "foreach",
                items=[[1, 2]],
                body=body(
                    node(
                        "inner",
                        "foreach",
                        items="{{ item }}",
                        body=body(node("b", value="{{ item }} {{ outer }} {{ inner }}")),
                    )
                ),
            )
        ),
    ],
)
def test_every_name_an_executor_binds_is_accepted(document: dict[str, Any]) -> None:
    assert problems(document) == []


# -- literal arithmetic ----------------------------------------------------------------------------


def test_literal_arithmetic_past_the_bounds_is_refused_with_a_pointer() -> None:
    found = problems(
        start_then(
            node("t", value="{{ 9**9**9 }}"),
            node("c", "if", condition="inputs.x > 2 ** 100000"),
        )
    )
    assert [(p.pointer, p.code) for p in found] == [
        ("/nodes/1/config/value", "invalid_template"),
        ("/nodes/2/config/condition", "invalid_expression"),
    ]
    assert "9 ** 387420489 is too large (limit 10000 bits)" in found[0].message
    assert "2 ** 100000 is too large" in found[1].message
