"""The shape of a raw graph (``nodes``, ``edges``, ...) checked part by part.

A document with one malformed node still has its other nodes checked: when the whole graph
fails its model, the nodes and edges that are fine on their own are kept and the bad ones become
``None`` (their ``id`` and ``type`` are still read when they are strings, so edges to them are
not reported as dangling). Edges stay plain dicts: validating dicts is ~5x cheaper than building
10,000s of EdgeSpec models, and the planner only reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, NotRequired

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from app.domain.workflow import EdgeSpec, GraphSpec, NodeSpec
from app.engine.validation_errors import errors_from_validation, join
from app.errors import ErrorDetail

# Accepts a subset of what EdgeSpec accepts (its aliases only). Whatever it refuses is validated
# again with EdgeSpec itself, which stays the one source of truth for edges and their errors.
EdgeShape = TypedDict(
    "EdgeShape",
    {
        "from": str,
        "to": str,
        "branch": NotRequired[Annotated[str, Field(min_length=1, max_length=64)] | None],
    },
)
EdgeShape.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
_FAST_EDGES = TypeAdapter(list[EdgeShape])
_EDGE_SPECS = TypeAdapter(list[EdgeSpec])


@dataclass(slots=True)
class GraphParts:
    """A graph as far as it parsed; ``None`` marks a node or edge of the wrong shape."""

    pointer: str
    nodes: list[NodeSpec | None]
    ids: list[str | None]
    types: list[str | None]
    edges: list[EdgeShape | None]
    outputs: Mapping[str, Any] | None = None
    intact: bool = True  # no None among nodes and edges


def from_model(graph: GraphSpec, pointer: str) -> GraphParts:
    """The parts of a graph that its model already validated."""
    nodes: list[NodeSpec | None] = list(graph.nodes)
    edges: list[EdgeShape | None] = [_shape(edge) for edge in graph.edges]
    ids: list[str | None] = [spec.id for spec in graph.nodes]
    types: list[str | None] = [spec.type for spec in graph.nodes]
    return GraphParts(pointer, nodes, ids, types, edges, getattr(graph, "outputs", None))


def parse(
    raw: Mapping[str, Any], model: type[GraphSpec], pointer: str, errors: list[ErrorDetail]
) -> GraphParts:
    """Check ``raw`` against ``model``, appending one detail per problem to ``errors``."""
    raw_nodes = raw.get("nodes")
    body = {key: value for key, value in raw.items() if key != "edges"}
    failures = len(errors)
    try:
        nodes: list[NodeSpec | None] = list(model.model_validate(body).nodes)
    except ValidationError as exc:
        errors += errors_from_validation(exc, base=pointer, data=body)
        nodes = _salvage_nodes(raw_nodes, exc)
    ids = [spec.id if spec else _raw_str(raw_nodes, i, "id") for i, spec in enumerate(nodes)]
    types = [spec.type if spec else _raw_str(raw_nodes, i, "type") for i, spec in enumerate(nodes)]
    outputs = raw.get("outputs") if "outputs" in model.model_fields else None
    edges = _parse_edges(raw.get("edges", []), pointer, errors)
    intact = len(errors) == failures  # else some node or edge may be None
    outputs = outputs if isinstance(outputs, Mapping) else None
    return GraphParts(pointer, nodes, ids, types, edges, outputs, intact)


def size(value: Any) -> int:
    """The number of items of a raw list (0 for anything else)."""
    return len(value) if isinstance(value, list) else 0


def _parse_edges(raw: Any, pointer: str, errors: list[ErrorDetail]) -> list[EdgeShape | None]:
    try:
        return list(_FAST_EDGES.validate_python(raw))
    except ValidationError:
        pass
    try:
        return [_shape(edge) for edge in _EDGE_SPECS.validate_python(raw)]
    except ValidationError as exc:
        errors += errors_from_validation(exc, base=join(pointer, "edges"), data=raw)
        bad = failed_items(exc)
    if bad is None or not isinstance(raw, list):
        return []
    return [None if i in bad else _shape(EdgeSpec.model_validate(e)) for i, e in enumerate(raw)]


def failed_items(exc: ValidationError, *prefix: str) -> set[int] | None:
    """Indices of the list items at ``prefix`` that failed, or None if the list itself did."""
    bad: set[int] = set()
    depth = len(prefix)
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = error["loc"]
        if tuple(loc[:depth]) != prefix:
            continue
        if len(loc) == depth or not isinstance(loc[depth], int):
            return None
        bad.add(int(loc[depth]))
    return bad


def _salvage_nodes(raw_nodes: Any, exc: ValidationError) -> list[NodeSpec | None]:
    bad = failed_items(exc, "nodes")
    if bad is None or not isinstance(raw_nodes, list):
        return []
    return [None if i in bad else NodeSpec.model_validate(raw) for i, raw in enumerate(raw_nodes)]


def _raw_str(items: Any, i: int, key: str) -> str | None:
    value = items[i].get(key) if isinstance(items, list) and isinstance(items[i], Mapping) else None
    return value if isinstance(value, str) else None


def _shape(edge: EdgeSpec) -> EdgeShape:
    return {"from": edge.source, "to": edge.target, "branch": edge.branch}
