"""The run's journal: numbers events, buffers them, and writes checkpoints per policy.

One journal per run, shared by every graph of it (nested bodies included), so ``seq`` is
gap-free across the whole run. Events are buffered and handed to the sink in batches (one call
per scheduler step, not one per event); a checkpoint carries the events buffered before it, so
a store can persist a step's events and node records in one transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from app.domain.events import Event, EventType
from app.domain.run import Checkpoint, CheckpointPolicy, EveryNLevels, EveryNNodes, NodeRecord
from app.engine.ports import CheckpointStore, Clock, EventSink


class Journal:
    """Event numbering and checkpoint cadence for one run."""

    def __init__(
        self,
        execution_id: str,
        *,
        sink: EventSink,
        checkpoints: CheckpointStore,
        clock: Clock,
        policy: CheckpointPolicy,
        last_seq: int = 0,
        last_checkpoint: int = 0,
    ) -> None:
        self.execution_id = execution_id
        self.seq = last_seq
        self.checkpoint_number = last_checkpoint
        self._sink = sink
        self._store = checkpoints
        self._now = clock.now  # bound once: called for every event
        self._policy = policy
        self._pending: list[Event] = []
        self._records: list[NodeRecord] = []
        self._unsaved: set[str] = set()
        self._levels_since = 0
        self._lock = asyncio.Lock()

    def event(
        self,
        type_: EventType,
        *,
        node_id: str | None = None,
        level: int | None = None,
        data: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> Event:
        """Number and buffer an event; it reaches the sink at the next flush.

        ``at`` is its timestamp when the caller already took the instant it reports (a record's
        ``finished_at``), else now.
        """
        self.seq += 1
        ts = self._now() if at is None else at
        event = Event(self.execution_id, self.seq, type_, ts, node_id, level, data or {})
        self._pending.append(event)
        return event

    def record(self, record: NodeRecord) -> None:
        """Keep a finished node for the next checkpoint."""
        self._records.append(record)
        self._unsaved.add(record.key)

    def any_unsaved(self, keys: Iterable[str]) -> bool:
        """Whether any of the nodes ``keys`` finished after the last checkpoint."""
        return not self._unsaved.isdisjoint(keys)

    def level_completed(self) -> None:
        self._levels_since += 1

    @property
    def checkpoint_due(self) -> bool:
        """Whether the policy asks for a checkpoint now (records are waiting to be saved)."""
        if not self._records:
            return False
        policy = self._policy
        if policy == "every_node":
            return True
        if policy == "every_level":
            return self._levels_since > 0
        if isinstance(policy, EveryNLevels):
            return self._levels_since >= policy.every_n_levels
        if isinstance(policy, EveryNNodes):
            return len(self._records) >= policy.every_n_nodes
        return False

    @property
    def has_unsaved_records(self) -> bool:
        return bool(self._records)

    async def flush(self) -> None:
        """Hand buffered events to the sink, in seq order."""
        if not self._pending:
            return
        async with self._lock:
            events, self._pending = self._pending, []
            if events:
                await self._sink.emit(events)

    async def checkpoint(self, *, force: bool = False) -> Checkpoint | None:
        """Save a checkpoint with the records since the last one, when due (or forced).

        The ``checkpoint.created`` event and everything buffered before it go to the store in the
        same call, so they are durable together.
        """
        if not (self.checkpoint_due or (force and self.has_unsaved_records)):
            return None
        await self._lock.acquire()  # not `async with`: two coroutines fewer, once per node
        try:
            self.checkpoint_number += 1
            records, self._records = self._records, []
            self._unsaved.clear()
            self._levels_since = 0
            created_at = self._now()
            self.event(
                EventType.CHECKPOINT_CREATED,
                data={"checkpoint": self.checkpoint_number, "nodes": [r.key for r in records]},
                at=created_at,
            )
            checkpoint = Checkpoint(
                execution_id=self.execution_id,
                number=self.checkpoint_number,
                seq=self.seq,
                created_at=created_at,
                records=records,
            )
            events, self._pending = self._pending, []
            await self._store.save_checkpoint(checkpoint, events)
            return checkpoint
        finally:
            self._lock.release()
