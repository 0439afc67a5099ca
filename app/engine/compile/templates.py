"""``{{ expr }}`` templates inside strings and inside whole JSON values, compiled once.

A template holds expressions in the condition language (see ``expressions``). A string that is
exactly one template (whitespace around it allowed) renders to the expression's value with its
JSON type; otherwise each part is written as text: str as-is, None as "", booleans as
"true"/"false", numbers with str(), lists and dicts as compact JSON. Dict keys are never
templates. ``{{`` is found as written; inside a part, ``}}`` closes it only outside string literals
and balanced braces, so ``{{ {'a': {'b': 1}} }}`` and ``{{ '}}' }}`` work.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from app.engine.compile import expression_syntax, expressions
from app.engine.compile.budget import Budget
from app.engine.compile.expressions import DEFAULT_MAX_EXPRESSION_LENGTH, Expression
from app.errors import ExpressionError, ExpressionEvalError

_Renderer = Callable[[Mapping[str, Any], Budget], Any]


def is_template(text: str) -> bool:
    """Cheap check: True when ``text`` contains ``{{`` (and so must be compiled)."""
    return "{{" in text


def _closing(text: str, start: int) -> int:
    """Index of the ``}}`` closing the part that starts at ``start``, or -1."""
    depth, i = 0, start
    while i < len(text):
        char = text[i]
        if char in "'\"":
            i = expression_syntax.skip_string(text, i)
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            if depth == 0 and text.startswith("}}", i):
                return i
            depth = max(depth - 1, 0)
        i += 1
    return -1


def _as_text(value: Any, expression: Expression) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        message = f"cannot write the value of {{{{ {expression.source} }}}} as text: {exc}"
        raise ExpressionEvalError(message, source=expression.source) from exc


class Template:
    """A string with ``{{ expr }}`` parts, compiled once and rendered many times."""

    __slots__ = ("_lone", "_parts", "names", "source")

    def __init__(self, source: str, parts: tuple[str | Expression, ...]) -> None:
        self.source = source
        self._parts = parts
        exprs = [part for part in parts if isinstance(part, Expression)]
        texts = [part for part in parts if isinstance(part, str)]
        self._lone = exprs[0] if len(exprs) == 1 and not "".join(texts).strip() else None
        self.names: frozenset[str] = frozenset().union(*(e.names for e in exprs))

    def __repr__(self) -> str:
        return f"Template({self.source!r})"

    def render(self, names: Mapping[str, Any], budget: Budget | None = None) -> Any:
        """Render over ``names``: a lone template keeps its value's type, else a str.

        Every part is charged to the one ``budget`` (see ``Expression.evaluate``), the text
        built too. Raises ExpressionEvalError when an expression fails or a value cannot be
        written as text.
        """
        if budget is None:
            budget = Budget.started()
        if self._lone is not None:
            return self._lone.evaluate(names, budget)
        text = "".join(
            part if isinstance(part, str) else _as_text(part.evaluate(names, budget), part)
            for part in self._parts
        )
        budget.build(len(text))
        return text


def compile_template(
    text: str, *, max_length: int = DEFAULT_MAX_EXPRESSION_LENGTH
) -> Template | str:
    """Compile ``text``; returns it unchanged (the same object) when it holds no ``{{``.

    ``max_length`` bounds each expression. Raises ExpressionError for an unterminated ``{{``,
    an empty ``{{ }}`` or a bad expression; the message says which part (1-based) and where.
    """
    if not is_template(text):
        return text
    parts: list[str | Expression] = []
    pos, number = 0, 0
    while (start := text.find("{{", pos)) >= 0:
        number += 1
        end = _closing(text, start + 2)
        if end < 0:
            message = f"unterminated '{{{{' in template part {number} (at position {start})"
            raise ExpressionError(message, source=text)
        source = text[start + 2 : end].strip()
        if not source:
            message = f"empty template part {number} (at position {start})"
            raise ExpressionError(message, source=text)
        try:
            expression = expressions.compile_expression(source, max_length=max_length)
        except ExpressionError as exc:
            message = f"template part {number} {{{{ {source} }}}}: {exc.message}"
            raise ExpressionError(message, source=text) from exc
        parts += [text[pos:start], expression] if start > pos else [expression]
        pos = end + 2
    if pos < len(text):
        parts.append(text[pos:])
    return Template(text, tuple(parts))


class CompiledValue:
    """A JSON value with templates anywhere inside its strings, compiled once.

    ``render`` builds a new structure for the templated parts and shares the constant ones; a
    value with no template at all renders to the stored value itself, in O(1).
    """

    __slots__ = ("_max_length", "_parts", "_render", "_value", "is_constant", "names")

    def __init__(
        self,
        value: Any,
        render: _Renderer | None,
        names: frozenset[str],
        max_length: int = DEFAULT_MAX_EXPRESSION_LENGTH,
    ) -> None:
        self._value = value
        self._render = render
        self._max_length = max_length
        self._parts: dict[tuple[str | int, ...], CompiledValue] = {}
        self.is_constant = render is None
        self.names = names

    def __repr__(self) -> str:
        return f"CompiledValue({self._value!r})"

    def render(self, names: Mapping[str, Any], budget: Budget | None = None) -> Any:
        """The value with every template rendered over ``names`` (ExpressionEvalError if not),
        all of them charged to the one ``budget`` (see ``Expression.evaluate``)."""
        if self._render is None:
            return self._value
        return self._render(names, budget if budget is not None else Budget.started())

    def part(self, path: tuple[str | int, ...]) -> CompiledValue:
        """The value at ``path`` inside this one (keys and list indices), compiled on first use
        (it cannot fail: the whole value compiled). KeyError/IndexError when it is not there."""
        found = self._parts.get(path)
        if found is None:
            value = self._value
            for step in path:
                value = value[step]
            found = self._parts[path] = compile_value(value, max_length=self._max_length)
        return found


def _escape(key: Any) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def _compile(value: Any, max_length: int, pointer: str) -> tuple[_Renderer | None, frozenset[str]]:
    if isinstance(value, str):
        if not is_template(value):
            return None, frozenset()
        try:
            template = compile_template(value, max_length=max_length)
        except ExpressionError as exc:
            error = ExpressionError(f"bad template at {pointer!r}: {exc.message}", source=value)
            error.pointer = pointer  # type: ignore[attr-defined]
            raise error from exc
        if isinstance(template, str):  # cannot happen: is_template() said there is a part
            return None, frozenset()
        return template.render, template.names
    if isinstance(value, Mapping):
        entries = [
            (k, v, *_compile(v, max_length, f"{pointer}/{_escape(k)}")) for k, v in value.items()
        ]
        if all(render is None for _, _, render, _ in entries):
            return None, frozenset()
        return (
            lambda names, budget: {
                k: v if r is None else r(names, budget) for k, v, r, _ in entries
            },
            frozenset().union(*(n for *_, n in entries)),
        )
    if isinstance(value, list | tuple):
        items = [(v, *_compile(v, max_length, f"{pointer}/{i}")) for i, v in enumerate(value)]
        if all(render is None for _, render, _ in items):
            return None, frozenset()
        return (
            lambda names, budget: [v if r is None else r(names, budget) for v, r, _ in items],
            frozenset().union(*(n for *_, n in items)),
        )
    return None, frozenset()


def compile_value(
    value: Any, *, max_length: int = DEFAULT_MAX_EXPRESSION_LENGTH, pointer: str = ""
) -> CompiledValue:
    """Compile every template inside ``value`` (dicts and lists walked; keys stay literal).

    Raises ExpressionError for a bad template; its message and its ``pointer`` attribute give
    the RFC 6901 pointer of the bad string, prefixed by ``pointer`` (e.g. "/value/items/2").
    """
    render, names = _compile(value, max_length, pointer)
    return CompiledValue(value, render, names, max_length)
