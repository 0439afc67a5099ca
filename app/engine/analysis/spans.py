"""Top-level nodes' spans clipped to the run's window: the numbers the profile and its
bottleneck rules share.

A span is running + backoff + waiting, every part inside the run's window; time an interrupted
attempt lost before it was taken over counts as running (the records cannot tell it apart).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(slots=True)
class Span:
    """A top-level node's numbers, clipped to the run's window."""

    id: str
    type: str
    status: str
    attempts: int
    start: float
    end: float
    backoff: float = 0.0
    waiting: float = 0.0
    retries: int = 0
    waits: list[tuple[float, float]] | tuple[()] = ()
    retried_keys: list[str] | tuple[()] = ()
    last_error: str | None = None
    queued: float = 0.0
    ready: float = 0.0
    runner_up: float = 0.0
    gated_by: str | None = None

    @property
    def running(self) -> float:
        """The span less its backoff and waiting."""
        return self.end - self.start - self.backoff - self.waiting


@dataclass(frozen=True, slots=True)
class Window:
    """The run's window: where it starts, and how long it ran (so far)."""

    start: float
    length: float

    def share(self, seconds: float) -> float:
        """``seconds`` as a fraction of the run, in [0, 1] (a run of no length: 0)."""
        return min(1.0, max(0.0, seconds / self.length)) if self.length > 0 else 0.0


def merged(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """The union of ``intervals`` as sorted, disjoint intervals (empty ones dropped)."""
    found: list[tuple[float, float]] = []
    for a, b in sorted(i for i in intervals if i[1] > i[0]):
        if found and a <= found[-1][1]:
            found[-1] = (found[-1][0], max(b, found[-1][1]))
        else:
            found.append((a, b))
    return found


def ms(seconds: float) -> float:
    """``seconds`` in milliseconds, rounded to the microsecond (what the views report)."""
    return round(seconds * 1000.0, 3)
