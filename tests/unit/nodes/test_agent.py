"""The ``agent`` node against local OpenAI, Anthropic and Ollama servers (real SDKs) and a local
MCP server and HTTP server: the tool loop, parallel calls, errors the model sees, ``max_turns``,
run limits, JSON answers, durable turns and calls, and keys that appear nowhere."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from app.domain.events import EventType
from app.domain.status import ExecutionStatus
from app.nodes.registry import core_registry
from app.nodes.resources import NodeResources
from app.settings import Settings
from tests.integration.net_server import NetServer, net_server
from tests.mcp_server import McpTestServer
from tests.providers import (
    ProviderServer,
    Text,
    ToolCall,
    ToolCalls,
    anthropic_server,
    ollama_server,
    openai_server,
)
from tests.support import Harness, node, workflow

OPENAI_CANARY = "sk-canary-agent-openai-90e1"
ANTHROPIC_CANARY = "sk-ant-canary-agent-77c3"
SERVERS: dict[str, Callable[[], AbstractAsyncContextManager[ProviderServer]]] = {
    "openai": openai_server,
    "anthropic": anthropic_server,
    "ollama": ollama_server,
}


@pytest.fixture(params=sorted(SERVERS))
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def model(provider: str) -> AsyncIterator[ProviderServer]:
    async with SERVERS[provider]() as srv:
        yield srv


@pytest.fixture
async def mcp() -> AsyncIterator[McpTestServer]:
    async with McpTestServer() as server:
        yield server


@pytest.fixture
async def web() -> AsyncIterator[NetServer]:
    async with net_server() as server:
        yield server


@pytest.fixture
async def resources() -> AsyncIterator[NodeResources]:
    settings = Settings(
        database_url="sqlite+aiosqlite:///:memory:",
        openai_api_key=OPENAI_CANARY,
        anthropic_api_key=ANTHROPIC_CANARY,
    )
    async with NodeResources(settings=settings) as made:
        yield made


@pytest.fixture
def harness(resources: NodeResources) -> Harness:
    return Harness(registry=core_registry(resources))


def agent(
    provider: str, srv: ProviderServer, tools: list[dict[str, Any]], **config: Any
) -> dict[str, Any]:
    spec = {"provider": provider, "base_url": srv.url, "model": "m1", "prompt": "help me"}
    return node("helper", "agent", **(spec | {"tools": tools} | config))


def mcp_tools(server: McpTestServer, **extra: Any) -> dict[str, Any]:
    return {"type": "mcp", "server": server.url, "include": ["add", "refuse"], **extra}


async def test_two_turns_with_parallel_calls_over_each_provider(
    harness: Harness, provider: str, model: ProviderServer, mcp: McpTestServer
) -> None:
    model.script(
        ToolCalls(
            [ToolCall("add", {"a": 1, "b": 2}), ToolCall("add", {"a": 3, "b": 4})],
            text="Adding both.",
        ),
        Text("The sums are 3 and 7."),
    )
    outcome = await harness.run(workflow([agent(provider, model, [mcp_tools(mcp)])], []))
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    output = output_of(harness)
    assert output["text"] == "The sums are 3 and 7."
    assert output["turns"] == 2
    assert [c["result"] for c in output["tool_calls"]] == [
        {"total": 3, "terms": [1, 2]},
        {"total": 7, "terms": [3, 4]},
    ]
    assert all(c["ok"] and c["turn"] == 1 for c in output["tool_calls"])
    assert sorted(args["a"] for _, args in mcp.log.calls) == [1, 3]
    assert [m["role"] for m in output["messages"]] == [
        "user",
        "assistant",
        "tool",
        "tool",
        "assistant",
    ]
    assert output["usage"]["input_tokens"] > 0 and output["usage"]["output_tokens"] > 0
    # The second request carried the tools and both results back to the model.
    assert sent_results(model.requests[-1].body) == [
        {"total": 3, "terms": [1, 2]},
        {"total": 7, "terms": [3, 4]},
    ]
    assert {tool["name"] for tool in sent_tools(model.requests[-1].body)} == {"add", "refuse"}
    calls = harness.of_type(EventType.AGENT_TOOL_CALL)
    results = harness.of_type(EventType.AGENT_TOOL_RESULT)
    assert len(calls) == len(results) == 2
    assert {e.data["name"] for e in calls} == {"add"}
    assert all(e.data["ok"] for e in results)


def output_of(harness: Harness, node_id: str = "helper") -> Any:
    done = harness.of_type(EventType.NODE_COMPLETED)
    return next(e.data["output"] for e in done if e.node_id == node_id)


def sent_results(body: dict[str, Any]) -> list[Any]:
    """The tool results a request carried back to the model, in any provider's form."""
    texts = []
    for message in body["messages"]:
        if message["role"] == "tool":
            texts.append(message["content"])
        elif isinstance(message["content"], list):
            texts += [b["content"] for b in message["content"] if b["type"] == "tool_result"]
    return [json.loads(text) if text[:1] in "{[" else text for text in texts]


def sent_tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The tools a request offered (name and description) in any provider's form."""
    return [
        tool.get("function")
        or {
            "name": tool["name"],
            "description": tool["description"],
            "parameters": tool["input_schema"],
        }
        for tool in body.get("tools", [])
    ]
