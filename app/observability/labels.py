"""Label values whose number must stay bounded (workflow names, model names): the first ones a
process meets keep their own series, every later one is counted as ``other``. A series lives
as long as the process, so an unbounded label would grow the scrape without end."""

from __future__ import annotations

OTHER = "other"


class CappedValues:
    """The first ``limit`` distinct values as they are, any later one as :data:`OTHER`."""

    __slots__ = ("_limit", "_seen")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self._limit:
            return OTHER
        self._seen.add(value)
        return value
