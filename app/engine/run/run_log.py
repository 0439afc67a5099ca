"""The run log: numbers events, buffers them, and writes checkpoints per policy.

One log per run, shared by every graph of it (nested bodies included), so ``seq`` is
gap-free across the whole run. Events are buffered and handed to the sink in batches (one call
per scheduler step, not one per event); a checkpoint carries the events buffered before it, so
a store can persist a step's events and node records in one transaction.

Numbers are proposals: the store accepts a write only when its first ``seq`` follows the run's
last stored one (and the run is still driven under this log's ``fence``). A write that
fails keeps its events and records here, under the numbers they were given, so nothing logged
is dropped and no number is used twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from app.domain.events import Event, EventType
from app.domain.run import Checkpoint, CheckpointPolicy, EveryNLevels, EveryNNodes, NodeRecord
from app.engine.ports import CheckpointStore, Clock, EventSink, RunObserver
from app.engine.run.observe import UNWATCHED
from app.errors import LeaseLost

_NOTHING: frozenset[str] = frozenset()


class RunLog:
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
        fence: int | None = None,
        observer: RunObserver = UNWATCHED,
    ) -> None:
        self.execution_id = execution_id
        self.fence = fence  # the lease generation every write of this journal carries
        self.seq = last_seq
        self.checkpoint_number = last_checkpoint
        self._sink = sink
        self._store = checkpoints
        self._now = clock.now  # bound once: called for every event
        self._policy = policy
        self._observer = observer
        self._pending: list[Event] = []
        self._records: list[NodeRecord] = []
        self._unsaved: set[str] = set()
        self._unwritten: Checkpoint | None = None  # taken, its write failed: written next
        self._saving = _NOTHING  # keys of the checkpoint being written
        self._levels_since = 0
        self._lock = asyncio.Lock()
        self._background: asyncio.Future[None] | None = None  # a write nobody waits for

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

    def must_save(self, keys: Iterable[str]) -> bool:
        """Whether a node that depends on the nodes ``keys`` must wait for a checkpoint before
        it starts: one of them is among the records a due checkpoint would save, or among those
        of a checkpoint being written (whose commit is not known yet)."""
        if self._saving:
            keys = list(keys)
            if not self._saving.isdisjoint(keys):
                return True
        return self.checkpoint_due and not self._unsaved.isdisjoint(keys)

    def level_completed(self) -> None:
        self._levels_since += 1

    @property
    def checkpoint_due(self) -> bool:
        """Whether the policy asks for a checkpoint now (records are waiting to be saved)."""
        if self._unwritten is not None:  # taken, its write failed: it goes out next
            return True
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
        """Hand buffered events to the sink, in seq order; on failure they stay buffered."""
        if not self._pending and self._unwritten is None:
            return
        async with self._lock:
            await self._write()

    def write_soon(self) -> None:
        """Write the buffered events in the background, without the caller waiting (streamed
        tokens). A failure leaves them buffered: the next flush or checkpoint, which someone
        does await, writes them or raises."""
        if self._background is None or self._background.done():
            self._background = asyncio.ensure_future(self._write_quietly())

    async def _write_quietly(self) -> None:
        try:
            await self.flush()
        except (Exception, LeaseLost):  # kept buffered; the awaited flush reports it
            return

    async def checkpoint(self, *, force: bool = False) -> Checkpoint | None:
        """Save a checkpoint with the records since the last one, when due (or forced).

        The ``checkpoint.created`` event and everything buffered before it go to the store in the
        same call, so they are durable together.
        """
        if not (self.checkpoint_due or (force and self.has_unsaved_records)):
            return None
        await self._lock.acquire()  # not `async with`: two coroutines fewer, once per node
        try:
            if self._unwritten is None:  # else a failed one goes out again first
                if not (self.checkpoint_due or (force and self.has_unsaved_records)):
                    return None  # another graph of the run saved them while we waited
                self._take_checkpoint()
            checkpoint = self._unwritten
            await self._write()
            return checkpoint
        finally:
            self._lock.release()

    async def finish(
        self, type_: EventType, data: dict[str, Any], *, checkpoint: bool
    ) -> Checkpoint | None:
        """Log the run's last event of this stretch (``workflow.completed``, ``.paused``, …)
        after a checkpoint of the unsaved records (with ``checkpoint``), in ONE write: a run's
        end costs one commit, not two."""
        async with self._lock:
            if self._unwritten is not None:  # a failed checkpoint goes out first, on its own
                await self._write()
            taken = self._take_checkpoint() if checkpoint and self._records else None
            self.event(type_, data=data)
            await self._write()
            return taken

    def _take_checkpoint(self) -> Checkpoint:
        """Number a checkpoint of the unsaved records and its ``checkpoint.created`` event; both
        are written by the next :meth:`_write`."""
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
        self._unwritten = Checkpoint(
            execution_id=self.execution_id,
            number=self.checkpoint_number,
            seq=self.seq,
            created_at=created_at,
            records=records,
        )
        return self._unwritten

    async def _write(self) -> None:
        """Write the buffered events, with the checkpoint taken among them if any. The caller
        holds the lock. What fails stays buffered, numbers and all, for the next write."""
        events, self._pending = self._pending, []
        checkpoint, self._unwritten = self._unwritten, None
        try:
            if checkpoint is not None:
                self._saving = frozenset(r.key for r in checkpoint.records)
                await self._save(checkpoint, events)
            elif events:
                await self._sink.emit(events, fence=self.fence)
        except BaseException:
            self._pending[:0] = events
            if checkpoint is not None:
                self._unwritten = checkpoint
                self._unsaved.update(self._saving)
            raise
        finally:
            self._saving = _NOTHING

    async def _save(self, checkpoint: Checkpoint, events: list[Event]) -> None:
        watch = self._observer.checkpoint(checkpoint.number)
        outcome, error = "interrupted", None
        try:
            await self._store.save_checkpoint(checkpoint, events, fence=self.fence)
            outcome = "completed"
        except Exception as exc:
            outcome, error = "failed", type(exc).__name__
            raise
        finally:
            watch.end(outcome, error)
