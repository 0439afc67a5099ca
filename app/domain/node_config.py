"""The base of node types: config models, the template and expression string types, and the
registry of types a deployment knows.

A config model declares, as class variables, how the planner treats its fields:
``expressions`` are compiled as conditions, ``graphs`` hold nested graphs that are validated and
planned recursively, ``static`` fields are used as written (names, case labels) and everything
else is compiled as a template (strings with ``{{ }}`` anywhere inside). A scalar field may be
given as a lone template (``"seconds": "{{ inputs.wait }}"``): the schema accepts the string and
the value is checked against the field's type when it is rendered at run time.

Templates and expressions may name ``inputs``, ``vars``, the node ids of their graph and of the
graphs around it, and what the node's executor binds for that field (:meth:`NodeConfig.bindings`:
``item`` in a loop body); validation refuses any other name. ``isolated`` graph fields run as a
workflow of their own (an inline sub-workflow): their nodes see only their own names.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, StringConstraints

TemplateStr = Annotated[str, StringConstraints(pattern=r"^\s*\{\{.*\}\}\s*$")]
"""A string that is exactly one ``{{ expression }}``: stands in for a scalar of another type."""

ExpressionStr = Annotated[str, StringConstraints(min_length=1)]


class NodeConfig(BaseModel):
    """Base of every node type's config: unknown keys are rejected, and types are strict as
    in the JSON Schema (``0`` is not ``false``, ``"5"`` is not ``5``: only a template stands in
    for a scalar)."""

    model_config = ConfigDict(
        extra="forbid", strict=True, populate_by_name=True, serialize_by_alias=True
    )

    expressions: ClassVar[frozenset[str]] = frozenset()
    graphs: ClassVar[frozenset[str]] = frozenset()
    static: ClassVar[frozenset[str]] = frozenset()
    isolated: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def expression_fields(cls, raw: Mapping[str, Any]) -> frozenset[str]:  # noqa: ARG003
        """The fields of ``expressions`` that ``raw`` (a config as the document wrote it) holds
        expressions in: all of them, unless a type overrides this because a field is an
        expression in some configs only (the ``code`` node's ``source``). The others are then
        used as written, like ``static`` fields."""
        return cls.expressions

    def branches(self) -> frozenset[str] | None:
        """Branch labels this node can take, or None when it does not branch."""
        return None

    def bindings(self, field: str) -> frozenset[str]:  # noqa: ARG002 (overrides use it)
        """Names the executor binds for ``field`` (as documents spell it) on top of those of the
        node's graph: seen by its template or expression, or by the nodes of its nested graph.

        An executor that renders or runs a field with a name of its own must declare it here,
        or validation refuses the documents that use it.
        """
        return frozenset()

    @classmethod
    def template_part(cls, field: str, raw: Any) -> Any:  # noqa: ARG003 (overrides use it)
        """The part of template field ``field`` (``raw``, as the document wrote it) that holds
        templates: all of it, unless a type overrides this because only some of a field's
        parts are templates (an agent's ``tools``: the requests of its http tools, not the
        Python source of its code tools). The rest of the value is replaced by ``None``, so
        the part keeps the value's shape and the executor renders pieces of it with
        ``NodeContext.render_part``."""
        return raw


@dataclass(frozen=True, slots=True)
class NodeType:
    """A registered node type: its name, config schema and a one-line description."""

    name: str
    config: type[NodeConfig]
    description: str = ""


class NodeTypes(Mapping[str, NodeType]):
    """The set of node types a deployment knows; validation rejects any other ``type``."""

    def __init__(self, types: Mapping[str, NodeType] | None = None) -> None:
        self._types: dict[str, NodeType] = dict(types or {})

    def register(self, node_type: NodeType) -> None:
        if node_type.name in self._types:
            raise ValueError(f"node type {node_type.name!r} is already registered")
        self._types[node_type.name] = node_type

    def with_types(self, *extra: NodeType) -> NodeTypes:
        merged = NodeTypes(self._types)
        for node_type in extra:
            merged.register(node_type)
        return merged

    def __getitem__(self, name: str) -> NodeType:
        return self._types[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._types)

    def __len__(self) -> int:
        return len(self._types)
