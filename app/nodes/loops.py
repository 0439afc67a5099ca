"""Loop nodes: foreach, while, repeat.

Each iteration runs the body graph under keys ``<node>[<i>].<body node>``, so a resumed loop
skips the body nodes that already completed. Inside the body, ``item`` and ``index`` are bound
(``while`` also binds ``last``, the previous iteration's output).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, cast

from app.domain.node_types import CORE_NODE_TYPES, ForeachConfig, RepeatConfig, WhileConfig
from app.domain.status import ExecutionStatus
from app.engine.compile.plan import Plan
from app.engine.run.context import NodeContext
from app.engine.run.outcomes import GraphInterrupted, NodeOutput
from app.engine.run.scope import Scope
from app.errors import LoopLimitExceeded, NodeConfigError, NodeError
from app.nodes.plugin import NodeDefinition
from app.nodes.resources import NodeResources


def definitions(_resources: NodeResources) -> list[NodeDefinition]:
    """The loop node types; they need nothing from outside."""
    return [
        NodeDefinition(CORE_NODE_TYPES["foreach"], ForeachExecutor()),
        NodeDefinition(CORE_NODE_TYPES["while"], WhileExecutor()),
        NodeDefinition(CORE_NODE_TYPES["repeat"], RepeatExecutor()),
    ]


async def run_iteration(ctx: NodeContext, plan: Plan, scope: Scope, index: int) -> Any:
    """Run one iteration of the body; a failed body fails the loop node with the cause."""
    result = await ctx.run_graph(plan, scope, f"{ctx.key}[{index}].")
    if result.status is ExecutionStatus.COMPLETED:
        return result.output
    error = result.error or {}
    raise NodeError(
        f"iteration {index} failed at {error.get('node_id')}: {error.get('message')}",
        retryable=False,
        details={"iteration": index, "error": error},
    )


async def run_iterations(
    ctx: NodeContext,
    plan: Plan,
    count: int,
    make_scope: Callable[[int], Scope],
    concurrency: int,
) -> list[Any]:
    """Run ``count`` iterations, at most ``concurrency`` at once; outputs in index order.

    A failing iteration cancels the others. A pause or wait lets the others reach their own
    stopping point first, then interrupts the loop node.
    """
    outputs: list[Any] = [None] * count
    indices = iter(range(count))

    async def worker() -> None:
        for index in indices:
            outputs[index] = await run_iteration(ctx, plan, make_scope(index), index)

    workers = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, count))]
    try:
        done, pending = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
        failures = [w.exception() for w in done if not w.cancelled() and w.exception()]
        if any(isinstance(f, Exception) for f in failures):
            for w in pending:
                w.cancel()
        if pending:
            await asyncio.wait(pending)
    finally:
        for w in workers:
            w.cancel()
    _raise_first(workers)
    return outputs


def _raise_first(workers: Sequence[asyncio.Future[None]]) -> None:
    errors = [w.exception() for w in workers if not w.cancelled()]
    for error in errors:
        if isinstance(error, Exception):
            raise error
    interruptions = [e for e in errors if isinstance(e, GraphInterrupted)]
    if interruptions:
        # Several iterations stopped: the loop is waiting only if every one of them is.
        waiting = [key for e in interruptions for key in e.waiting_on]
        paused = any(e.status is not ExecutionStatus.WAITING for e in interruptions)
        raise GraphInterrupted(
            ExecutionStatus.PAUSED if paused else ExecutionStatus.WAITING, waiting
        )


class ForeachExecutor:
    """Runs ``body`` once per item of ``items``; outputs the body outputs in item order."""

    async def execute(self, ctx: NodeContext) -> NodeOutput:
        config = cast(ForeachConfig, ctx.config)
        items = await ctx.render("items")
        if not isinstance(items, list | tuple):
            raise NodeConfigError(
                f"'items' must give a list, got {type(items).__name__}: {_excerpt(items)}"
            )
        if len(items) > config.max_iterations:
            raise LoopLimitExceeded(
                f"foreach '{ctx.node.id}' has {len(items)} items, over max_iterations "
                f"({config.max_iterations})"
            )
        concurrency = int(await ctx.render("concurrency"))
        body = ctx.graph("body")
        outputs = await run_iterations(
            ctx,
            body,
            len(items),
            lambda i: ctx.scope.child(item=items[i], index=i),
            concurrency,
        )
        return NodeOutput(outputs)


class RepeatExecutor:
    """Runs ``body`` ``count`` times, one after another; ``index`` inside."""

    async def execute(self, ctx: NodeContext) -> NodeOutput:
        config = cast(RepeatConfig, ctx.config)
        count = int(await ctx.render("count"))
        if count > config.max_iterations:
            raise LoopLimitExceeded(
                f"repeat '{ctx.node.id}' count {count} is over max_iterations "
                f"({config.max_iterations})"
            )
        body = ctx.graph("body")
        outputs = [
            await run_iteration(ctx, body, ctx.scope.child(index=i), i) for i in range(count)
        ]
        return NodeOutput(outputs)


class WhileExecutor:
    """Runs ``body`` while ``condition`` holds (checked before each iteration).

    The condition sees ``index`` (iterations done so far) and ``last`` (the previous output).
    Reaching ``max_iterations`` with the condition still true fails the node.
    """

    async def execute(self, ctx: NodeContext) -> NodeOutput:
        config = cast(WhileConfig, ctx.config)
        body = ctx.graph("body")
        outputs: list[Any] = []
        last: Any = None
        index = 0
        while await ctx.evaluate("condition", ctx.scope.child(index=index, last=last)):
            if index >= config.max_iterations:
                raise LoopLimitExceeded(
                    f"while '{ctx.node.id}' reached max_iterations ({config.max_iterations}) "
                    "with its condition still true"
                )
            last = await run_iteration(ctx, body, ctx.scope.child(index=index, last=last), index)
            outputs.append(last)
            index += 1
        return NodeOutput(outputs)


def _excerpt(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
