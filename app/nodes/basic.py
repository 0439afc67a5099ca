"""Data nodes: start, end, transform, set_var, delay, fail."""

from __future__ import annotations

from typing import Any, ClassVar, cast

from app.domain.node_types import CORE_NODE_TYPES, EndConfig, SetVarConfig
from app.engine.run.context import NodeContext, NodeExecutor
from app.engine.run.outcomes import NodeOutput
from app.errors import FailNodeError
from app.nodes.plugin import NodeDefinition
from app.nodes.resources import NodeResources


def definitions(_resources: NodeResources) -> list[NodeDefinition]:
    """The data node types; they need nothing from outside."""
    executors: list[tuple[str, NodeExecutor]] = [
        ("start", StartExecutor()),
        ("end", EndExecutor()),
        ("transform", TransformExecutor()),
        ("set_var", SetVarExecutor()),
        ("delay", DelayExecutor()),
        ("fail", FailExecutor()),
    ]
    return [NodeDefinition(CORE_NODE_TYPES[name], executor) for name, executor in executors]


class StartExecutor:
    """Outputs the graph's inputs (the run's, or a sub-workflow's)."""

    inline: ClassVar[bool] = True

    async def execute(self, ctx: NodeContext) -> NodeOutput:
        return NodeOutput(ctx.scope["inputs"])


class EndExecutor:
    """Outputs its ``outputs`` mapping; without one, what flows into it.

    One live predecessor passes its output through; several give ``{node_id: output}``; none
    (an end node alone) gives the inputs.
    """

    inline: ClassVar[bool] = True

    async def execute(self, ctx: NodeContext) -> NodeOutput:
        config = cast(EndConfig, ctx.config)
        if config.outputs is not None:
            return NodeOutput(await ctx.render("outputs"))
        results = ctx.scope.results
        upstream = {
            e.source: results[e.source]["output"]
            for e in ctx.node.incoming
            if e.source in results and results[e.source].get("status") != "skipped"
        }
        if not upstream:
            return NodeOutput(ctx.scope["inputs"])
        if len(upstream) == 1:
            return NodeOutput(next(iter(upstream.values())))
        return NodeOutput(upstream)


class TransformExecutor:
    """Outputs ``value`` with its templates rendered (JSON types kept for lone templates)."""

    inline: ClassVar[bool] = True

    async def execute(self, ctx: NodeContext) -> NodeOutput:
        return NodeOutput(await ctx.render("value"))


class SetVarExecutor:
    """Sets ``vars.<name>`` for the nodes after it; outputs the value."""

    inline: ClassVar[bool] = True

    async def execute(self, ctx: NodeContext) -> NodeOutput:
        name = cast(SetVarConfig, ctx.config).name
        value = await ctx.render("value")
        return NodeOutput(value, set_vars={name: value})


class DelayExecutor:
    """Sleeps ``seconds`` on the run's clock (cancellable)."""

    async def execute(self, ctx: NodeContext) -> NodeOutput:
        seconds = float(await ctx.render("seconds"))
        await ctx.clock.sleep(seconds)
        return NodeOutput({"slept": seconds})


class FailExecutor:
    """Always fails with ``message`` (rendered)."""

    inline: ClassVar[bool] = True

    async def execute(self, ctx: NodeContext) -> NodeOutput:
        message: Any = await ctx.render("message")
        raise FailNodeError(str(message))
