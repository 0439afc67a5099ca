"""``execute_tool`` spans of the ``mcp`` node against the real MCP server on 127.0.0.1: their
attributes, the MCP SDK's span and the HTTP span under them, the ``traceparent`` the server
receives, failures, and arguments and results only when content is opted in."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from app.domain.status import ExecutionStatus
from app.nodes.registry import core_registry
from app.nodes.resources import NodeResources
from app.settings import Settings
from tests.mcp_server import McpTestServer
from tests.spans import SpanTrace, traceparent
from tests.support import Harness, workflow

HEADER_CANARY = "team-canary-3e9d"


@pytest.fixture
async def server() -> AsyncIterator[McpTestServer]:
    async with McpTestServer() as served:
        yield served


async def harness_for(server: McpTestServer, **settings: Any) -> AsyncIterator[Harness]:
    made = Settings(
        mcp_servers={"tools": {"url": server.url, "headers": {"X-Team": HEADER_CANARY}}}
    )
    async with NodeResources(settings=made.model_copy(update=settings)) as resources:
        yield Harness(registry=core_registry(resources))


@pytest.fixture
async def harness(server: McpTestServer) -> AsyncIterator[Harness]:
    async for made in harness_for(server):
        yield made


@pytest.fixture
async def content_harness(server: McpTestServer) -> AsyncIterator[Harness]:
    async for made in harness_for(server, trace_content=True):
        yield made


def call(tool: str, **arguments: Any) -> dict[str, Any]:
    config = {"server": "tools", "tool": tool, "arguments": arguments}
    return {"id": "call", "type": "mcp", "config": config}


async def test_an_mcp_call_is_an_execute_tool_span_and_carries_the_trace_context(
    harness: Harness, server: McpTestServer, traced: SpanTrace
) -> None:
    with traced.root() as root:
        outcome = await harness.run(workflow([call("add", a=1, b=2)], []))
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    tool = traced.one("execute_tool add")
    assert tool.kind is SpanKind.INTERNAL
    assert tool.parent is not None and tool.parent.span_id == root.get_span_context().span_id
    assert dict(tool.attributes or {}) == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "add",
        "gen_ai.tool.type": "extension",
        "server.address": "127.0.0.1",
        "server.port": server.port,
    }
    # The MCP SDK's span of the request is under it, and the HTTP span under that.
    (sent,) = [s for s in traced.children(tool) if s.name == "MCP send tools/call add"]
    (http,) = [s for s in traced.children(sent) if s.kind is SpanKind.CLIENT]
    assert http.name == "POST"
    assert traceparent(http) in server.log.traceparents
    # The server's own span parents on the SDK's (the trace context also rides in ``_meta``).
    (served,) = [s for s in traced.children(sent) if s.kind is SpanKind.SERVER]
    assert served.name == "tools/call add"
    # Opening the session (initialize, the GET stream) is the session's, not this run's.
    assert not [s for s in traced.spans() if "initialize" in s.name or s.name == "GET"]
    assert not any(HEADER_CANARY in text for text in traced.values())


async def test_a_tool_error_marks_the_span(harness: Harness, traced: SpanTrace) -> None:
    with traced.root():
        outcome = await harness.run(workflow([call("refuse", reason="no")], []))
    assert outcome.status is ExecutionStatus.FAILED
    tool = traced.one("execute_tool refuse")
    assert tool.status.status_code is StatusCode.ERROR
    assert (tool.attributes or {})["error.type"] == "mcp_tool_error"


async def test_arguments_and_result_only_when_content_is_opted_in(
    harness: Harness, content_harness: Harness, traced: SpanTrace
) -> None:
    with traced.root():
        await harness.run(workflow([call("add", a=1, b=2)], []))
        await content_harness.run(workflow([call("add", a=3, b=4)], []))
    hidden, shown = traced.named("execute_tool add")
    assert "gen_ai.tool.call.arguments" not in (hidden.attributes or {})
    attributes = shown.attributes or {}
    assert json.loads(str(attributes["gen_ai.tool.call.arguments"])) == {"a": 3, "b": 4}
    assert json.loads(str(attributes["gen_ai.tool.call.result"])) == {"total": 7, "terms": [3, 4]}
