"""What a value weighs as a tree: the size one evaluation is charged for building or walking it.

Values an expression builds may share parts: ``[[v, v] for v in ...]`` nested 30 times holds
2**30 leaves in 60 small lists. Counting only the entries of each new list (what the list
itself takes) let such a value through for a few hundred bytes, and everything that reads it
as a tree afterwards (``str()``, ``==``, sorting, the journal's JSON) walked 2**30 leaves in one
C call that no budget can stop. So the evaluator charges a new value by its *tree* size,
what writing it out would take: ``ITEM_BYTES`` per list, tuple, set or dict entry, plus the
characters of every string, counted again wherever the value appears again. A value's parts
are charged once when they are new (built by this evaluation and not yet placed in another
value), and by their whole tree size each time an existing value (run data, or a part already
placed) is placed again. The same tree size, in entries, is the work an operation that walks a
value in C does (a comparison, ``str()``, a sort), charged as steps before it runs.
"""

from __future__ import annotations

from typing import Any

from app.engine.compile.budget import BYTES_SETTING, ITEM_BYTES, Budget, BudgetExceeded

_CONTAINERS = (list, tuple, dict, set, frozenset)


def _children(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [*value.keys(), *value.values()]
    return list(value)


class TreeSizes:
    """Tree sizes of the values one evaluation meets, memoized by identity, and the values it
    built that no other value holds yet. Holds what it measured until :meth:`reset`, so an
    identity is never reused while remembered. Not thread-safe: one evaluation, one thread."""

    __slots__ = ("_fresh", "_known", "budget")

    def __init__(self) -> None:
        self.budget = Budget()
        self._known: dict[int, tuple[Any, int]] = {}
        self._fresh: dict[int, Any] = {}

    def reset(self, budget: Budget) -> None:
        """Start a new evaluation charged to ``budget``; forget every value of the last one."""
        self.budget = budget
        self._known.clear()
        self._fresh.clear()

    def of(self, value: Any) -> int:
        """The tree size of ``value`` in bytes (0 for numbers, booleans and null). Measuring a
        container not met before walks it once, charging a step per entry; shared parts are
        measured once, so a value that shares is measured in time linear in its memory."""
        if isinstance(value, str):
            return len(value)
        if not isinstance(value, _CONTAINERS):
            return 0
        known = self._known.get(id(value))
        if known is not None:
            return known[1]
        stack: list[tuple[Any, bool]] = [(value, False)]
        while stack:  # iterative post-order: run data may nest deeper than the recursion limit
            item, measured_children = stack.pop()
            if id(item) in self._known:
                continue
            children = _children(item)
            if not measured_children:
                self.budget.step(len(children))
                stack.append((item, True))
                stack.extend((c, False) for c in children if isinstance(c, _CONTAINERS))
                continue
            size = ITEM_BYTES * len(item) + sum(map(self._measured, children))
            self._known[id(item)] = (item, size)
        return self._known[id(value)][1]

    def _measured(self, value: Any) -> int:
        if isinstance(value, str):
            return len(value)
        known = self._known.get(id(value)) if isinstance(value, _CONTAINERS) else None
        return 0 if known is None else known[1]

    def built(self, value: Any) -> Any:
        """Charge ``value``, new from this evaluation, by its tree size (new parts once, parts
        that existed by their whole size); returns it."""
        if isinstance(value, str):
            self.budget.build(len(value))
            self._fresh[id(value)] = value
        elif isinstance(value, _CONTAINERS):
            children = _children(value)
            self.budget.step(len(children))
            charge = ITEM_BYTES * len(value)
            size, left = charge, self.budget.bytes_left
            for child in children:
                child_size = self.of(child)
                size += child_size
                if self._fresh.pop(id(child), None) is None:
                    charge += child_size
                    if charge > left:  # stop at the limit, not after the last child
                        break
            self.budget.build(charge)
            self._known[id(value)] = (value, size)
            self._fresh[id(value)] = value
        return value

    def walk(self, *values: Any) -> None:
        """Charge the steps of an operation that walks each container of ``values`` in C (a
        comparison, ``str()``, a sort): one per ``ITEM_BYTES`` of its tree size. A tree larger
        than the budget's ``max_bytes`` (the node output limit, which run data is held to) is
        refused: no data is that large, so only a value that shares parts can be, and one C
        call would walk all of it, past any deadline."""
        for value in values:
            if isinstance(value, _CONTAINERS):
                size = self.of(value)
                if size > self.budget.max_bytes:
                    raise BudgetExceeded(
                        f"the expression would walk a value of {size} bytes whole: more than "
                        f"{self.budget.max_bytes} bytes of values (limit {BYTES_SETTING})"
                    )
                self.budget.step(size // ITEM_BYTES)
