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
