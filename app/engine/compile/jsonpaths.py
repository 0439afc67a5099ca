"""JSONPath for expressions: parsed once, and every ``find`` charged to the evaluation's budget.

jsonpath-ng walks the data in plain Python (``$..*..*`` visits every descendant of every
descendant), so a short path over a modest value can take seconds and build millions of matches.
Each parsed node is made an instance of a subclass whose ``find`` charges the budget of the
evaluation running on this thread: one step per call, and per match a selector makes one more
step and ``MATCH_BYTES``. The subclasses change nothing else, so the library's own
``isinstance`` checks still hold.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from typing import Any

from jsonpath_ng import jsonpath as jp
from jsonpath_ng.ext.arithmetic import Operation
from jsonpath_ng.ext.filter import Filter
from jsonpath_ng.ext.iterable import Keys, Len, Path
from jsonpath_ng.ext.parser import ExtendedJsonPathLexer
from jsonpath_ng.ext.parser import parse as parse_jsonpath
from jsonpath_ng.ext.string import Sub

from app.engine.compile.budget import MATCH_BYTES, Budget

JSONPATH_CACHE_SIZE = 1024  # compiled jsonpath expressions kept
# Selectors make new matches; the other nodes (Child, Descendants, Where, ...) combine theirs.
_SELECTORS = (jp.Root, jp.This, jp.Fields, jp.Wildcard, jp.Index, jp.Slice, Filter, Len, Keys, Path)


class _Active(threading.local):
    budget: Budget | None = None


_ACTIVE = _Active()
_CHARGED: dict[type[jp.JSONPath], type[jp.JSONPath]] = {}


@contextlib.contextmanager
def charged_to(budget: Budget) -> Iterator[None]:
    """Charge the ``find`` calls made on this thread inside the block to ``budget``."""
    previous, _ACTIVE.budget = _ACTIVE.budget, budget
    try:
        yield
    finally:
        _ACTIVE.budget = previous


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
    for node in _walk_path(parsed):
        node.__class__ = _charged(type(node))
    return parsed, _root_fields(parsed)


def _walk_path(node: Any) -> Iterator[Any]:
    yield node
    for value in getattr(node, "__dict__", {}).values():
        for item in value if isinstance(value, list | tuple) else [value]:
            if isinstance(item, jp.JSONPath):
                yield from _walk_path(item)
            elif isinstance(item, tuple):  # SortedThis keeps (path, reverse) pairs
                for part in item:
                    if isinstance(part, jp.JSONPath):
                        yield from _walk_path(part)


def _root_fields(node: jp.JSONPath) -> frozenset[str] | None:
    if isinstance(node, jp.Fields):
        return None if "*" in node.fields else frozenset(node.fields)
    if isinstance(node, jp.Child | jp.Where | jp.Descendants):
        if not isinstance(node.left, jp.Root | jp.This):
            return _root_fields(node.left)
        if isinstance(node, jp.Child):
            return _root_fields(node.right)
    return None


def _charged(base: type[jp.JSONPath]) -> type[jp.JSONPath]:
    """``base`` with a ``find`` that charges the active budget (the class itself when charged);
    one subclass per class."""
    if getattr(base, "_charged", False):
        return base
    charged = _CHARGED.get(base)
    return charged if charged is not None else _CHARGED.setdefault(base, _subclass(base))


def _subclass(base: type[jp.JSONPath]) -> type[jp.JSONPath]:
    selects = issubclass(base, _SELECTORS)

    def find(self: jp.JSONPath, datum: Any) -> list[jp.DatumInContext]:
        budget = _ACTIVE.budget
        if budget is None:
            return base.find(self, datum)
        budget.step()
        found = base.find(self, datum)
        if selects and found:
            budget.step(len(found))
            budget.build(MATCH_BYTES * len(found))
        return found

    return type(f"Charged{base.__name__}", (base,), {"find": find, "_charged": True})
