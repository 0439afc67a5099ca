"""Running one node: attempts, retries with backoff, per-node timeout, error shaping."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from app.domain.events import EventType
from app.engine.compile.plan import PlanNode
from app.engine.ports import NodeWatch
from app.engine.run import bounded, log_fields, payload, retry
from app.engine.run.context import NodeContext, NodeExecutor
from app.engine.run.outcomes import NodeOutput, Suspend, as_node_error, error_payload
from app.engine.run.runtime import RunRuntime
from app.errors import NodeError, NodeTimeout


@dataclass(slots=True)
class Failure:
    """A node's last attempt failed; ``attempt`` is the number of that attempt."""

    error: NodeError
    attempt: int = 0


class NodeAttempts:
    """Executes a node with its retry policy and timeout; remembers the attempt numbers."""

    __slots__ = ("last_attempt", "rt")

    def __init__(self, runtime: RunRuntime) -> None:
        self.rt = runtime
        self.last_attempt: dict[str, int] = {}

    def inline_executor(self, node: PlanNode) -> NodeExecutor | None:
        """The node's executor if the node may run without a task of its own (an inline
        executor, no retry, no timeout): one :meth:`attempt` is all it needs."""
        executor = self.rt.executors[node.type]
        options = node.options
        if not getattr(executor, "inline", False) or options.timeout_s is not None:
            return None
        if options.retry is not None and options.retry.max_retries:
            return None
        return executor

    async def run(self, ctx: NodeContext) -> NodeOutput | Suspend | Failure:
        """Attempts until success, suspension, a non-retryable error or retries run out."""
        watch = self.rt.observer.node(ctx.key, ctx.node.type)
        outcome: NodeOutput | Suspend | Failure | None = None
        try:
            outcome = await self._retrying(ctx, watch)
            return outcome
        finally:
            watch.end(_outcome_name(outcome), _error_code(outcome))

    async def once(
        self, executor: NodeExecutor, ctx: NodeContext
    ) -> NodeOutput | Suspend | Failure:
        """The node's only attempt (see :meth:`inline_executor`)."""
        watch = self.rt.observer.node(ctx.key, ctx.node.type)
        outcome: NodeOutput | Suspend | Failure | None = None
        try:
            outcome = await self.attempt(executor, ctx, watch)
            return outcome
        finally:
            watch.end(_outcome_name(outcome), _error_code(outcome))

    async def _retrying(self, ctx: NodeContext, watch: NodeWatch) -> NodeOutput | Suspend | Failure:
        node = ctx.node
        policy = node.options.retry
        executor = self.rt.executors[node.type]
        retries = 0
        while True:
            outcome = await self.attempt(executor, ctx, watch)
            if not isinstance(outcome, Failure):
                return outcome
            error = outcome.error
            if not error.retryable or policy is None or retries >= policy.max_retries:
                return outcome
            retries += 1
            delay = retry.backoff_delay(policy, retries, self.rt.rng.random, error.retry_after_s)
            watch.retry(ctx.attempt, delay, error.code)
            self.rt.log.event(
                EventType.NODE_RETRY,
                node_id=ctx.key,
                level=node.level,
                data={
                    "attempt": ctx.attempt,
                    "next_attempt": ctx.attempt + 1,
                    "retry": retries,
                    "delay_ms": round(delay * 1000, 3),
                    "error": error_payload(error, ctx.key),
                },
            )
            await self.rt.log.flush()
            await self.rt.clock.sleep(delay)
            ctx.attempt += 1

    async def attempt(
        self, executor: NodeExecutor, ctx: NodeContext, node_watch: NodeWatch
    ) -> NodeOutput | Suspend | Failure:
        """One attempt of the node, within its timeout; an error comes back as a Failure."""
        self.last_attempt[ctx.key] = ctx.attempt
        fields = log_fields.bind(node_id=ctx.key, attempt=ctx.attempt)
        watch = node_watch.attempt(ctx.attempt)
        outcome: NodeOutput | Suspend | Failure | None = None
        try:
            self.rt.usage.spend(ctx.key, nodes=1)
            timeout_s = ctx.node.options.timeout_s
            if timeout_s is None:
                outcome = await executor.execute(ctx)
            else:
                outcome = await self._timed(executor, ctx, timeout_s)
            if isinstance(outcome, NodeOutput) and not _plainly_storable(outcome):
                for what, value in _leaving(outcome):
                    await bounded.check_value(value, what, self.rt.limits)
            return outcome
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            outcome = Failure(as_node_error(exc), ctx.attempt)
            return outcome
        finally:
            ctx.end_attempt()
            watch.end(_outcome_name(outcome), _error_code(outcome))
            log_fields.unbind(fields)

    async def _timed(
        self, executor: NodeExecutor, ctx: NodeContext, timeout_s: float
    ) -> NodeOutput | Suspend:
        try:
            async with asyncio.timeout(timeout_s) as scope:
                return await executor.execute(ctx)
        except TimeoutError:
            if scope.expired():
                raise NodeTimeout(f"node timed out after {timeout_s:g} s") from None
            raise


def _outcome_name(outcome: NodeOutput | Suspend | Failure | None) -> str:
    """How an attempt ended, for observers (None: cancelled, or a nested graph stopped)."""
    if isinstance(outcome, NodeOutput):
        return "completed"
    if isinstance(outcome, Failure):
        return "failed"
    if isinstance(outcome, Suspend):
        return "suspended"
    return "interrupted"


def _error_code(outcome: NodeOutput | Suspend | Failure | None) -> str | None:
    return outcome.error.code if isinstance(outcome, Failure) else None


def _plainly_storable(out: NodeOutput) -> bool:
    """The common case, decided without a walk: a lone null, boolean or 64-bit integer."""
    value = out.output
    kind = type(value)
    plain = value is None or kind is bool or (kind is int and payload.fits_64_bits(value))
    return plain and not out.data and not out.set_vars


def _leaving(out: NodeOutput) -> list[tuple[str, Any]]:
    """What of a node's outcome is stored: its output, its metadata, the vars it sets."""
    leaving = [("the node's output", out.output)]
    if out.data:
        leaving.append(("the node's metadata", out.data))
    for name, value in (out.set_vars or {}).items():
        if value is not out.output:
            leaving.append((f"vars.{name}", value))
    return leaving
