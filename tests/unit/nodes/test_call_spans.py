"""The spans of model calls and of the HTTP requests under them, through the real SDKs against
the local OpenAI, Anthropic and Ollama servers: attributes after the GenAI conventions, the
``traceparent`` each server receives, content only when opted in (and then without secrets),
cached answers, failures, and an agent's loop with its tool calls."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from app.domain.status import ExecutionStatus
from app.nodes import span_content
from app.nodes.registry import core_registry
from app.nodes.resources import NodeResources
from app.settings import Settings
from tests.integration.net_server import net_server
from tests.providers import (
    Failure,
    ProviderServer,
    ToolCall,
    ToolCalls,
    anthropic_server,
    ollama_server,
    openai_server,
)
from tests.spans import SpanTrace, traceparent
from tests.support import Harness, node, workflow

OPENAI_CANARY = "sk-canary-spans-openai-5d1e"
ANTHROPIC_CANARY = "sk-ant-canary-spans-c94a"


@pytest.fixture
async def openai_srv() -> AsyncIterator[ProviderServer]:
    async with openai_server() as srv:
        yield srv


@pytest.fixture
async def anthropic_srv() -> AsyncIterator[ProviderServer]:
    async with anthropic_server() as srv:
        yield srv


def settings_for(
    openai_srv: ProviderServer, anthropic_srv: ProviderServer, **more: Any
) -> Settings:
    """The deployment's providers are the local servers: the keys go to them only."""
    return Settings(
        database_url="sqlite+aiosqlite:///:memory:",
        openai_api_key=OPENAI_CANARY,
        anthropic_api_key=ANTHROPIC_CANARY,
        openai_base_url=openai_srv.url,
        anthropic_base_url=anthropic_srv.url,
        **more,
    )


@pytest.fixture
async def harness(
    openai_srv: ProviderServer, anthropic_srv: ProviderServer
) -> AsyncIterator[Harness]:
    async with NodeResources(settings=settings_for(openai_srv, anthropic_srv)) as resources:
        yield Harness(registry=core_registry(resources))


@pytest.fixture
async def content_harness(
    openai_srv: ProviderServer, anthropic_srv: ProviderServer
) -> AsyncIterator[Harness]:
    settings = settings_for(openai_srv, anthropic_srv, trace_content=True)
    async with NodeResources(settings=settings) as resources:
        yield Harness(registry=core_registry(resources))


def llm(node_id: str = "ask", **config: Any) -> dict[str, Any]:
    return node(node_id, "llm", **config)


async def run(harness: Harness, spec: dict[str, Any], inputs: Any = None) -> None:
    outcome = await harness.run(workflow([spec], []), inputs)
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error


def the_http_span(traced: SpanTrace, parent: ReadableSpan, method: str = "POST") -> ReadableSpan:
    (http,) = traced.children(parent)
    assert http.kind is SpanKind.CLIENT and http.name == method
    return http


@pytest.mark.parametrize("stream", [False, True])
async def test_openai_chat_span_and_the_traceparent_the_server_receives(
    harness: Harness, openai_srv: ProviderServer, traced: SpanTrace, stream: bool
) -> None:
    spec = llm(
        provider="openai",
        model="gpt-4o-mini",
        system="Be brief.",
        prompt="say hello there",
        temperature=0.5,
        max_tokens=50,
        stream=stream,
    )
    with traced.root() as root:
        await run(harness, spec)
    chat = traced.one("chat gpt-4o-mini")
    assert chat.kind is SpanKind.CLIENT
    assert chat.parent is not None and chat.parent.span_id == root.get_span_context().span_id
    attributes = dict(chat.attributes or {})
    response_id = attributes.pop("gen_ai.response.id")
    assert isinstance(response_id, str) and response_id.startswith("chatcmpl-")
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.request.max_tokens": 50,
        "gen_ai.request.temperature": 0.5,
        "gen_ai.output.type": "text",
        "gen_ai.response.model": "gpt-4o-mini",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 5,
        "gen_ai.usage.output_tokens": 4,
        "server.address": "127.0.0.1",
        "server.port": openai_srv.port,
    }
    # The one HTTP request is a client span under the chat span, and the server is told so.
    http = the_http_span(traced, chat)
    assert http.attributes is not None
    assert http.attributes["url.full"] == f"{openai_srv.url}/chat/completions"
    assert http.attributes["http.response.status_code"] == 200
    (request,) = openai_srv.requests
    assert request.headers["traceparent"] == traceparent(http)


async def test_anthropic_chat_span(
    harness: Harness, anthropic_srv: ProviderServer, traced: SpanTrace
) -> None:
    spec = llm(provider="anthropic", model="claude-sonnet-4-5", prompt="say hi", stop=["END"])
    with traced.root():
        await run(harness, spec)
    chat = traced.one("chat claude-sonnet-4-5")
    attributes = dict(chat.attributes or {})
    response_id = attributes.pop("gen_ai.response.id")
    assert isinstance(response_id, str) and response_id.startswith("msg_")
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.request.max_tokens": 4096,  # the default Anthropic requires, as sent
        "gen_ai.request.stop_sequences": ("END",),
        "gen_ai.output.type": "text",
        "gen_ai.response.model": "claude-sonnet-4-5",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 2,
        "gen_ai.usage.output_tokens": 3,
        "server.address": "127.0.0.1",
        "server.port": anthropic_srv.port,
    }
    (request,) = anthropic_srv.requests
    assert request.headers["traceparent"] == traceparent(the_http_span(traced, chat))


async def test_ollama_goes_through_the_shared_client_with_the_trace_context(
    harness: Harness, traced: SpanTrace
) -> None:
    async with ollama_server() as srv:
        with traced.root():
            spec = llm(provider="ollama", base_url=srv.url, model="llama3.2", prompt="hi")
            await run(harness, spec)
    chat = traced.one("chat llama3.2")
    assert chat.attributes is not None
    assert chat.attributes["gen_ai.provider.name"] == "ollama"
    assert chat.attributes["server.port"] == srv.port
    (request,) = srv.requests
    assert request.headers["traceparent"] == traceparent(the_http_span(traced, chat))


async def test_content_is_absent_by_default(
    harness: Harness, openai_srv: ProviderServer, traced: SpanTrace
) -> None:
    spec = llm(provider="openai", model="m", system="Be brief.", prompt="my words")
    with traced.root():
        await run(harness, spec)
    keys = {key for span in traced.spans() for key in span.attributes or {}}
    assert not keys & {
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
    }
    assert not any("my words" in text for text in traced.values())


async def test_opted_in_content_is_shown_without_secrets(
    content_harness: Harness, openai_srv: ProviderServer, traced: SpanTrace
) -> None:
    spec = llm(
        provider="openai",
        model="m",
        system="Never say {{ inputs.key }}.",
        prompt="repeat {{ inputs.key }}",
    )
    with traced.root():
        await run(content_harness, spec, {"key": OPENAI_CANARY})
    assert openai_srv.requests[0].body["messages"][-1]["content"].endswith(OPENAI_CANARY)
    attributes = traced.one("chat m").attributes or {}
    assert json.loads(str(attributes["gen_ai.system_instructions"])) == [
        {"type": "text", "content": "Never say [secret]."}
    ]
    assert json.loads(str(attributes["gen_ai.input.messages"])) == [
        {"role": "user", "parts": [{"type": "text", "content": "repeat [secret]"}]}
    ]
    assert json.loads(str(attributes["gen_ai.output.messages"])) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "echo: repeat [secret]"}],
            "finish_reason": "stop",
        }
    ]
    assert not any(OPENAI_CANARY in text for text in traced.values())


async def test_opted_in_content_is_cut(
    content_harness: Harness, openai_srv: ProviderServer, traced: SpanTrace
) -> None:
    long = "x" * (span_content.CONTENT_CHARS + 100)
    with traced.root():
        await run(content_harness, llm(provider="openai", model="m", prompt=long))
    attributes = traced.one("chat m").attributes or {}
    (message,) = json.loads(str(attributes["gen_ai.input.messages"]))
    shown = message["parts"][0]["content"]
    assert shown == long[: span_content.CONTENT_CHARS] + span_content.CUT


async def test_a_cached_answer_is_an_internal_span_without_a_call(
    harness: Harness, openai_srv: ProviderServer, traced: SpanTrace
) -> None:
    spec = llm(provider="openai", model="m", prompt="same", cache=True)
    with traced.root():
        await run(harness, spec)
        await run(harness, spec)
    paid, cached = traced.named("chat m")
    assert paid.kind is SpanKind.CLIENT and cached.kind is SpanKind.INTERNAL
    attributes = cached.attributes or {}
    assert attributes["oxify.llm.cached"] is True
    assert attributes["gen_ai.response.model"] == "m"
    assert "server.address" not in attributes and "gen_ai.usage.input_tokens" not in attributes
    assert traced.children(cached) == []
    assert len(openai_srv.requests) == 1


async def test_a_failed_call_has_the_error_type(
    harness: Harness, openai_srv: ProviderServer, traced: SpanTrace
) -> None:
    openai_srv.script(Failure(500, f"upstream broke, key {OPENAI_CANARY}"))
    with traced.root():
        outcome = await harness.run(workflow([llm(provider="openai", model="m", prompt="x")], []))
    assert outcome.status is ExecutionStatus.FAILED
    chat = traced.one("chat m")
    assert chat.status.status_code is StatusCode.ERROR
    assert chat.attributes is not None
    assert chat.attributes["error.type"] == (outcome.error or {})["code"]
    http = the_http_span(traced, chat)
    assert http.attributes is not None and http.attributes["error.type"] == "500"
    assert not any(OPENAI_CANARY in text for text in traced.values())


async def test_an_agent_loop_with_its_tool_calls(
    content_harness: Harness, openai_srv: ProviderServer, traced: SpanTrace
) -> None:
    async with net_server() as web:
        openai_srv.script(
            ToolCalls([ToolCall("fetch", {"path": "a"}, id="call_1")]),
        )
        tool = {
            "type": "http",
            "name": "fetch",
            "description": "Fetches a page.",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}},
                "required": ["path"],
            },
            "request": {"url": web.url + "/answer/{{ args.path }}"},
        }
        spec = node("helper", "agent", provider="openai", model="m", prompt="go", tools=[tool])
        with traced.root() as root:
            await run(content_harness, spec)
        (seen,) = web.requests
    agent = traced.one("invoke_agent helper")
    assert agent.parent is not None and agent.parent.span_id == root.get_span_context().span_id
    assert dict(agent.attributes or {}) == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "helper",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "m",
    }
    turns = traced.named("chat m")
    tool_span = traced.one("execute_tool fetch")
    assert len(turns) == 2
    assert {s.parent.span_id for s in [*turns, tool_span] if s.parent} == {
        agent.get_span_context().span_id
    }
    attributes = tool_span.attributes or {}
    assert attributes["gen_ai.tool.name"] == "fetch"
    assert attributes["gen_ai.tool.call.id"] == "call_1"
    assert attributes["gen_ai.tool.type"] == "function"
    assert json.loads(str(attributes["gen_ai.tool.call.arguments"])) == {"path": "a"}
    assert json.loads(str(attributes["gen_ai.tool.call.result"]))["status"] == 200
    # The tool's HTTP request went out under the tool's span, with its trace context.
    assert seen.headers["traceparent"] == traceparent(the_http_span(traced, tool_span, "GET"))
    # The second turn's input shows the call and its result in the conventions' form.
    second = json.loads(str((turns[1].attributes or {})["gen_ai.input.messages"]))
    assert second[1]["parts"][0]["type"] == "tool_call"
    assert second[2]["role"] == "tool"
    assert second[2]["parts"][0]["type"] == "tool_call_response"
    assert second[2]["parts"][0]["id"] == "call_1"
