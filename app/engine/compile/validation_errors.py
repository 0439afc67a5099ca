"""Pydantic validation errors as :class:`ErrorDetail` s: one JSON pointer, one human message.

Pydantic reports a failed union once per member, with the member's tag in ``loc``
(``('seconds', 'constrained-float')``, ``('seconds', 'constrained-str')``). Here tags are dropped
by walking ``loc`` through the input data (a tag is never a key of the data there), and the
complaints about one location are merged: "expected a number ≥ 0 or a {{ template }}".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, get_args

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from app.domain.node_types import TemplateStr
from app.domain.workflow import NODE_ID_PATTERN
from app.errors import ErrorDetail

_TEMPLATE_PATTERN: str = get_args(TemplateStr)[1].pattern
_SHAPE_CODES = {"missing": "missing_field", "extra_forbidden": "unknown_field"}
_TYPE_PHRASES = {
    "float_type": "a number",
    "float_parsing": "a number",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "typed_dict_type": "an object",
    "list_type": "a list",
    "none_required": "null",
    "finite_number": "a finite number",
}
_BOUNDS = {
    "greater_than_equal": ("ge", "≥"),
    "greater_than": ("gt", ">"),
    "less_than_equal": ("le", "≤"),
    "less_than": ("lt", "<"),
}


def escape(token: str | int) -> str:
    """One RFC 6901 reference token: ``~`` becomes ``~0`` and ``/`` becomes ``~1``."""
    return str(token).replace("~", "~0").replace("/", "~1")


def join(base: str, *tokens: str | int) -> str:
    """``base`` (a pointer, "" for the root) extended by the escaped ``tokens``."""
    return base + "".join("/" + escape(token) for token in tokens)


def within(document: Any, detail: ErrorDetail) -> ErrorDetail:
    """``detail`` pointing into ``document``: a pointer that goes through a value the document
    does not hold (``/nodes/0/config/seconds`` where the node has no ``config``: the node type's
    schema checked the default ``{}``) is cut after the first absent key, which names a field
    missing from an object that is there (``/nodes/0/config``)."""
    value = document
    tokens = detail.pointer.split("/")[1:] if detail.pointer else []
    for depth, token in enumerate(tokens):
        key = token.replace("~1", "/").replace("~0", "~")
        if isinstance(value, Mapping) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isascii() and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            if depth + 1 == len(tokens):
                return detail
            cut = "".join("/" + t for t in tokens[: depth + 1])
            return ErrorDetail(cut, detail.message, detail.code)
    return detail


def errors_from_validation(
    exc: ValidationError,
    *,
    base: str,
    data: Any,
    code: str | None = None,
    known_fields: Iterable[str] = (),
) -> list[ErrorDetail]:
    """One ErrorDetail per location that failed, in pydantic's order.

    ``data`` is the input that was validated (used to tell keys from union tags); pointers are
    ``base`` + the location. ``code`` fixes the code of every detail; without it a missing key
    is ``missing_field``, an unknown key ``unknown_field`` and anything else ``invalid_value``.
    ``known_fields`` (the accepted top-level keys) is listed in unknown-key messages.
    """
    grouped: dict[str, list[tuple[ErrorDetails, str | None]]] = {}
    for error in exc.errors(include_url=False, include_context=True, include_input=True):
        tokens, tag = _real_location(error["loc"], data, error["type"])
        grouped.setdefault(join(base, *tokens), []).append((error, tag))
    details = []
    known = sorted(known_fields)
    for pointer, errors in grouped.items():
        first = errors[0][0]
        detail_code = code or _SHAPE_CODES.get(first["type"], "invalid_value")
        if len(errors) > 1 and any(tag is not None for _, tag in errors):
            phrases = _unique(_phrase(error, tag) for error, tag in errors)
            message = "expected " + " or ".join(phrases)
        else:
            message = "; ".join(_unique(_message(error, known) for error, _ in errors))
        details.append(ErrorDetail(pointer, message, detail_code))
    return details


def _real_location(
    loc: Sequence[str | int], data: Any, error_type: str
) -> tuple[list[str | int], str | None]:
    """The location without union tags, and the innermost tag dropped (if any)."""
    tokens: list[str | int] = []
    tag: str | None = None
    current = data
    last = len(loc) - 1
    for position, item in enumerate(loc):
        if isinstance(item, int):
            tokens.append(item)
            in_range = isinstance(current, Sequence) and 0 <= item < len(current)
            current = current[item] if in_range else None
        elif isinstance(current, Mapping) and item in current:
            tokens.append(item)
            current = current[item]
        elif position == last and error_type == "missing" and isinstance(current, Mapping):
            tokens.append(item)
        else:
            tag = item
    return tokens, tag


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _phrase(error: ErrorDetails, tag: str | None) -> str:
    """What the value should have been, as a noun phrase ("a number ≥ 0")."""
    kind, ctx = error["type"], error.get("ctx") or {}
    integer = tag is not None and "int" in tag
    if kind in _BOUNDS:
        key, symbol = _BOUNDS[kind]
        return f"{'an integer' if integer else 'a number'} {symbol} {_number(ctx.get(key))}"
    if kind == "string_type":
        return "a {{ template }}" if tag == "constrained-str" else "a string"
    if kind == "string_pattern_mismatch":
        return _pattern_phrase(str(ctx.get("pattern", "")))
    if kind in _TYPE_PHRASES:
        return _TYPE_PHRASES[kind]
    if kind == "literal_error":
        return f"one of {ctx.get('expected')}"
    text = error["msg"]
    return text.removeprefix("Input should be ").removeprefix("Input should ")


def _number(value: Any) -> Any:
    """``0.0`` as ``0``: bounds read better without a spurious fraction."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _pattern_phrase(pattern: str) -> str:
    if pattern == _TEMPLATE_PATTERN:
        return "a {{ template }}"
    if pattern == NODE_ID_PATTERN:
        return "an identifier (a letter or _, then up to 63 letters, digits or _)"
    return f"a string matching {pattern}"


def _message(error: ErrorDetails, known: list[str]) -> str:
    """A whole sentence for one complaint."""
    kind, ctx, loc = error["type"], error.get("ctx") or {}, error["loc"]
    name = loc[-1] if loc else ""
    if kind == "missing":
        return f"missing required field {name!r}"
    if kind == "extra_forbidden":
        allowed = f" (allowed: {', '.join(known)})" if known and len(loc) == 1 else ""
        return f"unknown field {name!r}{allowed}"
    if kind in ("value_error", "assertion_error"):
        return str(error["msg"]).split(", ", 1)[-1]
    if kind == "string_too_short":
        return f"must be at least {ctx.get('min_length')} character(s) long"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters long"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} item(s)"
    return "expected " + _phrase(error, None)
