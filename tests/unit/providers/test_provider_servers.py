"""The provider servers speak their protocols well enough for the real SDKs (openai, anthropic)
and plain httpx (Ollama) to parse every answer, streamed or not, including tool calls, errors
with retry hints, hangs the client walks away from, and embeddings with meaningful similarity."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.providers import (
    Failure,
    Hang,
    ProviderServer,
    Text,
    Tokens,
    ToolCall,
    ToolCalls,
    anthropic_server,
    ollama_server,
    openai_server,
)

WEATHER = ToolCall("get_weather", {"city": "Paris", "days": 3}, id="call_1")
TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
HELLO: Any = [{"role": "user", "content": "hello there world"}]


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, ProviderServer]]:
    """One server per protocol for the module, each in a thread of its own (tests reset them)."""
    with (
        openai_server(dimensions=32) as oai,
        anthropic_server() as claude,
        ollama_server() as ollama,
    ):
        yield {"openai": oai, "anthropic": claude, "ollama": ollama}


@pytest.fixture
def oai(servers: dict[str, ProviderServer]) -> ProviderServer:
    servers["openai"].reset()
    return servers["openai"]


@pytest.fixture
def claude(servers: dict[str, ProviderServer]) -> ProviderServer:
    servers["anthropic"].reset()
    return servers["anthropic"]


@pytest.fixture
def ollama(servers: dict[str, ProviderServer]) -> ProviderServer:
    servers["ollama"].reset()
    return servers["ollama"]


@pytest.fixture
async def gpt(oai: ProviderServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=oai.url, api_key="k", max_retries=0) as client:
        yield client


@pytest.fixture
async def claude_api(claude: ProviderServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=claude.base, api_key="k", max_retries=0) as c:
        yield c


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))  # the vectors are unit length


# -- OpenAI ----------------------------------------------------------------------------------


async def test_openai_chat_answers_the_echo_and_records_the_request(
    oai: ProviderServer, gpt: openai.AsyncOpenAI
) -> None:
    reply = await gpt.chat.completions.create(model="m", messages=HELLO)
    assert reply.choices[0].message.content == "echo: hello there world"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model == "m"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (3, 4)
    [seen] = oai.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == "Bearer k"
    assert seen.body["messages"] == HELLO
    assert oai.counts["/v1/chat/completions"] == 1


async def test_openai_stream_has_chunks_a_finish_and_a_usage_chunk(
    oai: ProviderServer, gpt: openai.AsyncOpenAI
) -> None:
    stream = await gpt.chat.completions.create(
        model="m", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello there world"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 7
    assert len(chunks) > 4


async def test_openai_scripted_text_json_chunks_and_length(
    oai: ProviderServer, gpt: openai.AsyncOpenAI
) -> None:
    oai.script(Text.of_json({"a": 1}), Text("x", chunks=["ab", "c"]), Text("one two three four"))
    first = await gpt.chat.completions.create(model="m", messages=HELLO)
    assert json.loads(first.choices[0].message.content or "") == {"a": 1}
    stream = await gpt.chat.completions.create(model="m", messages=HELLO, stream=True)
    pieces = [c.choices[0].delta.content async for c in stream if c.choices[0].delta.content]
    assert pieces == ["ab", "c"]
    cut = await gpt.chat.completions.create(model="m", messages=HELLO, max_tokens=2)
    assert cut.choices[0].message.content == "one two "
    assert cut.choices[0].finish_reason == "length"


async def test_openai_tool_calls_plain_and_streamed(
    oai: ProviderServer, gpt: openai.AsyncOpenAI
) -> None:
    oai.script(ToolCalls([WEATHER]), ToolCalls([WEATHER]))
    plain = await gpt.chat.completions.create(model="m", messages=HELLO, tools=TOOLS)
    assert plain.choices[0].finish_reason == "tool_calls"
    [call] = plain.choices[0].message.tool_calls or []
    assert call.type == "function" and call.id == "call_1"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "days": 3}
    async with gpt.chat.completions.stream(model="m", messages=HELLO, tools=TOOLS) as stream:
        final = await stream.get_final_completion()
    assert final.choices[0].finish_reason == "tool_calls"
    [streamed] = final.choices[0].message.tool_calls or []
    assert streamed.function.name == "get_weather"
    assert json.loads(streamed.function.arguments) == {"city": "Paris", "days": 3}


async def test_openai_embeddings_rank_shared_words_higher(
    oai: ProviderServer, gpt: openai.AsyncOpenAI
) -> None:
    texts = ["the cat sat on the mat", "a cat on a mat", "stock markets fell sharply"]
    floats = await gpt.embeddings.create(model="e", input=texts, encoding_format="float")
    packed = await gpt.embeddings.create(model="e", input=texts)  # the SDK asks for base64
    cat, mat, stocks = (d.embedding for d in floats.data)
    assert len(cat) == 32
    assert math.isclose(cosine(cat, cat), 1.0, rel_tol=1e-6)
    assert cosine(cat, mat) > cosine(cat, stocks)
    for unpacked, exact in zip(packed.data, floats.data, strict=True):
        assert unpacked.embedding == pytest.approx(exact.embedding, abs=1e-6)
    assert floats.usage.prompt_tokens == 15
    small = await gpt.embeddings.create(model="e", input="cat", dimensions=8)
    assert len(small.data[0].embedding) == 8


async def test_openai_429_is_a_rate_limit_error_with_retry_hints(
    oai: ProviderServer, gpt: openai.AsyncOpenAI
) -> None:
    oai.script(Failure.rate_limited(retry_after_s=2, retry_after_ms=1500))
    with pytest.raises(openai.RateLimitError) as caught:
        await gpt.chat.completions.create(model="m", messages=HELLO)
    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.response.headers["retry-after-ms"] == "1500"
    assert caught.value.code == "rate_limit_exceeded"


async def test_openai_sdk_retries_after_retry_after_ms(
    oai: ProviderServer, gpt: openai.AsyncOpenAI
) -> None:
    oai.script(Failure.rate_limited(retry_after_s=None, retry_after_ms=10))
    reply = await gpt.with_options(max_retries=1).chat.completions.create(model="m", messages=HELLO)
    assert reply.choices[0].message.content == "echo: hello there world"
    assert oai.counts["/v1/chat/completions"] == 2


async def test_openai_hang_then_the_client_closing_is_observed(
    oai: ProviderServer, gpt: openai.AsyncOpenAI
) -> None:
    oai.script(Hang(tokens=2))
    stream = await gpt.chat.completions.create(model="m", messages=HELLO, stream=True)
    pieces = [await anext(stream) for _ in range(3)]  # the role chunk, then two tokens
    assert "".join(p.choices[0].delta.content or "" for p in pieces) == "echo: hello "
    await stream.close()
    await oai.disconnects.reach(1)


async def test_openai_delay_outlasts_a_client_timeout(
    oai: ProviderServer, gpt: openai.AsyncOpenAI
) -> None:
    oai.script(Text("late", delay_s=30))
    with pytest.raises(openai.APITimeoutError):
        await gpt.with_options(timeout=0.2).chat.completions.create(model="m", messages=HELLO)


async def test_openai_token_rate_mode_streams_n_tokens(
    oai: ProviderServer, gpt: openai.AsyncOpenAI
) -> None:
    oai.default = Tokens(200)
    stream = await gpt.chat.completions.create(
        model="m", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) == 200
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 200


def test_a_sync_client_and_a_sync_wait(oai: ProviderServer) -> None:
    with openai.OpenAI(base_url=oai.url, api_key="k", max_retries=0) as client:
        reply = client.chat.completions.create(model="m", messages=HELLO)
    oai.received.wait(1)
    assert reply.choices[0].message.content == "echo: hello there world"


async def test_a_server_in_the_tests_own_loop() -> None:
    async with (
        openai_server(default=Text("from the loop")) as srv,
        openai.AsyncOpenAI(base_url=srv.url, api_key="k", max_retries=0) as client,
    ):
        first, second = await asyncio.gather(
            *(client.chat.completions.create(model="m", messages=HELLO) for _ in range(2))
        )
        await srv.received.reach(2)
    assert first.choices[0].message.content == second.choices[0].message.content == "from the loop"


# -- Anthropic -------------------------------------------------------------------------------


async def test_anthropic_message_and_its_headers(
    claude: ProviderServer, claude_api: anthropic.AsyncAnthropic
) -> None:
    message = await claude_api.messages.create(
        model="c", max_tokens=100, system="be brief", messages=HELLO
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: hello there world"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (5, 4)
    [seen] = claude.requests
    assert seen.path == "/v1/messages"
    assert seen.headers["authorization"] == "Bearer k"  # how anthropic 2.x sends the key
    assert "anthropic-version" in seen.headers


async def test_anthropic_stream_events_in_order(
    claude: ProviderServer, claude_api: anthropic.AsyncAnthropic
) -> None:
    stream = await claude_api.messages.create(
        model="c", max_tokens=100, messages=HELLO, stream=True
    )
    events = [event async for event in stream]
    kinds = [e.type for e in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert kinds.count("content_block_delta") == 4
    async with claude_api.messages.stream(model="c", max_tokens=2, messages=HELLO) as helper:
        final = await helper.get_final_message()
    assert final.content[0].type == "text" and final.content[0].text == "echo: hello "
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 2


async def test_anthropic_tool_use_plain_and_streamed(
    claude: ProviderServer, claude_api: anthropic.AsyncAnthropic
) -> None:
    claude.script(ToolCalls([WEATHER], text="let me look"), ToolCalls([WEATHER]))
    plain = await claude_api.messages.create(model="c", max_tokens=100, messages=HELLO)
    assert plain.stop_reason == "tool_use"
    text, tool = plain.content
    assert text.type == "text" and text.text == "let me look"
    assert tool.type == "tool_use" and tool.input == {"city": "Paris", "days": 3}
    async with claude_api.messages.stream(model="c", max_tokens=100, messages=HELLO) as helper:
        final = await helper.get_final_message()
    [streamed] = final.content
    assert streamed.type == "tool_use"
    assert (streamed.id, streamed.name) == ("call_1", "get_weather")
    assert streamed.input == {"city": "Paris", "days": 3}


async def test_anthropic_errors_map_to_sdk_classes(
    claude: ProviderServer, claude_api: anthropic.AsyncAnthropic
) -> None:
    claude.script(Failure.rate_limited(retry_after_s=3), Failure(529, "Overloaded"))
    with pytest.raises(anthropic.RateLimitError) as limited:
        await claude_api.messages.create(model="c", max_tokens=10, messages=HELLO)
    assert limited.value.response.headers["retry-after"] == "3"
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    with pytest.raises(anthropic.OverloadedError):
        await claude_api.messages.create(model="c", max_tokens=10, messages=HELLO)


async def test_anthropic_hang_disconnect_across_threads(
    claude: ProviderServer, claude_api: anthropic.AsyncAnthropic
) -> None:
    claude.script(Hang(tokens=1))
    stream = await claude_api.messages.create(model="c", max_tokens=10, messages=HELLO, stream=True)
    kinds = [(await anext(stream)).type for _ in range(3)]  # the SDK skips the ping
    assert kinds == ["message_start", "content_block_start", "content_block_delta"]
    await stream.close()
    await claude.disconnects.reach(1)  # the server's thread wakes this test's loop


# -- Ollama ----------------------------------------------------------------------------------


async def test_ollama_streams_ndjson_by_default(ollama: ProviderServer) -> None:
    async with (
        httpx.AsyncClient(base_url=ollama.url) as client,
        client.stream("POST", "/api/chat", json={"model": "l", "messages": HELLO}) as response,
    ):
        assert response.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) async for line in response.aiter_lines() if line]
    assert "".join(line["message"]["content"] for line in lines) == "echo: hello there world"
    assert [line["done"] for line in lines] == [False] * 4 + [True]
    last = lines[-1]
    assert (last["done_reason"], last["prompt_eval_count"], last["eval_count"]) == ("stop", 3, 4)


async def test_ollama_streamed_tool_calls(ollama: ProviderServer) -> None:
    ollama.script(ToolCalls([WEATHER]))
    request = {"model": "l", "messages": HELLO, "tools": TOOLS}
    async with httpx.AsyncClient(base_url=ollama.url) as client:
        response = await client.post("/api/chat", json=request)
    *calls, last = [json.loads(line) for line in response.text.splitlines()]
    assert [c["message"]["tool_calls"][0]["function"]["name"] for c in calls] == ["get_weather"]
    assert last["done"] is True


async def test_ollama_plain_chat_tool_calls_and_errors(ollama: ProviderServer) -> None:
    ollama.script(ToolCalls([WEATHER]), Failure(404, "model 'l' not found"))
    request = {"model": "l", "messages": HELLO, "stream": False, "tools": TOOLS}
    async with httpx.AsyncClient(base_url=ollama.url) as client:
        called = (await client.post("/api/chat", json=request)).json()
        missing = await client.post("/api/chat", json=request)
        plain = (await client.post("/api/chat", json=request)).json()
    [call] = called["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert call["function"]["arguments"] == {"city": "Paris", "days": 3}
    assert (missing.status_code, missing.json()) == (404, {"error": "model 'l' not found"})
    assert plain["done"] is True and plain["message"]["content"] == "echo: hello there world"


async def test_ollama_embed_takes_a_string_or_a_list(ollama: ProviderServer) -> None:
    async with httpx.AsyncClient(base_url=ollama.url) as client:
        one = (await client.post("/api/embed", json={"model": "e", "input": "cat mat"})).json()
        many = await client.post(
            "/api/embed", json={"model": "e", "input": ["cat mat", "a cat", "bonds"]}
        )
    cat_mat, a_cat, bonds = many.json()["embeddings"]
    assert one["embeddings"] == [cat_mat]
    assert cosine(cat_mat, a_cat) > cosine(cat_mat, bonds)
    assert many.json()["prompt_eval_count"] == 5


async def test_ollama_plain_hang_sees_the_client_time_out(ollama: ProviderServer) -> None:
    ollama.script(Hang())
    request = {"model": "l", "messages": HELLO, "stream": False}
    async with httpx.AsyncClient(base_url=ollama.url, timeout=0.2) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post("/api/chat", json=request)
    await ollama.disconnects.reach(1)
    assert ollama.counts["/api/chat"] == 1
