"""How the planner treats each field of a node type's config model, and template helpers.

A config model says, in class variables, which fields are ``expressions`` (compiled as
conditions), ``graphs`` (nested graphs, planned recursively) and ``static`` (used as written);
every other field is compiled as a template. The class variables may name a field by its alias
(``try``) or its attribute (``try_``); documents normally use the alias.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, get_args

import orjson
from pydantic import TypeAdapter

from app.domain.node_types import NodeConfig
from app.domain.workflow import GraphSpec
from app.engine.compile import templates
from app.engine.compile.validation_errors import escape
from app.errors import ExpressionError

FieldKind = Literal["expression", "graph", "static", "template"]


@dataclass(frozen=True, slots=True)
class ConfigField:
    """One config field: its attribute, its name in documents, and how it is planned."""

    attr: str
    name: str  # as written in documents: the alias, else the attribute name
    kind: FieldKind
    graph_model: type[GraphSpec] = GraphSpec  # what a ``graph`` field holds


@cache
def field_table(model: type[NodeConfig]) -> dict[str, ConfigField]:
    """The model's fields under every key a document may use for them (alias and attribute)."""
    table: dict[str, ConfigField] = {}
    for attr, info in model.model_fields.items():
        name = info.alias or attr
        keys = {attr, name}
        kind: FieldKind = "template"
        if keys & model.graphs:
            kind = "graph"
        elif keys & model.expressions:
            kind = "expression"
        elif keys & model.static:
            kind = "static"
        table[attr] = table[name] = ConfigField(attr, name, kind, _graph_model(info.annotation))
    return table


def kind_in(entry: ConfigField, expressions: frozenset[str]) -> FieldKind:
    """How ``entry`` is planned in one config whose expression fields are ``expressions``
    (:meth:`NodeConfig.expression_fields`): an expression field left out is used as written."""
    if entry.kind == "expression" and not {entry.name, entry.attr} & expressions:
        return "static"
    return entry.kind


@cache
def plain(model: type[NodeConfig]) -> bool:
    """Whether the model has no expression and no graph field (only templates and statics)."""
    return not (model.expressions or model.graphs)


def templated(raws: Sequence[Mapping[str, Any]]) -> list[int]:
    """Indices of the configs in which ``{{`` occurs (see :func:`may_hold_template`).

    A batch without any costs one serialization, not one per config.
    """
    if not may_hold_template(raws):
        return []
    return [i for i, raw in enumerate(raws) if may_hold_template(raw)]


def may_hold_template(raw: Any) -> bool:
    """Whether ``{{`` occurs anywhere in ``raw`` (keys included): False means no template.

    One C-speed serialization instead of a walk in Python; values JSON cannot hold fall back to
    ``repr``, and a value too deep for either is assumed to hold one (compiling it reports it).
    """
    try:
        return b"{{" in orjson.dumps(raw)
    except (TypeError, orjson.JSONEncodeError):
        pass
    try:
        return "{{" in repr(raw)
    except RecursionError:
        return True


def extra_field(key: str) -> ConfigField:
    """A key the model does not declare but accepts (``extra="allow"``): a template."""
    return ConfigField(key, key, "template")


@cache
def list_adapter(model: type[NodeConfig]) -> TypeAdapter[list[NodeConfig]]:
    """Validates many configs of one type in a single call (about half the cost of a loop)."""
    return TypeAdapter(list[model])  # type: ignore[valid-type]


def strings(value: Any, pointer: str) -> Iterator[tuple[str, str]]:
    """Every string inside a JSON value with its pointer (keys are not templates)."""
    if isinstance(value, str):
        yield pointer, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from strings(item, f"{pointer}/{escape(key)}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from strings(item, f"{pointer}/{i}")


def template_code(text: str) -> str:
    """``limit_exceeded`` when the template ``text`` fails only for an expression's length."""
    try:
        templates.compile_template(text, max_length=len(text))
    except ExpressionError:
        return "invalid_template"
    return "limit_exceeded"


def _graph_model(annotation: Any) -> type[GraphSpec]:
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, GraphSpec):
            return candidate
    return GraphSpec
