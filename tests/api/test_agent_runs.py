"""``agent`` nodes in runs of the app on Postgres, against the local OpenAI-compatible server
and MCP server: tool calls that wait for approval (approved, rejected, past their deadline),
the approval's form and audit, and the transcript under the node."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.domain.events import EventType
from tests.api.helpers import assert_problem, create_workflow, serving, start_run
from tests.api.test_forms import event_types, finished, submit, waiting_forms
from tests.mcp_server import McpTestServer
from tests.providers import ProviderServer, Text, ToolCall, ToolCalls, openai_server

REASONING = "The order is broken; refunding it."


@pytest.fixture
async def model() -> AsyncIterator[ProviderServer]:
    async with openai_server() as srv:
        yield srv


@pytest.fixture
async def mcp() -> AsyncIterator[McpTestServer]:
    async with McpTestServer() as server:
        yield server


def agent_workflow(
    model: ProviderServer, mcp: McpTestServer, approval: Any = True, **config: Any
) -> dict[str, Any]:
    """start → helper (an agent whose `shout` tool needs approval, `add` does not) → end."""
    tools = [
        {"type": "mcp", "server": mcp.url, "include": ["shout"], "approval": approval},
        {"type": "mcp", "server": mcp.url, "include": ["add"]},
    ]
    agent = {
        "id": "helper",
        "type": "agent",
        "config": {
            "provider": "openai",
            "base_url": model.url,
            "model": "m1",
            "prompt": "help",
            "tools": tools,
            **config,
        },
    }
    end = {"id": "end", "type": "end", "config": {"outputs": {"agent": "{{ helper.output }}"}}}
    return {
        "name": "agent",
        "nodes": [{"id": "start", "type": "start"}, agent, end],
        "edges": [{"from": "start", "to": "helper"}, {"from": "helper", "to": "end"}],
    }


def script_shout(model: ProviderServer) -> None:
    """Turn 1: `add` and `shout` at once; turn 2: the answer."""
    model.script(
        ToolCalls(
            [ToolCall("add", {"a": 2, "b": 3}), ToolCall("shout", {"text": "hi"})], REASONING
        ),
        Text("All done."),
    )


async def test_an_approved_call_runs_and_the_run_holds_nothing_while_it_waits(
    fresh_pg_url: str, model: ProviderServer, mcp: McpTestServer
) -> None:
    script_shout(model)
    approval = {"approvers": ["ann", "bob"], "required": 1}
    async with serving(fresh_pg_url) as client:
        workflow_id = await create_workflow(client, agent_workflow(model, mcp, approval))
        run = await start_run(client, workflow_id, {"by": "ann"})
        [form] = await waiting_forms(client, run["id"])
        assert form["kind"] == "approval" and form["node_key"] == "helper"
        assert form["context"] == {
            "tool": "shout",
            "arguments": {"text": "hi"},
            "reasoning": REASONING,
        }
        assert form["approvers"] == ["ann", "bob"] and form["quorum"] == 1
        # Nothing ran yet: approvals are decided before the turn's calls go out.
        assert mcp.log.calls == []
        assert model.counts["/v1/chat/completions"] == 1
        waiting = (await client.get(f"/v1/executions/{run['id']}")).json()
        [node] = [n for n in waiting["nodes"] if n["node_id"] == "helper"]
        assert node["status"] == "waiting"
        assert [s["name"] for s in node["steps"]] == ["turn-1"]
    # The server is gone: the waiting agent held no task. Another one takes the answer.
    async with serving(fresh_pg_url) as client:
        assert_problem(
            await submit(client, form["id"], {"decision": "approved"}, by="ann"),
            403,
            "not_an_approver",  # ann started the run
        )
        answer = await submit(client, form["id"], {"decision": "approved"}, by="bob")
        assert answer.status_code == 200, answer.text
        done = await finished(client, run["id"])
    assert done["status"] == "completed", done
    output = done["outputs"]["agent"]
    assert output["text"] == "All done." and output["turns"] == 2
    add, shout = output["tool_calls"]
    assert add["ok"] and add["result"] == {"total": 5, "terms": [2, 3]} and "approved_by" not in add
    assert shout == {
        "turn": 1,
        "id": shout["id"],
        "name": "shout",
        "arguments": {"text": "hi"},
        "ok": True,
        "result": "HI!",
        "approved_by": ["bob"],
    }
    assert sorted(name for name, _ in mcp.log.calls) == ["add", "shout"]
    # Turn 1 was not asked again after the wait: one request per turn.
    assert model.counts["/v1/chat/completions"] == 2
    async with serving(fresh_pg_url) as client:
        types = await event_types(client, run["id"])
        log = (await client.get(f"/v1/executions/{run['id']}/events/log")).json()["items"]
    assert types.count("form.requested") == 1 and types.count("form.submitted") == 1
    results = [e for e in log if e["type"] == EventType.AGENT_TOOL_RESULT]
    assert sorted(e["data"].get("approved_by", []) == ["bob"] for e in results) == [False, True]
    assert types.count(EventType.AGENT_TOOL_CALL) == 2


async def test_a_rejected_call_is_refused_to_the_model_with_the_comment(
    fresh_pg_url: str, model: ProviderServer, mcp: McpTestServer
) -> None:
    script_shout(model)
    async with serving(fresh_pg_url) as client:
        workflow_id = await create_workflow(client, agent_workflow(model, mcp))
        run = await start_run(client, workflow_id)
        [form] = await waiting_forms(client, run["id"])
        answer = await submit(
            client, form["id"], {"decision": "rejected", "comment": "too loud"}, by="cid"
        )
        assert answer.status_code == 200, answer.text
        done = await finished(client, run["id"])
    assert done["status"] == "completed", done
    shout = done["outputs"]["agent"]["tool_calls"][1]
    assert not shout["ok"] and "people rejected it (too loud)" in shout["error"]
    assert [name for name, _ in mcp.log.calls] == ["add"]  # the rejected call never ran
    last = model.requests[-1].body["messages"]
    refused = [m for m in last if m["role"] == "tool" and "too loud" in m["content"]]
    assert len(refused) == 1


@pytest.mark.parametrize(("on_timeout", "ran"), [("reject", False), ("approve", True)])
async def test_an_approval_past_its_deadline_follows_on_timeout(
    fresh_pg_url: str, model: ProviderServer, mcp: McpTestServer, on_timeout: str, ran: bool
) -> None:
    script_shout(model)
    approval = {"timeout_s": 0.2, "on_timeout": on_timeout}
    async with serving(fresh_pg_url, deadline_sweep_s=0.05) as client:
        workflow_id = await create_workflow(client, agent_workflow(model, mcp, approval))
        run = await start_run(client, workflow_id)
        [form] = await waiting_forms(client, run["id"])
        assert form["deadline"] is not None and form["on_timeout"] == on_timeout
        done = await finished(client, run["id"])
        assert (await client.get(f"/v1/forms/{form['id']}")).json()["status"] == "timed_out"
        assert "form.timed_out" in await event_types(client, run["id"])
    assert done["status"] == "completed", done
    shout = done["outputs"]["agent"]["tool_calls"][1]
    assert shout["ok"] is ran and shout["approved_by"] == []
    if not ran:
        assert "nobody approved it in time" in shout["error"]
    assert ("shout" in [name for name, _ in mcp.log.calls]) is ran


async def test_the_transcript_is_shown_under_the_node(
    fresh_pg_url: str, model: ProviderServer, mcp: McpTestServer
) -> None:
    model.script(ToolCalls([ToolCall("add", {"a": 1, "b": 1})]), Text("Two."))
    async with serving(fresh_pg_url) as client:
        workflow_id = await create_workflow(client, agent_workflow(model, mcp))
        run = await start_run(client, workflow_id)
        done = await finished(client, run["id"])
    assert done["status"] == "completed", done
    [node] = [n for n in done["nodes"] if n["node_id"] == "helper"]
    messages = node["output"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[1]["tool_calls"][0]["name"] == "add"
    assert [s["name"] for s in node["steps"]] == ["turn-1", "turn-1/call-0", "turn-2"]
    assert node["usage"]["api_calls"] == 3  # two model turns and one MCP call
