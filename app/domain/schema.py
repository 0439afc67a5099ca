"""JSON Schema (2020-12) of the whole workflow document, with every node typed by its ``type``.

``WorkflowDocument`` alone types ``config`` as a free object: a node's config is checked against
its node type only at validation. Editors and clients want more, so this module assembles one
schema where a node is a ``oneOf`` over the registered types (``type`` a ``const``, ``config`` a
reference to that type's config model) and every nested graph (container bodies, ``try`` blocks,
inline sub-workflows) refers back to the same typed node union.

Rules a model validator enforces are stated with ``json_schema_extra`` where JSON Schema can
say them (distinct switch cases, a sub-workflow's single source); rules across nodes are left to
``app.engine.compile.graph``. A node's ``config`` is required unless ``{}`` is a valid config.

Run ``python -m app.domain.schema [PATH]`` to regenerate ``openapi/workflow.schema.json``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ValidationError
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from app.domain.node_types import CORE_NODE_TYPES, NodeTypes
from app.domain.workflow import NodeSpec, WorkflowDocument

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
DEFAULT_SCHEMA_PATH = Path("openapi") / "workflow.schema.json"
SCHEMA_TITLE = "Oxify workflow document"

_DEFS_PREFIX = "#/$defs/"
_USAGE = "usage: python -m app.domain.schema [PATH]"


def workflow_json_schema(node_types: NodeTypes = CORE_NODE_TYPES) -> dict[str, Any]:
    """Return the JSON Schema (2020-12) of a workflow document for ``node_types``.

    Guarantees: the root is the document object; ``$defs`` holds each config model once (by
    pydantic's name for it) plus one node variant per type; the ``NodeSpec`` definition is the
    discriminated union of those variants, so every ``$ref`` to it, at the top and in nested
    graphs, is typed. Property names are the document's (``from``, ``to``, ``try``,
    ``finally``). Types appear in name order, so the result does not depend on registration order.
    """
    names = sorted(node_types)
    configs = list(dict.fromkeys(node_types[name].config for name in names))
    wanted: list[type[BaseModel]] = [WorkflowDocument, NodeSpec, *configs]
    inputs: Sequence[tuple[type[BaseModel], JsonSchemaMode]] = [(m, "validation") for m in wanted]
    refs, top = models_json_schema(inputs, by_alias=True)
    defs: dict[str, Any] = top["$defs"]

    def def_name(model: type[BaseModel]) -> str:
        ref: str = refs[(model, "validation")]["$ref"]
        return ref.removeprefix(_DEFS_PREFIX)

    for config in configs:  # a config used by one type alone takes that type's description
        about = {
            node_types[name].description for name in names if node_types[name].config is config
        }
        config_schema = defs[def_name(config)]
        if len(about) == 1 and "" not in about and "description" not in config_schema:
            config_schema["description"] = about.pop()

    node_def = def_name(NodeSpec)
    common: dict[str, Any] = defs[node_def]
    variants: list[dict[str, Any]] = []
    mapping: dict[str, str] = {}
    for name in names:
        node_type = node_types[name]
        config_def = def_name(node_type.config)
        variant_def = f"{node_def}_{name}"
        if variant_def in defs:
            raise ValueError(f"schema definition name {variant_def!r} is already taken")
        defs[variant_def] = _node_variant(
            common, name, node_type.description, node_type.config, config_def
        )
        variants.append({"$ref": _ref(variant_def)})
        mapping[name] = _ref(variant_def)

    defs[node_def] = {
        "title": "Node",
        "description": "One node of a graph; `type` selects the schema of `config`.",
        "oneOf": variants,
        "discriminator": {"propertyName": "type", "mapping": mapping},
    }
    document = defs.pop(def_name(WorkflowDocument))
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        **document,
        "title": SCHEMA_TITLE,
        "$defs": defs,
    }


def _takes_empty(config: type[BaseModel]) -> bool:
    """Whether ``{}`` is a valid config (a type may need one of several keys, as subworkflow
    does: no ``required`` list shows that)."""
    try:
        config.model_validate({})
    except ValidationError:
        return False
    return True


def _node_variant(
    common: dict[str, Any],
    name: str,
    description: str,
    config: type[BaseModel],
    config_def: str,
) -> dict[str, Any]:
    """The node object for one type: the common fields, ``type`` fixed, ``config`` typed."""
    properties = dict(common["properties"])
    properties["type"] = {"const": name, "title": "Type"}
    properties["config"] = {"$ref": _ref(config_def)}
    required = list(common.get("required", ["id", "type"]))
    if not _takes_empty(config):
        required.append("config")  # a node without config has the empty one
    variant: dict[str, Any] = {
        "type": "object",
        "title": f"{name} node",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    if description:
        variant["description"] = description
    return variant


def _ref(def_name: str) -> str:
    """A ``$ref`` to ``$defs/<def_name>``: JSON-pointer escaped, then URI-fragment encoded."""
    token = def_name.replace("~", "~0").replace("/", "~1")
    return _DEFS_PREFIX + quote(token, safe="!$&'()*+,;=:@-._~")


def dump_workflow_schema(node_types: NodeTypes = CORE_NODE_TYPES) -> str:
    """The schema as committed: indent 2, sorted keys, UTF-8 text, trailing newline."""
    schema = workflow_json_schema(node_types)
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_workflow_schema(
    path: str | os.PathLike[str] = DEFAULT_SCHEMA_PATH,
    node_types: NodeTypes = CORE_NODE_TYPES,
) -> None:
    """Write the schema to ``path`` (parent directories created), replacing any old file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(dump_workflow_schema(node_types), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m app.domain.schema [PATH]``: write the core schema (default under openapi/)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(arg in ("-h", "--help") for arg in args):
        print(_USAGE)
        return 0
    if len(args) > 1:
        print(_USAGE, file=sys.stderr)
        return 2
    path = Path(args[0]) if args else DEFAULT_SCHEMA_PATH
    write_workflow_schema(path)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
