"""Validation and planning of workflow documents: every rejection with its code and pointer,
nested graphs, order and levels, the plan cache, and properties over random DAGs."""

from __future__ import annotations

import collections
import copy
import itertools
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ConfigDict

from app.domain.node_types import CORE_NODE_TYPES, NodeConfig, NodeType
from app.domain.workflow import EdgeSpec, WorkflowDocument
from app.engine.compile import graph
from app.engine.compile import shape as graph_shape
from app.engine.compile.expressions import Expression
from app.engine.compile.templates import CompiledValue
from app.errors import ErrorDetail, WorkflowInvalid
from tests.support import Harness, big_document, edge, node, ticks_while, workflow


def problems(document: Any, **kwargs: Any) -> list[tuple[str, str]]:
    """(code, pointer) of every problem, in reporting order."""
    return [(e.code, e.pointer) for e in graph.validate_workflow(document, **kwargs)]


def only(document: Any, **kwargs: Any) -> ErrorDetail:
    errors = graph.validate_workflow(document, **kwargs)
    assert len(errors) == 1, errors
    return errors[0]


def chain(*ids: str) -> list[dict[str, Any]]:
    return [edge(a, b) for a, b in itertools.pairwise(ids)]


def body(*nodes: dict[str, Any], edges: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"nodes": list(nodes), "edges": edges or []}


# -- valid documents and plans -----------------------------------------------------------------


def test_valid_document_plans_every_part() -> None:
    document = workflow(
        [
            node("start", "start"),
            node("check", "if", condition="inputs.n > 1"),
            node("double", value="{{ inputs.n * 2 }}"),
            node("wait", "delay", seconds="{{ inputs.wait }}"),
            node("tag", "set_var", name="flag", value=True),
            node("finish", "end", outputs={"n": "{{ double.output }}"}),
        ],
        [
            edge("start", "check"),
            edge("check", "double", "true"),
            edge("check", "wait", "false"),
            edge("double", "tag"),
            edge("wait", "finish"),
            edge("tag", "finish"),
        ],
        outputs={"result": "{{ finish.output }}"},
        inputs={"type": "object", "properties": {"n": {"type": "integer"}}},
    )
    assert graph.validate_workflow(document) == []
    plan = graph.plan_workflow(document)
    assert plan.name == "test"
    assert plan.node_count == 6
    assert plan.input_schema == document["inputs"]
    assert plan.content_hash == graph.content_hash(document)
    assert plan.outputs is not None and plan.outputs.names == {"finish"}
    check = plan.nodes["check"]
    assert check.pointer == "/nodes/1"
    assert isinstance(check.expressions["condition"], Expression)
    assert [(e.target, e.branch) for e in check.outgoing] == [("double", "true"), ("wait", "false")]
    assert [e.index for e in plan.nodes["finish"].incoming] == [4, 5]
    assert plan.nodes["wait"].templates["seconds"].names == {"inputs"}
    assert plan.nodes["double"].templates["value"].is_constant is False
    tag = plan.nodes["tag"]
    assert set(tag.templates) == {"value"}  # `name` is static
    assert tag.templates["value"].is_constant
    assert plan.nodes["finish"].templates["outputs"].names == {"double"}
    assert plan.levels == [["start"], ["check"], ["double", "wait"], ["tag"], ["finish"]]
    assert [plan.nodes[n].level for n in plan.order] == [0, 1, 2, 2, 3, 4]
    assert [plan.nodes[n].order for n in plan.order] == list(range(6))


def test_document_model_and_mapping_plan_alike() -> None:
    document = workflow([node("a"), node("b")], chain("a", "b"))
    from_model = graph.plan_workflow(WorkflowDocument.model_validate(document))
    from_mapping = graph.plan_workflow(document)
    assert from_model.order == from_mapping.order == ["a", "b"]
    assert from_model.content_hash == from_mapping.content_hash


def test_order_breaks_ties_by_document_order() -> None:
    document = workflow(
        [node("c"), node("a"), node("d"), node("b")], [edge("d", "b"), edge("c", "a")]
    )
    plan = graph.plan_workflow(document)
    assert plan.order == ["c", "a", "d", "b"]
    assert plan.levels == [["c", "d"], ["a", "b"]]
    assert graph.plan_workflow(copy.deepcopy(document)).order == plan.order


def test_order_respects_edges_against_document_order() -> None:
    document = workflow([node("z"), node("y"), node("x")], [edge("x", "y"), edge("y", "z")])
    plan = graph.plan_workflow(document)
    assert plan.order == ["x", "y", "z"]
    assert plan.levels == [["x"], ["y"], ["z"]]


def test_levels_follow_the_longest_path() -> None:
    nodes = [node(n) for n in ("s", "a", "b", "c", "e")]
    edges = [*chain("s", "a", "b", "e"), edge("s", "c"), edge("c", "e"), edge("s", "e")]
    plan = graph.plan_workflow(workflow(nodes, edges))
    assert plan.levels == [["s"], ["a", "c"], ["b"], ["e"]]


def test_nested_graphs_are_planned_under_their_document_names() -> None:
    document = workflow(
        [
            node(
                "guard",
                "try",
                **{
                    "try": body(node("x", value="{{ inputs.x }}")),
                    "catch": body(node("x", value="{{ error }}")),  # ids are per graph
                },
            ),
            node("each", "foreach", items="{{ inputs.items }}", body=body(node("guard"))),
            node(
                "child",
                "subworkflow",
                graph={**body(node("inner")), "outputs": {"v": "{{ inner.output }}"}},
                outputs={"answer": "{{ outputs.v }}"},
            ),
        ],
        [],
    )
    plan = graph.plan_workflow(document)
    guard = plan.nodes["guard"]
    assert set(guard.graphs) == {"try", "catch"}
    assert guard.graphs["catch"].pointer == "/nodes/0/config/catch"
    assert guard.graphs["catch"].nodes["x"].pointer == "/nodes/0/config/catch/nodes/0"
    assert set(guard.templates) == set()  # error_var, rethrow unset
    each = plan.nodes["each"]
    assert set(each.graphs) == {"body"} and set(each.templates) == {"items"}
    child = plan.nodes["child"].graphs["graph"]
    assert child.outputs is not None and child.outputs.names == {"inner"}
    assert plan.node_count == 3 + 2 + 1 + 1


def test_plan_graph_scopes_pointers_and_depth() -> None:
    spec = WorkflowDocument.model_validate(workflow([node("a"), node("b")], chain("a", "b")))
    plan = graph.plan_graph(spec, pointer="/x")
    assert plan.order == ["a", "b"] and plan.nodes["b"].pointer == "/x/nodes/1"
    bad = WorkflowDocument.model_validate(workflow([node("a", "nope")], []))
    with pytest.raises(WorkflowInvalid) as caught:
        graph.plan_graph(bad, pointer="/x")
    assert [(e.code, e.pointer) for e in caught.value.errors] == [
        ("unknown_type", "/x/nodes/0/type")
    ]
    too_deep = graph.Limits(max_depth=1)
    with pytest.raises(WorkflowInvalid) as caught:
        graph.plan_graph(spec, pointer="/x", limits=too_deep, depth=2)
    assert caught.value.errors[0].code == "limit_exceeded"


# -- shape errors ------------------------------------------------------------------------------


def test_shape_errors_have_pointers_from_their_location() -> None:
    document = {
        "nodes": [{"id": "1a", "type": "transform", "config": {"value": 1}, "timeout_s": -1}],
        "edges": [{"from": "1a", "too": "b"}],
    }
    assert problems(document) == [
        ("invalid_value", "/nodes/0/id"),
        ("invalid_value", "/nodes/0/timeout_s"),
        ("missing_field", "/name"),
        ("missing_field", "/edges/0/to"),
        ("unknown_field", "/edges/0/too"),
    ]
    errors = {e.pointer: e.message for e in graph.validate_workflow(document)}
    assert errors["/name"] == "missing required field 'name'"
    assert errors["/edges/0/too"] == "unknown field 'too'"
    assert errors["/nodes/0/id"].startswith("expected an identifier")


def test_union_complaints_merge_into_one_message() -> None:
    error = only(workflow([node("wait", "delay", seconds=-1)], []))
    assert (error.code, error.pointer) == ("invalid_config", "/nodes/0/config/seconds")
    assert error.message == "expected a number ≥ 0 or a {{ template }}"
    error = only(workflow([node("wait", "delay", seconds="soon")], []))
    assert error.message == "expected a number or a {{ template }}"
    error = only(workflow([node("again", "repeat", count=1.5, body=body(node("x")))], []))
    assert error.message == "expected an integer or a {{ template }}"  # strict: 1.5 is no integer


def test_document_that_is_not_an_object() -> None:
    assert problems([]) == [("invalid_value", "")]
    assert problems({"name": "x", "nodes": "abc"}) == [("invalid_value", "/nodes")]
    assert problems({"name": "x", "nodes": []}) == [("invalid_value", "/nodes")]


def test_one_malformed_node_does_not_hide_the_others() -> None:
    document = workflow(
        [{"id": "a", "type": "transform", "oops": 1}, node("b", "nope")],
        [edge("a", "b"), edge("b", "c")],
    )
    # `a` is malformed but its id is known: only the edge to `c` dangles
    assert problems(document) == [
        ("unknown_field", "/nodes/0/oops"),
        ("unknown_type", "/nodes/1/type"),
        ("unknown_node", "/edges/1/to"),
    ]


def test_edges_accept_field_names_as_edge_spec_does() -> None:
    document = workflow([node("a"), node("b")], [{"source": "a", "target": "b"}])
    assert graph.plan_workflow(document).nodes["b"].incoming[0].source == "a"


def test_fast_edge_shape_mirrors_edge_spec() -> None:
    shape = graph_shape.EdgeShape.__annotations__
    aliases = {info.alias or name for name, info in EdgeSpec.model_fields.items()}
    assert set(shape) == aliases
    required = {info.alias for info in EdgeSpec.model_fields.values() if info.is_required()}
    assert required == graph_shape.EdgeShape.__required_keys__
    for bad in ({"from": "a", "to": "b", "branch": ""}, {"from": "a", "to": 1}, {"from": "a"}):
        with pytest.raises(ValueError):
            EdgeSpec.model_validate(bad)
        assert problems(workflow([node("a"), node("b")], [bad]))


# -- graph rules -------------------------------------------------------------------------------


def test_duplicate_id_points_at_the_second() -> None:
    error = only(workflow([node("a"), node("b"), node("a")], []))
    assert (error.code, error.pointer) == ("duplicate_id", "/nodes/2/id")
    assert "/nodes/0" in error.message


def test_edges_to_and_from_unknown_nodes() -> None:
    document = workflow([node("a")], [edge("a", "ghost"), edge("phantom", "a")])
    assert problems(document) == [
        ("unknown_node", "/edges/0/to"),
        ("unknown_node", "/edges/1/from"),
    ]


def test_self_loop() -> None:
    error = only(workflow([node("a")], [edge("a", "a")]))
    assert (error.code, error.pointer) == ("self_loop", "/edges/0")


def test_duplicate_edge_same_from_to_branch() -> None:
    nodes = [node("c", "if", condition="true"), node("x")]
    fine = workflow(nodes, [edge("c", "x", "true"), edge("c", "x", "false")])
    assert problems(fine) == []
    error = only(workflow(nodes, [edge("c", "x", "true"), edge("c", "x", "true")]))
    assert (error.code, error.pointer) == ("duplicate_edge", "/edges/1")
    error = only(workflow([node("a"), node("b")], [edge("a", "b"), edge("a", "b")]))
    assert (error.code, error.pointer) == ("duplicate_edge", "/edges/1")


def test_cycle_names_its_nodes_in_order() -> None:
    nodes = [node(n) for n in ("s", "a", "b", "c")]
    error = only(workflow(nodes, [*chain("s", "a", "b", "c"), edge("c", "a")]))
    assert error.code == "cycle"
    assert error.message == "cycle: a → b → c → a"
    assert error.pointer == "/edges/3"  # c -> a closes it


def test_each_distinct_cycle_is_reported() -> None:
    nodes = [node(n) for n in ("a", "b", "c", "d", "e")]
    edges = [*chain("a", "b", "a"), *chain("a", "c", "a"), *chain("d", "e", "d")]
    messages = [e.message for e in graph.validate_workflow(workflow(nodes, edges))]
    assert messages == ["cycle: a → b → a", "cycle: a → c → a", "cycle: d → e → d"]


def test_no_cycle_check_when_edges_dangle() -> None:
    nodes = [node("a"), node("b")]
    assert problems(workflow(nodes, [*chain("a", "b", "a"), edge("a", "zzz")])) == [
        ("unknown_node", "/edges/2/to")
    ]


def test_unknown_type_lists_the_known_ones() -> None:
    error = only(workflow([node("a"), node("b", "teleport")], []))
    assert (error.code, error.pointer) == ("unknown_type", "/nodes/1/type")
    assert "'teleport'" in error.message
    assert all(name in error.message for name in CORE_NODE_TYPES)


def test_config_failing_its_schema_points_inside_config() -> None:
    document = workflow(
        [
            node("wait", "delay", seconds=-5),
            node("boom", "fail"),
            node("x", value=1, colour="red"),
        ],
        [],
    )
    assert problems(document) == [
        ("invalid_config", "/nodes/0/config/seconds"),
        ("invalid_config", "/nodes/1/config/message"),
        ("invalid_config", "/nodes/2/config/colour"),
    ]
    messages = [e.message for e in graph.validate_workflow(document)]
    assert messages[1] == "missing required field 'message'"
    assert messages[2] == "unknown field 'colour' (allowed: value)"


def test_model_level_config_error_points_at_config() -> None:
    error = only(workflow([node("s", "switch", value="x", cases=["a", "a"])], []))
    assert (error.code, error.pointer) == ("invalid_config", "/nodes/0/config")
    assert error.message == "cases must be distinct"


def test_expression_that_does_not_parse() -> None:
    error = only(workflow([node("c", "if", condition="inputs.n >")], []))
    assert (error.code, error.pointer) == ("invalid_expression", "/nodes/0/config/condition")
    assert "syntax error" in error.message


def test_template_that_does_not_parse_points_at_the_string() -> None:
    value = {"items": ["ok", "{{ inputs.a }}", "{{ ( }}"], "a/b~c": "{{ ] }}"}
    document = workflow([node("t", value=value)], [], outputs={"r": "{{ nope( }}"})
    assert problems(document) == [
        ("invalid_template", "/nodes/0/config/value/items/2"),
        ("invalid_template", "/nodes/0/config/value/a~1b~0c"),
        ("invalid_template", "/outputs/r"),
    ]


def test_branch_from_a_node_that_does_not_branch() -> None:
    error = only(workflow([node("a"), node("b")], [edge("a", "b", "true")]))
    assert (error.code, error.pointer) == ("invalid_branch", "/edges/0/branch")
    assert "does not branch" in error.message


def test_branch_the_source_cannot_take_lists_the_valid_ones() -> None:
    nodes = [node("s", "switch", value="inputs.kind", cases=["red", "blue"]), node("x")]
    error = only(workflow(nodes, [edge("s", "x", "green")]))
    assert (error.code, error.pointer) == ("invalid_branch", "/edges/0/branch")
    assert "'blue', 'default', 'red'" in error.message
    assert problems(workflow(nodes, [edge("s", "x", "default")])) == []


def test_start_with_incoming_edges() -> None:
    error = only(workflow([node("a"), node("s", "start")], [edge("a", "s")]))
    assert (error.code, error.pointer) == ("start_has_incoming", "/edges/0/to")


def test_more_than_one_start_per_graph() -> None:
    nested = node("loop", "foreach", items=[1], body=body(node("s", "start")))
    document = workflow([node("s", "start"), nested, node("t", "start")], [])
    assert problems(document) == [("multiple_starts", "/nodes/2/type")]


def test_inputs_that_are_not_a_json_schema() -> None:
    document = workflow([node("a")], [], inputs={"type": "objekt", "properties": []})
    assert {code for code, _ in problems(document)} == {"invalid_schema"}
    assert ("invalid_schema", "/inputs/properties") in problems(document)
    unknown = workflow([node("a")], [], inputs={"$schema": "https://example.com/mine"})
    assert problems(unknown) == [("invalid_schema", "/inputs/$schema")]


# -- limits ------------------------------------------------------------------------------------


def test_too_many_nodes_counting_nested_graphs() -> None:
    limits = graph.Limits(max_nodes=3)
    assert problems(workflow([node(f"n{i}") for i in range(4)], []), limits=limits) == [
        ("limit_exceeded", "/nodes")
    ]
    nested = node("loop", "foreach", items=[], body=body(node("a"), node("b"), node("c")))
    assert problems(workflow([nested], []), limits=limits) == [
        ("limit_exceeded", "/nodes/0/config/body/nodes")
    ]


def test_too_many_edges() -> None:
    document = workflow([node("a"), node("b"), node("c")], [*chain("a", "b", "c")])
    assert problems(document, limits=graph.Limits(max_edges=1)) == [("limit_exceeded", "/edges")]


def test_containers_nested_too_deeply() -> None:
    inner: dict[str, Any] = node("leaf")
    for level in range(3):
        inner = node(f"loop{level}", "foreach", items=[], body=body(inner))
    document = workflow([inner], [])
    assert problems(document, limits=graph.Limits(max_depth=3)) == []
    deep = "/nodes/0/config/body/nodes/0/config/body/nodes/0/config/body"
    assert problems(document, limits=graph.Limits(max_depth=2)) == [("limit_exceeded", deep)]


def test_expression_too_long() -> None:
    limits = graph.Limits(max_expression_length=20)
    long = " or ".join(["true"] * 10)
    error = only(workflow([node("c", "if", condition=long)], []), limits=limits)
    assert (error.code, error.pointer) == ("limit_exceeded", "/nodes/0/config/condition")
    error = only(workflow([node("t", value=[f"{{{{ {long} }}}}"])], []), limits=limits)
    assert (error.code, error.pointer) == ("limit_exceeded", "/nodes/0/config/value/0")


# -- nested graphs -----------------------------------------------------------------------------


def test_errors_in_nested_graphs_carry_the_full_pointer() -> None:
    each = node(
        "each", "foreach", items="{{ inputs.items }}", body=body(node("x", value="{{ ) }}"))
    )
    guard = node("guard", "try", **{"try": body(node("a"), node("a"))})
    document = workflow([node("start", "start"), each, guard], [])
    assert problems(document) == [
        ("invalid_template", "/nodes/1/config/body/nodes/0/config/value"),
        ("duplicate_id", "/nodes/2/config/try/nodes/1/id"),
    ]


def test_nested_graph_checked_in_full_when_its_container_config_fails() -> None:
    inner = body(node("x", "nope"), node("y"), edges=[edge("x", "y"), edge("y", "q")])
    document = workflow([node("each", "foreach", concurrency=0, body=inner)], [])
    assert problems(document) == [
        ("invalid_config", "/nodes/0/config/items"),
        ("invalid_config", "/nodes/0/config/concurrency"),
        ("unknown_type", "/nodes/0/config/body/nodes/0/type"),
        ("unknown_node", "/nodes/0/config/body/edges/1/to"),
    ]


def test_nested_graph_shape_errors_have_nested_pointers() -> None:
    inner = {"nodes": [{"id": "ok"}], "edges": [{"from": "ok"}]}
    document = workflow([node("each", "foreach", items=[], body=inner)], [])
    assert problems(document) == [
        ("missing_field", "/nodes/0/config/body/nodes/0/type"),
        ("missing_field", "/nodes/0/config/body/edges/0/to"),
    ]


def test_every_problem_is_reported_at_once() -> None:
    document = {
        "name": "",
        "nodes": [
            node("a"),
            node("a"),
            node("c", "if", condition="(("),
            node("d", "delay", seconds=-1),
            node("e", "nope"),
        ],
        "edges": [edge("a", "zz"), edge("c", "d", "maybe"), edge("d", "d")],
        "outputs": {"x": "{{ ]] }}"},
    }
    assert problems(document) == [
        ("invalid_value", "/name"),
        ("duplicate_id", "/nodes/1/id"),
        ("invalid_expression", "/nodes/2/config/condition"),
        ("invalid_config", "/nodes/3/config/seconds"),
        ("unknown_type", "/nodes/4/type"),
        ("unknown_node", "/edges/0/to"),
        ("invalid_branch", "/edges/1/branch"),
        ("self_loop", "/edges/2"),
        ("invalid_template", "/outputs/x"),
    ]
    with pytest.raises(WorkflowInvalid) as caught:
        graph.plan_workflow(document)
    assert len(caught.value.errors) == 9


def test_custom_node_types_and_their_static_fields() -> None:
    class GreetConfig(NodeConfig):
        static = frozenset({"style"})
        expressions = frozenset({"when"})
        style: str = "{{ not a template }}"
        when: str = "true"
        text: str

    types = CORE_NODE_TYPES.with_types(NodeType("greet", GreetConfig))
    document = workflow([node("g", "greet", text="hi {{ inputs.name }}", style="{{ raw }}")], [])
    assert problems(document) == [("unknown_type", "/nodes/0/type")]
    plan = graph.plan_workflow(document, node_types=types)
    greet = plan.nodes["g"]
    assert set(greet.templates) == {"text"} and not greet.expressions  # `when` not given


# -- hashing and caching -----------------------------------------------------------------------


def test_content_hash_ignores_key_order_but_not_content() -> None:
    document = workflow([node("a"), node("b")], chain("a", "b"))
    reordered = {key: document[key] for key in reversed(list(document))}
    reordered["nodes"] = [dict(reversed(list(n.items()))) for n in document["nodes"]]
    assert graph.content_hash(reordered) == graph.content_hash(document)
    changed = copy.deepcopy(document)
    changed["nodes"][0]["config"]["value"] = "other"
    assert graph.content_hash(changed) != graph.content_hash(document)
    assert re.fullmatch(r"[0-9a-f]{64}", graph.content_hash(document))


def test_plan_cache_hits_misses_and_evicts_least_recently_used() -> None:
    cache = graph.PlanCache(maxsize=2)
    docs = [workflow([node(f"n{i}")], []) for i in range(3)]
    first = cache.get_or_plan(docs[0])
    assert cache.get_or_plan(copy.deepcopy(docs[0])) is first
    assert (cache.hits, cache.misses) == (1, 1)
    cache.get_or_plan(docs[1])
    cache.get_or_plan(docs[0])  # 0 is now the most recently used
    cache.get_or_plan(docs[2])  # evicts 1
    assert len(cache) == 2
    assert cache.get_or_plan(docs[0]) is first
    misses = cache.misses
    cache.get_or_plan(docs[1])
    assert cache.misses == misses + 1


def test_plan_cache_keys_on_limits_and_node_types() -> None:
    cache = graph.PlanCache()
    document = workflow([node("a")], [])
    plan = cache.get_or_plan(document)
    assert cache.get_or_plan(document, limits=graph.Limits(max_nodes=5)) is not plan
    types = CORE_NODE_TYPES.with_types()
    assert cache.get_or_plan(document, node_types=types) is not plan
    assert cache.get_or_plan(document) is plan
    assert (cache.hits, cache.misses) == (1, 3)


async def test_changing_a_document_after_planning_changes_neither_its_plan_nor_its_runs() -> None:
    document = workflow(
        [
            node("start", "start"),
            node("fixed", value={"items": [1, 2]}),
            node("mixed", value={"items": [3], "who": "{{ inputs.name }}"}),
            node("finish", "end", outputs={"all": "{{ [fixed.output, mixed.output] }}"}),
        ],
        [edge("start", "fixed"), edge("fixed", "mixed"), edge("mixed", "finish")],
        inputs={"type": "object", "properties": {"name": {"type": "string"}}},
        outputs={"all": "{{ finish.output.all }}", "also": [{"k": "v"}]},
    )
    original = copy.deepcopy(document)
    harness = Harness()
    first = await harness.run(document, {"name": "ann"})
    plan = harness.scheduler().plan(original)  # the cached plan (planned from ``document``)

    nodes = document["nodes"]
    nodes[1]["config"]["value"]["items"].append(99)
    nodes[2]["config"]["value"]["items"].append(99)
    nodes[3]["config"]["outputs"]["all"] = "changed"
    document["inputs"]["properties"]["name"]["type"] = "integer"
    document["outputs"]["also"][0]["k"] = "changed"

    assert harness.scheduler().plan(original) is plan
    assert plan.nodes["fixed"].raw_config == original["nodes"][1]["config"]
    assert plan.nodes["finish"].raw_config == original["nodes"][3]["config"]
    assert plan.input_schema == original["inputs"]
    second = await harness.run(original, {"name": "ann"}, execution_id="run-2")
    expected = {"all": [{"items": [1, 2]}, {"items": [3], "who": "ann"}], "also": [{"k": "v"}]}
    assert second.outputs == first.outputs == expected


async def test_a_big_document_is_planned_while_the_event_loop_runs_other_tasks() -> None:
    cache = graph.PlanCache()
    document = big_document()
    plan, ticks = await ticks_while(cache.get_or_plan_async(document))
    assert plan.node_count == 10_000
    assert ticks >= 10  # planning in place, the other task would not run at all
    cached, _ = await ticks_while(cache.get_or_plan_async(copy.deepcopy(document)))
    assert cached is plan


def test_values_of_other_types_are_copied_too() -> None:
    value = collections.OrderedDict(items=[1, 2], big=2**100)  # not a plain dict
    plan = graph.plan_workflow(workflow([node("a", value=value)], []))
    value["items"].append(3)
    assert plan.nodes["a"].raw_config["value"] == {"items": [1, 2], "big": 2**100}


def test_plan_cache_does_not_keep_invalid_documents() -> None:
    cache = graph.PlanCache()
    for _ in range(2):
        with pytest.raises(WorkflowInvalid):
            cache.get_or_plan(workflow([node("a", "nope")], []))
    assert (len(cache), cache.misses) == (0, 2)
    assert isinstance(graph.default_plan_cache, graph.PlanCache)


# -- properties --------------------------------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn, max_nodes: int = 200) -> tuple[list[str], list[tuple[int, int]]]:
    """Node ids in a shuffled document order and edges between distinct earlier/later ranks."""
    size = draw(st.integers(1, max_nodes))
    ranks = draw(st.permutations(range(size)))  # document position -> topological rank
    pairs = draw(
        st.lists(st.tuples(st.integers(0, size - 1), st.integers(0, size - 1)), max_size=3 * size)
    )
    edges = sorted({(a, b) if ranks[a] < ranks[b] else (b, a) for a, b in pairs if a != b})
    return [f"n{i}" for i in range(size)], edges


def document_of(ids: list[str], edges: list[tuple[int, int]]) -> dict[str, Any]:
    return workflow([node(i) for i in ids], [edge(ids[a], ids[b]) for a, b in edges])


@settings(max_examples=60, deadline=None)
@given(dags())
def test_random_dags_order_and_levels_respect_every_edge(
    case: tuple[list[str], list[tuple[int, int]]],
) -> None:
    ids, edges = case
    plan = graph.plan_workflow(document_of(ids, edges))
    assert sorted(plan.order) == sorted(ids)
    position = {node_id: i for i, node_id in enumerate(plan.order)}
    for a, b in edges:
        source, target = plan.nodes[ids[a]], plan.nodes[ids[b]]
        assert position[source.id] < position[target.id]
        assert target.level > source.level
    for node_id, planned in plan.nodes.items():
        assert planned.order == position[node_id]
        assert node_id in plan.levels[planned.level]
        below = [plan.nodes[e.source].level for e in planned.incoming]
        assert planned.level == (max(below) + 1 if below else 0)


@settings(max_examples=60, deadline=None)
@given(dags(), st.data())
def test_a_back_edge_is_reported_as_a_real_cycle(
    case: tuple[list[str], list[tuple[int, int]]], data: st.DataObject
) -> None:
    ids, edges = case
    if not edges:
        return
    a, b = data.draw(st.sampled_from(edges))
    document = document_of(ids, [*edges, (b, a)])  # b -> a closes a path a -> b
    errors = graph.validate_workflow(document)
    assert errors and {e.code for e in errors} == {"cycle"}
    present = {(ids[x], ids[y]) for x, y in [*edges, (b, a)]}
    for error in errors:
        names = error.message.removeprefix("cycle: ").split(" → ")
        assert names[0] == names[-1] and len(set(names[:-1])) == len(names) - 1
        assert all(pair in present for pair in itertools.pairwise(names))
        index = int(error.pointer.removeprefix("/edges/"))
        closing = document["edges"][index]
        assert (closing["from"], closing["to"]) == (names[-2], names[-1])


def test_templates_of_constant_configs_are_constant() -> None:
    plan = graph.plan_workflow(workflow([node("a", value={"x": [1, "y"]})], []))
    compiled = plan.nodes["a"].templates["value"]
    assert isinstance(compiled, CompiledValue) and compiled.is_constant
    assert compiled.render({}) == {"x": [1, "y"]}


def test_extra_keys_a_config_model_allows_are_templates() -> None:
    class OpenConfig(NodeConfig):
        model_config = ConfigDict(extra="allow")
        known: int = 0

    types = CORE_NODE_TYPES.with_types(NodeType("open", OpenConfig))
    document = workflow([node("o", "open", known=1, anything="{{ inputs.x }}")], [])
    templates = graph.plan_workflow(document, node_types=types).nodes["o"].templates
    assert set(templates) == {"known", "anything"}
    assert templates["anything"].names == {"inputs"}


def test_value_nested_deeper_than_json_allows_is_reported_not_raised() -> None:
    value: Any = "x"
    for _ in range(2000):
        value = {"a": [value]}
    error = only(workflow([node("t", value=value)], []))
    assert (error.code, error.pointer) == ("limit_exceeded", "/nodes/0/config/value")
