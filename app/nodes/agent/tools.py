"""An agent's tools: what the model is told about each (name, description, JSON Schema of the
arguments), and how a call runs.

The toolbox is built when a turn or a call first needs it (a replay of recorded steps needs
none), so a run resumed with every finished step recorded asks no MCP server for its tools.
Each kind runs through the machinery of its node type: MCP through the session pool, HTTP
through the shared exchange (egress policy, per-host limits, auth), workflows as nested graphs
of the run, Python in the code runtime's sandbox. Every failure of a call is a
:class:`ToolFailed` whose message the model sees; only what must stop the node (a run limit,
a cancellation, a sub-workflow that waits) goes past it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import httpx
import jsonschema
import mcp_types
import orjson
from pydantic import TypeAdapter, ValidationError

from app.domain.agent_nodes import ARGS, AgentConfig, CodeTool, HttpTool, McpTool, ToolApproval
from app.domain.code_nodes import DEFAULT_MEMORY_MB
from app.domain.http_nodes import HTTP_DEFAULT_EXPECT_STATUS, HttpAuth
from app.domain.status import ExecutionStatus
from app.engine.compile.inputs import apply_defaults
from app.engine.compile.plan import Plan
from app.engine.run.context import NodeContext
from app.engine.run.scope import Scope
from app.errors import NodeConfigError, NodeError, RunLimitExceeded
from app.nodes import http as http_node
from app.nodes.ai.chat import ToolSpec
from app.nodes.code import python
from app.nodes.code.runtime import code_runtime
from app.nodes.mcp_node import resolve_server, session_pool, tool_text
from app.nodes.mcp_sessions import McpServer
from app.nodes.net import auth, exchange, values
from app.nodes.resources import NodeResources
from app.observability import semconv

ERROR_CHARS = 2000  # characters of a tool's error the model is shown
IDEMPOTENCY_META = "dev.oxify/idempotency_key"  # the MCP request's _meta key for it
EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}
_AUTH = TypeAdapter[Any](HttpAuth)


class ToolFailed(NodeError):
    """A tool call failed; the model is told ``message`` and may try again."""

    code = "tool_failed"
    retryable = False


@dataclass(frozen=True, slots=True)
class Call:
    """One call to run: what the model asked for, where it sits in the node."""

    arguments: dict[str, Any]
    key: str  # stable across retries and takeovers: the idempotency key of the call
    prefix: str  # the node keys a sub-workflow's nodes get


class Runner(Protocol):
    async def __call__(self, ctx: NodeContext, call: Call, timeout_s: float) -> Any: ...


@dataclass(slots=True)
class Tool:
    spec: ToolSpec
    approval: ToolApproval | None
    run: Runner
    defaults: bool = False  # fill the schema's defaults in (a workflow's inputs)
    _validator: Any = field(default=None, repr=False)

    @property
    def type(self) -> str:
        """``gen_ai.tool.type``: an MCP server's tool is an extension, the rest functions."""
        if isinstance(self.run, McpRunner):
            return semconv.TOOL_TYPE_EXTENSION
        return semconv.TOOL_TYPE_FUNCTION

    def problem(self, arguments: Any) -> str | None:
        """Why ``arguments`` do not fit the tool's parameters (None when they do)."""
        if not isinstance(arguments, dict):
            return "the arguments are not a JSON object"
        if self._validator is None:
            schema = self.spec.parameters
            self._validator = jsonschema.validators.validator_for(schema)(schema)
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(arguments))
        if error is None:
            return None
        where = "/" + "/".join(str(p) for p in error.absolute_path)
        return f"the arguments do not match the tool's parameters at {where}: {error.message}"


class Toolbox:
    """The node's tools by name."""

    def __init__(self, tools: dict[str, Tool]) -> None:
        self.tools = tools

    @property
    def specs(self) -> tuple[ToolSpec, ...]:
        return tuple(tool.spec for tool in self.tools.values())

    @classmethod
    async def build(
        cls, ctx: NodeContext, config: AgentConfig, resources: NodeResources
    ) -> Toolbox:
        tools: dict[str, Tool] = {}
        for index, entry in enumerate(config.tools):
            for tool in await _tools_of(ctx, index, entry, resources):
                if tool.spec.name in tools:
                    raise NodeConfigError(
                        f"tool name {tool.spec.name!r} is given twice (tools/{index} repeats "
                        "it): names must be unique within a node"
                    )
                tools[tool.spec.name] = tool
        return cls(tools)


def approval_of(entry: Any) -> ToolApproval | None:
    approval = entry.approval
    if approval is True:
        return ToolApproval()
    return approval or None


async def _tools_of(
    ctx: NodeContext, index: int, entry: Any, resources: NodeResources
) -> list[Tool]:
    approval = approval_of(entry)
    if isinstance(entry, McpTool):
        return await _mcp_tools(entry, approval, resources)
    if isinstance(entry, HttpTool):
        spec = ToolSpec(entry.name, entry.description, entry.parameters)
        return [Tool(spec, approval, HttpRunner(index, resources))]
    if isinstance(entry, CodeTool):
        spec = ToolSpec(entry.name, entry.description, entry.parameters)
        return [Tool(spec, approval, CodeRunner(entry.source, resources))]
    workflow_id = await ctx.render_part("tools", (index, "workflow_id"), ctx.scope)
    plan = await ctx.workflow_plan(str(workflow_id), entry.version)
    spec = ToolSpec(entry.name, entry.description, plan.input_schema or EMPTY_PARAMETERS)
    return [Tool(spec, approval, WorkflowRunner(plan), defaults=True)]


async def _mcp_tools(
    entry: McpTool, approval: ToolApproval | None, resources: NodeResources
) -> list[Tool]:
    server = resolve_server(resources, entry.server)
    listed = await session_pool(resources).tools(server)
    names = entry.include or sorted(listed)
    missing = [name for name in names if name not in listed]
    if missing:
        raise NodeConfigError(
            f"MCP server {server.label} has no tool {', '.join(map(repr, missing))} "
            f"(its tools: {', '.join(sorted(listed)) or 'none'})"
        )
    return [
        Tool(
            ToolSpec(name, listed[name].description or "", dict(listed[name].input_schema)),
            approval,
            McpRunner(server, name, resources),
        )
        for name in names
    ]


@dataclass(frozen=True, slots=True)
class McpRunner:
    server: McpServer
    tool: str
    resources: NodeResources

    async def __call__(self, ctx: NodeContext, call: Call, timeout_s: float) -> Any:
        result = await session_pool(self.resources).call_tool(
            self.server,
            self.tool,
            call.arguments,
            timeout_s=timeout_s,
            before_send=lambda: ctx.spend(api_calls=1),
            meta=cast(mcp_types.RequestParamsMeta, {IDEMPOTENCY_META: call.key}),
        )
        if result.is_error:
            raise ToolFailed(tool_text(result) or "the tool failed (no text)")
        if result.structured_content is not None:
            return result.structured_content
        return tool_text(result)


@dataclass(frozen=True, slots=True)
class HttpRunner:
    """The ``request`` of ``tools/<index>``, rendered with the call's arguments as ``args``."""

    index: int
    resources: NodeResources

    async def __call__(self, ctx: NodeContext, call: Call, timeout_s: float) -> Any:
        names = ctx.scope.child(**{ARGS: call.arguments})
        rendered = await ctx.render_part("tools", (self.index, "request"), names)
        applied = await _auth(ctx, self.index, names, self.resources)
        request = _http_request(rendered, applied, call.key)
        request.extensions["timeout"] = httpx.Timeout(timeout_s).as_dict()
        limits = exchange.Limits(
            timeout_s=timeout_s,
            max_bytes=self.resources.settings.max_node_output_bytes,
            expects=lambda status: 200 <= status <= 299,
            expected=HTTP_DEFAULT_EXPECT_STATUS,
            secret_headers=tuple(request.headers),
        )
        ctx.spend(api_calls=1)
        with applied.scrubbing():
            answer = await exchange.send(self.resources, request, limits, ctx.clock.now)
            return applied.shown({"status": answer.status, **http_node.body_of(answer)})


async def _auth(
    ctx: NodeContext, index: int, names: Scope, resources: NodeResources
) -> auth.Applied:
    rendered = await ctx.render_part("tools", (index, "auth"), names)
    if rendered is None:
        return auth.apply(None)
    try:
        given = _AUTH.validate_python(rendered)
    except ValidationError:
        raise NodeConfigError(
            f"tools/{index}/auth rendered to a value that is not valid (values are not shown: "
            "they may hold secrets)"
        ) from None
    return await auth.applied(resources, given)


def _http_request(rendered: dict[str, Any], applied: auth.Applied, key: str) -> httpx.Request:
    body = rendered.get("body")
    content: bytes | None = None
    content_type = None
    if isinstance(body, str):
        content, content_type = body.encode(), "text/plain; charset=utf-8"
    elif body is not None:
        content, content_type = http_node.json_bytes(body, "body"), "application/json"
    return http_node.outbound(
        rendered.get("method") or "GET",
        str(rendered.get("url")),
        values.headers(rendered.get("headers") or {}),
        applied,
        content=content,
        content_type=content_type,
        params=values.params(rendered.get("query") or {}),
        idempotency_key=key,
    )


@dataclass(frozen=True, slots=True)
class CodeRunner:
    source: str
    resources: NodeResources

    async def __call__(self, ctx: NodeContext, call: Call, timeout_s: float) -> Any:  # noqa: ARG002
        settings = self.resources.settings
        runtime = code_runtime(self.resources)
        job = python.Job(
            source=self.source,
            inputs=call.arguments,
            timeout_s=min(timeout_s, settings.code_max_timeout_s),
            memory_mb=min(DEFAULT_MEMORY_MB, settings.code_max_memory_mb),
            max_output_bytes=settings.max_node_output_bytes,
            processes=settings.code_max_processes,
            user=runtime.user,
        )
        return await runtime.run_python(job)


@dataclass(frozen=True, slots=True)
class WorkflowRunner:
    """A stored workflow run as a nested graph of the run (its nodes journaled under the
    call's prefix, so a resumed run replays the finished ones). Not bounded by
    ``tool_timeout_s``: its own nodes have their timeouts, and it may wait for people."""

    plan: Plan

    async def __call__(self, ctx: NodeContext, call: Call, timeout_s: float) -> Any:  # noqa: ARG002
        inputs = apply_defaults(self.plan.input_schema, call.arguments)
        result = await ctx.run_graph(self.plan, Scope.root(inputs), call.prefix)
        if result.status is ExecutionStatus.FAILED:
            error = result.error or {}
            where, message = error.get("node_id"), error.get("message")
            raise ToolFailed(f"the workflow failed at {where}: {message}")
        return result.output


def failure_text(exc: Exception) -> str:
    """What the model is told about a failed call (no secrets: node errors carry none)."""
    text = str(exc) or type(exc).__name__
    return text[:ERROR_CHARS]


def must_stop(exc: Exception) -> bool:
    """Whether a call's failure must stop the node instead of going back to the model (a
    cancellation, or a sub-workflow that waits, are no Exception and pass anyway)."""
    return isinstance(exc, RunLimitExceeded)


def result_size_problem(result: Any, limit: int) -> str | None:
    try:
        size = len(orjson.dumps(result))
    except TypeError:
        return "the tool's result is not JSON"
    if size > limit:
        return f"the tool's result is larger than {limit} bytes"
    return None
