"""The fast shape checks of planning: they accept only what the models accept, and plan alike.

Planning checks the common shape of nodes and edges with bulk passes over the document's own
dicts instead of building a model per item; these tests hold those passes to the models
(NodeSpec, EdgeSpec, WorkflowDocument), which stay the one source of truth.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.domain.workflow import EdgeSpec, NodeSpec, WorkflowDocument
from app.engine.compile import graph
from app.engine.compile import shape as graph_shape
from app.engine.compile.plan import DEFAULT_OPTIONS, NodeOptions
from tests.support import edge, node, workflow

_CORE = {"id", "type", "config"}

texts = st.sampled_from(["a", "b_1", "_x", "1a", "a-b", "a\n", "", "x" * 64, "x" * 65, "é"])
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.floats(-1, 2), texts)
configs = st.one_of(
    st.dictionaries(texts, st.one_of(scalars, st.lists(scalars, max_size=2)), max_size=3),
    st.dictionaries(st.integers(0, 2), scalars, max_size=2),
    scalars,
)
node_fields = {
    "config": configs,
    "name": st.one_of(st.none(), texts, st.integers(0, 1)),
    "retry": st.one_of(st.none(), st.fixed_dictionaries({"max_retries": st.integers(-1, 3)})),
    "timeout_s": st.one_of(st.none(), st.floats(-1, 5), texts),
    "critical": st.one_of(st.booleans(), texts),
    "continue_on_error": st.booleans(),
    "colour": scalars,
}
raw_node = st.fixed_dictionaries(
    {"id": st.one_of(st.sampled_from(["a", "b_2", "_c"]), texts), "type": texts},
    optional=node_fields,
) | st.fixed_dictionaries({}, optional={"id": texts, "type": texts})
raw_nodes = st.lists(raw_node, min_size=1, max_size=3)
raw_edges = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "from": st.one_of(texts, st.integers(0, 1)),
            "to": texts,
            "branch": st.one_of(st.none(), texts),
            "source": texts,
            "colour": scalars,
        },
    ),
    max_size=3,
)


def _spec(raw: dict[str, Any]) -> NodeSpec | None:
    try:
        return NodeSpec.model_validate(raw)
    except ValidationError:
        return None


def test_node_options_are_the_rest_of_node_spec_with_its_defaults() -> None:
    options = {f.name: f.default for f in dataclasses.fields(NodeOptions)}
    rest = {n: i.get_default() for n, i in NodeSpec.model_fields.items() if n not in _CORE}
    assert options == rest
    assert NodeOptions() == DEFAULT_OPTIONS


@settings(max_examples=300, deadline=None)
@given(raw_nodes)
def test_fast_nodes_accept_only_what_node_spec_accepts_and_read_it_alike(
    raw: list[dict[str, Any]],
) -> None:
    specs = [_spec(item) for item in raw]
    columns = graph_shape._valid_nodes(raw)
    if columns is None:
        return
    assert None not in specs
    ids, types, configs, options = columns
    assert ids == [spec.id for spec in specs if spec]
    assert types == [spec.type for spec in specs if spec]
    assert configs == [spec.config for spec in specs if spec]
    for spec, option in zip(specs, options, strict=True):
        assert spec is not None
        assert option == NodeOptions(**{n: getattr(spec, n) for n in spec.model_fields_set - _CORE})


@settings(max_examples=300, deadline=None)
@given(raw_edges)
def test_fast_edges_accept_only_what_edge_spec_accepts_and_read_it_alike(
    raw: list[dict[str, Any]],
) -> None:
    columns = graph_shape._valid_edges(raw)
    if columns is None:
        return
    specs = [EdgeSpec.model_validate(item) for item in raw]  # raises if it should not pass
    assert columns == (
        [spec.source for spec in specs],
        [spec.target for spec in specs],
        [spec.branch for spec in specs],
    )


def test_graph_fields_are_checked_as_the_document_model_checks_them() -> None:
    good = workflow([node("a")], [])
    bad_fields: list[dict[str, Any]] = [
        {"name": ""},
        {"name": "x" * 201},
        {"description": 5},
        {"inputs": []},
        {"outputs": "x"},
        {"colour": "red"},
        {"nodes": []},
        {"nodes": "a"},
    ]
    body = {key: value for key, value in good.items() if key != "edges"}
    assert graph_shape._graph_fields_valid(body, WorkflowDocument)
    for change in bad_fields:
        changed = {**body, **change}
        assert not graph_shape._graph_fields_valid(changed, WorkflowDocument), change
        try:
            WorkflowDocument.model_validate(changed)
        except ValidationError:
            continue
        raise AssertionError(f"the model accepts {change}")


def test_nodes_with_options_plan_as_the_model_does() -> None:
    document = workflow(
        [
            node("a"),
            {**node("b"), "name": "Bee", "retry": {"max_retries": 2}, "timeout_s": 3},
            {**node("c"), "critical": False, "continue_on_error": True},
        ],
        [edge("a", "b"), edge("b", "c")],
    )
    from_mapping = graph.plan_workflow(document)
    from_model = graph.plan_workflow(WorkflowDocument.model_validate(document))
    for plan in (from_mapping, from_model):
        assert plan.nodes["a"].options is DEFAULT_OPTIONS
        b = plan.nodes["b"].options
        assert (b.name, b.timeout_s) == ("Bee", 3.0)
        assert b.retry is not None and b.retry.max_retries == 2
        c = plan.nodes["c"].options
        assert (c.critical, c.continue_on_error) == (False, True)


def test_only_templated_fields_are_compiled_and_kept() -> None:
    document = workflow(
        [node("a", value={"x": 1}), node("b", value="{{ inputs.x }}"), node("c", value=[2])],
        [],
    )
    plan = graph.plan_workflow(document)
    assert not plan.nodes["a"].templated and not plan.nodes["c"].templated
    assert set(plan.nodes["b"].templated) == {"value"}
    assert plan.nodes["a"].templates["value"].render({}) == {"x": 1}
    assert plan.nodes["b"].templates["value"].render({"inputs": {"x": 7}}) == 7


def test_edges_are_views_of_the_plans_table() -> None:
    document = workflow(
        [node("a", "if", condition="true"), node("b"), node("c")],
        [edge("a", "c", "false"), edge("a", "b", "true"), edge("b", "c")],
    )
    plan = graph.plan_workflow(document)
    assert [(e.index, e.source, e.target, e.branch) for e in plan.edges] == [
        (0, "a", "c", "false"),
        (1, "a", "b", "true"),
        (2, "b", "c", None),
    ]
    assert [e.index for e in plan.nodes["a"].outgoing] == [0, 1]
    assert [e.index for e in plan.nodes["c"].incoming] == [0, 2]
    assert plan.nodes["c"].sources == ["a", "b"]
    assert plan.roots == ["a"]
