"""The durable journal: the engine's EventSink and CheckpointStore over SQL, with group commit.

Runs hand their events (and checkpoints) to one writer task per process. The writer takes
everything queued, writes it in ONE transaction — events, checkpoints, node-run rows and the
execution rows' status/progress derived from the events — then publishes the events to the bus
and releases the waiting runs. While a commit is in flight the next batch accumulates, so under
load many runs share a commit (group commit), and when idle a lone step is written at once.

On Postgres the whole batch is one statement of data-modifying CTEs over ``unnest`` arrays,
sent on a dedicated asyncpg connection (one round trip, implicit commit). On SQLite it is a
handful of Core statements in one transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain.events import Event
from app.domain.run import Checkpoint
from app.domain.status import ExecutionStatus
from app.errors import LeaseLost
from app.store import journal_sql
from app.store.db import autocommit, is_postgres
from app.store.journal_rows import derive
from app.store.journal_sqlite import SqliteBatchWriter

log = logging.getLogger(__name__)

Publish = Callable[[Sequence[Event]], None]


@dataclass(slots=True)
class _Pending:
    events: Sequence[Event]
    checkpoint: Checkpoint | None
    done: asyncio.Future[None]


class SqlJournal:
    """Group-committing writer for events and checkpoints; reads them back too."""

    def __init__(self, engine: AsyncEngine, publish: Publish | None = None) -> None:
        self._read = autocommit(engine)  # reads: no BEGIN/ROLLBACK round trips
        self._publish = publish
        self._pending: list[_Pending] = []
        self._inflight: list[_Pending] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._writer: journal_sql.PostgresBatchWriter | SqliteBatchWriter = (
            journal_sql.PostgresBatchWriter(engine)
            if is_postgres(engine)
            else SqliteBatchWriter(engine)
        )
        self._generations: dict[str, int] = {}
        self._requeued: Callable[[list[str]], None] | None = None
        self.commits = 0  # transactions written, for benchmarks and metrics

    def set_publisher(self, publish: Publish) -> None:
        self._publish = publish

    def on_requeued(self, callback: Callable[[list[str]], None]) -> None:
        """Call ``callback`` with the runs a write queued again (they were about to wait, but
        answers for them had arrived): someone must claim them."""
        self._requeued = callback

    # -- fencing --------------------------------------------------------------------------

    def own(self, execution_id: str, generation: int) -> None:
        """Write for ``execution_id`` only while its lease generation is ``generation``: once
        another replica claimed the run, this process's writes for it fail with LeaseLost."""
        self._generations[execution_id] = generation

    def disown(self, execution_id: str) -> None:
        self._generations.pop(execution_id, None)

    # -- engine ports ---------------------------------------------------------------------

    async def emit(self, events: Sequence[Event]) -> None:
        await self._submit(events, None)

    async def save_checkpoint(self, checkpoint: Checkpoint, events: Sequence[Event]) -> None:
        await self._submit(events, checkpoint)

    async def load_checkpoints(self, execution_id: str) -> list[Checkpoint]:
        return await journal_sql.load_checkpoints(self._read, execution_id)

    async def read_events(self, execution_id: str, after_seq: int, limit: int) -> list[Event]:
        return await journal_sql.read_events(self._read, execution_id, after_seq, limit)

    # -- writer ---------------------------------------------------------------------------

    async def _submit(self, events: Sequence[Event], checkpoint: Checkpoint | None) -> None:
        if not events and checkpoint is None:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(events, checkpoint, done))
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="oxify-journal-writer")
        await done

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            self._inflight = batch
            if not batch:
                continue
            try:
                await self._write(batch)
            except Exception as exc:
                # One run's bad write (a broken value, a fenced run) must not fail the runs it
                # shared the commit with: write each submission on its own.
                log.warning("journal batch of %d failed (%s); writing one by one", len(batch), exc)
                for pending in batch:
                    try:
                        await self._write([pending])
                    except Exception as single:
                        log.exception("journal write failed for %s", _describe(pending))
                        _settle(pending, single)
            self._inflight = []

    async def _write(self, batch: list[_Pending]) -> None:
        events = [e for p in batch for e in p.events]
        checkpoints = [p.checkpoint for p in batch if p.checkpoint is not None]
        rows = derive(events, checkpoints)
        for execution_id, update in rows.executions.items():
            update.generation = self._generations.get(execution_id)
        written = await self._writer.write(rows)
        self.commits += 1
        if len(written) < len(rows.executions):
            events = [e for e in events if e.execution_id in written]
        if self._publish is not None and events:
            self._publish(events)
        queued = [i for i, status in written.items() if status == ExecutionStatus.QUEUED.value]
        if queued and self._requeued is not None:
            self._requeued(queued)
        for pending in batch:
            execution_id = _execution_of(pending)
            if execution_id in written:
                _settle(pending, None)
            else:
                _settle(pending, LeaseLost(f"run {execution_id} is driven by another replica now"))

    async def close(self) -> None:
        """Stop the writer (after pending writes finished) and release its connection."""
        waiting = [p.done for p in (*self._inflight, *self._pending)]
        if waiting:
            await asyncio.wait(waiting)
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
        await self._writer.close()


def _settle(pending: _Pending, error: BaseException | None) -> None:
    if pending.done.done():
        return
    if error is None:
        pending.done.set_result(None)
    else:
        pending.done.set_exception(error)


def _execution_of(pending: _Pending) -> str:
    if pending.events:
        return pending.events[0].execution_id
    assert pending.checkpoint is not None
    return pending.checkpoint.execution_id


def _describe(pending: _Pending) -> str:
    first = pending.events[0] if pending.events else None
    if first is not None:
        return f"execution {first.execution_id} seq {first.seq}"
    assert pending.checkpoint is not None
    return f"execution {pending.checkpoint.execution_id} checkpoint {pending.checkpoint.number}"
