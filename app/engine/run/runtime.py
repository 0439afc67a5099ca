"""Per-run machinery shared by every graph of a run: what nodes see (the run handle) plus what
only the graph loops use (executors, the records to replay, answers to deliver, randomness)."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from app.domain.run import NodeRecord, RunConfig
from app.engine.compile.builder import Limits
from app.engine.compile.plan import Plan
from app.engine.ports import Clock, RunObserver, WorkflowLoader
from app.engine.run.context import NodeExecutor, RunHandle
from app.engine.run.control import RunControl
from app.engine.run.run_log import RunLog
from app.engine.run.usage import RunUsage


class RunRuntime(RunHandle):
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
        loader: WorkflowLoader | None,
        restored: dict[str, NodeRecord],
        resume_values: Mapping[str, Any],
        prior_attempts: Mapping[str, int],
        rng: random.Random,
        planner: Callable[[Mapping[str, Any]], Awaitable[Plan]],
        limits: Limits,
        observer: RunObserver,
    ) -> None:
        super().__init__(
            execution_id=execution_id,
            log=log,
            control=control,
            clock=clock,
            limits=limits,
            usage=RunUsage(config.limits, restored.values()),
            steps={key: dict(r.steps) for key, r in restored.items() if r.steps},
            loader=loader,
            planner=planner,
        )
        self.config = config
        self.executors = executors
        self.restored = restored  # node records of earlier stretches: completed ones replay
        self.resume_values = resume_values
        self.prior_attempts = prior_attempts
        self.rng = rng
        self.observer = observer
