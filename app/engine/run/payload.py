"""Values that leave a node or start a run: JSON that can be stored, of bounded size.

Node outputs and run inputs are journaled (events, node records, checkpoints) and served by the
API, so each must be a JSON value the stores can write (text keys, integers within 64 bits,
finite numbers, text without unpaired surrogates, at most ``MAX_DEPTH`` levels deep) and no
larger than a limit. The walk that checks it charges about the bytes of the value's compact JSON
(escapes not counted) and stops as soon as the limit is crossed, so a 100 MB value costs no
more than a value at the limit, and nothing is serialized.

A :class:`Walk` can be run in slices (``run(max_items)``): the engine walks a small value
inline and hands a large one to a worker thread, where the walk's pure-Python loop does not hold
the event loop.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

MAX_DEPTH = 254  # levels of nesting the JSON encoder of the stores (orjson) accepts
MIN_INT, MAX_INT = -(2**63), 2**64 - 1  # what the stores' JSON encoder writes as a number
_NUMBER_BYTES = 8  # bytes charged per number (most are short; the limit is approximate)
_CONTAINERS = (dict, list, tuple)


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a value may not leave: ``too_large`` (``size`` is a lower bound past ``limit``) or
    ``invalid`` (not storable JSON, at ``pointer`` inside the value)."""

    kind: Literal["too_large", "invalid"]
    message: str
    pointer: str = ""
    size: int = 0


class _NotJson(Exception):
    def __init__(self, value: Any, why: str) -> None:
        super().__init__(why)
        self.value = value
        self.why = why


class Walk:
    """A resumable walk over one value; :meth:`run` until it returns True, then read
    :attr:`problem` (None: the value may leave) and :attr:`size`."""

    __slots__ = ("_stack", "limit", "problem", "root", "size")

    def __init__(self, value: Any, limit: int) -> None:
        self.root = value
        self.limit = limit
        self.size = 0
        self.problem: Problem | None = None
        self._stack: list[tuple[Any, int]] = [(value, 1)]

    def run(self, max_items: int | None = None) -> bool:
        """Walk at most ``max_items`` containers' worth of items; True once the walk is over."""
        try:
            return self._walk(math.inf if max_items is None else max_items)
        except _NotJson as exc:
            self.problem = Problem("invalid", exc.why, _pointer_to(self.root, exc.value) or "")
            return True

    def _walk(self, budget: float) -> bool:
        stack, limit = self._stack, self.limit
        size = self.size
        while stack:
            if budget <= 0:
                self.size = size
                return False
            container, depth = stack.pop()
            if type(container) not in _CONTAINERS:  # the value itself is a scalar
                is_text = type(container) is str
                size += _text_bytes(container, container) if is_text else _scalar_bytes(container)
                continue
            if len(container) > budget:  # more than this slice may walk: leave it to the next
                stack.append((container, depth))
                self.size = size
                return False
            if depth > MAX_DEPTH:
                raise _NotJson(container, f"nested deeper than {MAX_DEPTH} levels")
            items: Any = container
            size += 2 + len(container)
            if isinstance(container, dict):
                for key in container:
                    if type(key) is not str:
                        raise _NotJson(container, f"the key {key!r} is not text")
                    size += _text_bytes(key, container) + 1
                items = container.values()
            for item in items:
                kind = type(item)
                if kind is str:
                    size += _text_bytes(item, item)
                elif kind in _CONTAINERS:
                    stack.append((item, depth + 1))
                else:
                    size += _scalar_bytes(item)
                if size > limit:
                    break
            budget -= max(len(container), 1)
            if size > limit:
                self.size = size
                self.problem = Problem("too_large", "", size=size)
                return True
        self.size = size
        if size > limit:
            self.problem = Problem("too_large", "", size=size)
        return True


def _text_bytes(text: str, where: Any) -> int:
    if text.isascii():  # O(1) in CPython: a flag of the string
        return len(text) + 2
    try:
        return len(text.encode()) + 2
    except UnicodeEncodeError:
        raise _NotJson(where, "text holds an unpaired surrogate (not valid Unicode)") from None


def _scalar_bytes(value: Any) -> int:
    if value is None or value is True or value is False:
        return 5
    if type(value) is int:
        if not fits_64_bits(value):
            raise _NotJson(value, f"the integer {_short(value)} does not fit in 64 bits")
        return _NUMBER_BYTES
    if type(value) is float:
        if not math.isfinite(value):
            raise _NotJson(value, f"{value} is not a JSON number")
        return _NUMBER_BYTES
    if isinstance(value, str):  # subclasses (a str enum, an IntEnum) count as their base
        return _text_bytes(str(value), value)
    if isinstance(value, int | float):
        return _scalar_bytes(int(value) if isinstance(value, int) else float(value))
    raise _NotJson(value, f"a {type(value).__name__} is not a JSON value")


def _short(value: int) -> str:
    text = str(value) if value.bit_length() < 1000 else f"of {value.bit_length()} bits"
    return text if len(text) <= 40 else f"{text[:20]}…{text[-10:]}"


def _pointer_to(root: Any, target: Any) -> str | None:
    """The JSON pointer of ``target`` (by identity) inside ``root``; only walked on failure."""
    for pointer, value in _entries(root, "", 0):
        if value is target:
            return pointer
    return None


def _entries(value: Any, pointer: str, depth: int) -> Iterator[tuple[str, Any]]:
    yield pointer, value
    if depth > MAX_DEPTH:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            token = str(key).replace("~", "~0").replace("/", "~1")
            yield from _entries(item, f"{pointer}/{token}", depth + 1)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _entries(item, f"{pointer}/{index}", depth + 1)


def fits_64_bits(number: int) -> bool:
    """Whether the stores can write ``number`` as a JSON number."""
    return MIN_INT <= number <= MAX_INT


def check(value: Any, limit: int, max_items: int | None = None) -> Problem | Walk | None:
    """Check ``value`` (see :class:`Walk`): None when it may leave, the Problem when not, or,
    past ``max_items`` items, the unfinished Walk to go on with."""
    walk = Walk(value, limit)
    return walk.problem if walk.run(max_items) else walk
