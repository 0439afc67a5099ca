"""Execution use cases: start (idempotent), read, wait, pause, resume, cancel, retry, events.

Status changes made here are conditional updates (``WHERE status IN …``) so they cannot race
the runner; changes the engine makes arrive through its events (the journal derives the row's
status from them in the same transaction).
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opentelemetry.trace import Tracer
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth import context
from app.domain import views as models
from app.domain.events import Event, EventType
from app.domain.run import RunConfig
from app.domain.status import ExecutionStatus, Move
from app.engine.compile.inputs import apply_defaults, validate_inputs
from app.engine.run import bounded
from app.engine.run.control import RunControl
from app.errors import (
    ErrorDetail,
    ExecutionNotFound,
    IdempotencyConflict,
    InputsInvalid,
    InvalidState,
    QueueFull,
    RunConfigInvalid,
    WorkflowArchived,
)
from app.events.bus import EventBus
from app.events.notify import Channel, Notifier
from app.observability import trace_context
from app.services import audit, identity, profiles
from app.services.admission import Admission
from app.services.audit import AuditAction
from app.services.limits import LimitService
from app.services.runner import Runner
from app.services.workflows import Runnable, WorkflowService
from app.store import db, quotas, submissions
from app.store import executions as store
from app.store.journal import SqlJournal

_E = ExecutionStatus
MAX_WAIT_S = 60.0  # seconds; the contract's cap for GET /wait
HEAD_TRIES = 3  # a submission whose workflow changed meanwhile reads its head again this often
CANCEL_TRIES = 5  # a cancel racing a run that moves between idle and driven tries this often
_SETTLED = frozenset({_E.COMPLETED, _E.FAILED, _E.TIMED_OUT, _E.CANCELLED, _E.PAUSED, _E.WAITING})
_SETTLING_EVENTS = frozenset(
    {
        EventType.WORKFLOW_COMPLETED,
        EventType.WORKFLOW_FAILED,
        EventType.WORKFLOW_CANCELLED,
        EventType.WORKFLOW_TIMED_OUT,
        EventType.WORKFLOW_PAUSED,
        EventType.WORKFLOW_WAITING,
    }
)


@dataclass(frozen=True, slots=True)
class _Request:
    """A start request as checked so far (its inputs are checked against the version)."""

    inputs: Any
    config: RunConfig
    idempotency_key: str | None
    request_hash: str
    started_by: str | None


class ExecutionService:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        workflows: WorkflowService,
        runner: Runner,
        journal: SqlJournal,
        bus: EventBus,
        notifier: Notifier,
        max_queued: int = 10_000,
        max_input_bytes: int,
        tracer: Tracer | None = None,
        trace_url_template: str | None = None,
        limits: LimitService | None = None,
    ) -> None:
        self._engine = engine
        self._limits = limits  # None: no quotas (the CLI's one-off runs)
        self._tracer = tracer  # None: tracing is off
        self._trace_url_template = trace_url_template
        self._read = db.autocommit(engine)  # reads: no BEGIN/ROLLBACK round trips
        self._workflows = workflows
        self._runner = runner
        self._journal = journal
        self._bus = bus
        self._notifier = notifier
        self._admission = Admission(max_queued)
        self._max_input_bytes = max_input_bytes

    # -- start ----------------------------------------------------------------------------

    async def start(
        self,
        workflow_id: str,
        *,
        inputs: Any,
        config: dict[str, Any] | None,
        version: int | None = None,
        idempotency_key: str | None = None,
        started_by: str | None = None,
        traceparent: str | None = None,
    ) -> tuple[models.Execution, bool]:
        """Queue a run; returns it and whether it was created (False: an idempotent replay).
        The run's trace continues the current span, else the client's ``traceparent``."""
        run_config = _parse_config(config or {})
        # The key is checked first, against the request as sent: a replay answers with the
        # first run even if the workflow changed or was archived since.
        request_hash = _hash(workflow_id, version, inputs, config or {})
        if idempotency_key is not None:
            replay = await self._replay(workflow_id, idempotency_key, request_hash)
            if replay is not None:
                return replay, False
        runnable = await self._workflows.runnable(workflow_id, version)
        if runnable.archived:
            raise WorkflowArchived(f"workflow {workflow_id!r} is archived")
        started_by = identity.starter(started_by)
        await bounded.check_inputs(inputs, self._max_input_bytes)
        await self._admit()
        request = _Request(inputs, run_config, idempotency_key, request_hash, started_by)
        for _ in range(HEAD_TRIES):
            try:
                return await self._submit(workflow_id, runnable, request, traceparent)
            except submissions.HeadChanged:
                # The workflow changed on another replica since this one read its head.
                runnable = await self._workflows.runnable(workflow_id, version, fresh=True)
                if runnable.archived:
                    raise WorkflowArchived(f"workflow {workflow_id!r} is archived") from None
        raise InvalidState(f"workflow {workflow_id!r} kept changing while the run was submitted")

    async def _submit(
        self,
        workflow_id: str,
        runnable: Runnable,
        request: _Request,
        traceparent: str | None,
    ) -> tuple[models.Execution, bool]:
        """Write the run of ``runnable`` (its inputs checked against that version)."""
        plan = runnable.plan
        inputs = apply_defaults(plan.input_schema, {} if request.inputs is None else request.inputs)
        problems = validate_inputs(plan.input_schema, inputs)
        if problems:
            raise InputsInvalid([_prefixed("/inputs", p) for p in problems])
        execution_id = str(uuid.uuid4())
        now = datetime.now(UTC)
        config_json = request.config.model_dump(mode="json")
        trace = trace_context.for_new_run(traceparent, self._tracer)
        principal = context.principal()
        daily, concurrent = (
            self._limits.run_limits(principal, runnable.project) if self._limits else ([], [])
        )
        key = request.idempotency_key
        new = submissions.NewRun(
            id=execution_id,
            project=runnable.project,
            workflow_id=workflow_id,
            workflow_version=runnable.version,
            inputs=inputs,
            config=config_json,
            created_at=now,
            started_by=request.started_by,
            trace_context=trace,
            key_id=principal.key_id,
            runs_per_day=daily,
            concurrent=concurrent,
            idempotency=None if key is None else (key, request.request_hash),
            audit=audit.entry(
                AuditAction.RUN_START,
                target=execution_id,
                project=runnable.project,
                detail={"workflow_id": workflow_id, "version": runnable.version},
            ),
            workflow_head=runnable.head,
        )
        try:
            async with db.one_statement(self._engine, self._read) as conn:
                await submissions.submit(conn, new)
        except submissions.QuotaReached as reached:
            raise LimitService.exceeded(reached, now) from None
        except IntegrityError:
            # A concurrent request with the same key won the race: answer with its run.
            if key is None:
                raise
            replay = await self._replay(workflow_id, key, request.request_hash)
            if replay is None:
                raise
            return replay, False
        self._queued(execution_id)
        # What was just stored (a runner may already be starting it: its events will say).
        created = models.Execution(
            id=execution_id,
            workflow_id=workflow_id,
            workflow_version=runnable.version,
            status=_E.QUEUED,
            progress=models.Progress(),
            created_at=now,
            last_seq=0,
            inputs=inputs,
            config=config_json,
            trace_id=trace_context.trace_id(trace),
            project=runnable.project,
        )
        return self._linked(created), True

    async def _admit(self) -> None:
        """Refuse a new run while too many wait to start. The count is re-read when it is
        older than ADMISSION_TTL_S or says "full" (so admitting costs next to nothing, and a
        refusal is always checked against the database)."""
        admission = self._admission
        if admission.stale() or admission.full():
            async with self._read.connect() as conn:
                admission.update(await store.queued_count(conn))
        if admission.full():
            raise QueueFull(
                f"{admission.queued} runs are waiting to start (limit {admission.limit}); "
                "try again later",
                retry_after_s=admission.retry_after_s,
            )
        admission.queued += 1

    def _queued(self, execution_id: str) -> None:
        """A run became claimable: this replica's runner and the others look at the queue."""
        self._runner.notify()
        self._notifier.send(Channel.QUEUE, (execution_id,))

    async def _replay(
        self, workflow_id: str, key: str, request_hash: str
    ) -> models.Execution | None:
        async with self._read.connect() as conn:
            found = await store.find_idempotency(conn, workflow_id, key)
        if found is None:
            return None
        stored_hash, execution_id = found
        if stored_hash != request_hash:
            raise IdempotencyConflict(
                f"Idempotency-Key {key!r} was used for a different request to this workflow"
            )
        return await self.get(execution_id)

    # -- reading --------------------------------------------------------------------------

    async def get(self, execution_id: str) -> models.Execution:
        async with self._read.connect() as conn:
            execution = await store.get_execution(conn, execution_id, project=context.project())
        if execution is None:
            raise ExecutionNotFound(f"no execution {execution_id!r}")
        return self._linked(execution)

    def _linked(self, execution: models.Execution) -> models.Execution:
        """With the link to its trace, when a trace viewer's URL template is set."""
        template = self._trace_url_template
        if template is None or execution.trace_id is None:
            return execution
        execution.trace_url = template.replace("{trace_id}", execution.trace_id)
        return execution

    async def list(
        self,
        *,
        workflow_id: str | None,
        statuses: Collection[ExecutionStatus] | None,
        limit: int,
        cursor: str | None,
    ) -> models.Page[models.ExecutionSummary]:
        async with self._read.connect() as conn:
            return await store.list_executions(
                conn,
                workflow_id=workflow_id,
                statuses=statuses,
                limit=limit,
                cursor=cursor,
                project=context.project(),
            )

    async def wait(self, execution_id: str, timeout_s: float) -> models.Execution:
        """The execution once it is terminal, paused or waiting — or after ``timeout_s``.

        The waiter watches the bus (subscribed before it reads, so no event is missed) and
        reads the run's row at the start and the run with its nodes after an event that may
        settle it (or a batch it could not keep up with): two statements for a run that
        settles once. Waiting itself reads nothing, however many wait."""
        with self._bus.watch(execution_id) as watch:
            execution, full = await self._status(execution_id), False
            try:
                async with asyncio.timeout(min(timeout_s, MAX_WAIT_S)):
                    # A settling event may not settle the run: a pause for a hand-back queues it.
                    while execution.status not in _SETTLED:
                        watch.seen(execution.last_seq)
                        await watch.until(_SETTLING_EVENTS)
                        execution, full = await self.get(execution_id), True
            except TimeoutError:
                full = False
        return execution if full else await self.get(execution_id)

    async def _status(self, execution_id: str) -> models.Execution:
        """The run's row without its nodes (one statement)."""
        async with self._read.connect() as conn:
            execution = await store.get_execution(
                conn, execution_id, with_nodes=False, project=context.project()
            )
        if execution is None:
            raise ExecutionNotFound(f"no execution {execution_id!r}")
        return execution

    async def checkpoints(self, execution_id: str) -> builtins.list[models.CheckpointInfo]:
        await self.get(execution_id)
        async with self._read.connect() as conn:
            return await store.list_checkpoints(conn, execution_id)

    async def profile(self, execution_id: str) -> models.RunProfile:
        return await profiles.run_profile(self._read, self._workflows, execution_id)

    async def events(
        self, execution_id: str, *, after: int, limit: int
    ) -> models.Page[models.EventOut]:
        await self.get(execution_id)
        page = await self._bus.read(execution_id, after, limit + 1)  # one more: is there a next?
        items = [models.EventOut.model_validate(e.to_dict()) for e in page[:limit]]
        cursor = str(items[-1].seq) if len(page) > limit else None
        return models.Page[models.EventOut](items=items, next_cursor=cursor)

    async def stream(
        self, execution_id: str, after: int
    ) -> AsyncIterator[builtins.list[Event]] | None:
        """Replay-then-live events after ``after``, in stored batches; None when the run ended
        at or before it (or retention deleted its log)."""
        execution = await self.get(execution_id)
        if execution.purged_at is not None:
            return None
        if execution.status.is_terminal and after >= execution.last_seq:
            return None
        # A position past the log (another run's id, a stale client) means "from now on".
        return self._bus.stream_batches(execution_id, min(after, execution.last_seq))

    # -- control --------------------------------------------------------------------------

    async def pause(self, execution_id: str) -> models.Execution:
        """Running: nothing new starts, running nodes finish, then a checkpoint. Queued or
        waiting: held as paused at once."""
        # Another project's run is not found (the hold below is by id); the audit names its project.
        project = (await self.get(execution_id)).project
        # Two tries: a replica may claim a queued run between the two conditional updates.
        for _ in range(2):
            if await self._move(execution_id, Move.REQUEST_PAUSE, AuditAction.RUN_PAUSE, project):
                self._tell_owner(execution_id, RunControl.pause)
                break
            if await self._append(
                execution_id, Move.HOLD, EventType.WORKFLOW_PAUSED, AuditAction.RUN_PAUSE, project
            ):
                break
        else:
            await self._refuse(execution_id, "pause", allowed_now=(_E.PAUSING, _E.PAUSED))
        return await self.get(execution_id)

    async def resume(self, execution_id: str) -> models.Execution:
        project = (await self.get(execution_id)).project
        if await self._move(execution_id, Move.RESUME, AuditAction.RUN_RESUME, project):
            self._queued(execution_id)
        else:
            await self._refuse(execution_id, "resume", allowed_now=(_E.QUEUED, _E.RUNNING))
        return await self.get(execution_id)

    async def cancel(self, execution_id: str, *, wait: bool) -> models.Execution:
        """Running nodes really stop (on whichever replica drives the run); with ``wait`` the
        answer comes once they have (or after MAX_WAIT_S)."""
        project = (await self.get(execution_id)).project  # another project's: not found
        # An idle run is cancelled at once; a driven one through its driver. The run may move
        # between the two (a driver sets it down, a replica claims it): then try again. A
        # cancel its driver had not acted on when it set the run down is not lost either: the
        # run is queued instead, and cancelled by the replica that claims it.
        for _ in range(CANCEL_TRIES):
            if await self._append(
                execution_id,
                Move.WITHDRAW,
                EventType.WORKFLOW_CANCELLED,
                AuditAction.RUN_CANCEL,
                project,
            ):
                return await self.get(execution_id)
            async with self._engine.begin() as conn:
                requested = await store.request_cancel(conn, execution_id, project=project)
                if requested:
                    await audit.record(
                        conn, action=AuditAction.RUN_CANCEL, target=execution_id, project=project
                    )
            if requested:
                self._tell_owner(execution_id, RunControl.cancel)
                if wait:
                    await self._until_stopped(execution_id)
                return await self.get(execution_id)
            if (await self.get(execution_id)).status.is_terminal:
                break
        await self._refuse(execution_id, "cancel", allowed_now=(_E.CANCELLED,))
        return await self.get(execution_id)

    async def retry(self, execution_id: str) -> models.Execution:
        """Run a failed, timed-out or cancelled run again from where it stopped."""
        execution = await self.get(execution_id)
        if execution.purged_at is not None:
            raise InvalidState("cannot retry a run whose history retention deleted")
        project = execution.project
        async with self._engine.begin() as conn:
            retried = await store.move(
                conn, execution_id, Move.RETRY, project=project, cancel_requested=False
            )
            if retried is not None:
                await quotas.reactivate(conn, execution_id)  # it counts as unfinished again
                await audit.record(
                    conn, action=AuditAction.RUN_RETRY, target=execution_id, project=project
                )
        if retried is not None:
            self._queued(execution_id)
        else:
            await self._refuse(execution_id, "retry")
        return await self.get(execution_id)

    async def delete(self, execution_id: str) -> None:
        """Delete a run and everything stored about it; a run a replica drives must be
        cancelled (or paused) first."""
        project = (await self.get(execution_id)).project
        async with self._engine.begin() as conn:
            deleted = await store.delete_execution(conn, execution_id, project=project)
            if deleted:
                await audit.record(
                    conn, action=AuditAction.RUN_DELETE, target=execution_id, project=project
                )
        if not deleted:
            raise InvalidState(
                "cannot delete a run that is running or pausing: cancel or pause it first"
            )

    def _tell_owner(self, execution_id: str, action: Callable[[RunControl], None]) -> None:
        """Apply a stored pause or cancel now if this replica drives the run, else nudge the
        replica that does (its heartbeat reads the row anyway, should the nudge be lost)."""
        control = self._runner.control(execution_id)
        if control is not None:
            action(control)
        else:
            self._notifier.send(Channel.CONTROL, (execution_id,))

    async def _until_stopped(self, execution_id: str) -> None:
        await self._runner.wait_stopped(execution_id)  # driven here: until its task ends
        # Driven elsewhere (its events tell), or set down to be cancelled by the next claim.
        await self.wait(execution_id, MAX_WAIT_S)

    async def _move(
        self, execution_id: str, move: Move, action: AuditAction, project: str, **fields: Any
    ) -> bool:
        """A client's status change of a run of ``project``, audited in its transaction when
        it applied."""
        async with self._engine.begin() as conn:
            moved = (
                await store.move(conn, execution_id, move, project=project, **fields) is not None
            )
            if moved:
                await audit.record(conn, action=action, target=execution_id, project=project)
            return moved

    async def _append(
        self,
        execution_id: str,
        move: Move,
        event_type: EventType,
        action: AuditAction | None = None,
        project: str | None = None,
    ) -> bool:
        """Change a run that no process drives by ``move`` and log ``event_type``, in one
        statement: the run's next seq is the database's to give (see the journal). A client's
        ``action`` is audited in that statement."""
        data = _APPENDED_DATA.get(move, {})
        entry = (
            None if action is None else audit.entry(action, target=execution_id, project=project)
        )
        appended = await self._journal.append(execution_id, move, event_type, data, audit=entry)
        return appended is not None

    async def expire_waiting(self) -> int:
        """Time out waiting runs whose deadline passed (``timeout_includes_waiting``): no one
        drives them, so no timer of theirs is running. Returns how many."""
        async with self._read.connect() as conn:
            due = await store.overdue_waiting(conn, datetime.now(UTC))
        expired = 0
        for execution_id in due:
            expired += await self._append(execution_id, Move.EXPIRE, EventType.WORKFLOW_TIMED_OUT)
        return expired

    async def _refuse(
        self,
        execution_id: str,
        action: str,
        allowed_now: Collection[ExecutionStatus] = (),
    ) -> None:
        execution = await self.get(execution_id)
        if execution.status in allowed_now:
            return  # asked twice: already on its way, nothing to do
        raise InvalidState(f"cannot {action} an execution that is {execution.status.value}")


_APPENDED_DATA: dict[Move, dict[str, Any]] = {
    Move.EXPIRE: {
        "error": {"code": "run_timed_out", "message": "the run's timeout_s passed while it waited"}
    },
}


def _parse_config(config: dict[str, Any]) -> RunConfig:
    try:
        return RunConfig.model_validate(config)
    except ValidationError as exc:
        raise RunConfigInvalid(
            [
                ErrorDetail(
                    pointer="/config" + "".join(f"/{part}" for part in error["loc"]),
                    message=error["msg"],
                    code=error["type"],
                )
                for error in exc.errors()
            ]
        ) from None


def _prefixed(prefix: str, detail: ErrorDetail) -> ErrorDetail:
    return ErrorDetail(prefix + detail.pointer.rstrip("/"), detail.message, detail.code)


def _hash(workflow_id: str, version: int | None, inputs: Any, config: Any) -> str:
    canonical = json.dumps(
        {"workflow_id": workflow_id, "version": version, "inputs": inputs, "config": config},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
