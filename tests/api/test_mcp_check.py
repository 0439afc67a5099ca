"""Validating and storing documents with ``mcp`` nodes checks each tool against its server's
tool list (a real MCP server over streamable HTTP on 127.0.0.1, the app in-process)."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from app.nodes.mcp_tool_check import LIST_TIMEOUT_S
from tests.api.helpers import assert_problem, create_workflow, linear, serving
from tests.mcp_server import McpTestServer

TOOL_POINTER = "/nodes/1/config/tool"


@pytest.fixture
async def server() -> AsyncIterator[McpTestServer]:
    async with McpTestServer() as served:
        yield served


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A server that takes connections (the kernel's backlog) and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/mcp"


@pytest.fixture
async def client(pg_database_url: str, server: McpTestServer) -> AsyncIterator[httpx.AsyncClient]:
    named = {"tools": {"url": server.url}}
    async with serving(pg_database_url, mcp_servers=named, shutdown_grace_s=2.0) as client:
        yield client


def calling(tool: str, server: str = "tools") -> dict[str, Any]:
    """start → call (``tool`` on ``server``)."""
    return linear(
        {"id": "start", "type": "start"},
        {"id": "call", "type": "mcp", "config": {"server": server, "tool": tool}},
        name="mcp",
    )


def tool_problem(response: httpx.Response) -> dict[str, Any]:
    body = assert_problem(response, 422, "workflow_invalid")
    (error,) = body["errors"]
    return dict(error)


async def test_a_listed_tool_is_accepted_without_warnings(
    client: httpx.AsyncClient, server: McpTestServer
) -> None:
    for document in (calling("add"), calling("shout", server=server.url)):
        validated = await client.post("/v1/workflows/validate", json=document)
        assert validated.status_code == 200, validated.text
        assert validated.json()["warnings"] == []
        created = await client.post("/v1/workflows", json=document)
        assert created.status_code == 201, created.text
        assert created.json()["warnings"] == []
        updated = await client.put(f"/v1/workflows/{created.json()['id']}", json=document)
        assert updated.status_code == 200, updated.text
        assert (updated.json()["version"], updated.json()["warnings"]) == (2, [])
    assert server.log.calls == []  # checking lists the tools, it calls none


async def test_an_unlisted_tool_is_refused_at_its_pointer(client: httpx.AsyncClient) -> None:
    for path in ("/v1/workflows/validate", "/v1/workflows"):
        error = tool_problem(await client.post(path, json=calling("ad")))
        assert (error["pointer"], error["code"]) == (TOOL_POINTER, "unknown_tool")
        assert "has no tool 'ad'" in error["msg"]
        assert "add, lines, lookup_order, refuse, shout, wait" in error["msg"]
    workflow_id = await create_workflow(client, calling("add"))
    error = tool_problem(await client.put(f"/v1/workflows/{workflow_id}", json=calling("ad")))
    assert (error["pointer"], error["code"]) == (TOOL_POINTER, "unknown_tool")
    assert (await client.get(f"/v1/workflows/{workflow_id}")).json()["version"] == 1


async def test_a_server_not_in_the_settings_is_refused(client: httpx.AsyncClient) -> None:
    error = tool_problem(await client.post("/v1/workflows", json=calling("add", server="nope")))
    assert (error["pointer"], error["code"]) == ("/nodes/1/config/server", "unknown_server")
    assert "no MCP server named 'nope'" in error["msg"]


async def test_a_nested_node_is_checked_at_its_own_pointer(client: httpx.AsyncClient) -> None:
    config = {"server": "tools", "tool": "{{ item }}"}
    call = {"id": "call", "type": "mcp", "config": config}
    body = {"nodes": [{"id": "first", "type": "start"}, call]}
    body["edges"] = [{"from": "first", "to": "call"}]
    loop = {"id": "loop", "type": "foreach", "config": {"items": [1, 2], "body": body}}
    document = linear({"id": "start", "type": "start"}, loop, name="nested")
    error = tool_problem(await client.post("/v1/workflows/validate", json=document))
    assert error["pointer"] == "/nodes/1/config/body/nodes/1/config/tool"
    assert "has no tool '{{ item }}'" in error["msg"]  # a static field: used as written
    config["tool"] = "add"
    assert (await client.post("/v1/workflows/validate", json=document)).status_code == 200


async def test_a_stopped_server_leaves_the_tool_unchecked(
    client: httpx.AsyncClient, server: McpTestServer
) -> None:
    await server.stop()
    validated = await client.post("/v1/workflows/validate", json=calling("anything"))
    assert validated.status_code == 200, validated.text
    (warning,) = validated.json()["warnings"]
    assert warning["pointer"] == TOOL_POINTER
    assert warning["message"].startswith("tool 'anything' not checked: MCP server 'tools'")
    created = await client.post("/v1/workflows", json=calling("anything"))
    assert created.status_code == 201, created.text
    assert [w["pointer"] for w in created.json()["warnings"]] == [TOOL_POINTER]
    assert "warnings" not in (await client.get(f"/v1/workflows/{created.json()['id']}")).json()


async def test_silent_servers_are_waited_for_in_parallel_and_briefly(
    client: httpx.AsyncClient, silent_url: str
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as other:
        other_url = f"http://127.0.0.1:{other.getsockname()[1]}/mcp"
        document = linear(
            {"id": "start", "type": "start"},
            {"id": "a", "type": "mcp", "config": {"server": silent_url, "tool": "x"}},
            {"id": "b", "type": "mcp", "config": {"server": other_url, "tool": "y"}},
            {"id": "c", "type": "mcp", "config": {"server": "tools", "tool": "add"}},
            name="silent",
        )
        started = time.monotonic()
        response = await client.post("/v1/workflows/validate", json=document)
        elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    warnings = response.json()["warnings"]
    assert [w["pointer"] for w in warnings] == ["/nodes/1/config/tool", "/nodes/2/config/tool"]
    assert all(f"did not answer within {LIST_TIMEOUT_S:g} s" in w["message"] for w in warnings)
    assert LIST_TIMEOUT_S <= elapsed < 2 * LIST_TIMEOUT_S  # one wait, not one per server


def agent_with(*tools: dict[str, Any]) -> dict[str, Any]:
    """start → helper (an agent with ``tools``)."""
    config = {"provider": "openai", "model": "m1", "prompt": "go", "tools": list(tools)}
    return linear(
        {"id": "start", "type": "start"},
        {"id": "helper", "type": "agent", "config": config},
        name="agent",
    )


async def test_an_agents_mcp_tools_are_checked_at_their_pointers(
    client: httpx.AsyncClient, silent_url: str
) -> None:
    listed = agent_with({"type": "mcp", "server": "tools", "include": ["add", "shout"]})
    validated = await client.post("/v1/workflows/validate", json=listed)
    assert validated.status_code == 200, validated.text
    assert validated.json()["warnings"] == []

    unknown = agent_with(
        {"type": "mcp", "server": "tools"},
        {"type": "mcp", "server": "tools", "include": ["add", "ad"]},
    )
    error = tool_problem(await client.post("/v1/workflows", json=unknown))
    assert (error["pointer"], error["code"]) == (
        "/nodes/1/config/tools/1/include/1",
        "unknown_tool",
    )
    error = tool_problem(
        await client.post("/v1/workflows", json=agent_with({"type": "mcp", "server": "nope"}))
    )
    assert (error["pointer"], error["code"]) == ("/nodes/1/config/tools/0/server", "unknown_server")

    silent = agent_with({"type": "mcp", "server": silent_url, "include": ["add"]})
    started = time.monotonic()
    created = await client.post("/v1/workflows", json=silent)
    assert created.status_code == 201, created.text
    assert time.monotonic() - started < LIST_TIMEOUT_S + 2
    [warning] = created.json()["warnings"]
    assert warning["pointer"] == "/nodes/1/config/tools/0/include/0"
    assert "not checked" in warning["message"]
