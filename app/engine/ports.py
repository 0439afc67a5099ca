"""What the engine needs from the outside world, as Protocols.

Adapters (the in-memory store, the SQL store, the event bus) implement these; the scheduler
is the only writer. What executors see is the other side: ``app.engine.run.context``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from app.domain.events import Event
from app.domain.run import Checkpoint


class EventSink(Protocol):
    """Receives events in ``seq`` order, persists them, then publishes them.

    ``fence`` is the lease generation the run is driven under (None when no lease applies: one
    process, tests). A store refuses a fenced write once the run is driven under another
    generation, raising :class:`~app.errors.LeaseLost`; it also refuses events whose first
    ``seq`` does not follow the run's last stored one, so the log never has a gap or a
    duplicate whoever writes. A write that raises stored nothing, unless it was already stored
    (a retry after a lost answer is recognised and succeeds).
    """

    async def emit(self, events: Sequence[Event], *, fence: int | None = None) -> None:
        """Persist ``events`` (already numbered, gap-free) before returning."""
        ...


class CheckpointStore(Protocol):
    """Stores checkpoints; a checkpoint and the events up to it are saved together (fenced
    like :meth:`EventSink.emit`)."""

    async def save_checkpoint(
        self, checkpoint: Checkpoint, events: Sequence[Event], *, fence: int | None = None
    ) -> None:
        """Persist ``checkpoint`` and ``events`` atomically (events in order), then publish."""
        ...

    async def load_checkpoints(self, execution_id: str) -> list[Checkpoint]:
        """Every checkpoint of the execution, oldest first (empty when there is none)."""
        ...


class WorkflowLoader(Protocol):
    """Finds stored workflow documents for ``subworkflow`` nodes that name a ``workflow_id``."""

    async def load_workflow(self, workflow_id: str, version: int | None) -> Mapping[str, Any]:
        """The document (latest version when ``version`` is None); raises WorkflowNotFound."""
        ...


class Clock(Protocol):
    """Time as the engine sees it; tests substitute a fake to make retries instant."""

    def now(self) -> datetime:
        """Aware UTC wall-clock time, for timestamps."""
        ...

    def monotonic(self) -> float:
        """Seconds on a monotonic clock, for durations and deadlines."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep; cancellable."""
        ...


class AttemptWatch(Protocol):
    """One attempt of a node (or one checkpoint write) as metrics and traces see it."""

    def end(self, outcome: str, error_code: str | None = None) -> None:
        """It ended: ``completed``, ``failed`` (with the error's code), ``suspended`` (waits
        for people) or ``interrupted`` (cancelled, or a nested graph paused or waits)."""
        ...


class NodeWatch(AttemptWatch, Protocol):
    """A node from its first attempt to its last, as metrics and traces see it; it ends like
    its last attempt."""

    def attempt(self, attempt: int) -> AttemptWatch:
        """Attempt number ``attempt`` starts now (on the task that runs it)."""
        ...

    def retry(self, attempt: int, delay_s: float, error_code: str) -> None:
        """Attempt ``attempt`` failed with ``error_code``; the next starts after ``delay_s``."""
        ...


class RunObserver(Protocol):
    """Watches nodes and checkpoints for metrics and traces.

    A watch begins and ends on the same task, in order, so an implementation may make its span
    the current one in between (a node's own calls then nest under it). Implementations never
    raise, and cost next to nothing when nothing is watching: they are called once per node.
    """

    def node(self, key: str, node_type: str) -> NodeWatch:
        """Node ``key`` (of type ``node_type``) starts its first attempt of this stretch."""
        ...

    def checkpoint(self, number: int) -> AttemptWatch:
        """Checkpoint ``number`` is being written."""
        ...
