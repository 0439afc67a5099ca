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

    def can_inline(self, node: PlanNode) -> bool:
        """Whether the node may run without a task: an inline executor, no retry, no timeout."""
        executor = self.rt.executors[node.type]
        options = node.options
        if not getattr(executor, "inline", False) or options.timeout_s is not None:
            return False
        return options.retry is None or options.retry.max_retries == 0

    async def run(self, ctx: NodeContext) -> NodeOutput | Suspend | Failure:
        """Attempts until success, suspension, a non-retryable error or retries run out."""
        node = ctx.node
        policy = node.options.retry
        executor = self.rt.executors[node.type]
        retries = 0
        while True:
            self.last_attempt[ctx.key] = ctx.attempt
            try:
                self.rt.count_execution()
                return await self._attempt(executor, ctx)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = as_node_error(exc)
            if not error.retryable or policy is None or retries >= policy.max_retries:
                return Failure(error, ctx.attempt)
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

    async def _attempt(self, executor: Any, ctx: NodeContext) -> NodeOutput | Suspend:
        timeout_s = ctx.node.options.timeout_s
        if timeout_s is None:
            result: NodeOutput | Suspend = await executor.execute(ctx)
            return result
        try:
            async with asyncio.timeout(timeout_s) as scope:
                return await executor.execute(ctx)  # type: ignore[no-any-return]
        except TimeoutError:
            if scope.expired():
                raise NodeTimeout(f"node timed out after {timeout_s:g} s") from None
            raise
