"""Workflow documents to throw at validation: drawn from the workflow JSON Schema, then broken.

Documents are drawn from ``app.domain.schema.workflow_json_schema()`` (tests/strategies/
json_schema.py says how, and why not by hypothesis-jsonschema alone), nested graphs two deep
at most. :func:`mutated` then breaks a document the ways clients do: a field dropped, a value
of the wrong type, an id repeated, a cycle, a 1 MB string; :func:`nested` nests graphs 200
deep.

:func:`resolve` is an RFC 6901 resolver for checking that every error points into the document.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from hypothesis import strategies as st

from app.domain.schema import workflow_json_schema
from tests.strategies.json_schema import Walk, values

MAX_GRAPH_DEPTH = 2  # graphs inside graphs that generated documents hold
MEGABYTE_STRING = "x" * (1 << 20)
Json = Any


@cache
def _schema_values() -> st.SearchStrategy[Any]:
    schema = workflow_json_schema()
    walk = Walk(schema["$defs"], frozenset({"GraphSpec", "InlineWorkflow"}), MAX_GRAPH_DEPTH)
    return values(schema, walk)


def _rewire(document: dict[str, Any], draw: st.DrawFn) -> None:
    """Give the top-level nodes distinct ids and draw edges among them, so that documents get
    past the id and edge checks to the rest of validation."""
    nodes = document["nodes"]
    for i, node in enumerate(nodes):
        node["id"] = f"n{i}"
    ids = [node["id"] for node in nodes]
    pairs = draw(st.lists(st.tuples(st.sampled_from(ids), st.sampled_from(ids)), max_size=4))
    document["edges"] = [{"from": a, "to": b} for a, b in pairs]


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A document drawn from the workflow JSON Schema (nested graphs two deep at most); half
    of them with distinct ids and edges among them (cycles possible: validation must say so)."""
    document: dict[str, Any] = draw(_schema_values())
    if draw(st.booleans()):
        _rewire(document, draw)
    return document


# -- mutations ---------------------------------------------------------------------------------


def _locations(value: Json, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every location inside ``value`` (the root excluded), parents before children."""
    found: list[tuple[str | int, ...]] = []
    children: list[tuple[str | int, Json]] = []
    if isinstance(value, dict):
        children = list(value.items())
    elif isinstance(value, list):
        children = list(enumerate(value))
    for key, child in children:
        found.append((*path, key))
        found.extend(_locations(child, (*path, key)))
    return found


def _parent(document: Json, path: tuple[str | int, ...]) -> Json:
    for key in path[:-1]:
        document = document[key]
    return document


WRONG_VALUES: tuple[Json, ...] = (None, True, 0, -1, 1.5, "", "x", [], {}, [1], {"a": 1}, 2**63)


def _drop(document: Json, path: tuple[str | int, ...], _: Json) -> None:
    parent = _parent(document, path)
    del parent[path[-1]]


def _retype(document: Json, path: tuple[str | int, ...], value: Json) -> None:
    _parent(document, path)[path[-1]] = copy.deepcopy(value)


def _huge(document: Json, path: tuple[str | int, ...], _: Json) -> None:
    _parent(document, path)[path[-1]] = MEGABYTE_STRING


def _duplicate_id(document: Json, *_: Any) -> None:
    nodes = document.get("nodes")
    if isinstance(nodes, list) and nodes and isinstance(nodes[0], dict):
        nodes.append(copy.deepcopy(nodes[0]))


def _cycle(document: Json, *_: Any) -> None:
    nodes = document.get("nodes")
    if not isinstance(nodes, list):
        return
    ids = [n["id"] for n in nodes if isinstance(n, dict) and isinstance(n.get("id"), str)]
    if ids:
        ring = [{"from": a, "to": b} for a, b in zip(ids, ids[1:] + ids[:1], strict=True)]
        edges = document.get("edges")
        document["edges"] = (edges if isinstance(edges, list) else []) + ring


_AT_A_LOCATION = (_drop, _retype, _huge)
_WHOLE = (_duplicate_id, _cycle)


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    """A generated document broken one to three ways."""
    document = draw(documents())
    for _ in range(draw(st.integers(1, 3))):
        locations = _locations(document)
        at_a_location = draw(st.booleans())
        if locations and at_a_location:
            mutation = draw(st.sampled_from(_AT_A_LOCATION))
            path = draw(st.sampled_from(locations))
            mutation(document, path, draw(st.sampled_from(WRONG_VALUES)))
        else:
            draw(st.sampled_from(_WHOLE))(document)
    return document


def nested(depth: int) -> dict[str, Any]:
    """A document whose ``foreach`` nodes nest ``depth`` graphs deep."""
    graph: dict[str, Any] = {"nodes": [{"id": "leaf", "type": "transform", "config": {"value": 1}}]}
    for level in range(depth):
        loop = {"id": f"loop{level}", "type": "foreach", "config": {"items": [1], "body": graph}}
        graph = {"nodes": [loop]}
    return {"name": f"nested {depth}", **graph}


# -- RFC 6901 ----------------------------------------------------------------------------------


class Unresolved(LookupError):
    """A JSON pointer that does not lead to a value."""


def tokens(pointer: str) -> list[str]:
    """The unescaped reference tokens of ``pointer`` ("" is the whole document)."""
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise Unresolved(f"{pointer!r} does not start with '/'")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def step(value: Json, token: str, pointer: str) -> Json:
    """One token further into ``value``."""
    if isinstance(value, dict):
        if token not in value:
            raise Unresolved(f"{pointer!r}: no key {token!r}")
        return value[token]
    if isinstance(value, list):
        if not (token.isdigit() and token.isascii()) or (token != "0" and token[0] == "0"):
            raise Unresolved(f"{pointer!r}: {token!r} is not an array index")
        if int(token) >= len(value):
            raise Unresolved(f"{pointer!r}: index {token} past the end ({len(value)})")
        return value[int(token)]
    raise Unresolved(f"{pointer!r}: {token!r} goes into a {type(value).__name__}")


def resolve(document: Json, pointer: str) -> Json:
    """The value ``pointer`` points to in ``document``; Unresolved if there is none."""
    value = document
    for token in tokens(pointer):
        value = step(value, token, pointer)
    return value


def points_into(document: Json, pointer: str, code: str, message: str = "") -> bool:
    """Whether ``pointer`` leads into ``document``: to a value, or, for a missing field (by
    its code or message), to its absent key in an object that is there."""
    try:
        resolve(document, pointer)
    except Unresolved:
        if "missing" not in code and not message.startswith("missing"):
            raise
        *parent, last = tokens(pointer)
        container = document
        for token in parent:
            container = step(container, token, pointer)
        return isinstance(container, dict) and last not in container
    return True
