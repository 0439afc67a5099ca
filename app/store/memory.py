"""In-memory implementation of the engine's ports, for ``oxify run``, tests and benchmarks.

Nothing survives the process. It keeps the same guarantees the SQL store gives within one
process: events are stored (in seq order) before subscribers see them, and a checkpoint is
stored together with the events that precede it.
"""

from __future__ import annotations

import copy
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from app.domain.events import Event
from app.domain.run import Checkpoint
from app.errors import JournalRejected, WorkflowNotFound

EventListener = Callable[[Sequence[Event]], None]


class MemoryStore:
    """Events, checkpoints and workflow versions kept in dicts."""

    def __init__(self) -> None:
        self.events: dict[str, list[Event]] = defaultdict(list)
        self.checkpoints: dict[str, list[Checkpoint]] = defaultdict(list)
        self.workflows: dict[str, list[dict[str, Any]]] = {}
        self._listeners: list[EventListener] = []

    # -- EventSink ------------------------------------------------------------------------

    async def emit(self, events: Sequence[Event], *, fence: int | None = None) -> None:  # noqa: ARG002
        """Store ``events`` (one process: there is no lease, so ``fence`` is not checked)."""
        self._append(self._unstored(events))

    # -- CheckpointStore ------------------------------------------------------------------

    async def save_checkpoint(
        self,
        checkpoint: Checkpoint,
        events: Sequence[Event],
        *,
        fence: int | None = None,  # noqa: ARG002
    ) -> None:
        fresh = self._unstored(events)
        if fresh and checkpoint.seq >= fresh[0].seq:
            self.checkpoints[checkpoint.execution_id].append(checkpoint)
        self._append(fresh)

    async def load_checkpoints(self, execution_id: str) -> list[Checkpoint]:
        return list(self.checkpoints.get(execution_id, ()))

    # -- WorkflowLoader -------------------------------------------------------------------

    async def load_workflow(self, workflow_id: str, version: int | None) -> Mapping[str, Any]:
        versions = self.workflows.get(workflow_id)
        if not versions or (version is not None and not 1 <= version <= len(versions)):
            suffix = "" if version is None else f" version {version}"
            raise WorkflowNotFound(f"no workflow {workflow_id!r}{suffix}")
        return versions[-1 if version is None else version - 1]

    def save_workflow(self, document: Mapping[str, Any], workflow_id: str | None = None) -> str:
        """Store a new workflow (or a new version of ``workflow_id``); returns its id."""
        workflow_id = workflow_id or str(uuid.uuid4())
        self.workflows.setdefault(workflow_id, []).append(copy.deepcopy(dict(document)))
        return workflow_id

    # -- reading --------------------------------------------------------------------------

    async def read_events(self, execution_id: str, after_seq: int, limit: int) -> list[Event]:
        log = self.events.get(execution_id, [])
        # seq n sits at index n - 1: the log is gap-free from 1.
        return log[after_seq : after_seq + limit]

    def last_seq(self, execution_id: str) -> int:
        log = self.events.get(execution_id)
        return log[-1].seq if log else 0

    def subscribe(self, listener: EventListener) -> Callable[[], None]:
        """Call ``listener`` with every batch after it is stored; returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _unstored(self, events: Sequence[Event]) -> Sequence[Event]:
        """The part of ``events`` not stored yet (a retried write may repeat stored ones). A
        write that does not reach back to the run's last event would leave a gap: refused."""
        if not events:
            return events
        last = self.last_seq(events[0].execution_id)
        if events[0].seq > last + 1:
            raise JournalRejected(
                f"run {events[0].execution_id}'s log is at seq {last}; "
                f"a write from seq {events[0].seq} would leave a gap"
            )
        return [e for e in events if e.seq > last] if events[0].seq <= last else events

    def _append(self, events: Sequence[Event]) -> None:
        if not events:
            return
        self.events[events[0].execution_id].extend(events)
        for listener in self._listeners:
            listener(events)
