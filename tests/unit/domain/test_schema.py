"""The workflow document's JSON Schema: committed file fresh, schema valid, nodes typed."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from app.domain import schema
from app.domain.node_types import CORE_NODE_TYPES, NodeConfig, NodeType
from app.domain.workflow import WorkflowDocument

COMMITTED = Path(__file__).resolve().parents[3] / "openapi" / "workflow.schema.json"

VALID: dict[str, Any] = {
    "name": "triage",
    "nodes": [
        {"id": "start", "type": "start"},
        {"id": "check", "type": "if", "config": {"condition": "inputs.n > 1"}},
        {
            "id": "each",
            "type": "foreach",
            "name": "Each item",
            "retry": {"max_retries": 3},
            "timeout_s": 30,
            "config": {
                "items": "{{ inputs.items }}",
                "concurrency": "{{ inputs.width }}",
                "body": {
                    "nodes": [
                        {"id": "wait", "type": "delay", "config": {"seconds": 0.5}},
                        {
                            "id": "guard",
                            "type": "try",
                            "config": {
                                "try": {
                                    "nodes": [
                                        {"id": "x", "type": "fail", "config": {"message": "no"}}
                                    ]
                                },
                                "finally": {
                                    "nodes": [
                                        {"id": "y", "type": "transform", "config": {"value": 1}}
                                    ]
                                },
                            },
                        },
                    ],
                    "edges": [{"from": "wait", "to": "guard"}],
                },
            },
        },
        {"id": "sub", "type": "subworkflow", "config": {"workflow_id": "w1", "version": 2}},
        {"id": "end", "type": "end", "config": {"outputs": {"n": "{{ each.output }}"}}},
    ],
    "edges": [
        {"from": "start", "to": "check"},
        {"from": "check", "to": "each", "branch": "true"},
        {"from": "check", "to": "sub", "branch": "false"},
        {"from": "each", "to": "end"},
    ],
}


def _body_node(document: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = document["nodes"][2]["config"]["body"]["nodes"][0]
    return node


def _set(document: dict[str, Any], change: str) -> dict[str, Any]:
    """A copy of ``document`` with one mistake; ``change`` names it."""
    bad = copy.deepcopy(document)
    if change == "unknown type":
        bad["nodes"][0]["type"] = "teleport"
    elif change == "bad id":
        bad["nodes"][0]["id"] = "1st"
    elif change == "if without condition":
        bad["nodes"][1]["config"] = {}
    elif change == "unknown config key":
        bad["nodes"][1]["config"]["conditon"] = "x"
    elif change == "nested negative delay":
        _body_node(bad)["config"]["seconds"] = -1
    elif change == "nested non-template string":
        _body_node(bad)["config"]["seconds"] = "soon"
    elif change == "nested unknown type":
        _body_node(bad)["type"] = "nap"
    elif change == "edge by python names":
        bad["edges"][0] = {"source": "start", "target": "check"}
    elif change == "missing name":
        del bad["name"]
    elif change == "empty nested graph":
        bad["nodes"][2]["config"]["body"]["nodes"] = []
    elif change == "try block without nodes":
        _body_node(bad)["type"] = "try"
        _body_node(bad)["config"] = {"try": {}}
    return bad


MISTAKES = [
    "unknown type",
    "bad id",
    "if without condition",
    "unknown config key",
    "nested negative delay",
    "nested non-template string",
    "nested unknown type",
    "edge by python names",
    "missing name",
    "empty nested graph",
    "try block without nodes",
]


def _models_accept(document: dict[str, Any]) -> bool:
    """What the pydantic models say: the document's shape, then every config, recursively."""

    def configs_ok(graph: dict[str, Any]) -> bool:
        for node in graph["nodes"]:
            if node["type"] not in CORE_NODE_TYPES:
                return False
            model = CORE_NODE_TYPES[node["type"]].config
            dumped = model.model_validate(node.get("config", {})).model_dump(by_alias=True)
            if not all(dumped[g] is None or configs_ok(dumped[g]) for g in model.graphs):
                return False
        return True

    try:
        WorkflowDocument.model_validate(document)
        return configs_ok(document)
    except ValueError:
        return False


def test_committed_schema_is_fresh() -> None:
    fresh = schema.dump_workflow_schema()
    committed = COMMITTED.read_text(encoding="utf-8") if COMMITTED.exists() else ""
    assert committed == fresh, (
        f"{COMMITTED} is stale; regenerate it with `python -m app.domain.schema`"
    )


def test_root_describes_the_document() -> None:
    generated = schema.workflow_json_schema()
    assert generated["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert generated["required"] == ["nodes", "name"]
    assert generated["properties"]["nodes"]["items"] == {"$ref": "#/$defs/NodeSpec"}
    assert generated["additionalProperties"] is False


def test_every_type_is_a_variant_of_the_node_union() -> None:
    defs = schema.workflow_json_schema()["$defs"]
    union = defs["NodeSpec"]
    assert union["discriminator"]["propertyName"] == "type"
    variants = [defs[v["$ref"].removeprefix("#/$defs/")] for v in union["oneOf"]]
    assert [v["properties"]["type"]["const"] for v in variants] == sorted(CORE_NODE_TYPES)
    for variant in variants:
        name = variant["properties"]["type"]["const"]
        assert variant["description"] == CORE_NODE_TYPES[name].description
        assert set(variant["properties"]) == {
            "id",
            "type",
            "name",
            "config",
            "retry",
            "timeout_s",
            "critical",
            "continue_on_error",
        }
        assert variant["properties"]["id"]["pattern"] == r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"


def test_nested_graphs_are_typed_recursively() -> None:
    defs = schema.workflow_json_schema()["$defs"]
    node = defs["NodeSpec_foreach"]
    assert node["required"] == ["id", "type", "config"]
    config = defs[node["properties"]["config"]["$ref"].removeprefix("#/$defs/")]
    assert config["properties"]["body"] == {"$ref": "#/$defs/GraphSpec"}
    assert defs["GraphSpec"]["properties"]["nodes"]["items"] == {"$ref": "#/$defs/NodeSpec"}
    assert "oneOf" in defs["NodeSpec"]
    try_config = defs["TryConfig"]["properties"]
    assert {"try", "catch", "finally"} <= set(try_config)
    assert defs["InlineWorkflow"]["properties"]["nodes"]["items"] == {"$ref": "#/$defs/NodeSpec"}
    assert set(defs["EdgeSpec"]["properties"]) == {"from", "to", "branch"}


def test_extra_node_types_join_the_union() -> None:
    class PingConfig(NodeConfig):
        host: str

    types = CORE_NODE_TYPES.with_types(NodeType("acme/ping~1", PingConfig, "Pings `host`."))
    generated = schema.workflow_json_schema(types)
    assert {"$ref": "#/$defs/NodeSpec_acme~1ping~01"} in generated["$defs"]["NodeSpec"]["oneOf"]
    assert generated["$defs"]["PingConfig"]["description"] == "Pings `host`."


def test_write_and_module_entry(tmp_path: Path) -> None:
    target = tmp_path / "out" / "workflow.schema.json"
    assert schema.main([str(target)]) == 0
    text = target.read_text(encoding="utf-8")
    assert text.endswith("}\n")
    assert json.loads(text) == schema.workflow_json_schema()


def test_schema_is_valid_and_accepts_a_workflow() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    generated = schema.workflow_json_schema()
    jsonschema.Draft202012Validator.check_schema(generated)
    jsonschema.Draft202012Validator(generated).validate(VALID)


def test_plugin_refs_resolve() -> None:
    jsonschema = pytest.importorskip("jsonschema")

    class PingConfig(NodeConfig):
        host: str

    types = CORE_NODE_TYPES.with_types(NodeType("acme/ping~1", PingConfig, "Pings `host`."))
    validator = jsonschema.Draft202012Validator(schema.workflow_json_schema(types))
    document: dict[str, Any] = {
        "name": "p",
        "nodes": [{"id": "p", "type": "acme/ping~1", "config": {"host": "h"}}],
    }
    assert validator.is_valid(document)
    document["nodes"][0]["config"] = {"port": 1}
    assert not validator.is_valid(document)


@pytest.mark.parametrize("mistake", MISTAKES)
def test_schema_rejects_a_broken_workflow(mistake: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(schema.workflow_json_schema())
    assert validator.is_valid(VALID)
    assert not validator.is_valid(_set(VALID, mistake))


# The models also take edges by their Python names (populate_by_name); the schema, like the
# contract, knows only `from`/`to`.
AGREED = [m for m in MISTAKES if m != "edge by python names"]


@pytest.mark.parametrize("mistake", ["none", *AGREED])
def test_examples_agree_with_the_models(mistake: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(schema.workflow_json_schema())
    document = _set(VALID, mistake)
    assert validator.is_valid(document) == _models_accept(document)
