"""Composition nodes: try/catch/finally and sub-workflows."""

from __future__ import annotations

from typing import Any, cast

from app.domain.node_types import CORE_NODE_TYPES, SubworkflowConfig, TryConfig
from app.domain.status import ExecutionStatus
from app.engine.compile.inputs import apply_defaults, validate_inputs
from app.engine.compile.plan import Plan
from app.engine.run.context import NodeContext
from app.engine.run.outcomes import NodeOutput
from app.engine.run.scope import Scope
from app.errors import NodeConfigError, NodeError
from app.nodes.plugin import NodeDefinition
from app.nodes.resources import NodeResources

MAX_NESTING_DEPTH = 32  # graphs inside graphs; deeper is almost surely a recursive sub-workflow


def definitions(_resources: NodeResources) -> list[NodeDefinition]:
    """The composition node types; stored workflows come through the context, not resources."""
    return [
        NodeDefinition(CORE_NODE_TYPES["try"], TryExecutor()),
        NodeDefinition(CORE_NODE_TYPES["subworkflow"], SubworkflowExecutor()),
    ]


class TryExecutor:
    """Runs ``try``; after an error runs ``catch`` with the error bound; always runs ``finally``.

    Output: the try block's output, or the catch block's after an error (null without a catch;
    the error is then in the node result's ``error``). ``rethrow`` fails the node after catch
    and finally ran. A failing catch or finally block fails the node. A pause or cancellation
    interrupts the whole node (finally does not run then: the node runs again on resume).
    """

    async def execute(self, ctx: NodeContext) -> NodeOutput:
        config = cast(TryConfig, ctx.config)
        bind: dict[str, Any] = {config.error_var: None}
        result = await ctx.run_graph(ctx.graph("try"), ctx.scope.child(**bind), f"{ctx.key}.try.")
        output: Any = result.output
        error = result.error if result.status is ExecutionStatus.FAILED else None
        failure: dict[str, Any] | None = None
        if error is not None:
            output = None
            bind = {config.error_var: error}
            if "catch" in ctx.node.graphs:
                caught = await ctx.run_graph(
                    ctx.graph("catch"), ctx.scope.child(**bind), f"{ctx.key}.catch."
                )
                output = caught.output
                failure = caught.error
        if "finally" in ctx.node.graphs:
            final = await ctx.run_graph(
                ctx.graph("finally"), ctx.scope.child(**bind), f"{ctx.key}.finally."
            )
            failure = failure or final.error
        if failure is not None:
            raise NodeError(
                f"{failure.get('node_id')}: {failure.get('message')}",
                retryable=False,
                details={"error": failure},
            )
        if error is not None and config.rethrow:
            raise NodeError(str(error.get("message")), retryable=False, details={"error": error})
        return NodeOutput(output, data={"error": error} if error is not None else {})


class SubworkflowExecutor:
    """Runs an inline ``graph`` or a stored workflow as one node, with its own inputs and vars."""

    async def execute(self, ctx: NodeContext) -> NodeOutput:
        config = cast(SubworkflowConfig, ctx.config)
        if ctx.depth >= MAX_NESTING_DEPTH:
            raise NodeError(
                f"graphs nested over {MAX_NESTING_DEPTH} deep (a sub-workflow calling itself?)",
                retryable=False,
            )
        plan = await _child_plan(ctx, config)
        inputs = apply_defaults(plan.input_schema, await ctx.render("inputs"))
        problems = validate_inputs(plan.input_schema, inputs)
        if problems:
            listing = "; ".join(f"{p.pointer or '/'}: {p.message}" for p in problems)
            raise NodeConfigError(f"sub-workflow inputs are invalid: {listing}")
        result = await ctx.run_graph(plan, Scope.root(inputs), f"{ctx.key}.")
        if result.status is ExecutionStatus.FAILED:
            error = result.error or {}
            raise NodeError(
                f"sub-workflow failed at {error.get('node_id')}: {error.get('message')}",
                retryable=False,
                details={"error": error},
            )
        if config.outputs is None:
            return NodeOutput(result.output)
        return NodeOutput(await ctx.render("outputs", ctx.scope.child(outputs=result.output)))


async def _child_plan(ctx: NodeContext, config: SubworkflowConfig) -> Plan:
    if config.workflow_id is None:
        return ctx.graph("graph")
    return await ctx.workflow_plan(config.workflow_id, config.version)
