"""Node timelines: what a run's node events say of each node key, read in ``seq`` order.

Choices the records force:

- **A timeline** runs from the key's first ``node.started`` to its ending event (a skipped node
  starts and ends at its ``node.skipped``); its backoff is the ``delay_ms`` of its
  ``node.retry`` events, its waits run from each ``node.waiting`` until it starts again or ends.
- **A key started again after it ended** (a retried run) is read by its last run: the earlier
  run's retries, backoff and waits are dropped, its attempts kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from app.domain.events import Event, EventType
from app.domain.status import ExecutionStatus

_LAST = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")
_NODE_EVENTS = frozenset(
    {
        EventType.NODE_STARTED,
        EventType.NODE_RETRY,
        EventType.NODE_WAITING,
        EventType.NODE_COMPLETED,
        EventType.NODE_FAILED,
        EventType.NODE_SKIPPED,
        EventType.NODE_CANCELLED,
    }
)
NODE_EVENT_TYPES = frozenset(t.value for t in _NODE_EVENTS)
"""The event types a profile reads (a store can load only these)."""

_ENDING = {
    EventType.NODE_COMPLETED: "completed",
    EventType.NODE_FAILED: "failed",
    EventType.NODE_SKIPPED: "skipped",
    EventType.NODE_CANCELLED: "cancelled",
}


@dataclass(slots=True)
class NodeTimeline:
    """What the log says of one node key; times are POSIX seconds."""

    key: str
    node_id: str
    type: str | None = None
    status: str = "pending"
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    retries: int = 0
    backoff_s: float = 0.0
    # Shared and replaced, never appended to: most nodes never wait (one object less each).
    waits: tuple[tuple[float, float | None], ...] = ()  # None: still waiting
    last_error: str | None = None  # code of the last retried error
    cached: bool = False  # an llm answer served from the cache


@dataclass(frozen=True, slots=True)
class RunTimes:
    """The run as its row says; times are POSIX seconds, ``now`` ends what has not ended."""

    execution_id: str
    status: ExecutionStatus
    started_at: float | None
    finished_at: float | None
    now: float
    max_concurrency: int | None


def timelines(events: Iterable[Event]) -> dict[str, NodeTimeline]:
    """Each node key's timeline from the run's events in ``seq`` order (other types ignored)."""
    found: dict[str, NodeTimeline] = {}
    for event in events:
        key = event.node_id
        if key is None or event.type not in _NODE_EVENTS:
            continue
        at = event.ts.timestamp()
        line = found.get(key)
        if line is None:
            last = key if key.isidentifier() else _LAST.search(key)
            node_id = last if isinstance(last, str) else last.group() if last else key
            line = found[key] = NodeTimeline(key, node_id)
        _apply(line, event, at)
    return found


def _apply(line: NodeTimeline, event: Event, at: float) -> None:
    data = event.data
    kind = event.type
    ending = _ENDING.get(kind)
    if ending is not None:
        line.finished_at = at
        line.status = ending
        if line.started_at is None:  # skipped: it never ran; it resolved its edges here
            line.started_at = at
        if line.waits:
            _stop_waiting(line, at)
        _count_attempt(line, data)
        output = data.get("output")
        line.cached = type(output) is dict and output.get("cached") is True
    elif kind is EventType.NODE_STARTED:
        if line.finished_at is not None:  # run again after it ended: profile the last run
            line.started_at = line.finished_at = None
            line.retries, line.backoff_s, line.waits = 0, 0.0, ()
        if line.started_at is None:
            line.started_at = at
        if line.waits:
            _stop_waiting(line, at)
        line.type = data.get("type", line.type)
        _count_attempt(line, data)
        line.status = "running"
    elif kind is EventType.NODE_RETRY:
        line.retries += 1
        line.backoff_s += float(data.get("delay_ms") or 0.0) / 1000.0
        error = data.get("error")
        line.last_error = error.get("code") if isinstance(error, dict) else None
    elif kind is EventType.NODE_WAITING:
        line.waits = (*line.waits, (at, None))
        line.status = "waiting"


def _count_attempt(line: NodeTimeline, data: Mapping[str, Any]) -> None:
    attempt = data.get("attempt")
    if type(attempt) is int and attempt > line.attempts:
        line.attempts = attempt


def _stop_waiting(line: NodeTimeline, at: float) -> None:
    if line.waits[-1][1] is None:
        line.waits = (*line.waits[:-1], (line.waits[-1][0], at))
