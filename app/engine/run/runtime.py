"""Per-run machinery shared by every graph of a run: control signals, log, counters."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from app.domain.node_types import NodeTypes
from app.domain.run import NodeRecord, RunConfig
from app.domain.status import ExecutionStatus, NodeStatus
from app.engine.compile.builder import Limits
from app.engine.compile.plan import Plan
from app.engine.ports import Clock, NodeExecutor, WorkflowLoader
from app.engine.run.run_log import RunLog
from app.engine.run.scope import Scope
from app.errors import RunLimitExceeded

ControlState = Literal["run", "pause", "cancel", "timeout"]


class RunControl:
    """Pause and cancel requests for a run, delivered to every graph loop of it.

    Cancel wins over pause; a timeout is a cancel that ends the run as ``timed_out``.
    """

    def __init__(self) -> None:
        self.state: ControlState = "run"
        self.pause_reason: str | None = None  # why the driver paused (``shutdown``), if it did
        self._listeners: set[Callable[[], None]] = set()

    @property
    def stopping(self) -> bool:
        return self.state != "run"

    @property
    def cancelling(self) -> bool:
        return self.state in ("cancel", "timeout")

    def pause(self, reason: str | None = None) -> None:
        """Start nothing new; running nodes finish; the run ends as ``paused``.

        ``reason`` is logged with ``workflow.paused``: a pause the run's own replica asks for
        (``shutdown``: it hands the run back to the queue) rather than a client.
        """
        if self.state == "run":
            self.pause_reason = reason
            self._set("pause")

    def cancel(self) -> None:
        """Cancel running nodes now; the run ends as ``cancelled``."""
        if not self.cancelling:
            self._set("cancel")

    def time_out(self) -> None:
        """Like cancel, ending as ``timed_out``."""
        if not self.cancelling:
            self._set("timeout")

    def subscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.add(listener)

    def unsubscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.discard(listener)

    def _set(self, state: ControlState) -> None:
        self.state = state
        for listener in list(self._listeners):
            listener()


@dataclass(slots=True)
class GraphResult:
    """How a nested graph ended: ``completed`` with ``output``, or ``failed`` with ``error``."""

    status: ExecutionStatus
    output: Any = None
    error: dict[str, Any] | None = None
    statuses: dict[str, NodeStatus] = field(default_factory=dict)
    waiting_on: list[str] = field(default_factory=list)


class GraphInterrupted(BaseException):
    """A nested graph stopped before finishing (paused, waiting or cancelled).

    A BaseException so that executors catching ``Exception`` cannot swallow it: the container
    node is then neither completed nor failed, and runs again (its finished body nodes are
    memoized) when the run continues.
    """

    def __init__(self, status: ExecutionStatus, waiting_on: list[str]) -> None:
        super().__init__(status.value)
        self.status = status
        self.waiting_on = waiting_on


class RunRuntime:
    """Everything graphs of one run share. Only the scheduler's graph loops mutate it."""

    def __init__(
        self,
        *,
        execution_id: str,
        config: RunConfig,
        log: RunLog,
        control: RunControl,
        executors: Mapping[str, NodeExecutor],
        clock: Clock,
        node_types: NodeTypes,
        loader: WorkflowLoader | None,
        restored: dict[str, NodeRecord],
        resume_values: Mapping[str, Any],
        prior_attempts: Mapping[str, int],
        rng: random.Random,
        graph_runner: Callable[..., Any],
        planner: Callable[[Mapping[str, Any]], Awaitable[Plan]],
        limits: Limits,
    ) -> None:
        self.execution_id = execution_id
        self.config = config
        self.log = log
        self.control = control
        self.executors = executors
        self.clock = clock
        self.node_types = node_types
        self.loader = loader
        self.restored = restored
        self.resume_values = resume_values
        self.prior_attempts = prior_attempts
        self.rng = rng
        self.node_executions = 0
        self._graph_runner = graph_runner
        self.plan_document = planner
        self.limits = limits  # node outputs and expression evaluations are bounded by these

    def count_execution(self) -> None:
        """Count one node attempt against ``limits.max_nodes``."""
        self.node_executions += 1
        cap = self.config.limits.max_nodes
        if cap is not None and self.node_executions > cap:
            raise RunLimitExceeded(f"the run exceeded limits.max_nodes ({cap} node executions)")

    async def run_graph(self, plan: Plan, scope: Scope, key: str, *, depth: int) -> GraphResult:
        """Run a nested graph; raises :class:`GraphInterrupted` unless it completed or failed."""
        result: GraphResult = await self._graph_runner(self, plan, scope, key, depth)
        if result.status in (ExecutionStatus.COMPLETED, ExecutionStatus.FAILED):
            return result
        raise GraphInterrupted(result.status, result.waiting_on)
