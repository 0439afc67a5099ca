"""The shape of a raw graph (``nodes``, ``edges``, ...) checked part by part.

A document with one malformed node still has its other nodes checked: when the whole graph
fails its model, the nodes and edges that are fine on their own are kept and the bad ones are
marked (their ``id`` and ``type`` are still read when they are strings, so edges to them are
not reported as dangling).

Valid documents take a fast path, because planning a 10,000-node document is dominated by
allocation: nodes written with just ``id``, ``type`` and ``config`` and the ``from`` and ``to``
of edges are checked with C-speed passes over the document's own dicts, and nothing is modelled
for them; other nodes are validated by NodeSpec, edges with a branch by EdgeShape. What the plan
keeps of the document is copied in one ``marshal`` round trip (:func:`detach`).
Whatever fails goes through the models again to be reported. The models stay the one source of
truth: the fast checks only ever accept a subset of what they accept (tests hold them to it).
"""

from __future__ import annotations

import copy
import itertools
import marshal
import operator
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, NotRequired, TypeVar

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from app.domain.workflow import NODE_ID_PATTERN, EdgeSpec, GraphSpec, NodeSpec
from app.engine.compile.plan import DEFAULT_OPTIONS, NodeOptions
from app.engine.compile.validation_errors import errors_from_validation, join
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
_EDGE_SHAPES = TypeAdapter(list[EdgeShape])
_EDGE_SPECS = TypeAdapter(list[EdgeSpec])
_EDGE_KEYS = frozenset(EdgeShape.__annotations__)
_FROM, _TO = operator.itemgetter("from"), operator.itemgetter("to")

_NODE_KEYS = frozenset({"id", "type", "config"})  # a node's fields that are not NodeOptions
_NODE_ID = re.compile(NODE_ID_PATTERN)  # NodeSpec's pattern for ``id``
_NODE_TYPE: TypeAdapter[str] = TypeAdapter(
    Annotated[(str, *NodeSpec.model_fields["type"].metadata)]  # NodeSpec's ``type`` as it checks it
)
_ID, _TYPE = operator.itemgetter("id"), operator.itemgetter("type")
_new_typed_dict: Any = TypedDict  # called with fields known only at run time
_T = TypeVar("_T")


@dataclass(slots=True)
class GraphParts:
    """A graph as far as it parsed, one list entry per node and per edge.

    ``configs[i]`` is None where node ``i`` has the wrong shape (its ``ids[i]`` and ``types[i]``
    are still read when they are strings); ``sources[j]`` and ``targets[j]`` are None where
    edge ``j`` has.
    """

    pointer: str
    ids: list[str | None]
    types: list[str | None]
    configs: list[dict[str, Any] | None]
    options: list[NodeOptions]
    sources: list[str | None]
    targets: list[str | None]
    branches: list[str | None]
    outputs: Mapping[str, Any] | None = None
    intact: bool = True  # no node or edge of the wrong shape


Nodes = tuple[list[str | None], list[str | None], list[dict[str, Any] | None], list[NodeOptions]]
Edges = tuple[list[str | None], list[str | None], list[str | None]]


def from_model(graph: GraphSpec, pointer: str) -> GraphParts:
    """The parts of a graph that its model already validated."""
    nodes = _columns([_fields_of(spec) for spec in graph.nodes], None)
    edges = _edge_columns(graph.edges)
    return GraphParts(pointer, *nodes, *edges, getattr(graph, "outputs", None))


def parse(
    raw: Mapping[str, Any], model: type[GraphSpec], pointer: str, errors: list[ErrorDetail]
) -> GraphParts:
    """Check ``raw`` against ``model``, appending one detail per problem to ``errors``."""
    body = {key: value for key, value in raw.items() if key != "edges"}
    failures = len(errors)
    raw_nodes = body.get("nodes")
    nodes = None
    if type(raw_nodes) is list and _graph_fields_valid(body, model):
        nodes = _valid_nodes(raw_nodes)
    if nodes is None:
        nodes = _model_nodes(body, model, pointer, errors)
    edges = _parse_edges(raw.get("edges", []), pointer, errors)
    intact = len(errors) == failures  # else some node or edge may be marked
    outputs = raw.get("outputs") if "outputs" in model.model_fields else None
    outputs = outputs if isinstance(outputs, Mapping) else None
    return GraphParts(pointer, *nodes, *edges, outputs, intact)


def detach(parts: GraphParts) -> None:
    """Replace the configs and outputs of ``parts`` (what a plan keeps of its document) with
    copies, so that a caller who changes its document after planning does not change the plan
    (cached, and shared by every run of the document).

    One ``marshal`` round trip copies them all, exactly (a few milliseconds for 10,000 nodes, a
    tenth of ``copy.deepcopy``); values of other types than the built-in ones (subclasses
    included) are deep-copied instead.
    """
    try:
        parts.configs, parts.outputs = marshal.loads(marshal.dumps([parts.configs, parts.outputs]))
    except ValueError:  # an object marshal does not know, or nested very deeply
        parts.configs = list(map(copied, parts.configs))
        parts.outputs = copied(parts.outputs)


def copied(value: _T) -> _T:
    """A deep copy of ``value``; ``value`` itself when it is nested too deeply to copy (the
    planner reports such a value where it compiles it)."""
    try:
        return copy.deepcopy(value)
    except RecursionError:
        return value


def size(value: Any) -> int:
    """The number of items of a raw list (0 for anything else)."""
    return len(value) if isinstance(value, list) else 0


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


# -- nodes ----------------------------------------------------------------------------------------


def _valid_nodes(raw: list[Any]) -> Nodes | None:
    """The columns of nodes that are all valid, else None (nothing reported).

    A node with only NodeSpec's ``id``, ``type`` and ``config`` is checked in bulk against
    NodeSpec's constraints for them; any other node is validated as a NodeSpec.
    """
    if set(map(type, raw)) != {dict}:
        return None
    plain = set(itertools.chain.from_iterable(raw)) <= _NODE_KEYS
    try:
        nodes = raw if plain else [_node_fields(node) for node in raw]
        ids, types = list(map(_ID, nodes)), list(map(_TYPE, nodes))
        if set(map(type, ids)) != {str} or not all(map(_NODE_ID.fullmatch, ids)):
            return None
        if set(map(type, types)) != {str}:
            return None
        for type_name in set(types):
            _NODE_TYPE.validate_python(type_name)
    except (KeyError, ValidationError):
        return None
    configs = [node.get("config", {}) for node in nodes]
    if set(map(type, configs)) - {dict}:
        return None
    if set(map(type, itertools.chain.from_iterable(configs))) - {str}:  # their keys
        return None
    options = [DEFAULT_OPTIONS] * len(nodes) if plain else list(map(_options, nodes))
    return ids, types, configs, options


def _node_fields(node: dict[str, Any]) -> dict[str, Any]:
    return node if _NODE_KEYS.issuperset(node) else _fields_of(NodeSpec.model_validate(node))


def _model_nodes(
    body: dict[str, Any], model: type[GraphSpec], pointer: str, errors: list[ErrorDetail]
) -> Nodes:
    """The nodes as ``model`` sees them, each failed one marked and reported."""
    raw_nodes = body.get("nodes")
    try:
        return _columns([_fields_of(spec) for spec in model.model_validate(body).nodes], None)
    except ValidationError as exc:
        errors += errors_from_validation(exc, base=pointer, data=body)
        bad = failed_items(exc, "nodes")
    if bad is None or not isinstance(raw_nodes, list):
        return [], [], [], []
    fields = [
        None if i in bad else _fields_of(NodeSpec.model_validate(node))
        for i, node in enumerate(raw_nodes)
    ]
    return _columns(fields, raw_nodes)


def _columns(nodes: Sequence[dict[str, Any] | None], raw_nodes: Any) -> Nodes:
    ids = [n["id"] if n is not None else _raw_str(raw_nodes, i, "id") for i, n in enumerate(nodes)]
    types = [
        n["type"] if n is not None else _raw_str(raw_nodes, i, "type") for i, n in enumerate(nodes)
    ]
    configs = [n["config"] if n is not None else None for n in nodes]
    return ids, types, configs, list(map(_options, nodes))


def _fields_of(spec: NodeSpec) -> dict[str, Any]:
    """A validated node as a dict: the fields the document set, and id, type and config."""
    fields = {name: getattr(spec, name) for name in spec.model_fields_set}
    fields.update(id=spec.id, type=spec.type, config=spec.config)
    return fields


def _options(node: Mapping[str, Any] | None) -> NodeOptions:
    if node is None or _NODE_KEYS.issuperset(node):
        return DEFAULT_OPTIONS  # most nodes: shared, not one object each
    return NodeOptions(**{key: value for key, value in node.items() if key not in _NODE_KEYS})


def _raw_str(items: Any, i: int, key: str) -> str | None:
    value = items[i].get(key) if isinstance(items, list) and isinstance(items[i], Mapping) else None
    return value if isinstance(value, str) else None


# -- the graph's own fields -----------------------------------------------------------------------


def _graph_fields_valid(body: dict[str, Any], model: type[GraphSpec]) -> bool:
    """Whether ``body`` passes ``model`` in everything but its nodes' own fields."""
    shape = _graph_fields(model)
    if shape is None:
        return False
    try:
        shape.validate_python(body)
    except ValidationError:
        return False
    return True


@cache
def _graph_fields(model: type[GraphSpec]) -> TypeAdapter[Any] | None:
    """A TypedDict twin of ``model`` whose ``nodes`` may hold anything (edges left out).

    Each field keeps its model's type and constraints (``nodes`` its length), so it accepts
    what the model would. Models with validators, aliases or extra fields allowed cannot be
    mirrored this way: None, and they are always validated as models.
    """
    decorators = model.__pydantic_decorators__
    fields = model.model_fields
    if (
        model.model_config.get("extra") != "forbid"
        or decorators.model_validators
        or decorators.field_validators
        or any(info.alias is not None for info in fields.values())
        or fields["nodes"].annotation != list[NodeSpec]
    ):
        return None
    shape: dict[str, Any] = {}
    for name, info in fields.items():
        if name == "edges":  # validated on their own
            continue
        annotation: Any = list[Any] if name == "nodes" else info.annotation
        if info.metadata:
            annotation = Annotated[(annotation, *info.metadata)]
        shape[name] = annotation if info.is_required() else NotRequired[annotation]
    typed_dict = _new_typed_dict(f"{model.__name__}Fields", shape)
    typed_dict.__pydantic_config__ = ConfigDict(extra="forbid")
    return TypeAdapter(typed_dict)


# -- edges ----------------------------------------------------------------------------------------


def _parse_edges(raw: Any, pointer: str, errors: list[ErrorDetail]) -> Edges:
    edges = _valid_edges(raw)
    if edges is not None:
        return edges
    try:
        return _edge_columns(_EDGE_SPECS.validate_python(raw))
    except ValidationError as exc:
        errors += errors_from_validation(exc, base=join(pointer, "edges"), data=raw)
        bad = failed_items(exc)
    if bad is None or not isinstance(raw, list):
        return [], [], []
    specs = [None if i in bad else EdgeSpec.model_validate(e) for i, e in enumerate(raw)]
    return _edge_columns(specs)


def _valid_edges(raw: Any) -> Edges | None:
    """The columns of edges written with EdgeShape's keys and all valid, else None.

    ``from`` and ``to`` are checked in bulk; the edges that carry a branch, by EdgeShape.
    """
    if type(raw) is not list or set(map(type, raw)) - {dict}:
        return None
    if not set(itertools.chain.from_iterable(raw)) <= _EDGE_KEYS:
        return None
    try:
        sources: list[str | None] = list(map(_FROM, raw))
        targets: list[str | None] = list(map(_TO, raw))
    except KeyError:
        return None
    if set(map(type, sources)) - {str} or set(map(type, targets)) - {str}:
        return None
    branches: list[str | None] = [edge.get("branch") for edge in raw]
    labelled = [edge for edge, branch in zip(raw, branches, strict=True) if branch is not None]
    try:
        _EDGE_SHAPES.validate_python(labelled)
    except ValidationError:
        return None
    return sources, targets, branches


def _edge_columns(edges: Sequence[EdgeSpec | None]) -> Edges:
    return (
        [e.source if e is not None else None for e in edges],
        [e.target if e is not None else None for e in edges],
        [e.branch if e is not None else None for e in edges],
    )
