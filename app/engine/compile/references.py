"""Which names a template or expression may refer to, checked when a document is validated.

At run time an expression sees ``inputs`` and ``vars``, the results of the nodes of its graph
and of the graphs around it, and what the executors of the containers around it (and its own
node's executor, for that field) bind: ``item`` in a loop body, ``error`` in a catch block. A
name outside these can only fail when it is evaluated, so the planner refuses it up front with
``unknown_reference``. Sub-workflows (``isolated`` graph fields) start afresh: their nodes see
only their own graph.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from app.domain.node_types import NodeConfig
from app.engine.compile import config_fields, expressions, templates
from app.errors import ErrorDetail, ExpressionError

ROOT_NAMES = frozenset({"inputs", "vars"})


@dataclass(frozen=True, slots=True)
class Names:
    """The names visible in one graph: its node ids and what its container binds, then the
    names visible around it (a chain at most as long as containers nest)."""

    ids: Mapping[str, Any]  # node id -> anything (the builder's index of the graph)
    bound: frozenset[str]
    parent: Names | None = None

    def __contains__(self, name: object) -> bool:
        names: Names | None = self
        while names is not None:
            if name in names.ids or name in names.bound:
                return True
            names = names.parent
        return False

    def __iter__(self) -> Iterator[str]:
        names: Names | None = self
        while names is not None:
            yield from names.bound
            yield from names.ids
            names = names.parent


@dataclass(frozen=True, slots=True)
class Context:
    """What a graph is validated within: the names around it and what its container binds."""

    parent: Names | None
    bound: frozenset[str]

    def names(self, ids: Mapping[str, Any]) -> Names:
        """The names visible inside the graph whose node ids are ``ids``."""
        return Names(ids, self.bound, self.parent)


TOP = Context(None, ROOT_NAMES)
"""A workflow's own graph, and an isolated one: ``inputs``, ``vars`` and its node ids."""


def nested(config: NodeConfig, field: str, names: Names | None) -> Context | None:
    """What the nested graph in ``field`` sees: the names around it and what the node binds
    there, or only its own names when the field is isolated (None: nothing is checked)."""
    if names is None:
        return None
    if field in type(config).isolated:
        return TOP
    return Context(names, config.bindings(field))


def check(
    used: frozenset[str], names: Names, bound: frozenset[str], value: Any, pointer: str
) -> list[ErrorDetail]:
    """An ``unknown_reference`` for each name in ``used`` that is neither in ``names`` nor in
    ``bound``, at the pointer of the string (inside ``value``, at ``pointer``) that uses it."""
    problems = []
    for name in sorted(used):
        if name in bound or name in names:
            continue
        where, text = next(
            ((w, t) for w, t in config_fields.strings(value, pointer) if name in _used_by(t)),
            (pointer, str(value)),
        )
        problems.append(ErrorDetail(where, _message(name, text, names, bound), "unknown_reference"))
    return problems


def _used_by(text: str) -> frozenset[str]:
    """The names a template (or a bare expression) refers to; only called to place an error."""
    try:
        compiled = templates.compile_template(text, max_length=len(text))
        if isinstance(compiled, str):
            return expressions.compile_expression(text, max_length=len(text)).names
    except ExpressionError:
        return frozenset()
    return compiled.names


def _message(name: str, text: str, names: Names, bound: frozenset[str]) -> str:
    known = sorted({*names, *bound})
    guess = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {guess[0]!r}?" if guess else ""
    shown = text if len(text) <= 80 else text[:77] + "..."
    listing = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
    return (
        f"{shown!r} refers to {name!r}, which is not a node of this graph or of the graphs "
        f"around it, nor a name in scope here ({listing}){hint}"
    )
