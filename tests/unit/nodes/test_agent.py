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
    Failure,
    ProviderServer,
    Text,
    ToolCall,
    ToolCalls,
    anthropic_server,
    ollama_server,
    openai_server,
)
from tests.support import Harness, edge, node, workflow

OPENAI_CANARY = "sk-canary-agent-openai-90e1"
ANTHROPIC_CANARY = "sk-ant-canary-agent-77c3"
RETRY = {"max_retries": 2, "initial_delay_ms": 10, "max_delay_ms": 100}
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


# -- the loop's rules (OpenAI's wire; the adapters are covered above) ----------------------


@pytest.fixture
async def srv() -> AsyncIterator[ProviderServer]:
    async with openai_server() as server:
        yield server


def helper(srv: ProviderServer, tools: list[dict[str, Any]], **config: Any) -> dict[str, Any]:
    return agent("openai", srv, tools, **config)


async def test_calls_that_do_not_fit_go_back_to_the_model_as_errors(
    harness: Harness, srv: ProviderServer, mcp: McpTestServer
) -> None:
    srv.script(
        ToolCalls(
            [
                ToolCall("add", {"a": "one", "b": 2}),
                ToolCall("subtract", {"a": 1}),
                ToolCall("refuse", {"reason": "no stock"}),
            ]
        ),
        ToolCalls([ToolCall("add", {"a": 1, "b": 2})]),
        Text("3"),
    )
    outcome = await harness.run(workflow([helper(srv, [mcp_tools(mcp)])], []))
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    output = output_of(harness)
    bad_type, unknown, failed, fixed = output["tool_calls"]
    assert not bad_type["ok"] and "parameters at /a" in bad_type["error"]
    assert not unknown["ok"] and "no tool 'subtract'" in unknown["error"]
    assert not failed["ok"] and "refused: no stock" in failed["error"]
    assert fixed["ok"] and fixed["turn"] == 2 and fixed["result"]["total"] == 3
    # Only the valid calls reached the server; the model saw every error.
    assert [name for name, _ in mcp.log.calls] == ["refuse", "add"]
    errors = [m for m in srv.requests[1].body["messages"] if m["role"] == "tool"]
    assert len(errors) == 3 and all(m["content"].startswith("error: ") for m in errors)


async def test_max_turns_fails_the_node_with_the_transcript(
    harness: Harness, srv: ProviderServer, mcp: McpTestServer
) -> None:
    srv.script(*[ToolCalls([ToolCall("add", {"a": i, "b": 1})]) for i in range(3)])
    outcome = await harness.run(workflow([helper(srv, [mcp_tools(mcp)], max_turns=2)], []))
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and outcome.error["code"] == "max_turns_exceeded"
    details = outcome.error["details"]
    assert details["turns"] == 2 and len(details["tool_calls"]) == 1
    assert [m["role"] for m in details["messages"]] == ["user", "assistant", "tool", "assistant"]
    # The calls of the last turn were never made: nobody would read their results.
    assert len(mcp.log.calls) == 1 and len(srv.requests) == 2


async def test_a_run_limit_crossed_mid_loop_fails_the_run(
    harness: Harness, srv: ProviderServer, mcp: McpTestServer
) -> None:
    srv.script(*[ToolCalls([ToolCall("add", {"a": i, "b": 1})]) for i in range(5)])
    document = workflow([helper(srv, [mcp_tools(mcp)])], [])
    outcome = await harness.run(document, config={"limits": {"max_api_calls": 4}})
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and outcome.error["code"] == "run_limit_exceeded"
    # turn 1, call, turn 2, call: the fifth call (turn 3) is refused before it is sent.
    assert len(srv.requests) == 2 and len(mcp.log.calls) == 2


async def test_a_final_answer_that_misses_the_schema_is_sent_back_once(
    harness: Harness, srv: ProviderServer
) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    srv.script(Text("three"), Text.of_json({"n": 3}))
    outcome = await harness.run(workflow([helper(srv, [], response_format=schema)], []))
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    output = output_of(harness)
    assert output["json"] == {"n": 3} and output["turns"] == 2
    retry = srv.requests[1].body["messages"][-1]
    assert retry["role"] == "user" and "refused" in retry["content"]

    srv.script(Text("three"), Text("still three"))
    outcome = await harness.run(
        workflow([helper(srv, [], response_format=schema)], []), execution_id="run-2"
    )
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and outcome.error["code"] == "agent_answer_invalid"


async def test_finished_turns_and_calls_are_not_repeated_by_a_retry(
    harness: Harness, srv: ProviderServer, mcp: McpTestServer
) -> None:
    srv.script(
        ToolCalls([ToolCall("add", {"a": 1, "b": 2})]),
        Failure(503, "overloaded"),  # turn 2 fails: the node is retried
        Text("3"),
    )
    spec = helper(srv, [mcp_tools(mcp)], retry=RETRY)
    outcome = await harness.run(workflow([spec], []))
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert output_of(harness)["turns"] == 2
    # Turn 1 and the call ran once; turn 2 twice (the first try failed).
    assert len(srv.requests) == 3 and len(mcp.log.calls) == 1
    steps = [e.data for e in harness.of_type(EventType.NODE_STEP)]
    assert [(s["name"], s["ok"]) for s in steps] == [
        ("turn-1", True),
        ("turn-1/call-0", True),
        ("turn-2", False),
        ("turn-2", True),
    ]


async def test_one_call_at_a_time_when_parallel_calls_are_off(
    harness: Harness, srv: ProviderServer, mcp: McpTestServer
) -> None:
    srv.script(
        ToolCalls([ToolCall("add", {"a": 1, "b": 1}), ToolCall("add", {"a": 2, "b": 2})]),
        Text("done"),
    )
    spec = helper(srv, [mcp_tools(mcp)], parallel_tool_calls=False)
    outcome = await harness.run(workflow([spec], []))
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert srv.requests[0].body["parallel_tool_calls"] is False
    assert [args["a"] for _, args in mcp.log.calls] == [1, 2]


async def test_http_tool_renders_args_and_sends_a_stable_idempotency_key(
    harness: Harness, srv: ProviderServer, web: NetServer
) -> None:
    token = "tok-canary-9b1f"
    tool = {
        "type": "http",
        "name": "search",
        "description": "Searches.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        },
        "request": {
            "method": "POST",
            "url": f"{web.url}/answer/search",
            "query": {"q": "{{ args.query }}"},
            "body": {"asked": "{{ args.query }}", "by": "{{ inputs.who }}"},
        },
        "auth": {"type": "bearer", "token": "{{ inputs.token }}"},
    }
    srv.script(ToolCalls([ToolCall("search", {"query": "durable agents & more"})]), Text("ok"))
    outcome = await harness.run(workflow([helper(srv, [tool])], []), {"who": "ada", "token": token})
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    [seen] = web.requests
    assert seen.query == [("q", "durable agents & more")]
    assert json.loads(seen.body) == {"asked": "durable agents & more", "by": "ada"}
    assert seen.headers["authorization"] == f"Bearer {token}"
    assert seen.headers["idempotency-key"] == "run-1:helper/turn-1/call-0"
    result = output_of(harness)["tool_calls"][0]["result"]
    assert result["status"] == 200 and result["json"]["path"] == "/answer/search"
    # The token reached the API it was meant for, and nothing else.
    assert token not in json.dumps([e.data for e in harness.events()])
    assert token not in json.dumps([r.body for r in srv.requests])


async def test_code_and_workflow_tools(harness: Harness, srv: ProviderServer) -> None:
    notes = workflow(
        [
            node("start", "start"),
            node("end", "end", outputs={"line": "{{ inputs.title + ': ' + str(inputs.n) }}"}),
        ],
        [edge("start", "end")],
    ) | {
        "inputs": {
            "type": "object",
            "properties": {"title": {"type": "string"}, "n": {"type": "integer", "default": 7}},
            "required": ["title"],
        }
    }
    notes_id = harness.store.save_workflow(notes)
    tools = [
        {
            "type": "code",
            "name": "double",
            "description": "Doubles x.",
            "parameters": {"type": "object", "properties": {"x": {"type": "number"}}},
            "source": "def main(inputs):\n    return {'doubled': inputs['x'] * 2}\n",
        },
        {
            "type": "workflow",
            "name": "note",
            "description": "Files a note.",
            "workflow_id": "{{ inputs.notes }}",
        },
    ]
    srv.script(
        ToolCalls([ToolCall("double", {"x": 21}), ToolCall("note", {"title": "answer"})]),
        ToolCalls([ToolCall("note", {"n": 1})]),  # misses the required title
        Text("42"),
    )
    outcome = await harness.run(workflow([helper(srv, tools)], []), {"notes": notes_id})
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    double, note, missing = output_of(harness)["tool_calls"]
    assert double["result"] == {"doubled": 42}
    assert note["result"] == {"line": "answer: 7"}
    assert not missing["ok"] and "title" in missing["error"]
    offered = {t["name"]: t for t in sent_tools(srv.requests[0].body)}
    assert offered["note"]["parameters"]["required"] == ["title"]
    # The sub-workflow's nodes ran under the call's key.
    keys = {e.node_id for e in harness.of_type(EventType.NODE_COMPLETED)}
    assert "helper.turn-1/call-1.end" in keys


async def test_the_provider_key_appears_nowhere(harness: Harness, mcp: McpTestServer) -> None:
    async with openai_server() as official:
        settings = Settings(
            database_url="sqlite+aiosqlite:///:memory:",
            openai_api_key=OPENAI_CANARY,
            openai_base_url=official.url,
        )
        async with NodeResources(settings=settings) as made:
            keyed = Harness(registry=core_registry(made))
            official.script(ToolCalls([ToolCall("refuse", {"reason": "x"})]), Text("no"))
            spec = node("helper", "agent", provider="openai", model="m1", prompt="go")
            spec["config"]["tools"] = [mcp_tools(mcp)]
            outcome = await keyed.run(workflow([spec], []))
        assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
        assert official.requests[0].headers["authorization"] == f"Bearer {OPENAI_CANARY}"
    everything = json.dumps([e.data for e in keyed.events()])
    assert OPENAI_CANARY not in everything and "refused: x" in everything


async def test_a_workflow_tool_that_waits_for_people_suspends_the_agent(
    harness: Harness, srv: ProviderServer
) -> None:
    vote = node("vote", "approval", prompt="Publish?")
    published = node("end", "end", outputs={"decision": "{{ vote.output.decision }}"})
    publish = workflow(
        [node("start", "start"), vote, published], [edge("start", "vote"), edge("vote", "end")]
    ) | {"inputs": {"type": "object", "properties": {"title": {"type": "string"}}}}
    tool = {
        "type": "workflow",
        "name": "publish",
        "description": "Publishes, once an editor agrees.",
        "workflow_id": harness.store.save_workflow(publish),
    }
    srv.script(ToolCalls([ToolCall("publish", {"title": "News"})]), Text("Published."))
    document = workflow([helper(srv, [tool])], [])
    outcome = await harness.run(document)
    assert outcome.status is ExecutionStatus.WAITING
    assert outcome.waiting_on == ["helper.turn-1/call-0.vote"]
    assert len(srv.requests) == 1

    [asked] = harness.of_type(EventType.FORM_REQUESTED)
    decided = {"decision": "approved", "by": "eve"}
    answer = {"form_id": asked.data["form_id"], "status": "submitted", "answer": decided}
    resumed = await harness.run(
        document, resume=True, resume_values={"helper.turn-1/call-0.vote": answer}
    )
    assert resumed.status is ExecutionStatus.COMPLETED, resumed.error
    [call] = output_of(harness)["tool_calls"]
    assert call["result"] == {"decision": "approved"}
    assert len(srv.requests) == 2  # turn 1 was not asked again
