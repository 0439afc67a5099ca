"""An agent's durable turns and tool calls across a SIGKILL of its owner, on real ``oxify serve``
replicas over Postgres, a local OpenAI-compatible model server and a local MCP server.

The promises (app/nodes/agent/node.py): a model turn that was recorded is never sent again, a
tool call that was recorded never runs again, and a call cut off by the crash runs again with
the same idempotency key.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

from app.faults import FaultRule
from app.nodes.agent.tools import IDEMPOTENCY_META
from tests.e2e.cluster import (
    FAST_LEASES,
    assert_gap_free_log,
    client,
    cluster,
    create_workflow,
    event_log,
    settled,
    start_run,
)
from tests.e2e.processes import ServerProcess
from tests.mcp_server import McpTestServer
from tests.providers import ProviderServer, Text, ToolCall, ToolCalls, openai_server

SETTLE_S = 60.0  # seconds a run, a tool call or a replica's death may take here (they take a few)
NODE = "helper"
CHAT_PATH = "/v1/chat/completions"


def agent_workflow(model: ProviderServer, mcp: McpTestServer, tool: str) -> dict[str, Any]:
    config = {
        "provider": "openai",
        "base_url": model.url,
        "model": "m1",
        "prompt": "go",
        "tools": [{"type": "mcp", "server": mcp.url, "include": [tool]}],
    }
    return {"name": "agent-takeover", "nodes": [{"id": NODE, "type": "agent", "config": config}]}


def recovered(events: list[dict[str, Any]]) -> bool:
    return any(
        e["type"] == "workflow.resumed" and e["data"]["reason"] == "recovered" for e in events
    )


def of_type(events: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == event_type]


def assert_two_turns(model: ProviderServer, tool_message: str) -> None:
    """The model was asked exactly twice: turn 1 (the prompt alone) and turn 2 (after the
    call's result); neither was asked again."""
    assert model.counts == {CHAT_PATH: 2}, model.counts
    first, second = (request.body["messages"] for request in model.requests)
    assert [m["role"] for m in first] == ["user"], first
    assert [m["role"] for m in second] == ["user", "assistant", "tool"], second
    assert second[-1]["content"] == tool_message, second


def completed_output(done: dict[str, Any]) -> dict[str, Any]:
    assert done["status"] == "completed", done
    (node,) = [n for n in done["nodes"] if n["node_id"] == NODE]
    output: dict[str, Any] = node["output"]
    return output


async def test_a_finished_tool_call_is_not_repeated_when_the_owner_dies_before_the_next_turn(
    fresh_pg_url: str,
) -> None:
    # The owner dies (os._exit, as kill -9) right before it sends turn 2: turn 1 and its call
    # are recorded, so the replica that takes the run over sends turn 2 only.
    rule = FaultRule(point="agent.turn", action="exit", match="turn-2")
    faults = json.dumps([rule.model_dump(exclude_defaults=True)])
    armed = ServerProcess(
        fresh_pg_url, settings={**FAST_LEASES, "replica_id": "armed", "faults": faults}
    )
    spare = ServerProcess(fresh_pg_url, settings={**FAST_LEASES, "replica_id": "spare"})
    try:
        async with openai_server() as model, McpTestServer() as mcp:
            model.script(ToolCalls([ToolCall("add", {"a": 1, "b": 2})]), Text("done"))
            # Alone, the armed replica claims the run; the spare starts once it died, so the
            # run can only reach the spare by a takeover.
            await armed.start()
            run_id = await start_run(
                armed, await create_workflow(armed, agent_workflow(model, mcp, "add"))
            )
            assert armed.process is not None
            async with asyncio.timeout(SETTLE_S):
                assert await armed.process.wait() == rule.exit_code, armed.log_tail()
            assert model.counts == {CHAT_PATH: 1}  # turn 2 was never sent by the armed one
            await spare.start()
            async with asyncio.timeout(SETTLE_S):
                done = await settled(spare, run_id)
            events = await event_log(spare, run_id)

        output = completed_output(done)
        assert done["owner"] == "spare"
        assert_gap_free_log(events)
        assert recovered(events)
        assert_two_turns(model, '{"total":3,"terms":[1,2]}')
        assert mcp.log.calls == [("add", {"a": 1, "b": 2})]
        assert output["text"] == "done" and output["turns"] == 2, output
        [call] = output["tool_calls"]
        assert call["turn"] == 1 and call["name"] == "add", call
        assert call["ok"] and call["result"] == {"total": 3, "terms": [1, 2]}, call
        for event_type in ("agent.tool_call", "agent.tool_result"):
            [event] = of_type(events, event_type)
            assert event["data"]["call_id"] == call["id"], event
        steps = Counter(e["data"]["name"] for e in of_type(events, "node.step"))
        assert steps == {"turn-1": 1, "turn-1/call-0": 1, "turn-2": 1}, steps
    finally:
        for replica in (armed, spare):
            await replica.stop()
            replica.close()


async def test_a_tool_call_cut_off_by_a_sigkill_runs_again_with_the_same_key(
    fresh_pg_url: str,
) -> None:
    # The owner is killed while the MCP server holds the call: the call never recorded a
    # result, so the replica that takes the run over makes it again, with the same key; turn 1
    # was recorded and is not sent again.
    async with (
        openai_server() as model,
        McpTestServer() as mcp,
        cluster(fresh_pg_url, size=2) as replicas,
    ):
        model.script(ToolCalls([ToolCall("wait")]), Text("done"))
        entry = replicas.replicas[0]
        run_id = await start_run(
            entry, await create_workflow(entry, agent_workflow(model, mcp, "wait"))
        )
        async with asyncio.timeout(SETTLE_S):
            await mcp.log.waiting.wait()
        async with client(entry) as http:
            owner_id = (await http.get(f"/v1/executions/{run_id}")).json()["owner"]
        owner = replicas.replica(owner_id)
        await owner.kill()
        mcp.log.release.set()  # the first request answers into the void; the next at once
        survivor = replicas.other_than(owner)
        async with asyncio.timeout(SETTLE_S):
            done = await settled(survivor, run_id)
        events = await event_log(survivor, run_id)

    output = completed_output(done)
    assert done["owner"] != owner_id
    assert_gap_free_log(events)
    assert recovered(events)
    assert_two_turns(model, '{"result":"released"}')
    assert mcp.log.calls == [("wait", {}), ("wait", {})]
    key = f"{run_id}:{NODE}/turn-1/call-0"
    assert [meta.get(IDEMPOTENCY_META) for meta in mcp.log.wait_meta] == [key, key]
    assert output["text"] == "done" and output["turns"] == 2, output
    [call] = output["tool_calls"]
    assert call["ok"] and call["result"] == {"result": "released"}, call
    # The cut-off attempt's agent.tool_call may or may not have reached the log before the
    # kill; its result never did: one result, from the attempt that finished.
    assert 1 <= len(of_type(events, "agent.tool_call")) <= 2
    [result] = of_type(events, "agent.tool_result")
    assert result["data"]["call_id"] == call["id"] and result["data"]["ok"], result
    steps = Counter(e["data"]["name"] for e in of_type(events, "node.step"))
    assert steps == {"turn-1": 1, "turn-1/call-0": 1, "turn-2": 1}, steps
