"""Runs executions as supervised background tasks, at most ``max_concurrent`` at a time.

Runs beyond the cap stay ``queued`` in the database and start in submission order: the pump
claims queued rows with a conditional status update (queued → running), so a row is started
once. A run's task owns its ``RunControl``; pause and cancel requests for a run this process
drives go straight to it. On shutdown every running run is paused at a checkpoint and put back
in the queue with ``resume_reason = "shutdown"``; the next start resumes it (``workflow.resumed``).
Runs a dead process left ``running`` are queued again as ``recovered`` at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain.events import Event, EventType
from app.domain.run import RunConfig
from app.domain.status import ExecutionStatus
from app.engine.ports import EventSink
from app.engine.runtime import RunControl
from app.engine.scheduler import RunRequest, Scheduler
from app.services.workflows import WorkflowService
from app.store import executions as store

log = logging.getLogger(__name__)

_E = ExecutionStatus
PUMP_RETRY_S = 2.0  # seconds between attempts while the database is unreachable


@dataclass(slots=True)
class _Active:
    task: asyncio.Task[None]
    control: RunControl


class Runner:
    """Background execution of runs for one process."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        scheduler: Scheduler,
        journal: EventSink,
        workflows: WorkflowService,
        max_concurrent: int,
    ) -> None:
        self._engine = engine
        self._journal = journal
        self._scheduler = scheduler
        self._workflows = workflows
        self._max = max_concurrent
        self._active: dict[str, _Active] = {}
        self._controls: dict[str, RunControl] = {}
        self._wake = asyncio.Event()
        self._pump_task: asyncio.Task[None] | None = None
        self._stopping = False

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start pumping the queue (after re-queueing what a dead process left running)."""
        self._pump_task = asyncio.create_task(self._pump(), name="oxify-runner-pump")

    async def shutdown(self, grace_s: float) -> None:
        """Pause every running run at a checkpoint and queue it for the next start."""
        self._stopping = True
        if self._pump_task is not None:
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump_task
        active = dict(self._active)
        if not active:
            return
        async with self._engine.begin() as conn:
            for execution_id in active:
                await store.set_status(
                    conn,
                    execution_id,
                    expected=(_E.RUNNING,),
                    status=_E.PAUSING,
                    resume_reason="shutdown",
                )
        for run in active.values():
            run.control.pause()
        tasks = [run.task for run in active.values()]
        _done, pending = await asyncio.wait(tasks, timeout=grace_s)
        for task in pending:
            # Out of time: stop without a terminal event; the run stays `running` and the next
            # start recovers it (its interrupted nodes run again).
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        async with self._engine.begin() as conn:
            for execution_id in active:
                await store.set_status(
                    conn,
                    execution_id,
                    expected=(_E.PAUSED,),
                    status=_E.QUEUED,
                    resume_reason="shutdown",
                    only_if_resume_reason="shutdown",
                )

    # -- requests -------------------------------------------------------------------------

    def notify(self) -> None:
        """Something was queued: look at the queue."""
        self._wake.set()

    def control(self, execution_id: str) -> RunControl | None:
        """The control of a run this process is driving, if any."""
        return self._controls.get(execution_id)

    async def wait_stopped(self, execution_id: str) -> None:
        """Return once this process no longer drives the run."""
        active = self._active.get(execution_id)
        if active is not None:
            await asyncio.wait([active.task])

    @property
    def running_count(self) -> int:
        return len(self._active)

    # -- the pump -------------------------------------------------------------------------

    async def _pump(self) -> None:
        recovered = False
        while not self._stopping:
            self._wake.clear()
            try:
                if not recovered:
                    await self._recover()
                    recovered = True
                free = self._max - len(self._active)
                if free > 0:
                    await self._claim(free)
            except Exception as exc:
                # Database down or not migrated yet: the service stays up (readyz says why)
                # and the pump tries again.
                log.warning("runner cannot reach the queue (%s); retrying", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), PUMP_RETRY_S)
                continue
            await self._wake.wait()

    async def _recover(self) -> None:
        async with self._engine.begin() as conn:
            recovered = await store.requeue_interrupted(conn)
        if recovered:
            log.warning("re-queued %d run(s) left running by a stopped process", recovered)

    async def _claim(self, free: int) -> None:
        claimed: list[str] = []
        try:
            async with self._engine.begin() as conn:
                for execution_id in await store.queued_ids(conn, free):
                    if await store.set_status(
                        conn, execution_id, expected=(_E.QUEUED,), status=_E.RUNNING
                    ):
                        # Registered before the commit: once anyone can read `running`, a
                        # pause or cancel for the run finds its control here.
                        self._controls[execution_id] = RunControl()
                        claimed.append(execution_id)
        except BaseException:
            for execution_id in claimed:
                self._controls.pop(execution_id, None)
            raise
        for execution_id in claimed:
            control = self._controls[execution_id]
            task = asyncio.create_task(self._drive(execution_id, control), name=execution_id)
            self._active[execution_id] = _Active(task, control)

    async def _drive(self, execution_id: str, control: RunControl) -> None:
        try:
            await self._execute(execution_id, control)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("run %s crashed", execution_id)
            await self._record_crash(execution_id, exc)
        finally:
            self._active.pop(execution_id, None)
            self._controls.pop(execution_id, None)
            self._wake.set()

    async def _execute(self, execution_id: str, control: RunControl) -> None:
        async with self._engine.connect() as conn:
            row = await store.execution_row(conn, execution_id)
            prior_attempts = await store.node_attempts(conn, execution_id)
        if row is None:
            return
        if row.status is _E.PAUSING:
            control.pause()  # asked before this task could hear it
        _workflow, plan = await self._workflows.plan_for(row.workflow_id, row.workflow_version)
        request = RunRequest(
            execution_id=execution_id,
            plan=plan,
            inputs=row.inputs,
            config=RunConfig.model_validate(row.config),
            # A run that logged anything before continues from its checkpoints.
            resume=row.last_seq > 0,
            resume_reason=row.resume_reason or "resumed",
            last_seq=row.last_seq,
            prior_attempts=prior_attempts,
        )
        await self._scheduler.run(request, control)

    async def _record_crash(self, execution_id: str, exc: Exception) -> None:
        """End a run whose driver failed outside the engine (a store error, a bug) as failed.

        Goes through the journal like any event, so the log gets its terminal event and the
        row its status in one write. If even that fails the run stays `running` and the next
        start recovers it.
        """
        error = {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}"}
        try:
            async with self._engine.connect() as conn:
                row = await store.execution_row(conn, execution_id)
            if row is None:
                return
            event = Event(
                execution_id,
                row.last_seq + 1,
                EventType.WORKFLOW_FAILED,
                datetime.now(UTC),
                data={"error": error},
            )
            await self._journal.emit([event])
        except Exception:
            log.exception("could not record the failure of run %s", execution_id)
