"""Branching nodes: if and switch."""

from __future__ import annotations

from typing import ClassVar, cast

from app.domain.node_types import CORE_NODE_TYPES, SwitchConfig
from app.engine.run.context import NodeContext
from app.engine.run.outcomes import NodeOutput
from app.nodes.plugin import NodeDefinition
from app.nodes.resources import NodeResources


def definitions(_resources: NodeResources) -> list[NodeDefinition]:
    """The branching node types; they need nothing from outside."""
    return [
        NodeDefinition(CORE_NODE_TYPES["if"], IfExecutor()),
        NodeDefinition(CORE_NODE_TYPES["switch"], SwitchExecutor()),
    ]


class IfExecutor:
    """Evaluates ``condition``; branch ``true`` or ``false`` by its truthiness."""

    inline: ClassVar[bool] = True

    async def execute(self, ctx: NodeContext) -> NodeOutput:
        value = bool(await ctx.evaluate("condition"))
        return NodeOutput(value, branch="true" if value else "false")


class SwitchExecutor:
    """Evaluates ``value``; branch = the case equal to it (as text), else ``default``."""

    inline: ClassVar[bool] = True

    async def execute(self, ctx: NodeContext) -> NodeOutput:
        value = await ctx.evaluate("value")
        cases = cast(SwitchConfig, ctx.config).cases
        label = _as_label(value)
        return NodeOutput(value, branch=label if label in cases else "default")


def _as_label(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
