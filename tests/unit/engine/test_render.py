"""Rendering plans as Mermaid, DOT and text: shapes, branch labels, nested bodies, escaping."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from typing import Any

import pytest

from app.domain.node_types import CORE_NODE_TYPES, NodeConfig, NodeType
from app.domain.workflow import GraphSpec
from app.engine.compile import graph, render
from app.engine.compile.plan import Plan

TRIAGE: dict[str, Any] = {
    "name": "triage",
    "nodes": [
        {"id": "start", "type": "start"},
        {
            "id": "check",
            "type": "if",
            "name": 'Big "order"?',
            "config": {"condition": "inputs.n > 1"},
        },
        {
            "id": "each",
            "type": "foreach",
            "config": {
                "items": "{{ inputs.items }}",
                "body": {
                    "nodes": [
                        {"id": "wait", "type": "delay", "config": {"seconds": 1}},
                        {
                            "id": "double",
                            "type": "transform",
                            "config": {"value": "{{ item * 2 }}"},
                        },
                    ],
                    "edges": [{"from": "wait", "to": "double"}],
                },
            },
        },
        {"id": "log", "type": "transform", "config": {"value": "small"}},
        {"id": "end", "type": "end"},
    ],
    "edges": [
        {"from": "start", "to": "check"},
        {"from": "check", "to": "each", "branch": "true"},
        {"from": "check", "to": "log", "branch": "false"},
        {"from": "each", "to": "end"},
        {"from": "log", "to": "end"},
    ],
}

GUARDED: dict[str, Any] = {
    "name": "guarded",
    "nodes": [
        {"id": "start", "type": "start"},
        {
            "id": "route",
            "type": "switch",
            "config": {"value": "inputs.kind", "cases": ["a|b", 'x"y', "<b>", "#35;", "end"]},
        },
        {"id": "stop", "type": "fail", "config": {"message": "no"}},
        {
            "id": "loop",
            "type": "repeat",
            "name": "Three times",
            "config": {
                "count": 3,
                "body": {
                    "nodes": [
                        {
                            "id": "guard",
                            "type": "try",
                            "config": {
                                "try": {
                                    "nodes": [
                                        {"id": "end", "type": "delay", "config": {"seconds": 0}}
                                    ]
                                },
                                "catch": {
                                    "nodes": [
                                        {"id": "oops", "type": "fail", "config": {"message": "x"}}
                                    ]
                                },
                                "finally": {
                                    "nodes": [
                                        {
                                            "id": "tidy",
                                            "type": "set_var",
                                            "config": {"name": "v", "value": 1},
                                        }
                                    ]
                                },
                            },
                        }
                    ]
                },
            },
        },
        {
            "id": "a",
            "type": "transform",
            "name": "Go `now` | [x] {y} #1 <i> & \\ \n2",
            "config": {"value": 1},
        },
        {"id": "b", "type": "transform", "config": {"value": 2}},
        {"id": "c", "type": "transform", "config": {"value": 3}},
        {"id": "end", "type": "end"},
    ],
    "edges": [
        {"from": "start", "to": "route"},
        {"from": "route", "to": "a", "branch": "a|b"},
        {"from": "route", "to": "b", "branch": 'x"y'},
        {"from": "route", "to": "c", "branch": "<b>"},
        {"from": "route", "to": "stop", "branch": "#35;"},
        {"from": "route", "to": "loop", "branch": "end"},
        {"from": "route", "to": "end", "branch": "default"},
    ],
}


def _plan(document: dict[str, Any]) -> Plan:
    return graph.plan_workflow(copy.deepcopy(document))


@pytest.fixture
def triage() -> Plan:
    return _plan(TRIAGE)


@pytest.fixture
def guarded() -> Plan:
    return _plan(GUARDED)


# -- dispatch and determinism -------------------------------------------------------------------


@pytest.mark.parametrize("fmt", render.FORMATS)
def test_render_dispatches_by_format(triage: Plan, fmt: render.Format) -> None:
    by_name = {"mermaid": render.to_mermaid, "dot": render.to_dot, "ascii": render.to_ascii}
    assert render.render(triage, fmt) == by_name[fmt](triage)


def test_unknown_format_is_a_value_error(triage: Plan) -> None:
    with pytest.raises(ValueError, match="svg"):
        render.render(triage, "svg")  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["mermaid", "dot", "ascii"])
@pytest.mark.parametrize("document", [TRIAGE, GUARDED], ids=["triage", "guarded"])
def test_output_is_deterministic(document: dict[str, Any], fmt: render.Format) -> None:
    first = render.render(_plan(document), fmt)
    assert first == render.render(_plan(document), fmt)
    assert first.endswith("\n")
    assert not first.endswith("\n\n")


def test_plugin_types_take_their_family_from_the_config() -> None:
    class BatchConfig(NodeConfig):
        graphs = frozenset({"steps"})
        steps: GraphSpec

    class ApproveConfig(NodeConfig):
        def branches(self) -> frozenset[str]:
            return frozenset({"yes", "no"})

    types = CORE_NODE_TYPES.with_types(
        NodeType("batch", BatchConfig),
        NodeType("vote", ApproveConfig),
        NodeType("ping", NodeConfig),
    )
    step = {"id": "inner", "type": "ping"}
    document = {
        "name": "plugins",
        "nodes": [
            {"id": "b", "type": "batch", "config": {"steps": {"nodes": [step]}}},
            {"id": "v", "type": "vote"},
            {"id": "p", "type": "ping"},
        ],
        "edges": [{"from": "b", "to": "v"}, {"from": "v", "to": "p", "branch": "yes"}],
    }
    plan = graph.plan_workflow(document, node_types=types)
    assert [render.family(plan.nodes[n]) for n in "bvp"] == ["container", "control", "task"]
    assert [render.shape(plan.nodes[n]) for n in "bvp"] == ["subroutine", "rhombus", "rectangle"]
    text = render.to_mermaid(plan)
    assert 'subgraph b_steps ["b · steps"]' in text
    assert "class p,b_steps_inner task" in text


# -- mermaid ------------------------------------------------------------------------------------


def test_mermaid_shapes_and_branch_labels(triage: Plan) -> None:
    lines = render.to_mermaid(triage).splitlines()
    assert lines[0] == "flowchart TD"
    body = [line.strip() for line in lines]
    assert 'start(["start<br/>(start)"])' in body
    assert 'check{"Big #quot;order#quot;?<br/>(if)"}' in body
    assert 'each[["each<br/>(foreach)"]]' in body
    assert 'log["log<br/>(transform)"]' in body
    assert 'end_(["end<br/>(end)"])' in body  # `end` would close a block
    assert 'check -->|"true"| each' in body
    assert 'check -->|"false"| log' in body
    assert "each --> end_" in body


def test_mermaid_body_is_a_subgraph_with_prefixed_ids(triage: Plan) -> None:
    text = render.to_mermaid(triage)
    block = text.split('subgraph each_body ["each · body"]\n', 1)[1].split("    end\n", 1)[0]
    assert 'each_body_wait["wait<br/>(delay)"]' in block
    assert 'each_body_double["double<br/>(transform)"]' in block
    assert "each_body_wait --> each_body_double" in block
    assert "    each -.-> each_body\n" in text


def test_mermaid_classes_by_family(triage: Plan) -> None:
    body = [line.strip() for line in render.to_mermaid(triage).splitlines()]
    assert "class start,end_ terminal" in body
    assert "class check,each_body_wait control" in body
    assert "class log,each_body_double data" in body
    assert "class each container" in body
    assert "class each_body body" in body
    for family in ("terminal", "control", "data", "container", "body"):
        assert any(line.startswith(f"classDef {family} fill:#") for line in body)
    assert not any(line.startswith("classDef failure") for line in body)  # only used families


def test_mermaid_nested_containers_and_unique_ids(guarded: Plan) -> None:
    text = render.to_mermaid(guarded)
    assert 'subgraph loop_body ["Three times · body"]' in text
    for field in ("try", "catch", "finally"):
        assert f"subgraph loop_body_guard_{field} [" in text
        assert f"loop_body_guard -.-> loop_body_guard_{field}" in text
    assert 'loop_body_guard_try_end["end<br/>(delay)"]' in text
    assert "class stop,loop_body_guard_catch_oops failure" in text
    declared = re.findall(r"^\s*(\w+)[\[({]", text, flags=re.MULTILINE)
    assert len(declared) == len(set(declared)) == 12


def test_mermaid_escapes_labels(guarded: Plan) -> None:
    text = render.to_mermaid(guarded)
    assert 'route -->|"a#124;b"| a' in text
    assert 'route -->|"x#quot;y"| b' in text
    assert 'route -->|"#lt;b#gt;"| c' in text
    assert 'route -->|"#35;35;"| stop' in text
    assert 'a["Go #96;now#96; #124; [x] {y} #35;1 #lt;i#gt; #amp; \\  2<br/>(transform)"]' in text
    for line in text.splitlines():  # quotes only ever delimit a label
        assert line.count('"') % 2 == 0, line


# -- dot ----------------------------------------------------------------------------------------


def test_dot_graph_shapes_and_branch_labels(triage: Plan) -> None:
    text = render.to_dot(triage)
    assert text.startswith('digraph "triage" {\n    rankdir=TB;\n')
    assert text.endswith("}\n")
    assert '"start" [label="start\\n(start)", shape=box, style="rounded,filled"' in text
    assert '"check" [label="Big \\"order\\"?\\n(if)", shape=diamond' in text
    assert '"each" [label="each\\n(foreach)", shape=box3d' in text
    assert '"log" [label="log\\n(transform)", shape=box, fillcolor="#e3f2fd"' in text
    assert '"check" -> "each" [label="true"];' in text
    assert '"check" -> "log" [label="false"];' in text
    assert '"each" -> "end";' in text


def test_dot_body_is_a_cluster(triage: Plan) -> None:
    text = render.to_dot(triage)
    cluster = text.split('subgraph "cluster_each/body" {\n', 1)[1].split("\n    }\n", 1)[0]
    assert 'label="each · body";' in cluster
    assert '"each/body/wait" [label="wait\\n(delay)"' in cluster
    assert '"each/body/wait" -> "each/body/double";' in cluster
    assert '"each" -> "each/body/wait" [lhead="cluster_each/body", style=dashed' in text
    assert "compound=true;" in text


def test_dot_nested_clusters_and_escaping(guarded: Plan) -> None:
    text = render.to_dot(guarded)
    assert 'subgraph "cluster_loop/body/guard/catch" {' in text
    assert '"loop/body/guard/try/end" [label="end\\n(delay)"' in text
    assert '"route" -> "b" [label="x\\"y"];' in text
    assert '"route" -> "c" [label="<b>"];' in text
    assert '"a" [label="Go `now` | [x] {y} #1 <i> &amp; \\\\  2\\n(transform)"' in text


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
@pytest.mark.parametrize("document", [TRIAGE, GUARDED], ids=["triage", "guarded"])
def test_dot_is_accepted_by_graphviz(document: dict[str, Any]) -> None:
    done = subprocess.run(
        ["dot", "-Tcanon"],
        input=render.to_dot(_plan(document)),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr


# -- ascii --------------------------------------------------------------------------------------


def test_ascii_groups_by_level_and_indents_bodies(triage: Plan) -> None:
    assert render.to_ascii(triage) == (
        'workflow "triage" · 7 nodes · 4 levels\n'
        "[L0] start (start)  ──▶ check\n"
        '[L1] check "Big \\"order\\"?" (if)  ──true──▶ each, ──false──▶ log\n'
        "[L2] each (foreach)  ──▶ end\n"
        "     body:\n"
        "       [L0] wait (delay)  ──▶ double\n"
        "       [L1] double (transform)\n"
        "[L2] log (transform)  ──▶ end\n"
        "[L3] end (end)\n"
    )


def test_ascii_nests_and_keeps_field_order(guarded: Plan) -> None:
    lines = render.to_ascii(guarded).splitlines()
    start = lines.index('[L2] loop "Three times" (repeat)')
    assert lines[start + 1 : start + 10] == [
        "     body:",
        "       [L0] guard (try)",
        "            try:",
        "              [L0] end (delay)",
        "            catch:",
        "              [L0] oops (fail)",
        "            finally:",
        "              [L0] tidy (set_var)",
        '[L2] a "Go `now` | [x] {y} #1 <i> & \\\\ \\n2" (transform)',
    ]
    route = next(line for line in lines if line.startswith("[L1] route"))
    assert route == (
        '[L1] route (switch)  ──a|b──▶ a, ──x"y──▶ b, ──<b>──▶ c, ──#35;──▶ stop, '
        "──end──▶ loop, ──default──▶ end"
    )
