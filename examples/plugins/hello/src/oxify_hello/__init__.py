"""``hello.greet``: an example Oxify node type, installed as a plug-in.

Config ``{"name": <text, templates allowed>}``; output ``{"greeting": "Hello, <name>!"}``.
"""

from __future__ import annotations

from app.nodes.plugin import (
    NodeConfig,
    NodeContext,
    NodeDefinition,
    NodeOutput,
    NodeResources,
    NodeType,
)


class GreetConfig(NodeConfig):
    """Whom to greet. A string field takes templates: ``"{{ inputs.who }}"``."""

    name: str


class GreetExecutor:
    """Renders ``name`` over the run's context and greets it."""

    async def execute(self, ctx: NodeContext) -> NodeOutput:
        name = await ctx.render("name")
        return NodeOutput({"greeting": f"Hello, {name}!"})


GREET = NodeType("hello.greet", GreetConfig, "Greets `name`: outputs `{greeting}`.")


def definitions(resources: NodeResources) -> NodeDefinition:
    """The plug-in's node factory (entry point ``hello`` in the group ``oxify.nodes``)."""
    resources.logger.debug("%s ready", GREET.name)
    return NodeDefinition(GREET, GreetExecutor())
