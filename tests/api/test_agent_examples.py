"""The agent examples end to end on a server on Postgres, against the local model server and
local MCP and HTTP servers: ``agent_support`` (an MCP tool, a refund that people approve) and
``agent_research`` (an http search tool, the stored ``notes`` workflow as a tool)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.helpers import create_workflow, serving, start_run
from tests.api.test_forms import finished, submit, waiting_forms
from tests.integration.net_server import NetServer, net_server
from tests.mcp_server import McpTestServer
from tests.providers import ProviderServer, Text, ToolCall, ToolCalls, openai_server

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return document


@pytest.fixture
async def model() -> AsyncIterator[ProviderServer]:
    async with openai_server() as srv:
        yield srv


async def test_the_support_agent_refunds_once_people_approve(
    fresh_pg_url: str, model: ProviderServer
) -> None:
    refund = {"order_id": "A-1001", "amount_cents": 4999, "reason": "arrived broken"}
    model.script(
        ToolCalls([ToolCall("lookup_order", {"order_id": "A-1001"})], "Let me look it up."),
        ToolCalls([ToolCall("refund", refund)], "It arrived broken: a full refund."),
        Text("Sorry it arrived broken: we refunded the 49.99 you paid."),
    )
    inputs = {"base_url": model.url, "model": "m1"}
    async with (
        McpTestServer() as mcp,
        serving(fresh_pg_url, mcp_servers={"demo": {"url": mcp.url}}) as client,
    ):
        workflow_id = await create_workflow(client, example("agent_support"))
        run = await start_run(client, workflow_id, {"inputs": inputs})
        [form] = await waiting_forms(client, run["id"])
        assert form["context"] == {
            "tool": "refund",
            "arguments": refund,
            "reasoning": "It arrived broken: a full refund.",
        }
        assert form["approvers"] == ["finance-lead", "group:support-leads"]
        answer = await submit(client, form["id"], {"decision": "approved"}, by="finance-lead")
        assert answer.status_code == 200, answer.text
        done = await finished(client, run["id"])
        assert done["status"] == "completed", done
        assert done["outputs"] == {
            "reply": "Sorry it arrived broken: we refunded the 49.99 you paid.",
            "refunds": [{"refund_id": "R-A-1001", "amount_cents": 4999, "status": "refunded"}],
            "turns": 3,
        }
        assert mcp.log.calls == [("lookup_order", {"order_id": "A-1001"})]


async def test_the_research_agent_searches_and_files_a_note(
    fresh_pg_url: str, model: ProviderServer
) -> None:
    points = ["every turn is journaled", "a finished call never runs again"]
    model.script(
        ToolCalls([ToolCall("search", {"query": "durable agents"})]),
        ToolCalls([ToolCall("save_note", {"title": "Durable agents", "points": points})]),
        Text("Filed: Durable agents. Agents survive crashes without paying twice."),
    )
    web: NetServer
    async with net_server() as web, serving(fresh_pg_url) as client:
        notes_id = await create_workflow(client, example("notes"))
        workflow_id = await create_workflow(client, example("agent_research"))
        inputs = {
            "base_url": model.url,
            "model": "m1",
            "search_url": f"{web.url}/answer/search",
            "notes_workflow_id": notes_id,
        }
        run = await start_run(client, workflow_id, {"inputs": inputs})
        done = await finished(client, run["id"])
    assert done["status"] == "completed", done
    assert done["outputs"] == {
        "answer": "Filed: Durable agents. Agents survive crashes without paying twice.",
        "notes": [
            "# Durable agents\n\n- every turn is journaled\n- a finished call never runs again"
        ],
        "searches": 1,
    }
    [search] = web.requests
    assert search.query == [("q", "durable agents")]
    # The model was offered the notes workflow's inputs schema as save_note's parameters.
    offered = {t["function"]["name"]: t["function"] for t in model.requests[0].body["tools"]}
    assert offered["save_note"]["parameters"]["required"] == ["title", "points"]
