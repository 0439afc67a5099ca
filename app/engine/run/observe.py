"""The observer that watches nothing: the engine's default when no metrics or traces are on.

Its watches are shared singletons, so an unwatched node costs two method calls.
"""

# ruff: noqa: ARG002 (it takes what every observer is told, and ignores it)

from __future__ import annotations

from app.engine.ports import AttemptWatch, NodeWatch


class _Unwatched:
    __slots__ = ()

    def node(self, key: str, node_type: str) -> NodeWatch:
        return self

    def checkpoint(self, number: int) -> AttemptWatch:
        return self

    def attempt(self, attempt: int) -> AttemptWatch:
        return self

    def retry(self, attempt: int, delay_s: float, error_code: str) -> None:
        return None

    def end(self, outcome: str, error_code: str | None = None) -> None:
        return None


UNWATCHED = _Unwatched()
