"""One run observer out of several (metrics, traces): the scheduler is given exactly one."""

from __future__ import annotations

from collections.abc import Sequence

from app.engine.ports import AttemptWatch, NodeWatch, RunObserver
from app.engine.run.observe import UNWATCHED


def combined(observers: Sequence[RunObserver]) -> RunObserver:
    """Nothing watching costs nothing; one observer is used as it is; more are told in turn
    (the unwatching ones left out)."""
    observers = [o for o in observers if o is not UNWATCHED]
    if not observers:
        return UNWATCHED
    if len(observers) == 1:
        return observers[0]
    return _Both(tuple(observers))


class _Both:
    __slots__ = ("_observers",)

    def __init__(self, observers: tuple[RunObserver, ...]) -> None:
        self._observers = observers

    def node(self, key: str, node_type: str) -> NodeWatch:
        return _Nodes(tuple(o.node(key, node_type) for o in self._observers))

    def checkpoint(self, number: int) -> AttemptWatch:
        return _Attempts(tuple(o.checkpoint(number) for o in self._observers))


class _Attempts:
    __slots__ = ("_watches",)

    def __init__(self, watches: tuple[AttemptWatch, ...]) -> None:
        self._watches = watches

    def end(self, outcome: str, error_code: str | None = None) -> None:
        # Ended in reverse: a span made current last is detached first.
        for watch in reversed(self._watches):
            watch.end(outcome, error_code)


class _Nodes(_Attempts):
    __slots__ = ("_nodes",)

    def __init__(self, watches: tuple[NodeWatch, ...]) -> None:
        super().__init__(watches)
        self._nodes = watches

    def attempt(self, attempt: int) -> AttemptWatch:
        return _Attempts(tuple(w.attempt(attempt) for w in self._nodes))

    def retry(self, attempt: int, delay_s: float, error_code: str) -> None:
        for watch in self._nodes:
            watch.retry(attempt, delay_s, error_code)
