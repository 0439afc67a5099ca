"""What expressions may call, and the per-operation bounds that keep each call small.

The functions, the allow-listed methods of str, mapping and list, and the binary operators, each
refusing up front what would be too large to compute or hold: integer powers and results past
``MAX_INT_BITS``, ``range`` past ``MAX_RANGE``, strings and lists built by ``+ * replace join``
past ``MAX_SIZE``, ``%`` format widths past ``MAX_FORMAT_WIDTH``, ``sum`` of anything but numbers.
How many such operations one evaluation may make is the evaluation budget's business
(:mod:`app.engine.compile.budget`); which calls build values it must be charged for is listed
here too.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable, Mapping
from operator import attrgetter
from typing import Any

import simpleeval

MAX_POWER_BITS = 10_000  # bits in the result of an integer `**`
MAX_INT_BITS = MAX_POWER_BITS  # bits in any integer an operator makes (`*`, `<<`, `**`)
MAX_RANGE = 10_000  # items produced by range()
MAX_SIZE = simpleeval.MAX_STRING_LENGTH  # characters (or items) built by + * replace join
MAX_FORMAT_WIDTH = 1000  # width or precision in a `%` format
_FORMAT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d*))?")


class Fail(Exception):
    """A run-time failure whose message is already fit for a person."""


def describe(node: ast.AST) -> str:
    """The source of ``node`` for a message, shortened to 60 characters."""
    text = ast.unparse(node)
    return text if len(text) <= 60 else text[:57] + "..."


def kind(value: Any) -> str:
    """The JSON-ish name of a value's type for messages (``null`` for None)."""
    return "null" if value is None else type(value).__name__


def _power(base: Any, exp: Any) -> Any:
    ints = isinstance(base, int) and isinstance(exp, int)
    if ints and exp > 0 and abs(base) > 1 and exp * base.bit_length() > MAX_POWER_BITS:
        raise Fail(f"{base} ** {exp} is too large (limit {MAX_POWER_BITS} bits)")
    result = base**exp
    if isinstance(result, complex):  # a negative base to a fractional power: not a JSON number
        raise Fail(f"({base}) ** {exp} has no real value")
    return result


def _modulo(left: Any, right: Any) -> Any:
    # `'%0100000000d' % 1` builds 100 MB in one C call: check the widths before formatting.
    if isinstance(left, str):
        for width, precision in _FORMAT_SPEC.findall(left):
            sizes = [int(n) for n in (width, precision) if n.isdigit()]
            if "*" in (width, precision) or max(sizes, default=0) > MAX_FORMAT_WIDTH:
                raise Fail(f"a % format width or precision is over {MAX_FORMAT_WIDTH}")
    return left % right


def _range(*args: int) -> list[int]:
    span = range(*args)
    if len(span) > MAX_RANGE:
        raise Fail(f"range() of {len(span)} items is too long (limit {MAX_RANGE})")
    return list(span)


def _sum(items: Iterable[Any], start: Any = 0) -> Any:
    # sum() of lists or strings concatenates, quadratically and without a size check.
    if isinstance(start, bool) or not isinstance(start, int | float):
        raise Fail(f"sum() adds numbers: its start must be a number, not {kind(start)}")
    return sum(items, start)


def _bounded(size: int, what: str) -> None:
    if size > MAX_SIZE:
        raise Fail(f"{what} would be too long ({size} characters, limit {MAX_SIZE})")


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
METHODS: dict[type, dict[str, Callable[[Any], Any]]] = {
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
FUNCTIONS: dict[str, Callable[..., Any]] = {
    f.__name__: f
    for f in (len, str, int, float, bool, round, abs, min, max, sorted, any, all, list, dict)
} | {"range": _range, "sum": _sum}
FUNCTION_NAMES = frozenset({*FUNCTIONS, "jsonpath", "jsonpath_first"})
OPERATORS: dict[type, Any] = {**simpleeval.DEFAULT_OPERATORS, ast.Pow: _power, ast.Mod: _modulo}
# Calls whose result is a new value to charge to the budget (the others return scalars or
# values that already exist: ``get``, ``min``, ``max``).
BUILDING_FUNCTIONS = frozenset({"str", "list", "dict", "sorted", "range"})
BUILDING_METHODS = frozenset(
    {"lower", "upper", "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "title"}
    | {"capitalize", "removeprefix", "removesuffix", "replace", "join", "keys", "values", "items"}
)
# Functions that visit every element of a list or mapping they are given (charged as steps).
ITERATING_FUNCTIONS = frozenset({"sum", "any", "all", "list", "dict"})
# Calls that walk whole values in C (writing them out, comparing or hashing their elements):
# charged a step per entry of the trees of their object and arguments, before they run.
WALKING_FUNCTIONS = frozenset({"str", "sorted", "min", "max"})
WALKING_METHODS = frozenset({"index", "count", "get"})


def method(obj: Any, name: str, where: ast.AST) -> Callable[..., Any]:
    """The allow-listed method ``name`` of ``obj`` (bound), or Fail naming the allowed ones."""
    kind_ = str if isinstance(obj, str) else dict if isinstance(obj, Mapping) else type(obj)
    table = METHODS.get(list if kind_ is tuple else kind_, {})
    if name not in table:
        allowed = ", ".join(sorted(table)) or "none"
        raise Fail(f"no method {name}() on {kind(obj)} {describe(where)} (allowed: {allowed})")
    return table[name](obj)  # type: ignore[no-any-return]
