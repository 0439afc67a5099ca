"""The ``mcp`` node: one tool call on an MCP server over streamable HTTP.

Sessions are pooled per server in the process's node resources (:mod:`app.nodes.mcp_sessions`
says how they are opened, shared and re-opened). The output is the tool's structured content
when it has some, else the text of its text blocks joined by newlines (``null`` without any);
a tool that answers ``isError`` fails the node (``mcp_tool_error``, not retried) with its text.
Every time the call is sent counts one ``api_calls``. Header values of named servers never
reach events, outputs or errors.
"""

from __future__ import annotations

from typing import cast
from urllib.parse import urlsplit

import httpx2
import mcp_types

from app.domain.mcp_nodes import McpConfig, is_server_url
from app.domain.node_types import CORE_NODE_TYPES
from app.engine.run.context import NodeContext
from app.engine.run.outcomes import NodeOutput
from app.errors import NodeConfigError, NodeError
from app.nodes import tool_spans
from app.nodes.mcp_sessions import McpServer, SessionPool
from app.nodes.mcp_tool_check import ToolLists, tool_check
from app.nodes.net import egress, traced
from app.nodes.plugin import NodeDefinition
from app.nodes.resources import NodeResources
from app.observability import semconv

SESSION_POOL = "mcp"  # the name the session pool is kept under among the named clients
TOOL_LISTS = "mcp-tool-lists"  # and the tool lists validation asks for
TOOL_ERROR_CHARS = 2000  # characters of a failed tool's text kept in the error
MCP_LIMITS = httpx2.Limits(max_connections=100, max_keepalive_connections=20)  # per server


class McpToolError(NodeError):
    """The MCP tool answered with an error (isError)."""

    code = "mcp_tool_error"
    retryable = False


def definitions(resources: NodeResources) -> list[NodeDefinition]:
    """The ``mcp`` node type, with the check of its tool against the server's tool list."""
    check = tool_check(lambda server: resolve_server(resources, server), tool_lists(resources))
    return [NodeDefinition(CORE_NODE_TYPES["mcp"], McpExecutor(resources), check)]


def tool_lists(resources: NodeResources) -> ToolLists:
    """The servers' tool lists as validation sees them, one set for every node type's check."""
    return resources.client(
        TOOL_LISTS, lambda: ToolLists(lambda: session_pool(resources), resources.clock)
    )


def session_pool(resources: NodeResources) -> SessionPool:
    """The process's MCP sessions, made on first use and closed with the resources."""
    return resources.client(
        SESSION_POOL,
        lambda: SessionPool(
            lambda server: http_client(resources, server),
            resources.settings.mcp_connect_timeout_s,
        ),
        close=SessionPool.aclose,
    )


def http_client(resources: NodeResources, server: McpServer) -> httpx2.AsyncClient:
    """The HTTP client of one server's session: connections through the egress policy (and no
    proxy from the environment, which would resolve names where the policy cannot see them);
    each request a client span carrying the trace context.
    Connecting is bounded by ``OXIFY_MCP_CONNECT_TIMEOUT_S``; reading is not (a tool may think
    for long): the node's ``timeout_s`` bounds the call."""
    connect_s = resources.settings.mcp_connect_timeout_s
    return httpx2.AsyncClient(
        headers=dict(server.headers),
        timeout=httpx2.Timeout(None, connect=connect_s),
        follow_redirects=False,
        transport=traced.Traced2(egress.sdk_transport(resources.egress, MCP_LIMITS)),
        trust_env=False,
    )


def resolve_server(resources: NodeResources, server: str) -> McpServer:
    """A node's ``server``: a URL as it is, or a server named in ``OXIFY_MCP_SERVERS``."""
    if is_server_url(server):
        return McpServer(key=server, url=server, label=_display_url(server))
    named = resources.settings.mcp_servers
    spec = named.get(server)
    if spec is None:
        known = ", ".join(sorted(named)) or "none"
        raise NodeConfigError(
            f"no MCP server named {server!r} in OXIFY_MCP_SERVERS (known: {known})"
        )
    headers = {name: value.get_secret_value() for name, value in spec.headers.items()}
    return McpServer(key=f"name:{server}", url=spec.url, label=repr(server), headers=headers)


class McpExecutor:
    def __init__(self, resources: NodeResources) -> None:
        self._resources = resources

    async def execute(self, ctx: NodeContext) -> NodeOutput:
        config = cast(McpConfig, ctx.config)
        server = resolve_server(self._resources, config.server)
        arguments = await ctx.render("arguments")
        timeout_s = float(await ctx.render("timeout_s"))
        settings = self._resources.settings
        with tool_spans.execute_tool(
            config.tool,
            semconv.TOOL_TYPE_EXTENSION,
            settings,
            arguments=arguments,
            server_url=server.url,
        ) as span:
            result = await session_pool(self._resources).call_tool(
                server,
                config.tool,
                arguments,
                timeout_s=timeout_s,
                before_send=lambda: ctx.spend(api_calls=1),
            )
            if result.is_error:
                text = tool_text(result) or "(no text)"
                raise McpToolError(
                    f"MCP tool {config.tool!r} on {server.label} failed: {text[:TOOL_ERROR_CHARS]}"
                )
            output = (
                result.structured_content
                if result.structured_content is not None
                else tool_text(result)
            )
            tool_spans.returned(span, output, settings)
        return NodeOutput(output)


def tool_text(result: mcp_types.CallToolResult) -> str | None:
    texts = [block.text for block in result.content if isinstance(block, mcp_types.TextContent)]
    return "\n".join(texts) if texts else None


def _display_url(url: str) -> str:
    """A URL for messages: no userinfo, query or fragment (they may hold secrets)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
