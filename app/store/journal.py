"""The durable journal: the engine's EventSink and CheckpointStore over SQL, with group commit.

Runs hand their events (and checkpoints) to one writer task per process. The writer takes
everything queued and writes it in ONE statement (one transaction on SQLite): events,
checkpoints, node-run rows and the execution rows' status and progress derived from the events.
While a write is in flight the next batch accumulates, so under load many runs share a commit
(group commit), and when idle a lone step is written at once.

The writer owns what a write may do, for every run:

- **Fenced and numbered by the row.** A run's rows are written only while it is driven under
  the writer's lease generation and only when the batch's events follow the run's last stored
  seq; the same statement moves ``last_seq`` and the status (see :mod:`app.store.status_sql`),
  so no two writers can ever log the same seq.
- **Nothing lost, nothing twice.** A connection that fails or hangs (every call is bounded)
  is replaced and the same batch written again; a batch whose answer was lost after its commit
  is recognised as stored (its runs' rows are already at its last seq). A statement the
  database refuses is split until the one run whose rows it refuses is found; that run alone
  gets the error.
- **After the commit, only notices.** Publishing to stream subscribers and nudging claimers run
  after the commit, each on its own: a listener that fails is logged and cannot undo or repeat
  a write.

Events logged beside a run's driver (a client cancelling an idle run, a crash record) and lease
renewals go through the same writer, each as one statement of its own, so one connection of
this process does all of its writing: if it hangs, renewals stop too, and the leases lapse for
another replica to take the runs over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app import faults
from app.auth import context
from app.auth.audit import AuditEntry
from app.domain.events import Event, EventType
from app.domain.run import Checkpoint
from app.domain.status import DRIVEN, ExecutionStatus, Move
from app.errors import DatabaseUnavailable, JournalRejected, LeaseLost
from app.store import db, journal_sql
from app.store.journal_rows import Append, RowState, derive
from app.store.journal_sqlite import SqliteBatchWriter
from app.store.leases import LeaseState

log = logging.getLogger(__name__)

Publish = Callable[[Sequence[Event]], None]
RETRY_FIRST_S = 0.05  # seconds before a failed write is tried again; doubles each time
RETRY_MAX_S = 1.0  # seconds between attempts at most
APPEND_TRIES = 4  # attempts of an append (a client's request waits for it) before a 503
_DRIVEN = {status.value for status in DRIVEN}


@dataclass(slots=True)
class _Submission:
    execution_id: str
    events: Sequence[Event]
    checkpoint: Checkpoint | None
    fence: int | None
    done: asyncio.Future[None]


@dataclass(slots=True)
class _Job:
    """A statement of its own (an append, a renewal), run by the writer between batches."""

    run: Callable[[], Awaitable[Any]]
    done: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class SqlJournal:
    """Group-committing writer for events and checkpoints; reads them back too."""

    def __init__(
        self,
        engine: AsyncEngine,
        publish: Publish | None = None,
        *,
        timeout_s: float = db.DEFAULT_TIMEOUT_S,
    ) -> None:
        self._read = db.autocommit(engine)  # reads: no BEGIN/ROLLBACK round trips
        self._publish = publish
        self._timeout_s = timeout_s
        self._queue: list[_Submission] = []
        self._jobs: list[_Job] = []
        self._busy: list[asyncio.Future[Any]] = []  # what the writer holds right now
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._writer: journal_sql.PostgresBatchWriter | SqliteBatchWriter = (
            journal_sql.PostgresBatchWriter(engine, timeout_s=timeout_s)
            if db.is_postgres(engine)
            else SqliteBatchWriter(engine)
        )
        self._requeued: Callable[[list[str]], None] | None = None
        self.commits = 0  # batches written, for benchmarks and metrics
        self.retries = 0  # writes tried again after the connection failed
        self.fenced = 0  # writes refused by fencing (the run is driven elsewhere), for metrics

    def set_publisher(self, publish: Publish) -> None:
        self._publish = publish

    def on_requeued(self, callback: Callable[[list[str]], None]) -> None:
        """Call ``callback`` with the runs a write queued again (handed back by a stopping
        replica, or about to wait with answers already in): someone must claim them."""
        self._requeued = callback

    # -- engine ports ---------------------------------------------------------------------

    async def emit(self, events: Sequence[Event], *, fence: int | None = None) -> None:
        await self._submit(events, None, fence)

    async def save_checkpoint(
        self, checkpoint: Checkpoint, events: Sequence[Event], *, fence: int | None = None
    ) -> None:
        await self._submit(events, checkpoint, fence)

    async def load_checkpoints(self, execution_id: str) -> list[Checkpoint]:
        return await journal_sql.load_checkpoints(self._read, execution_id)

    async def read_events(self, execution_id: str, after_seq: int, limit: int) -> list[Event]:
        return await journal_sql.read_events(self._read, execution_id, after_seq, limit)

    # -- beside the engine ----------------------------------------------------------------

    async def append(
        self,
        execution_id: str,
        move: Move,
        type_: EventType,
        data: dict[str, Any] | None = None,
        *,
        fence: int | None = None,
        audit: AuditEntry | None = None,
    ) -> Event | None:
        """Change the run's status by ``move`` and log ``type_`` as its next event, in one
        statement (fenced by ``fence`` when given), with ``audit``'s row when the move applies;
        the event, or None when the move did not apply to the run's status (or the fence
        refused it)."""
        await faults.hit("journal.append", execution_id)
        change = Append(execution_id, move, type_, data or {}, datetime.now(UTC), fence, audit)
        done = await self._append(change)
        if done is None:
            return None
        seq, _status = done
        event = Event(execution_id, seq, type_, change.ts, data=change.data)
        self._after_commit([event], [])
        return event

    async def _append(self, change: Append) -> tuple[int, str] | None:
        """The append's statement, sent again when the connection failed (a move that was
        stored already no longer applies: sending it again changes nothing). A client waits
        for it, so it is bounded as a whole, the wait behind other writes included; past the
        bound (or ``APPEND_TRIES``) it is :class:`DatabaseUnavailable`."""
        delay, attempt = RETRY_FIRST_S, 1
        try:
            async with asyncio.timeout(self._timeout_s * APPEND_TRIES):
                while True:
                    try:
                        result: tuple[int, str] | None = await self._job(
                            lambda: self._writer.append(change)
                        )
                        return result
                    except Exception as exc:
                        if not db.is_transient(exc) or attempt == APPEND_TRIES:
                            raise
                    await asyncio.sleep(delay)
                    delay, attempt = delay * 2, attempt + 1
        except Exception as exc:
            if db.is_transient(exc):
                raise DatabaseUnavailable(retry_after_s=db.RETRY_AFTER_S) from exc
            raise

    async def renew(
        self, owner: str, held: Mapping[str, int], lease_s: float
    ) -> dict[str, LeaseState]:
        """Extend the leases of ``held`` runs (id → generation) that ``owner`` still drives,
        on the writer's own connection; what the database holds for each of them."""
        if not held:
            return {}

        async def renew() -> dict[str, LeaseState]:
            await faults.hit("journal.before_renew")
            return await self._writer.renew(owner, held, lease_s)

        states: dict[str, LeaseState] = await self._job(renew)
        return states

    async def close(self) -> None:
        """Stop the writer once what is under way is written (or after a bound), then release
        its connection."""
        waiting = [s.done for s in self._queue] + [j.done for j in self._jobs] + self._busy
        if waiting:
            await asyncio.wait(waiting, timeout=self._timeout_s * 2)
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
        await self._writer.close()

    # -- the writer -----------------------------------------------------------------------

    async def _submit(
        self, events: Sequence[Event], checkpoint: Checkpoint | None, fence: int | None
    ) -> None:
        if not events:
            if checkpoint is None:
                return
            raise ValueError("a checkpoint is written with its checkpoint.created event")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Submission(events[0].execution_id, events, checkpoint, fence, done))
        self._kick()
        await done

    async def _job(self, run: Callable[[], Awaitable[Any]]) -> Any:
        job = _Job(run)
        self._jobs.append(job)
        self._kick()
        return await job.done

    def _kick(self) -> None:
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = context.detached_task(self._run(), name="oxify-journal-writer")

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._jobs or self._queue:
                jobs, self._jobs = self._jobs, []
                for job in jobs:
                    await self._run_job(job)
                batch = self._take()
                if not batch:
                    continue
                self._busy = [s.done for s in batch]
                try:
                    await self._write(batch)
                except Exception as exc:
                    # A bug here must not leave every run waiting on a writer that died.
                    log.exception("the journal writer failed")
                    for submission in batch:
                        _resolve(submission, exc)
                finally:
                    self._busy = []

    def _take(self) -> list[_Submission]:
        """The queued submissions whose runs still wait for them, at most one per run (two
        drivers of one run in this process, the old one fenced: the later waits its turn)."""
        batch: list[_Submission] = []
        later: list[_Submission] = []
        seen: set[str] = set()
        for submission in self._queue:
            if submission.done.done():  # its run stopped waiting (cancelled): nobody to tell
                continue
            if submission.execution_id in seen:
                later.append(submission)
            else:
                seen.add(submission.execution_id)
                batch.append(submission)
        self._queue = later
        return batch

    async def _run_job(self, job: _Job) -> None:
        if job.done.done():
            return
        try:
            result = await job.run()
        except Exception as exc:
            if db.is_transient(exc):
                self._writer.reset()
            if not job.done.done():
                job.done.set_exception(exc)
            return
        if not job.done.done():
            job.done.set_result(result)

    async def _write(self, batch: list[_Submission]) -> None:
        """Write ``batch`` until it is stored (the connection is replaced as often as needed),
        or until the database refuses it: then each run's part is tried apart."""
        delay = RETRY_FIRST_S
        while True:
            batch = [s for s in batch if not s.done.done()]
            if not batch:
                return
            try:
                states = await self._statement(batch)
            except Exception as exc:
                if db.is_transient(exc):
                    self._writer.reset()
                    self.retries += 1
                    log.warning("journal write failed (%s); trying again", _explain(exc))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX_S)
                    continue
                await self._isolate(batch, exc)
                return
            self._settle(batch, states)
            return

    async def _statement(self, batch: list[_Submission]) -> dict[str, RowState]:
        events = [e for s in batch for e in s.events]
        checkpoints = [s.checkpoint for s in batch if s.checkpoint is not None]
        rows = derive(events, checkpoints, {s.execution_id: s.fence for s in batch})
        await faults.hit("journal.before_write")
        states = await self._writer.write(rows)
        self.commits += 1
        return states

    async def _isolate(self, batch: list[_Submission], exc: Exception) -> None:
        """The database refused the statement: write halves apart until the run whose rows it
        refuses is alone, and fail only that run's write."""
        if len(batch) == 1:
            log.error("the database refused the journal of run %s: %s", batch[0].execution_id, exc)
            message = f"the run's events could not be stored: {_explain(exc)}"
            _resolve(batch[0], JournalRejected(message))
            return
        half = len(batch) // 2
        await self._write(batch[:half])
        await self._write(batch[half:])

    def _settle(self, batch: list[_Submission], states: Mapping[str, RowState]) -> None:
        """Tell each run how its write went, then publish what was stored. A write whose
        first events are stored already (an earlier write of them was cancelled after it was
        sent, or lost its answer) goes again with the rest only."""
        stored: list[Event] = []
        queued: list[str] = []
        outcomes: list[tuple[_Submission, BaseException | None]] = []
        again: list[_Submission] = []
        for submission in batch:
            state = states.get(submission.execution_id)
            rest = _unstored(submission, state)
            if rest is not None:
                again.append(rest)
                continue
            problem = _problem(submission, state)
            if isinstance(problem, LeaseLost):
                self.fenced += 1
            outcomes.append((submission, problem))
            if problem is None:
                stored.extend(submission.events)
                if state is not None and state.written and state.status == _QUEUED:
                    queued.append(submission.execution_id)
        self._queue[:0] = again
        self._after_commit(stored, queued)
        for submission, problem in outcomes:
            _resolve(submission, problem)

    def _after_commit(self, stored: list[Event], queued: list[str]) -> None:
        """Notices of a commit: each may fail on its own; none can undo or repeat the write."""
        try:
            faults.hit_now("journal.after_commit")
            if stored and self._publish is not None:
                self._publish(stored)
        except Exception:
            log.exception("publishing %d stored event(s) failed", len(stored))
        try:
            if queued and self._requeued is not None:
                self._requeued(queued)
        except Exception:
            log.exception("nudging claimers for %d requeued run(s) failed", len(queued))


_QUEUED = ExecutionStatus.QUEUED.value


def _unstored(submission: _Submission, state: RowState | None) -> _Submission | None:
    """The part of a write not stored yet, when only its first events are (else None)."""
    if state is None or state.written:
        return None
    if submission.fence is not None and state.generation != submission.fence:
        return None
    events = submission.events
    if not events[0].seq <= state.last_seq < events[-1].seq:
        return None
    checkpoint = submission.checkpoint
    return _Submission(
        submission.execution_id,
        [e for e in events if e.seq > state.last_seq],
        checkpoint if checkpoint is not None and checkpoint.seq > state.last_seq else None,
        submission.fence,
        submission.done,
    )


def _problem(submission: _Submission, state: RowState | None) -> BaseException | None:
    """None when the submission's events are stored (by this statement, or by an earlier one
    whose answer was lost), else why not."""
    execution_id = submission.execution_id
    if state is None:
        return LeaseLost(f"run {execution_id} no longer exists")
    if state.written:
        return None
    first, last = submission.events[0].seq, submission.events[-1].seq
    ours = submission.fence is None or state.generation == submission.fence
    if ours and state.last_seq >= last:
        return None  # a retry of a write that had been stored
    if ours and state.status in _DRIVEN and state.last_seq < first - 1:
        return JournalRejected(
            f"run {execution_id}'s log is at seq {state.last_seq}; a write from seq {first} "
            "would leave a gap"
        )
    return LeaseLost(f"run {execution_id} is driven by another replica now")


def _resolve(submission: _Submission, problem: BaseException | None) -> None:
    if submission.done.done():
        return
    if problem is None:
        submission.done.set_result(None)
    else:
        submission.done.set_exception(problem)


def _explain(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
