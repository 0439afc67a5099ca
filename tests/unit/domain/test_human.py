"""Approval and form configs: what a document may ask of people, checked at validation."""

from __future__ import annotations

from typing import Any

import pytest

from app.engine.compile import graph
from app.errors import WorkflowInvalid


def document(node: dict[str, Any]) -> dict[str, Any]:
    return {"name": "people", "nodes": [node], "edges": []}


def problems(node: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(WorkflowInvalid) as caught:
        graph.plan_workflow(document(node))
    return {e.pointer: e.message for e in caught.value.errors}


def form(fields: Any, **config: Any) -> dict[str, Any]:
    return {"id": "f", "type": "form", "config": {"prompt": "?", "fields": fields, **config}}


def test_valid_human_steps_plan() -> None:
    fields = {
        "type": "object",
        "properties": {
            "email": {"type": "string", "format": "email", "title": "Email"},
            "n": {"type": "integer", "minimum": 1, "default": 2},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
            "ok": {"type": "boolean"},
        },
        "required": ["email"],
    }
    graph.plan_workflow(document(form(fields, timeout_s="{{ 60 }}", on_timeout="default")))
    approval = {"id": "a", "type": "approval", "config": {"prompt": "Ship {{ 1 }}?"}}
    graph.plan_workflow(document(approval))


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"type": "array"}, "type 'object'"),
        ({"type": "object", "properties": {}}, "at least one property"),
        ({"type": "object", "properties": {"x": {"type": "object"}}}, "must be string"),
        ({"type": "object", "properties": {"x": {"type": "string", "format": "iban"}}}, "format"),
        ({"type": "object", "properties": {"x": {"type": "string", "pattern": "("}}}, "pattern"),
        ({"type": "object", "properties": {"x": {"type": "string", "oneOf": []}}}, "oneOf"),
        (
            {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["y"]},
            "required",
        ),
        (
            {"type": "object", "properties": {"x": {"type": "array", "items": {"type": "array"}}}},
            "items.type",
        ),
    ],
)
def test_fields_a_screen_cannot_render_are_refused(fields: Any, says: str) -> None:
    found = problems(form(fields))
    assert any(p.startswith("/nodes/0/config") for p in found), found
    assert any(says in message for message in found.values()), found


def test_approval_quorum_cannot_exceed_its_approvers() -> None:
    node = {
        "id": "a",
        "type": "approval",
        "config": {"prompt": "?", "approvers": ["ann", "bob"], "quorum": 3},
    }
    assert any("quorum 3 exceeds the 2 approvers" in m for m in problems(node).values())


def test_a_timed_out_branch_exists_only_when_configured() -> None:
    nodes = [
        {"id": "a", "type": "approval", "config": {"prompt": "?"}},
        {"id": "late", "type": "transform", "config": {"value": 1}},
    ]
    edges = [{"from": "a", "to": "late", "branch": "timed_out"}]
    with pytest.raises(WorkflowInvalid) as caught:
        graph.plan_workflow({"name": "x", "nodes": nodes, "edges": edges})
    assert [e.code for e in caught.value.errors] == ["invalid_branch"]
    nodes[0]["config"]["on_timeout"] = "branch"
    graph.plan_workflow({"name": "x", "nodes": nodes, "edges": edges})
