"""The ``code`` node: ``expression`` in-process, ``python`` in a child process, ``wasm`` in
wasmtime. See :mod:`app.nodes.code.python` and :mod:`app.nodes.code.wasm` for the limits.

The code's ``inputs`` are the ``inputs`` mapping rendered, else the run's context (``inputs``,
``vars`` and the results of the nodes in scope, by name). An expression reads the run's context
by name like any template; with an ``inputs`` mapping, ``inputs`` names that mapping.
"""

from __future__ import annotations

from typing import Any, cast

import orjson

from app.domain.code_nodes import DEFAULT_FUEL, CodeConfig, module_bytes
from app.domain.node_types import CORE_NODE_TYPES
from app.engine.run.context import NodeContext
from app.engine.run.outcomes import NodeOutput
from app.errors import NodeConfigError
from app.nodes.code import python, wasm
from app.nodes.code.runtime import code_runtime
from app.nodes.plugin import NodeDefinition
from app.nodes.resources import NodeResources


def definitions(resources: NodeResources) -> list[NodeDefinition]:
    """The ``code`` node type."""
    return [NodeDefinition(CORE_NODE_TYPES["code"], CodeExecutor(resources))]


class CodeExecutor:
    def __init__(self, resources: NodeResources) -> None:
        self._resources = resources

    async def execute(self, ctx: NodeContext) -> NodeOutput:
        config = cast(CodeConfig, ctx.config)
        if config.language == "expression":
            names = ctx.scope
            if config.inputs is not None:
                names = names.child(inputs=await ctx.render("inputs"))
            return NodeOutput(await ctx.evaluate("source", names))
        settings = self._resources.settings
        timeout_s = float(await ctx.render("timeout_s"))
        memory_mb = int(await ctx.render("memory_mb"))
        _within("timeout_s", timeout_s, settings.code_max_timeout_s, "OXIFY_CODE_MAX_TIMEOUT_S")
        _within("memory_mb", memory_mb, settings.code_max_memory_mb, "OXIFY_CODE_MAX_MEMORY_MB")
        max_output_bytes = int(await ctx.render("max_output_bytes"))
        # What the service reads back into its own memory: no more than a node may output.
        _within(
            "max_output_bytes",
            max_output_bytes,
            settings.max_node_output_bytes,
            "OXIFY_MAX_NODE_OUTPUT_BYTES",
        )
        inputs = await _inputs(ctx, config)
        runtime = code_runtime(self._resources)
        if config.language == "python":
            job = python.Job(
                source=cast(str, config.source),
                inputs=inputs,
                timeout_s=timeout_s,
                memory_mb=memory_mb,
                max_output_bytes=max_output_bytes,
                processes=settings.code_max_processes,
                user=runtime.user,
            )
            return NodeOutput(await runtime.run_python(job))
        fuel = await ctx.render("fuel")
        wasm_job = wasm.Job(
            module=module_bytes(cast(str, config.module)),
            stdin=_json(inputs),
            timeout_s=timeout_s,
            memory_mb=memory_mb,
            max_output_bytes=max_output_bytes,
            fuel=DEFAULT_FUEL if fuel is None else int(fuel),
        )
        return NodeOutput(await runtime.run_wasm(wasm_job))


async def _inputs(ctx: NodeContext, config: CodeConfig) -> Any:
    if config.inputs is not None:
        return await ctx.render("inputs")
    scope = ctx.scope
    return {name: scope[name] for name in scope}


def _json(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError as exc:
        raise NodeConfigError(f"the code's inputs are not JSON: {exc}") from None


def _within(field: str, value: float, cap: float, setting: str) -> None:
    if value > cap:
        raise NodeConfigError(f"{field} {value:g} is above this deployment's {setting} ({cap:g})")
