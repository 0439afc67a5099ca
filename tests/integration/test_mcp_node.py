"""The ``mcp`` node through the scheduler, with the real MCP client against a real MCP server
(the ``mcp`` package's MCPServer) over streamable HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.domain.events import EventType
from app.domain.status import ExecutionStatus
from app.engine.run.control import RunControl
from app.nodes import mcp_node, mcp_sessions
from app.nodes.registry import core_registry
from app.nodes.resources import NodeResources
from app.settings import Settings
from tests.mcp_server import McpTestServer
from tests.support import Harness, workflow

CONNECT_TIMEOUT_S = 1.0  # seconds: what "an unreachable server fails quickly" is held to here


@pytest.fixture
async def server() -> AsyncIterator[McpTestServer]:
    async with McpTestServer() as served:
        yield served


@pytest.fixture
async def resources(server: McpTestServer) -> AsyncIterator[NodeResources]:
    settings = Settings(
        mcp_servers={"tools": {"url": server.url, "headers": {"X-Team": "oxify"}}},
        mcp_connect_timeout_s=CONNECT_TIMEOUT_S,
    )
    async with NodeResources(settings=settings) as shared:
        yield shared


@pytest.fixture
def harness(resources: NodeResources) -> Harness:
    return Harness(registry=core_registry(resources))


def call(tool: str, server: str = "tools", **config: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"id": "call", "type": "mcp", "config": {"server": server, "tool": tool}}
    spec["config"].update(config)
    if "retry" in spec["config"]:
        spec["retry"] = spec["config"].pop("retry")
    return spec


def completed_usage(harness: Harness, execution_id: str = "run-1") -> Any:
    (done,) = [e for e in harness.of_type(EventType.NODE_COMPLETED, execution_id)]
    return done.data.get("usage")


async def test_structured_content_with_template_arguments(
    harness: Harness, server: McpTestServer
) -> None:
    doc = workflow([call("add", arguments={"a": "{{ inputs.a }}", "b": "{{ inputs.a * 2 }}"})], [])
    outcome = await harness.run(doc, {"a": 4})
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert outcome.outputs == {"total": 12, "terms": [4, 8]}
    assert server.log.calls == [("add", {"a": 4, "b": 8})]
    assert completed_usage(harness)["api_calls"] == 1


async def test_text_content_by_url(harness: Harness, server: McpTestServer) -> None:
    doc = workflow(
        [call("shout", server=server.url, arguments={"text": "hi {{ inputs.who }}"})], []
    )
    outcome = await harness.run(doc, {"who": "ada"})
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert outcome.outputs == "HI ADA!"


async def test_text_blocks_are_joined_by_newlines(harness: Harness) -> None:
    outcome = await harness.run(workflow([call("lines")], []))
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert outcome.outputs == "first\nsecond"


async def test_tool_error_fails_the_node_without_retry(
    harness: Harness, server: McpTestServer
) -> None:
    doc = workflow([call("refuse", arguments={"reason": "no"}, retry={"max_retries": 3})], [])
    outcome = await harness.run(doc)
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None
    assert outcome.error["code"] == "mcp_tool_error"
    assert "refused: no" in outcome.error["message"]
    assert server.log.calls == [("refuse", {"reason": "no"})]


async def test_unknown_tool_names_the_tools_the_server_has(harness: Harness) -> None:
    outcome = await harness.run(workflow([call("subtract")], []))
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and outcome.error["code"] == "mcp_unknown_tool"
    assert "'subtract'" in outcome.error["message"]
    assert "add, lines, lookup_order, refuse, shout, wait" in outcome.error["message"]


async def test_unknown_server_name_is_a_config_error(harness: Harness) -> None:
    outcome = await harness.run(workflow([call("add", server="elsewhere")], []))
    assert outcome.error is not None and outcome.error["code"] == "node_config_invalid"
    assert "known: tools" in outcome.error["message"]


async def test_lists_tools_and_shares_one_session(
    resources: NodeResources, server: McpTestServer
) -> None:
    pool = mcp_node.session_pool(resources)
    target = mcp_node.resolve_server(resources, "tools")
    names = await pool.tool_names(target)
    assert names == {"add", "shout", "lines", "lookup_order", "refuse", "wait"}
    first = await pool.session(target)
    results = await asyncio.gather(
        *(
            pool.call_tool(target, "add", {"a": i, "b": 1}, timeout_s=5, before_send=lambda: None)
            for i in range(5)
        )
    )
    assert [r.structured_content for r in results] == [
        {"total": i + 1, "terms": [i, 1]} for i in range(5)
    ]
    assert await pool.session(target) is first


async def test_server_down_fails_quickly_and_retryably(resources: NodeResources) -> None:
    harness = Harness(registry=core_registry(resources))
    doc = workflow([call("add", server="http://127.0.0.1:9/mcp", arguments={"a": 1, "b": 2})], [])
    started = time.monotonic()
    outcome = await harness.run(doc)
    assert time.monotonic() - started < 5 * CONNECT_TIMEOUT_S
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and outcome.error["code"] == "mcp_unreachable"
    assert "http://127.0.0.1:9/mcp" in outcome.error["message"]


async def test_server_restarted_between_runs(harness: Harness, server: McpTestServer) -> None:
    doc = workflow([call("add", arguments={"a": 1, "b": 2})], [])
    first = await harness.run(doc, execution_id="run-1")
    assert first.status is ExecutionStatus.COMPLETED, first.error
    await server.stop()
    down = await harness.run(doc, execution_id="run-2")
    # The pooled session's call could not connect (nothing sent): re-sent once on a fresh
    # session, whose opening fails; the run spent the one call it sent.
    assert down.error is not None and down.error["code"] == "mcp_unreachable"
    (failed,) = harness.of_type(EventType.NODE_FAILED, "run-2")
    assert failed.data["usage"]["api_calls"] == 1
    await server.start()
    again = await harness.run(doc, execution_id="run-3")
    assert again.status is ExecutionStatus.COMPLETED, again.error
    assert again.outputs == {"total": 3, "terms": [1, 2]}


async def test_server_restarted_under_a_live_session(
    resources: NodeResources, server: McpTestServer
) -> None:
    """The pooled session outlives the server; the next call still reaches the new one."""
    harness = Harness(registry=core_registry(resources))
    doc = workflow([call("shout", arguments={"text": "again"})], [])
    assert (await harness.run(doc, execution_id="run-1")).outputs == "AGAIN!"
    await server.stop()
    await server.start()
    outcome = await harness.run(doc, execution_id="run-2")
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert outcome.outputs == "AGAIN!"
    assert completed_usage(harness, "run-2")["api_calls"] == 1


async def test_timeout_bounds_the_call(harness: Harness, server: McpTestServer) -> None:
    outcome = await harness.run(workflow([call("wait", timeout_s=0.3)], []))
    assert outcome.error is not None and outcome.error["code"] == "mcp_timeout"
    assert server.log.waiting.is_set()


async def test_cancel_aborts_the_call(harness: Harness, server: McpTestServer) -> None:
    control = RunControl()
    run = asyncio.create_task(harness.run(workflow([call("wait")], []), control=control))
    await server.log.waiting.wait()
    control.cancel()
    outcome = await asyncio.wait_for(run, 5)
    assert outcome.status is ExecutionStatus.CANCELLED
    assert not server.log.release.is_set()


async def test_a_server_the_egress_policy_refuses_is_never_reached(server: McpTestServer) -> None:
    settings = Settings(egress_deny=["127.0.0.0/8"], mcp_connect_timeout_s=CONNECT_TIMEOUT_S)
    async with NodeResources(settings=settings) as denied:
        harness = Harness(registry=core_registry(denied))
        retry = {"max_retries": 2, "initial_delay_ms": 1, "max_delay_ms": 1}
        outcome = await harness.run(workflow([call("add", server=server.url, retry=retry)], []))
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and outcome.error["code"] == "egress_refused", outcome.error
    assert harness.of_type(EventType.NODE_RETRY) == []
    assert server.log.calls == []


async def test_the_pool_keeps_a_bounded_number_of_sessions(
    resources: NodeResources, server: McpTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Servers named by URL are the documents' to choose: URL variants must not pile up sessions.
    monkeypatch.setattr(mcp_sessions, "MAX_SESSIONS", 2)
    pool = mcp_node.session_pool(resources)
    for n in range(5):
        target = mcp_node.resolve_server(resources, f"{server.url}?n={n}")
        assert "add" in await pool.tool_names(target)
        assert len(pool) <= 2
