"""The scheduler: runs a planned workflow to an end, a pause, or a wait for people.

It owns the run's lifecycle events (``workflow.*``), the run timeout, the final checkpoint and
the outcome; graph loops (``graph_loop``) do the node-level work. Resuming is replay: the
checkpoints' completed node records are reused without executing (and without new events),
failed and interrupted nodes run again.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.domain.events import EventType
from app.domain.node_types import CORE_NODE_TYPES, NodeTypes
from app.domain.run import Checkpoint, RunConfig, RunOutcome, fold_records
from app.domain.status import ExecutionStatus
from app.engine.compile.graph import Limits, PlanCache, default_plan_cache
from app.engine.compile.plan import Plan
from app.engine.ports import CheckpointStore, Clock, EventSink, RunObserver, WorkflowLoader
from app.engine.run import graph_loop, log_fields
from app.engine.run.clock import SystemClock
from app.engine.run.context import NodeExecutor
from app.engine.run.control import RunControl
from app.engine.run.observe import UNWATCHED
from app.engine.run.run_log import RunLog
from app.engine.run.runtime import RunRuntime
from app.engine.run.scope import Scope

_TERMINAL_EVENT = {
    ExecutionStatus.COMPLETED: EventType.WORKFLOW_COMPLETED,
    ExecutionStatus.FAILED: EventType.WORKFLOW_FAILED,
    ExecutionStatus.CANCELLED: EventType.WORKFLOW_CANCELLED,
    ExecutionStatus.TIMED_OUT: EventType.WORKFLOW_TIMED_OUT,
    ExecutionStatus.PAUSED: EventType.WORKFLOW_PAUSED,
    ExecutionStatus.WAITING: EventType.WORKFLOW_WAITING,
}


@dataclass(slots=True)
class RunRequest:
    """One call to run (or continue) an execution.

    ``resume`` continues from the execution's checkpoints; ``last_seq`` is the seq of the last
    event already logged for it; ``resume_values`` deliver answers to waiting nodes by key;
    ``prior_attempts`` counts attempts already started per node key (a node interrupted by a
    crash runs again as attempt + 1); ``elapsed_s`` is run time already spent, charged against
    ``config.timeout_s``. ``checkpoints``, when given, are the execution's checkpoints already
    read by the caller (a resume then reads nothing from the store).
    """

    execution_id: str
    plan: Plan
    inputs: Any = None
    config: RunConfig = field(default_factory=RunConfig)
    resume: bool = False
    resume_reason: str = "resumed"
    last_seq: int = 0
    resume_values: Mapping[str, Any] = field(default_factory=dict)
    prior_attempts: Mapping[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    checkpoints: list[Checkpoint] | None = None
    replica: str | None = None  # who drives this stretch of the run (in workflow.started/resumed)
    fence: int | None = None  # the lease generation it is driven under (see EventSink)


class Scheduler:
    """Runs workflows with the given executors and ports. One instance serves many runs."""

    def __init__(
        self,
        *,
        executors: Mapping[str, NodeExecutor],
        events: EventSink,
        checkpoints: CheckpointStore,
        loader: WorkflowLoader | None = None,
        clock: Clock | None = None,
        node_types: NodeTypes = CORE_NODE_TYPES,
        limits: Limits | None = None,
        plan_cache: PlanCache | None = None,
        seed: int | None = None,
        observer: RunObserver = UNWATCHED,
    ) -> None:
        self._executors = executors
        self._events = events
        self._checkpoints = checkpoints
        self._loader = loader
        self._clock = clock or SystemClock()
        self._node_types = node_types
        self._limits = limits or Limits()
        self._plans = plan_cache or default_plan_cache
        self._seed = seed
        self._observer = observer

    def plan(self, document: Mapping[str, Any]) -> Plan:
        """Validate and plan a document (cached by content hash); raises WorkflowInvalid."""
        return self._plans.get_or_plan(document, node_types=self._node_types, limits=self._limits)

    async def run(self, request: RunRequest, control: RunControl | None = None) -> RunOutcome:
        """Run to an end, a pause or a wait. Cancelling the calling task cancels the run."""
        with log_fields.bound(execution_id=request.execution_id):
            return await self._run(request, control or RunControl())

    async def _run(self, request: RunRequest, control: RunControl) -> RunOutcome:
        checkpoints = request.checkpoints
        if checkpoints is None:
            checkpoints = (
                await self._checkpoints.load_checkpoints(request.execution_id)
                if request.resume
                else []
            )
        log = RunLog(
            request.execution_id,
            sink=self._events,
            checkpoints=self._checkpoints,
            clock=self._clock,
            policy=request.config.checkpoint,
            last_seq=request.last_seq,
            last_checkpoint=max((c.number for c in checkpoints), default=0),
            fence=request.fence,
            observer=self._observer,
        )
        runtime = RunRuntime(
            execution_id=request.execution_id,
            config=request.config,
            log=log,
            control=control,
            executors=self._executors,
            clock=self._clock,
            loader=self._loader,
            restored=fold_records(checkpoints),
            resume_values=request.resume_values,
            prior_attempts=request.prior_attempts,
            rng=random.Random(self._seed),
            planner=functools.partial(
                self._plans.get_or_plan_async, node_types=self._node_types, limits=self._limits
            ),
            limits=self._limits,
            observer=self._observer,
        )
        driver = {} if request.replica is None else {"replica": request.replica}
        if request.resume:
            log.event(
                EventType.WORKFLOW_RESUMED,
                data={
                    "reason": request.resume_reason,
                    "checkpoint": log.checkpoint_number,
                    **driver,
                },
            )
        else:
            log.event(
                EventType.WORKFLOW_STARTED,
                data={
                    "total_nodes": len(request.plan.nodes),
                    "levels": len(request.plan.levels),
                    **driver,
                },
            )
        timer = self._arm_timeout(request, control)
        try:
            result = await graph_loop.GraphLoop(
                runtime, request.plan, Scope.root(request.inputs), "", 0
            ).run()
        finally:
            if timer is not None:
                timer.cancel()
        outcome = RunOutcome(
            status=result.status,
            outputs=result.output,
            # A limit crossed inside a container fails it with its own error: the run's error
            # names the limit.
            error=runtime.usage.exceeded or result.error,
            waiting_on=result.waiting_on,
            nodes=result.statuses,
        )
        # Whatever the policy left unsaved: a resume or retry must not redo finished nodes.
        # A pause, a wait or an early end always saves (even under "never").
        save = (
            result.status is not ExecutionStatus.COMPLETED or request.config.checkpoint != "never"
        )
        data = _terminal_data(outcome)
        if result.status is ExecutionStatus.PAUSED and control.pause_reason is not None:
            data["reason"] = control.pause_reason
        await log.finish(_TERMINAL_EVENT[result.status], data, checkpoint=save)
        return outcome

    def _arm_timeout(self, request: RunRequest, control: RunControl) -> asyncio.TimerHandle | None:
        if request.config.timeout_s is None:
            return None
        remaining = max(0.0, request.config.timeout_s - request.elapsed_s)
        return asyncio.get_running_loop().call_later(remaining, control.time_out)


def _terminal_data(outcome: RunOutcome) -> dict[str, Any]:
    if outcome.status is ExecutionStatus.COMPLETED:
        return {"outputs": outcome.outputs}
    if outcome.status is ExecutionStatus.WAITING:
        return {"waiting_on": outcome.waiting_on}
    if outcome.error is not None:
        return {"error": outcome.error}
    return {}
