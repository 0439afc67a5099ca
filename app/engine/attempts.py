"""Running one node: attempts, retries with backoff, per-node timeout, error shaping."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from app.domain.events import EventType
from app.engine import retry
from app.engine.context import NodeContext
from app.engine.outcomes import NodeOutput, Suspend
from app.engine.plan import PlanNode
from app.engine.ports import NodeExecutor
from app.engine.runtime import RunRuntime
from app.errors import NodeError, NodeTimeout, OxifyError


@dataclass(slots=True)
class Failure:
    """A node's last attempt failed; ``attempt`` is the number of that attempt."""

    error: NodeError
    attempt: int = 0


def as_node_error(exc: Exception) -> NodeError:
    """Any exception an executor lets out, as a NodeError.

    Oxify's own non-node errors (a bad expression at run time) are not worth retrying; an
    unexpected exception is, since it is most often transient (a dropped connection).
    """
    if isinstance(exc, NodeError):
        return exc
    if isinstance(exc, OxifyError):
        error = NodeError(exc.message, retryable=False)
        error.code = exc.code  # type: ignore[misc]  # keep the cause's stable code
        return error
    return NodeError(f"{type(exc).__name__}: {exc}", details={"exception": type(exc).__name__})


def error_payload(error: NodeError, key: str) -> dict[str, Any]:
    """The JSON shape of a node error in events, records and run results."""
    payload: dict[str, Any] = {"code": error.code, "message": error.message, "node_id": key}
    if error.details:
        payload["details"] = error.details
    return payload


class AttemptRunner:
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
        node = ctx.node
        policy = node.options.retry
        executor = self.rt.executors[node.type]
        retries = 0
        while True:
            outcome = await self.attempt(executor, ctx)
            if not isinstance(outcome, Failure):
                return outcome
            error = outcome.error
            if not error.retryable or policy is None or retries >= policy.max_retries:
                return outcome
            retries += 1
            delay = retry.backoff_delay(policy, retries, self.rt.rng.random, error.retry_after_s)
            self.rt.journal.event(
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
            await self.rt.journal.flush()
            await self.rt.clock.sleep(delay)
            ctx.attempt += 1

    async def attempt(
        self, executor: NodeExecutor, ctx: NodeContext
    ) -> NodeOutput | Suspend | Failure:
        """One attempt of the node, within its timeout; an error comes back as a Failure."""
        self.last_attempt[ctx.key] = ctx.attempt
        try:
            self.rt.count_execution()
            timeout_s = ctx.node.options.timeout_s
            if timeout_s is None:
                outcome: NodeOutput | Suspend = await executor.execute(ctx)
                return outcome
            return await self._timed(executor, ctx, timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return Failure(as_node_error(exc), ctx.attempt)

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
