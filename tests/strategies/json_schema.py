"""Values drawn from a JSON Schema: objects, arrays, unions and references walked here, every
other schema (strings with patterns and lengths, bounded numbers, enums, consts) drawn by
hypothesis-jsonschema.

Why not hypothesis-jsonschema for all of it: its object strategy (0.23.1) drives a private
Hypothesis helper, ``many``, through a ``more()`` method that Hypothesis 6.170 replaced with a
context manager, so any object schema fails with ``AttributeError: 'many' object has no
attribute 'more'``. Its scalars and strings are unaffected. Walking objects here also lets the
recursion through ``$ref`` stop at a depth, which it cannot do either.

Generated values follow the schema's shape (required keys always, optional ones sometimes,
``anyOf``/``oneOf`` one member each) but not every cross-field rule (``oneOf`` exclusivity,
``if``/``then``, ``not``): validation must answer those with a 422 as well.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

MAX_ITEMS = 3  # items of a generated array, whatever its schema allows
_REF_PREFIX = "#/$defs/"
_UNIONS = ("anyOf", "oneOf")
_SCALAR_KEYWORDS = frozenset(
    {"type", "enum", "const", "pattern", "minLength", "maxLength", "format"}
    | {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}
)

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**31), 2**31),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
ANY_JSON: st.SearchStrategy[Any] = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=MAX_ITEMS),
        st.dictionaries(st.text(max_size=10), inner, max_size=MAX_ITEMS),
    ),
    max_leaves=8,
)


@cache
def _scalar(schema_json: str) -> st.SearchStrategy[Any]:
    return from_schema(json.loads(schema_json))


class Walk:
    """How to follow references: ``defs`` by name; the definitions in ``recursive`` (those
    that lead back to themselves) entered at most ``max_depth`` times along one path."""

    def __init__(self, defs: dict[str, Any], recursive: frozenset[str], max_depth: int) -> None:
        self.defs = defs
        self.recursive = recursive
        self.max_depth = max_depth


def values(schema: Any, walk: Walk, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values of ``schema``. A reference to a recursive definition past the depth draws
    nothing, so a union falls back to its members that do not recurse."""
    if schema is True or schema == {} or not isinstance(schema, dict):
        return ANY_JSON if schema is not False else st.nothing()
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.removeprefix(_REF_PREFIX)
        deeper = depth + (name in walk.recursive)
        if deeper > walk.max_depth:
            return st.nothing()
        return st.deferred(lambda: values(walk.defs[name], walk, deeper))
    for union in _UNIONS:
        if union in schema:
            return st.one_of([values(member, walk, depth) for member in schema[union]])
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return _object(schema, walk, depth)
    if kind == "array":
        items = values(schema.get("items", True), walk, depth)
        low = min(schema.get("minItems", 0), MAX_ITEMS)
        unique = bool(schema.get("uniqueItems"))
        return st.lists(items, min_size=low, max_size=MAX_ITEMS, unique_by=_key if unique else None)
    scalar = {k: v for k, v in schema.items() if k in _SCALAR_KEYWORDS}
    if not scalar:
        return ANY_JSON
    return _scalar(json.dumps(scalar, sort_keys=True))


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _object(schema: dict[str, Any], walk: Walk, depth: int) -> st.SearchStrategy[dict[str, Any]]:
    properties: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", ()))
    fields = {name: values(sub, walk, depth) for name, sub in properties.items()}
    optional = st.fixed_dictionaries(
        {}, optional={name: s for name, s in fields.items() if name not in required}
    )
    needed = st.fixed_dictionaries({name: s for name, s in fields.items() if name in required})
    extra = (
        st.dictionaries(st.text(max_size=10).filter(lambda k: k not in properties), ANY_JSON)
        if schema.get("additionalProperties", True) is not False and not properties
        else st.just({})
    )
    return st.builds(lambda a, b, c: {**c, **b, **a}, needed, optional, extra)
