"""The condition and template expression language: compiled once, evaluated many times.

Python expression syntax evaluated by simpleeval over JSON data, plus the seed's ``&&``, ``||``,
``!`` and the literals ``true``, ``false``, ``null``. ``!`` is exactly Python's ``not`` (same
precedence: ``!a == b`` means ``not (a == b)``; ``a == !b`` is a syntax error, as in Python).
Attribute access reads JSON, not Python objects:

- ``x.name`` on a mapping is the key ``"name"`` (so ``d.items`` is data, never ``dict.items``);
- ``x.name(...)`` calls an allow-listed method: on str ``lower upper strip lstrip rstrip
  startswith endswith split rsplit splitlines find count title capitalize isdigit isalpha
  isalnum isspace removeprefix removesuffix replace join`` (the last two size-bounded); on a
  mapping ``get keys values items`` (returning lists); on a list ``index count``. Nothing else.

This module is the public face and the evaluator: jsonpath, the allow-listed functions and
methods, run-time bounds on sizes (integer powers, repetition and concatenation, ``range``,
comprehensions, jsonpath arithmetic and regular expressions, refused), ``Expression`` and
``compile_expression``. The operator rewriting and the compile-time allow-list checks of syntax
node types and calls live in ``expression_syntax``.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import threading
from collections.abc import Callable, Iterator, Mapping
from operator import attrgetter
from typing import Any

import simpleeval
from jsonpath_ng import jsonpath as jp
from jsonpath_ng.ext.arithmetic import Operation
from jsonpath_ng.ext.parser import ExtendedJsonPathLexer
from jsonpath_ng.ext.parser import parse as parse_jsonpath
from jsonpath_ng.ext.string import Sub

from app.engine import expression_syntax
from app.errors import ExpressionError, ExpressionEvalError, OxifyError

DEFAULT_MAX_EXPRESSION_LENGTH = 2000  # characters
MAX_POWER_BITS = 10_000  # bits in the result of an integer `**`
MAX_RANGE = 10_000  # items produced by range()
MAX_SIZE = simpleeval.MAX_STRING_LENGTH  # characters (or items) built by + * replace join
JSONPATH_CACHE_SIZE = 1024  # compiled jsonpath expressions kept
_MISSING: Any = object()


class _Fail(Exception):
    """A run-time failure whose message is already fit for a person."""


# -- jsonpath ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=JSONPATH_CACHE_SIZE)
def compile_jsonpath(path: str) -> tuple[jp.JSONPath, frozenset[str] | None]:
    """Parse a jsonpath (jsonpath-ng's extended syntax, with filters), cached.

    Returns the path and the names of the run context it starts from (``$.fetch...`` gives
    {"fetch"}), or None when it would need the whole context (``$..x``, ``$[*]``). Raises
    ValueError (or a jsonpath-ng error) for a bad path, for the deprecated ``|``/``&``
    operators, and for arithmetic and regular expressions (unbounded time or size).
    """
    for token in ExtendedJsonPathLexer().tokenize(path):
        if token.type in ("|", "&"):
            raise ValueError(f"the {token.type!r} operator is not supported (use && in filters)")
    parsed = parse_jsonpath(path)
    for node in _walk_path(parsed):
        if isinstance(node, Operation | Sub) or getattr(node, "op", None) == "=~":
            raise ValueError("arithmetic and regular expressions are not supported")
    return parsed, _root_fields(parsed)


def _walk_path(node: Any) -> Iterator[Any]:
    yield node
    for value in getattr(node, "__dict__", {}).values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, jp.JSONPath):
                yield from _walk_path(item)


def _root_fields(node: jp.JSONPath) -> frozenset[str] | None:
    if isinstance(node, jp.Fields):
        return None if "*" in node.fields else frozenset(node.fields)
    if isinstance(node, jp.Child | jp.Where | jp.Descendants):
        if not isinstance(node.left, jp.Root | jp.This):
            return _root_fields(node.left)
        if isinstance(node, jp.Child):
            return _root_fields(node.right)
    return None


# -- what expressions may call -----------------------------------------------------------------


def _power(base: Any, exp: Any) -> Any:
    ints = isinstance(base, int) and isinstance(exp, int)
    if ints and exp > 0 and abs(base) > 1 and exp * base.bit_length() > MAX_POWER_BITS:
        raise _Fail(f"{base} ** {exp} is too large (limit {MAX_POWER_BITS} bits)")
    return base**exp


def _range(*args: int) -> list[int]:
    span = range(*args)
    if len(span) > MAX_RANGE:
        raise _Fail(f"range() of {len(span)} items is too long (limit {MAX_RANGE})")
    return list(span)


def _bounded(size: int, what: str) -> None:
    if size > MAX_SIZE:
        raise _Fail(f"{what} would be too long ({size} characters, limit {MAX_SIZE})")


def _replace(s: str) -> Callable[..., str]:
    def replace(old: str, new: str, count: int = -1) -> str:
        hits = s.count(old) if count < 0 else min(count, s.count(old))
        _bounded(len(s) + hits * (len(new) - len(old)), "replace()")
        return s.replace(old, new, count)

    return replace


def _join(s: str) -> Callable[[Any], str]:
    def join(items: Any) -> str:
        parts = list(items)
        _bounded(sum(map(len, parts)) + len(s) * max(len(parts) - 1, 0), "join()")
        return s.join(parts)

    return join


_STR_METHODS = "lower upper strip lstrip rstrip startswith endswith split rsplit splitlines find \
count title capitalize isdigit isalpha isalnum isspace removeprefix removesuffix"
_METHODS: dict[type, dict[str, Callable[[Any], Any]]] = {
    str: {name: attrgetter(name) for name in _STR_METHODS.split()}
    | {"replace": _replace, "join": _join},
    dict: {
        "get": attrgetter("get"),
        "keys": lambda d: lambda: list(d.keys()),
        "values": lambda d: lambda: list(d.values()),
        "items": lambda d: lambda: [[k, v] for k, v in d.items()],
    },
    list: {"index": attrgetter("index"), "count": attrgetter("count")},
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    f.__name__: f
    for f in (len, str, int, float, bool, round, abs, min, max, sum, sorted, any, all, list, dict)
} | {"range": _range}
FUNCTION_NAMES = frozenset({*_FUNCTIONS, "jsonpath", "jsonpath_first"})
_OPERATORS: dict[type, Any] = {**simpleeval.DEFAULT_OPERATORS, ast.Pow: _power}


def _describe(node: ast.AST) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _method(obj: Any, name: str, where: ast.AST) -> Callable[..., Any]:
    kind = str if isinstance(obj, str) else dict if isinstance(obj, Mapping) else type(obj)
    table = _METHODS.get(list if kind is tuple else kind, {})
    if name not in table:
        allowed = ", ".join(sorted(table)) or "none"
        raise _Fail(f"no method {name}() on {_kind(obj)} {_describe(where)} (allowed: {allowed})")
    return table[name](obj)  # type: ignore[no-any-return]


# -- evaluation --------------------------------------------------------------------------------


class _Evaluator(simpleeval.EvalWithCompoundTypes):  # type: ignore[misc]
    """A reusable evaluator whose name, attribute, index and call rules read JSON data."""

    def __init__(self) -> None:
        super().__init__(operators=_OPERATORS)
        jsonpaths = {"jsonpath": self._jsonpath, "jsonpath_first": self._jsonpath_first}
        self.functions = _FUNCTIONS | jsonpaths
        self.names: Mapping[str, Any] = {}

    def _eval(self, node: ast.AST) -> Any:
        # Node types were allow-listed at compile time, so results need no scan (the base
        # class's recursive _check_disallowed_items would walk whole node outputs every time).
        return self.nodes[type(node)](node)

    def _eval_name(self, node: ast.Name) -> Any:
        try:
            return self.names[node.id]
        except KeyError:
            if node.id in self.functions:
                return self.functions[node.id]
            raise _Fail(f"unknown name {node.id!r}") from None

    def _eval_attribute(self, node: ast.Attribute) -> Any:
        obj = self._eval(node.value)
        if not isinstance(obj, Mapping):
            raise _Fail(f"cannot read .{node.attr} of {_kind(obj)} {_describe(node.value)}")
        try:
            return obj[node.attr]
        except KeyError:
            raise _Fail(f"no key {node.attr!r} in {_describe(node.value)}") from None

    def _eval_subscript(self, node: ast.Subscript) -> Any:
        container, key = self._eval(node.value), self._eval(node.slice)
        try:
            return container[key]
        except KeyError:
            raise _Fail(f"no key {key!r} in {_describe(node.value)}") from None
        except IndexError:
            where, size = _describe(node.value), len(container)
            raise _Fail(f"index {key} out of range for {where} (length {size})") from None

    def _eval_call(self, node: ast.Call) -> Any:
        if isinstance(node.func, ast.Attribute):
            func = _method(self._eval(node.func.value), node.func.attr, node.func.value)
        else:
            func = self.functions[node.func.id]  # type: ignore[attr-defined]
        kwargs = {str(kw.arg): self._eval(kw.value) for kw in node.keywords}
        return func(*(self._eval(arg) for arg in node.args), **kwargs)

    def _jsonpath(self, path: Any, value: Any = _MISSING) -> list[Any]:
        if not isinstance(path, str):
            raise _Fail(f"jsonpath() needs a string path, not {_kind(path)}")
        compiled, roots = compile_jsonpath(path)
        if value is _MISSING:
            if roots is None:
                raise _Fail(f"jsonpath {path!r} over the run context must start with a name")
            value = {}
            for name in roots:  # only the names the path starts from, never the whole context
                with contextlib.suppress(KeyError):
                    value[name] = self.names[name]
        return [match.value for match in compiled.find(value)]

    def _jsonpath_first(self, path: Any, value: Any = _MISSING) -> Any:
        matches = self._jsonpath(path, value)
        return matches[0] if matches else None


class _Pool(threading.local):
    def __init__(self) -> None:
        self.free: list[_Evaluator] = []


_POOL = _Pool()


def _explain(exc: Exception) -> str:
    if isinstance(exc, simpleeval.IterableTooLong):
        return f"result would be too long (limit {MAX_SIZE} items)"
    if isinstance(exc, _Fail | simpleeval.InvalidExpression):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class Expression:
    """A compiled expression: parsed and checked once, then evaluated any number of times."""

    __slots__ = ("_tree", "names", "source")

    def __init__(self, source: str, tree: ast.expr, names: frozenset[str]) -> None:
        self.source = source
        self.names = names  # free top-level names, e.g. {"inputs", "fetch"}
        self._tree = tree

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"

    def evaluate(self, names: Mapping[str, Any]) -> Any:
        """Evaluate over ``names``, which is only indexed (never iterated, sized or copied).

        Any failure raises ExpressionEvalError naming the cause and the expression; errors
        Oxify raises on purpose (from a lazy scope, say) pass through unchanged. Thread-safe
        and re-entrant: each call borrows an evaluator from a per-thread pool.
        """
        free = _POOL.free
        evaluator = free.pop() if free else _Evaluator()
        evaluator.names = names
        try:
            return evaluator.eval(self.source, previously_parsed=self._tree)
        except OxifyError:
            raise
        except Exception as exc:
            shown = self.source if len(self.source) <= 200 else self.source[:197] + "..."
            message = f"{_explain(exc)} (in expression: {shown})"
            raise ExpressionEvalError(message, source=self.source) from exc
        finally:
            evaluator.names = {}
            free.append(evaluator)


def compile_expression(
    source: str, *, max_length: int = DEFAULT_MAX_EXPRESSION_LENGTH
) -> Expression:
    """Parse and check ``source`` once, so that evaluating it can only fail on the data.

    Raises ExpressionError naming the problem: empty, too long, syntax error (with its column),
    statements, imports, underscored names or attributes, lambda, assignment, f-strings,
    unknown functions, a bad literal jsonpath, nesting deeper than
    ``expression_syntax.MAX_NESTING``.
    """
    if not source.strip():
        raise ExpressionError("expression is empty", source=source)
    if len(source) > max_length:
        message = f"expression is too long ({len(source)} characters, limit {max_length})"
        raise ExpressionError(message, source=source)
    tree, names = expression_syntax.parse(
        source, functions=FUNCTION_NAMES, operators=_OPERATORS, jsonpath=compile_jsonpath
    )
    return Expression(source, tree, names)
