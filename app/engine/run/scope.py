"""The names an expression sees: ``inputs``, ``vars``, node results, loop and catch bindings.

Scopes chain: a loop body's scope holds ``item``/``index`` and the body's node results, and
falls back to the enclosing graph's scope; a sub-workflow starts a new root (it sees only its
own ``inputs`` and ``vars``). Lookups are lazy: nothing is copied per evaluation, which matters
when a run holds thousands of node results.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


class Scope(Mapping[str, Any]):
    """A read-only view of names; ``results`` maps node ids of this graph to their results."""

    __slots__ = ("bindings", "parent", "results")

    def __init__(
        self,
        bindings: dict[str, Any],
        parent: Scope | None = None,
        results: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.bindings = bindings
        self.parent = parent
        self.results: dict[str, dict[str, Any]] = {} if results is None else results

    @classmethod
    def root(cls, inputs: Any, variables: dict[str, Any] | None = None) -> Scope:
        """A workflow's top scope: its ``inputs`` and its own ``vars``."""
        return cls({"inputs": inputs, "vars": {} if variables is None else variables})

    def child(self, **bindings: Any) -> Scope:
        """A nested graph's scope: new bindings and results over this one."""
        return Scope(bindings, parent=self)

    @property
    def variables(self) -> dict[str, Any]:
        """The ``vars`` dict of the enclosing workflow (set_var writes here)."""
        scope: Scope | None = self
        while scope is not None:
            if "vars" in scope.bindings:
                found: dict[str, Any] = scope.bindings["vars"]
                return found
            scope = scope.parent
        raise LookupError("scope has no vars")

    def __getitem__(self, name: str) -> Any:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.bindings:
                return scope.bindings[name]
            if name in scope.results:
                return scope.results[name]
            scope = scope.parent
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.results or name in scope.bindings:
                return True
            scope = scope.parent
        return False

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        scope: Scope | None = self
        while scope is not None:
            for name in (*scope.bindings, *scope.results):
                if name not in seen:
                    seen.add(name)
                    yield name
            scope = scope.parent

    def __len__(self) -> int:
        return sum(1 for _ in self)
