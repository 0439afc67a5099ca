"""The async loop that drives one graph: dispatch ready nodes, collect results, propagate.

Dependency-driven: a node starts the moment its last incoming edge resolves (bounded by
``max_concurrency``); levels only label progress. Completions are delivered by task callbacks
into a queue, so each step costs O(1) regardless of how many nodes are in flight. Executors
marked ``inline`` (pure, never suspending) run without a task of their own when the node has no
retry or timeout, which keeps per-node overhead to a few microseconds.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from datetime import datetime
from typing import Any

from app.domain.events import EventType
from app.domain.run import NodeRecord
from app.domain.status import ExecutionStatus, NodeStatus
from app.engine.compile.plan import Plan, PlanNode
from app.engine.run import bounded, readiness
from app.engine.run.attempts import Failure, NodeAttempts
from app.engine.run.context import NodeContext
from app.engine.run.outcomes import (
    GraphInterrupted,
    GraphResult,
    NodeOutput,
    Suspend,
    error_payload,
)
from app.engine.run.progress import Progress
from app.engine.run.runtime import RunRuntime
from app.engine.run.scope import Scope
from app.errors import NodeError, OxifyError, RunLimitExceeded

Outcome = NodeOutput | Suspend | Failure | GraphInterrupted
_SKIPPED_RESULT: dict[str, Any] = {"output": None, "status": "skipped"}
_ENDED = frozenset({ExecutionStatus.FAILED, ExecutionStatus.CANCELLED, ExecutionStatus.TIMED_OUT})


class GraphLoop:
    """One execution of one graph (the workflow, a loop iteration, a try block...)."""

    def __init__(
        self, runtime: RunRuntime, plan: Plan, scope: Scope, prefix: str, depth: int
    ) -> None:
        self.rt = runtime
        self.plan = plan
        self.scope = scope
        self.prefix = prefix
        self.depth = depth
        self.state = readiness.initial_state(plan)
        self.ready: deque[str] = deque()
        self.running: dict[asyncio.Task[Outcome], tuple[str, float]] = {}
        self.done: deque[asyncio.Task[Outcome]] = deque()
        self.wake = asyncio.Event()
        self.failure: dict[str, Any] | None = None
        self.waiting: list[str] = []
        self.interrupted = False
        self.progress = Progress(runtime.log, plan, top=depth == 0)
        self.replayed: set[str] = set()  # resolved from checkpoints, not run again
        self.attempts = NodeAttempts(runtime)

    async def run(self) -> GraphResult:
        rt = self.rt
        rt.control.subscribe(self.wake.set)
        self.ready.extend(readiness.roots(self.state))
        try:
            while True:
                if not self._halted:
                    await self._dispatch()
                if rt.control.cancelling or self.failure is not None:
                    self._cancel_running()
                ending = not self.running and (not self.ready or self._halted)
                if not (ending and self.depth == 0):
                    # The run's own graph leaves its last checkpoint to the scheduler, which
                    # writes it with the run's ending: one commit, not two.
                    await rt.log.checkpoint()
                    await rt.log.flush()
                if ending:
                    break
                if not self.done:
                    self.wake.clear()
                    await self.wake.wait()
                while self.done:
                    self._collect(self.done.popleft())
        finally:
            rt.control.unsubscribe(self.wake.set)
            await self._reap()
        return await self._result()

    @property
    def _halted(self) -> bool:
        rt = self.rt
        return rt.control.stopping or self.failure is not None or rt.usage.exceeded is not None

    # -- dispatch -------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        limit = self.rt.config.max_concurrency
        log, attempts = self.rt.log, self.attempts
        nodes, ready, running, prefix = self.plan.nodes, self.ready, self.running, self.prefix
        while ready and len(running) < limit and not self._halted:
            node = nodes[ready.popleft()]
            if log.must_save(map(prefix.__add__, node.sources)):
                # A due checkpoint goes out before anything that depends on it starts (one being
                # written is waited for); nodes independent of the unsaved results share the
                # next one.
                await log.checkpoint()
                if self._halted:  # paused or cancelled while the checkpoint was written
                    self.ready.appendleft(node.id)
                    break
            key = prefix + node.id
            memo = self.rt.restored.get(key)
            if memo is not None and memo.status is NodeStatus.COMPLETED:
                self._replay(node, memo)
                continue
            if self.state.poisoned[node.id]:
                self._fail(node, key, Failure(NodeError("a dependency failed", retryable=False)))
                continue
            ctx = self._context(node, key, memo)
            started = time.monotonic()
            self._started(node, key, ctx.attempt)
            executor = attempts.inline_executor(node)
            if executor is not None:
                self._handle(node, key, await attempts.once(executor, ctx), started)
                continue
            task = asyncio.ensure_future(self._guarded(ctx))
            task.add_done_callback(self._on_done)
            self.running[task] = (node.id, started)

    def _context(self, node: PlanNode, key: str, memo: NodeRecord | None) -> NodeContext:
        prior = self.rt.prior_attempts.get(key, memo.attempt if memo is not None else 0)
        resume_value = self.rt.resume_values.get(key)
        return NodeContext(
            self.rt, node, key, self.scope, prior + 1, self.depth, self._nest, memo, resume_value
        )

    async def _nest(self, plan: Plan, scope: Scope, prefix: str) -> GraphResult:
        """Run a graph nested in one of this graph's nodes (``NodeContext.run_graph``)."""
        result = await GraphLoop(self.rt, plan, scope, prefix, self.depth + 1).run()
        if result.status in (ExecutionStatus.COMPLETED, ExecutionStatus.FAILED):
            return result
        raise GraphInterrupted(result.status, result.waiting_on)

    async def _guarded(self, ctx: NodeContext) -> Outcome:
        try:
            return await self.attempts.run(ctx)
        except GraphInterrupted as interrupted:
            return interrupted

    def _on_done(self, task: asyncio.Task[Outcome]) -> None:
        self.done.append(task)
        self.wake.set()

    def _collect(self, task: asyncio.Task[Outcome]) -> None:
        node_id, started = self.running.pop(task)
        node = self.plan.nodes[node_id]
        key = self.prefix + node_id
        if task.cancelled():
            self._cancelled(node, key)
            return
        self._handle(node, key, task.result(), started)

    # -- results --------------------------------------------------------------------------

    def _handle(self, node: PlanNode, key: str, outcome: Outcome, started: float) -> None:
        if isinstance(outcome, NodeOutput):
            self._complete(node, key, outcome, started)
        elif isinstance(outcome, Failure):
            self._fail(node, key, outcome, started)
        elif isinstance(outcome, Suspend):
            self._suspend(node, key, outcome)
        elif outcome.status is ExecutionStatus.WAITING:
            readiness.mark_waiting(self.state, node.id)
            self.waiting.extend(outcome.waiting_on)
        elif outcome.status is ExecutionStatus.CANCELLED:
            self._cancelled(node, key)
        else:
            self.interrupted = True

    def _complete(self, node: PlanNode, key: str, out: NodeOutput, started: float) -> None:
        rt = self.rt
        if out.set_vars:
            self.scope.variables.update(out.set_vars)
        self.scope.results[node.id] = {"output": out.output, **out.data}
        now = rt.clock.now()
        payload: dict[str, Any] = {
            "output": out.output,
            "duration_ms": round((time.monotonic() - started) * 1000, 3),
        }
        if out.branch is not None:
            payload["branch"] = out.branch
        if out.data:
            payload.update(out.data)
        attempt = self._attempt_of(key)
        payload["attempt"] = attempt
        usage = rt.usage.of(key)
        if usage is not None:  # calls, tokens, cost: what stores and dashboards add up
            payload["usage"] = usage
        rt.log.event(EventType.NODE_COMPLETED, node_id=key, level=node.level, data=payload, at=now)
        rt.log.record(
            NodeRecord(
                key=key,
                node_id=node.id,
                status=NodeStatus.COMPLETED,
                output=out.output,
                branch=out.branch,
                attempt=attempt,
                set_vars=out.set_vars,
                finished_at=now,
                data=out.data or None,
                usage=usage,
            )
        )
        self._resolve(node.id, NodeStatus.COMPLETED, out.branch, at=now)

    def _fail(
        self, node: PlanNode, key: str, failure: Failure, started: float | None = None
    ) -> None:
        rt = self.rt
        error = error_payload(failure.error, key)
        tolerated = self._tolerated(node, failure.error)
        attempt = failure.attempt or self._attempt_of(key)
        data: dict[str, Any] = {"error": error, "attempt": attempt, "tolerated": tolerated}
        if started is not None:
            data["duration_ms"] = round((time.monotonic() - started) * 1000, 3)
        usage = rt.usage.of(key)
        if usage is not None:
            data["usage"] = usage
        now = rt.clock.now()
        rt.log.event(EventType.NODE_FAILED, node_id=key, level=node.level, data=data, at=now)
        rt.log.record(
            NodeRecord(
                key=key,
                node_id=node.id,
                status=NodeStatus.FAILED,
                error=error,
                attempt=attempt,
                finished_at=now,
                steps=rt.steps.get(key),
                usage=usage,
            )
        )
        if tolerated:
            self.scope.results[node.id] = {"output": None, "error": error}
            self._resolve(node.id, NodeStatus.FAILED, None, at=now)
            return
        readiness.halt(self.state, node.id, NodeStatus.FAILED)
        self.progress.update(self.state.final_count, now)
        if self.failure is None:
            self.failure = error

    def _tolerated(self, node: PlanNode, error: NodeError) -> bool:
        if isinstance(error, RunLimitExceeded):
            return False
        options = node.options
        return options.continue_on_error or (
            not options.critical and self.rt.config.continue_on_error
        )

    def _suspend(self, node: PlanNode, key: str, suspend: Suspend) -> None:
        readiness.mark_waiting(self.state, node.id)
        self.waiting.append(key)
        data = {"reason": suspend.reason, **suspend.data}
        self.rt.log.event(EventType.NODE_WAITING, node_id=key, level=node.level, data=data)
        self.rt.log.record(
            NodeRecord(
                key=key,
                node_id=node.id,
                status=NodeStatus.WAITING,
                attempt=self._attempt_of(key),
                data=data,
                steps=self.rt.steps.get(key),
                usage=self.rt.usage.of(key),
            )
        )

    def _cancelled(self, node: PlanNode, key: str) -> None:
        readiness.halt(self.state, node.id, NodeStatus.CANCELLED)
        self.rt.log.event(EventType.NODE_CANCELLED, node_id=key, level=node.level)
        self.progress.update(self.state.final_count)

    def _replay(self, node: PlanNode, memo: NodeRecord) -> None:
        """A node completed before this run resumed: reuse its result, emit nothing."""
        self.replayed.add(node.id)
        self.progress.announced.add(node.level)  # announced before the checkpoint
        if memo.set_vars:
            self.scope.variables.update(memo.set_vars)
        self.scope.results[node.id] = {"output": memo.output, **(memo.data or {})}
        self._resolve(node.id, NodeStatus.COMPLETED, memo.branch, replayed=True)

    def _resolve(
        self,
        node_id: str,
        status: NodeStatus,
        branch: str | None,
        *,
        replayed: bool = False,
        at: datetime | None = None,
    ) -> None:
        """Propagate a node's end; the events it causes carry its instant ``at`` (else now)."""
        transition = readiness.resolve(
            self.state, node_id, status, branch=branch, strategy=self.rt.config.dependency_strategy
        )
        self.ready.extend(transition.ready)
        self.ready.extend(transition.doomed)
        log = self.rt.log
        for skipped in transition.skipped:
            node = self.plan.nodes[skipped]
            # Joins after a branch read the untaken side as null instead of failing.
            self.scope.results[skipped] = _SKIPPED_RESULT
            if all(source in self.replayed for source in node.sources):
                # Decided by results from before the resume: it was logged back then.
                self.replayed.add(skipped)
                self.progress.announced.add(node.level)
                continue
            self.progress.level_started(node.level, at)
            log.event(
                EventType.NODE_SKIPPED,
                node_id=self.prefix + skipped,
                level=node.level,
                data={"reason": "no live incoming edge"},
                at=at,
            )
        for level in transition.levels_completed:
            self.progress.level_completed(level, self.replayed, at)
        if not replayed:
            self.progress.update(self.state.final_count, at)

    def _started(self, node: PlanNode, key: str, attempt: int) -> None:
        readiness.mark_started(self.state, node.id)
        now = self.rt.clock.now()  # one instant for the node's start and its level's
        self.progress.level_started(node.level, now)
        self.rt.log.event(
            EventType.NODE_STARTED,
            node_id=key,
            level=node.level,
            data={"type": node.type, "attempt": attempt},
            at=now,
        )

    def _attempt_of(self, key: str) -> int:
        return self.attempts.last_attempt.get(key, 1)

    # -- ending ---------------------------------------------------------------------------

    def _cancel_running(self) -> None:
        for task in self.running:
            if not task.cancelling():
                task.cancel()

    async def _reap(self) -> None:
        """Cancel and await whatever is still running (we were cancelled from outside)."""
        if not self.running:
            return
        self._cancel_running()
        await asyncio.wait(list(self.running))
        while self.done:
            self._collect(self.done.popleft())

    async def _result(self) -> GraphResult:
        statuses = self.state.status
        control = self.rt.control
        if self.failure is None and self.rt.usage.exceeded is not None:
            self.failure = self.rt.usage.exceeded  # a limit crossed in another graph of the run
        if self.failure is not None:
            status = ExecutionStatus.FAILED
        elif self.state.is_finished and not (
            control.cancelling and NodeStatus.CANCELLED in statuses.values()
        ):
            status = ExecutionStatus.COMPLETED
        elif control.cancelling:
            status = (
                ExecutionStatus.TIMED_OUT
                if control.state == "timeout"
                else ExecutionStatus.CANCELLED
            )
        elif control.stopping or self.interrupted:
            status = ExecutionStatus.PAUSED
        else:
            status = ExecutionStatus.WAITING
        output = None
        if status is ExecutionStatus.COMPLETED:
            try:
                output = await self._output()
            except OxifyError as exc:
                status = ExecutionStatus.FAILED
                self.failure = {
                    "code": exc.code,
                    "message": f"the graph's outputs could not be rendered: {exc.message}",
                    "node_id": None,
                    "pointer": f"{self.plan.pointer}/outputs",
                }
        if status in _ENDED:
            # Nothing more will run in this graph: what never started ends as cancelled.
            readiness.cancel_unfinished(self.state)
        return GraphResult(
            status=status,
            output=output,
            error=self.failure,
            statuses=dict(statuses),
            waiting_on=list(self.waiting),
        )

    async def _output(self) -> Any:
        """Its ``outputs`` mapping (bounded like a node's output), else its end node's output,
        else the last node's."""
        if self.plan.outputs is not None:
            output = await bounded.run(self.plan.outputs.render, self.scope, self.rt.limits)
            await bounded.check_value(output, "the outputs mapping", self.rt.limits)
            return output
        results, statuses = self.scope.results, self.state.status
        for candidates in (self.plan.end_nodes, self.plan.order):
            for node_id in reversed(candidates):
                if statuses[node_id] is NodeStatus.COMPLETED:
                    return results[node_id]["output"]
        return None
