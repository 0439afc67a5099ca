"""Drives runs as supervised background tasks on this replica, under leases.

The pump claims queued runs (oldest first) and runs whose owner's lease lapsed, up to
``max_concurrent`` at a time, with one ``UPDATE … FOR UPDATE SKIP LOCKED`` statement each (see
:mod:`app.store.claims`); it wakes when something is queued here or on another replica
(``queue`` notification) and polls every ``poll_s`` for lapsed leases. One heartbeat statement,
sent through the journal's writer, renews every lease this replica holds and reads back what
the rows say: a pause or cancel asked on another replica, or that another replica took the run
over (its task is then stopped; the journal's fencing already refuses its writes). A run whose
lease could not be renewed for a whole ``lease_s`` is stopped here: another replica may be
driving it by then. A ``control`` notification makes pauses and cancels prompt.

On shutdown every running run is paused at a checkpoint and handed back to the queue in the
same write (``workflow.paused`` with reason ``shutdown``; the run's status becomes ``queued``,
or ``paused`` when a client asked for a pause meanwhile). Leases are renewed until the hand-back
ends; a run still busy when the grace period runs out is stopped and its lease released, so any
replica recovers it at once. Should another replica take a run over first (the renewals
failed), this replica's writes for it are fenced off and the run continues there: whatever the
order, the run is never left paused by nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from opentelemetry.trace import Tracer
from sqlalchemy.ext.asyncio import AsyncEngine

from app import faults
from app.auth import context, principal
from app.domain.events import EventType
from app.domain.run import RunConfig
from app.domain.status import HAND_BACK_REASON, ExecutionStatus, Move
from app.engine.run import log_fields
from app.engine.run.control import RunControl
from app.engine.run.scheduler import RunRequest, Scheduler
from app.errors import LeaseLost
from app.events.notify import Channel, Notifier
from app.observability import segments
from app.services.workflows import WorkflowService
from app.store import claims, db, leases
from app.store import executions as store
from app.store.journal import SqlJournal

log = logging.getLogger(__name__)

_E = ExecutionStatus
ClaimListener = Callable[[claims.Kind, Sequence[claims.ClaimedRun]], None]
PUMP_RETRY_S = 2.0  # seconds between attempts while the database is unreachable


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    """How this replica holds runs. Recovery of a dead replica's runs takes at most about
    ``lease_s + poll_s`` (the lease runs out, then a survivor's next poll claims the run)."""

    replica_id: str
    max_concurrent: int = 64
    lease_s: float = 10.0  # seconds a claim or renewal holds a run
    heartbeat_s: float = 3.0  # seconds between renewals (well under lease_s)
    poll_s: float = 1.0  # seconds between looks for lapsed leases and missed queue nudges
    timeout_s: float = 5.0  # seconds any one database call may take


@dataclass(slots=True)
class _Active:
    run: claims.ClaimedRun
    control: RunControl
    renewed_at: float  # loop time when the claim or the last renewal holding it was sent
    task: asyncio.Task[None] | None = None
    lost: bool = False  # another replica took it over (or may have): stop quietly
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Runner:
    """Background execution of runs for one replica."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        scheduler: Scheduler,
        journal: SqlJournal,
        workflows: WorkflowService,
        notifier: Notifier,
        settings: LeaseSettings,
        on_claimed: ClaimListener | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self._engine = engine
        self._on_claimed = on_claimed  # metrics: queue waits and takeovers
        self._tracer = tracer  # None: tracing is off
        # Reads and single statements: no BEGIN/COMMIT round trips.
        self._read = self._statements = db.autocommit(engine)
        self._timeout_s = settings.timeout_s
        self._claims = claims.for_engine(engine, timeout_s=settings.timeout_s)
        self._journal = journal
        self._scheduler = scheduler
        self._workflows = workflows
        self._notifier = notifier
        self.settings = settings
        self._active: dict[str, _Active] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._backlog = False  # the last claim filled every free slot
        self._counts = {"claims": 0, "runs_claimed": 0, "runs_recovered": 0, "lease_renewals": 0}

    @property
    def replica_id(self) -> str:
        return self.settings.replica_id

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen for nudges, then start claiming and renewing."""
        self._notifier.listen(Channel.QUEUE, lambda _ids: self.notify())
        self._notifier.listen(Channel.CONTROL, self._on_control)
        self._notifier.on_resync(self.notify)
        self._tasks = [asyncio.create_task(self._pump(), name="oxify-runner-pump")]
        self._heartbeat_task = asyncio.create_task(self._heartbeat(), name="oxify-runner-heartbeat")

    async def shutdown(self, grace_s: float) -> None:
        """Hand every running run back to the queue at a checkpoint (see the module doc)."""
        self._stopping = True
        await _cancel(list(self._tasks))  # no more claims; renewals go on
        active = dict(self._active)
        if active:
            await faults.hit("runner.hand_back", *active)
            stopped = await self._hand_back(active, grace_s)
        else:
            stopped = {}
        if self._heartbeat_task is not None:
            await _cancel([self._heartbeat_task])
        if stopped:
            await self._release(stopped)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._timeout_s):
                async with self._engine.begin() as conn:
                    await leases.stopped(conn, self.replica_id)
        await self._claims.close()

    async def _hand_back(self, active: dict[str, _Active], grace_s: float) -> dict[str, int]:
        """Pause the runs for the hand-back and wait up to ``grace_s``; the runs that had to be
        stopped before they got there (id → generation)."""
        for entry in active.values():
            entry.control.pause(reason=HAND_BACK_REASON)
        tasks = [entry.task for entry in active.values() if entry.task is not None]
        _done, pending = await asyncio.wait(tasks, timeout=grace_s) if tasks else (set(), set())
        stopped = {
            entry.run.id: entry.run.generation
            for entry in active.values()
            if entry.task in pending and not entry.lost
        }
        await _cancel(pending)  # out of time: stopped without a last write
        return stopped

    async def _release(self, stopped: dict[str, int]) -> None:
        """End the leases of runs stopped mid-way: any replica recovers them at once."""
        try:
            async with asyncio.timeout(self._timeout_s):
                async with self._engine.begin() as conn:
                    await leases.release(conn, self.replica_id, stopped)
        except Exception as exc:
            log.warning("could not release %d lease(s) (%s); they lapse", len(stopped), exc)
            return
        self._notifier.send(Channel.QUEUE, sorted(stopped))

    # -- requests -------------------------------------------------------------------------

    def notify(self) -> None:
        """Something may be claimable: look at the queue now."""
        self._wake.set()

    def control(self, execution_id: str) -> RunControl | None:
        """The control of a run this replica is driving, if any."""
        entry = self._active.get(execution_id)
        return entry.control if entry is not None else None

    async def wait_stopped(self, execution_id: str) -> None:
        """Return once this replica no longer drives the run."""
        entry = self._active.get(execution_id)
        if entry is not None:
            await entry.done.wait()

    @property
    def running_count(self) -> int:
        return len(self._active)

    def counts(self) -> dict[str, int]:
        """Counters for metrics: claims, renewals, recoveries, commits, notifications, fenced
        writes."""
        return {
            **self._counts,
            "running": len(self._active),
            "journal_commits": self._journal.commits,
            "fenced_writes": self._journal.fenced,
            "notifications": self._notifier.sent,
        }

    # -- claiming -------------------------------------------------------------------------

    async def _pump(self) -> None:
        settings = self.settings
        loop = asyncio.get_running_loop()
        await self._recover_own()
        next_poll = 0.0
        while not self._stopping:
            self._wake.clear()
            try:
                free = settings.max_concurrent - len(self._active)
                if free > 0 and loop.time() >= next_poll:
                    next_poll = loop.time() + settings.poll_s
                    free -= await self._claim("expired", free)
                if free > 0:
                    self._backlog = await self._claim("queued", free) == free
            except Exception as exc:
                # Database down or not migrated yet: the service stays up (readyz says why)
                # and the pump tries again.
                log.warning("runner cannot reach the queue (%s); retrying", exc)
                await _wait(self._wake, PUMP_RETRY_S)
                continue
            await _wait(self._wake, max(0.0, next_poll - loop.time()))

    async def _recover_own(self) -> None:
        """Runs a previous life of this replica drove (same id), or any run on SQLite (one
        process): nobody drives them, so their leases end now and the pump recovers them."""
        single = self._engine.dialect.name == "sqlite"
        while not self._stopping:
            try:
                async with self._engine.begin() as conn:
                    count = await leases.expire(conn, owner=None if single else self.replica_id)
                    await leases.beat(conn, self.replica_id, socket.gethostname(), os.getpid())
            except Exception as exc:
                log.warning("runner cannot reach the database (%s); retrying", exc)
                await asyncio.sleep(PUMP_RETRY_S)
                continue
            if count:
                log.warning("recovering %d run(s) left running by a stopped process", count)
            return

    async def _claim(self, kind: claims.Kind, limit: int) -> int:
        settings = self.settings
        self._counts["claims"] += 1
        sent = asyncio.get_running_loop().time()
        runs = await self._claims.claim(kind, settings.replica_id, limit, settings.lease_s)
        self._counts["runs_claimed"] += len(runs)
        if kind == "expired":
            self._counts["runs_recovered"] += len(runs)
        if runs and self._on_claimed is not None:
            self._on_claimed(kind, runs)
        for run in runs:
            previous = self._active.get(run.id)
            if previous is not None:
                # Our own earlier driver lost the lease (the loop was blocked past it) and we
                # took the run over: the old driver's writes carry the old generation and are
                # refused; stop it.
                log.warning("run %s was recovered by this replica from itself", run.id)
                self._abandon(previous)
            entry = _Active(run, RunControl(), renewed_at=sent)
            entry.task = asyncio.create_task(self._drive(entry), name=run.id)
            self._active[run.id] = entry
        return len(runs)

    # -- driving --------------------------------------------------------------------------

    async def _drive(self, entry: _Active) -> None:
        run = entry.run
        # The task's own context: the fields last as long as the task, no unbind needed.
        log_fields.bind(execution_id=run.id, replica_id=self.replica_id)
        context.bind(context.RequestContext(principal.of_run(run.id, run.project)))
        try:
            await self._execute(entry)
        except asyncio.CancelledError:
            if not entry.lost:
                raise
        except LeaseLost:
            entry.lost = True
        except Exception as exc:
            log.exception("run %s crashed", run.id)
            await self._record_crash(entry, exc)
        finally:
            if entry.lost:
                log.warning("run %s was taken over by another replica; stopped here", run.id)
            if self._active.get(run.id) is entry:
                del self._active[run.id]
            entry.done.set()
            if self._backlog:  # the last claim took all it could: more may be waiting
                self._wake.set()

    async def _execute(self, entry: _Active) -> None:
        run, control = entry.run, entry.control
        if run.cancel_requested:
            control.cancel()  # asked before this replica could hear it
        elif run.status is _E.PAUSING:
            control.pause()
        history = run.history
        plan = await self._workflows.plan_of_version(run.workflow_id, run.workflow_version)
        config = RunConfig.model_validate(run.config)
        request = RunRequest(
            execution_id=run.id,
            plan=plan,
            inputs=run.inputs,
            config=config,
            resume=run.last_seq > 0,  # a run that logged anything continues from its history
            resume_reason=run.resume_reason or "resumed",
            last_seq=run.last_seq,
            resume_values=history.answers if history is not None else {},
            prior_attempts=history.attempts if history is not None else {},
            checkpoints=history.checkpoints if history is not None else None,
            elapsed_s=await self._elapsed(run, config),
            replica=self.replica_id,
            fence=run.generation,
        )
        started = time.monotonic()
        try:
            with segments.segment(
                self._tracer,
                workflow=plan.name,
                execution_id=run.id,
                resume_reason=run.resume_reason,
                trace=run.trace_context,
                previous=run.trace_segment,
            ) as segment:
                if segment.traceparent is not None:
                    await self._record_segment(run, segment.traceparent)
                outcome = await self._scheduler.run(request, control)
                segment.ended(outcome.status.value)
        finally:
            if config.timeout_s is not None and not entry.lost:
                async with self._statements.connect() as conn:
                    stretch = time.monotonic() - started
                    await store.add_active_time(conn, run.id, stretch, run.generation)

    async def _record_segment(self, run: claims.ClaimedRun, traceparent: str) -> None:
        """Store this segment's span for the next segment's link (wherever that one runs)."""
        try:
            async with asyncio.timeout(self._timeout_s), self._statements.connect() as conn:
                await store.set_trace_segment(conn, run.id, traceparent, run.generation)
        except Exception as exc:  # a trace's link is not worth a run
            log.warning("could not record the trace segment of run %s (%s)", run.id, exc)

    async def _elapsed(self, run: claims.ClaimedRun, config: RunConfig) -> float:
        """The part of ``timeout_s`` the run has used: the time it was driven, or with
        ``timeout_includes_waiting`` the time since it first started (a deadline is then stored
        for the sweeper, which times the run out even while it waits)."""
        if config.timeout_s is None:
            return 0.0
        if not config.timeout_includes_waiting:
            return run.active_s
        now = datetime.now(UTC)
        if run.started_at is None:
            deadline = now + timedelta(seconds=config.timeout_s)
            async with self._statements.connect() as conn:
                await store.set_deadline(conn, run.id, deadline, run.generation)
            return 0.0
        return (now - run.started_at).total_seconds()

    async def _record_crash(self, entry: _Active, exc: Exception) -> None:
        """End a run whose driver failed outside the engine (a store error, a bug) as failed.

        One statement logs ``workflow.failed`` as the run's next seq and ends the run, fenced
        by the driver's generation (a run taken over meanwhile is left alone). If even that
        fails the run stays ``running``; its lease runs out and a replica recovers it.
        """
        error = {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}"}
        try:
            await self._journal.append(
                entry.run.id,
                Move.FAIL,
                EventType.WORKFLOW_FAILED,
                {"error": error},
                fence=entry.run.generation,
            )
        except Exception:
            log.exception("could not record the failure of run %s", entry.run.id)

    # -- leases ---------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        loop = asyncio.get_running_loop()
        settings = self.settings
        while True:
            await asyncio.sleep(settings.heartbeat_s)
            try:
                await self._renew()
            except Exception as exc:
                log.warning("cannot renew leases (%s)", exc)
            # A run not renewed for a whole lease may be driven elsewhere by now.
            for entry in list(self._active.values()):
                if loop.time() - entry.renewed_at > settings.lease_s:
                    log.warning(
                        "the lease of run %s could not be renewed; stopping it", entry.run.id
                    )
                    self._abandon(entry)

    async def _renew(self) -> None:
        held = {i: entry.run.generation for i, entry in self._active.items()}
        self._counts["lease_renewals"] += 1
        sent = asyncio.get_running_loop().time()
        bound = max(self.settings.heartbeat_s, self.settings.lease_s / 3)
        states = await asyncio.wait_for(
            self._journal.renew(self.replica_id, held, self.settings.lease_s), bound
        )
        for execution_id, generation in held.items():
            state = states.get(execution_id)
            entry = self._active.get(execution_id)
            if (
                entry is not None
                and state is not None
                and state.renewed
                and state.generation == generation == entry.run.generation
            ):
                entry.renewed_at = sent
            self._apply(execution_id, state)
        async with asyncio.timeout(self._timeout_s), self._statements.connect() as conn:
            await leases.beat(conn, self.replica_id, socket.gethostname(), os.getpid())

    def _on_control(self, ids: list[str]) -> None:
        mine = [i for i in ids if i in self._active]
        if mine:
            task = asyncio.create_task(self._check(mine), name="oxify-runner-control")
            self._tasks.append(task)
            task.add_done_callback(self._tasks.remove)

    async def _check(self, ids: list[str]) -> None:
        try:
            async with asyncio.timeout(self._timeout_s), self._read.connect() as conn:
                states = await leases.lease_states(conn, ids)
        except Exception as exc:
            log.warning("cannot read control requests (%s); the heartbeat will", exc)
            return
        for execution_id in ids:
            self._apply(execution_id, states.get(execution_id))

    def _apply(self, execution_id: str, state: leases.LeaseState | None) -> None:
        """Act on what the row says of a run this replica drives."""
        entry = self._active.get(execution_id)
        if entry is None:
            return
        if state is None or state.generation != entry.run.generation:
            self._abandon(entry)
        elif state.cancel_requested:
            entry.control.cancel()
        elif state.status is _E.PAUSING:
            entry.control.pause()

    def _abandon(self, entry: _Active) -> None:
        entry.lost = True
        if entry.task is not None:
            entry.task.cancel()


async def _cancel(tasks: Collection[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait until they have ended."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks)


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
