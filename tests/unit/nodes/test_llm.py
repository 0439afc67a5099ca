"""The ``llm`` node against local OpenAI, Anthropic and Ollama servers, through the real SDKs:
output and usage, tokens as events, retries that honour Retry-After, the cache, the token budget,
JSON answers, cancellation mid-stream, and keys that appear nowhere."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.domain.events import EventType
from app.domain.status import ExecutionStatus
from app.engine.run.control import RunControl
from app.nodes.ai.cache import answer_caches
from app.nodes.registry import core_registry
from app.nodes.resources import NodeResources
from app.settings import Settings
from tests.providers import (
    Failure,
    Hang,
    ProviderServer,
    Text,
    anthropic_server,
    ollama_server,
    openai_server,
)
from tests.support import Harness, edge, node, workflow

OPENAI_CANARY = "sk-canary-openai-7f3a9c1e"
ANTHROPIC_CANARY = "sk-ant-canary-41b2d8"
RETRY = {"max_retries": 2, "initial_delay_ms": 10, "max_delay_ms": 100}


@pytest.fixture
async def openai_srv() -> AsyncIterator[ProviderServer]:
    async with openai_server() as srv:
        yield srv


@pytest.fixture
async def resources(openai_srv: ProviderServer) -> AsyncIterator[NodeResources]:
    settings = Settings(
        database_url="sqlite+aiosqlite:///:memory:",
        openai_api_key=OPENAI_CANARY,
        anthropic_api_key=ANTHROPIC_CANARY,
        openai_base_url=openai_srv.url,  # the deployment's OpenAI: the key goes there only
    )
    async with NodeResources(settings=settings) as made:
        yield made


@pytest.fixture
def harness(resources: NodeResources) -> Harness:
    return Harness(registry=core_registry(resources))


def llm(node_id: str = "ask", retry: dict[str, Any] | None = None, **config: Any) -> dict[str, Any]:
    spec = node(node_id, "llm", **config)
    if retry is not None:
        spec["retry"] = retry
    return spec


def one(spec: dict[str, Any]) -> dict[str, Any]:
    return workflow([spec], [])


def output_of(h: Harness, node_id: str = "ask") -> Any:
    (done,) = [e for e in h.of_type(EventType.NODE_COMPLETED) if e.node_id == node_id]
    return done.data["output"]


def token_text(h: Harness) -> str:
    tokens = h.of_type(EventType.NODE_TOKEN)
    assert [t.data["index"] for t in tokens] == list(range(len(tokens)))
    return "".join(t.data["text"] for t in tokens)


# -- the three providers ---------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False])
async def test_openai_answer_usage_and_cost(
    harness: Harness, openai_srv: ProviderServer, stream: bool
) -> None:
    spec = llm(
        provider="openai",
        base_url=openai_srv.url,
        model="gpt-4o-mini",
        system="Be brief.",
        prompt="say {{ inputs.word }}",
        stream=stream,
    )
    outcome = await harness.run(one(spec), {"word": "hello there"})
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    out = output_of(harness)
    assert out["text"] == "echo: say hello there"
    assert out["usage"] == {"input_tokens": 5, "output_tokens": 4}
    # gpt-4o-mini: $0.15 / $0.60 per million tokens.
    assert out["cost_usd"] == pytest.approx((5 * 0.15 + 4 * 0.60) / 1e6)
    assert out["finish_reason"] == "stop" and out["cached"] is False and out["model"]
    request = openai_srv.requests[-1]
    assert request.headers["authorization"] == f"Bearer {OPENAI_CANARY}"
    assert request.body["messages"][0] == {"role": "system", "content": "Be brief."}
    if stream:
        assert token_text(harness) == out["text"]
        assert request.body["stream_options"] == {"include_usage": True}
    else:
        assert harness.of_type(EventType.NODE_TOKEN) == []


@pytest.mark.parametrize("stream", [True, False])
async def test_anthropic_answer_and_usage(harness: Harness, stream: bool) -> None:
    async with anthropic_server() as srv:
        spec = llm(
            provider="anthropic",
            base_url=srv.base,
            model="claude-3-5-haiku-latest",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "hi {{ inputs.name }}"},
            ],
            max_tokens=50,
            stream=stream,
        )
        outcome = await harness.run(one(spec), {"name": "Ada"})
        assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
        out = output_of(harness)
        assert out["text"] == "echo: hi Ada"
        assert out["usage"]["output_tokens"] == 3 and out["usage"]["input_tokens"] > 0
        assert out["finish_reason"] == "stop"  # Anthropic's end_turn, in the common word
        assert out["cost_usd"] is not None
        body = srv.requests[-1].body
        assert body["system"] == "Be brief." and body["max_tokens"] == 50
        assert [m["role"] for m in body["messages"]] == ["user"]
        assert OPENAI_CANARY not in json.dumps(srv.requests[-1].headers)
        if stream:
            assert token_text(harness) == out["text"]


@pytest.mark.parametrize("stream", [True, False])
async def test_ollama_answer_is_free(harness: Harness, stream: bool) -> None:
    async with ollama_server() as srv:
        spec = llm(
            provider="ollama", base_url=srv.base, model="llama3.2", prompt="hi", stream=stream
        )
        outcome = await harness.run(one(spec))
        assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
        out = output_of(harness)
        assert out["text"] == "echo: hi" and out["cost_usd"] == 0.0
        assert out["usage"] == {"input_tokens": 1, "output_tokens": 2}
        assert srv.requests[-1].body["stream"] is stream
        assert "authorization" not in srv.requests[-1].headers
        if stream:
            assert token_text(harness) == "echo: hi"


# -- resilience ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "delay_ms"),
    [
        (Failure.rate_limited(retry_after_s=3), 3000),
        (Failure.rate_limited(retry_after_s=None, retry_after_ms=1500), 1500),
        (Failure(503, "overloaded", headers={"retry-after": "2"}), 2000),
    ],
)
async def test_a_retryable_failure_is_retried_after_what_the_provider_asked(
    harness: Harness, openai_srv: ProviderServer, failure: Failure, delay_ms: int
) -> None:
    openai_srv.script(failure, Text("fine"))
    spec = llm(provider="openai", base_url=openai_srv.url, model="m", prompt="p", retry=RETRY)
    outcome = await harness.run(one(spec))
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    (retried,) = harness.of_type(EventType.NODE_RETRY)
    assert retried.data["delay_ms"] == delay_ms
    assert retried.data["error"]["code"] == "llm_provider_error"
    assert output_of(harness)["text"] == "fine"
    assert openai_srv.counts["/v1/chat/completions"] == 2  # the SDK retried nothing itself


async def test_a_bad_request_is_not_retried(harness: Harness, openai_srv: ProviderServer) -> None:
    openai_srv.script(Failure(400, "unknown model"))
    spec = llm(provider="openai", base_url=openai_srv.url, model="m", prompt="p", retry=RETRY)
    outcome = await harness.run(one(spec))
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and "400" in outcome.error["message"]
    assert harness.of_type(EventType.NODE_RETRY) == []
    assert openai_srv.counts["/v1/chat/completions"] == 1


async def test_an_unreachable_server_is_a_retryable_transport_error(harness: Harness) -> None:
    async with openai_server() as srv:
        url = srv.url
    spec = llm(provider="openai", base_url=url, model="m", prompt="p", retry=RETRY)
    outcome = await harness.run(one(spec))
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and outcome.error["code"] == "llm_transport"
    assert len(harness.of_type(EventType.NODE_RETRY)) == 2


async def test_the_key_goes_to_the_deployments_root_only(
    harness: Harness, openai_srv: ProviderServer
) -> None:
    async with openai_server() as elsewhere:  # a base_url a run's inputs could name
        spec = llm(provider="openai", base_url="{{ inputs.url }}", model="m", prompt="p")
        outcome = await harness.run(one(spec), {"url": elsewhere.url})
        assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
        assert elsewhere.requests[0].headers["authorization"] == "Bearer no-key"
    # The node's base_url left out: the deployment's root, with its key.
    await harness.run(one(llm(provider="openai", model="m", prompt="p")), execution_id="own")
    assert openai_srv.requests[0].headers["authorization"] == f"Bearer {OPENAI_CANARY}"


async def test_without_a_key_the_public_api_is_not_called(harness: Harness) -> None:
    settings = Settings(database_url="sqlite+aiosqlite:///:memory:", openai_api_key=None)
    async with NodeResources(settings=settings) as bare:
        h = Harness(registry=core_registry(bare))
        outcome = await h.run(one(llm(provider="openai", model="gpt-4o", prompt="p")))
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and outcome.error["code"] == "node_config_invalid"
    assert "OPENAI_API_KEY" in outcome.error["message"]


# -- cache, budget, prices -------------------------------------------------------------------


async def test_identical_requests_are_answered_from_the_cache(
    harness: Harness, openai_srv: ProviderServer, resources: NodeResources
) -> None:
    assert answer_caches(resources) == {}  # made on first use
    spec = llm(provider="openai", base_url=openai_srv.url, model="gpt-4o", prompt="same")
    first = await harness.run(one(spec), execution_id="first")
    second = await harness.run(one(spec), execution_id="second")
    assert first.status is second.status is ExecutionStatus.COMPLETED
    assert openai_srv.counts["/v1/chat/completions"] == 1
    (hit,) = [e.data["output"] for e in harness.of_type(EventType.NODE_COMPLETED, "second")]
    assert hit["cached"] is True and hit["cost_usd"] == 0.0
    assert hit["usage"] == {"input_tokens": 0, "output_tokens": 0}
    assert hit["text"] == "echo: same"
    # A hit still shows its text to a dashboard tailing tokens.
    assert [e.data["text"] for e in harness.of_type(EventType.NODE_TOKEN, "second")] == [
        "echo: same"
    ]
    uncached = llm(provider="openai", base_url=openai_srv.url, model="gpt-4o", prompt="same")
    uncached["config"]["cache"] = False
    await harness.run(one(uncached), execution_id="third")
    assert openai_srv.counts["/v1/chat/completions"] == 2
    (cache,) = answer_caches(resources).values()
    assert (cache.hits, cache.misses) == (1, 1)  # a node that skips the cache asks it nothing


async def test_the_token_budget_fails_the_run(harness: Harness, openai_srv: ProviderServer) -> None:
    first = llm("first", provider="openai", base_url=openai_srv.url, model="m", prompt="a b c")
    second = llm("second", provider="openai", base_url=openai_srv.url, model="m", prompt="d e f")
    doc = workflow([first, second], [edge("first", "second")])
    outcome = await harness.run(doc, config={"limits": {"max_tokens": 10}})
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and outcome.error["code"] == "run_limit_exceeded"
    assert outcome.error["details"]["limit"] == "max_tokens"
    assert outcome.error["details"]["used"]["tokens"] == 14  # 3 in + 4 out, twice
    assert output_of(harness, "first")["usage"] == {"input_tokens": 3, "output_tokens": 4}


async def test_an_unknown_model_costs_null_with_a_warning(
    harness: Harness, openai_srv: ProviderServer, caplog: pytest.LogCaptureFixture
) -> None:
    spec = llm(provider="openai", base_url=openai_srv.url, model="my-finetune", prompt="p")
    with caplog.at_level(logging.WARNING):
        await harness.run(one(spec))
    assert output_of(harness)["cost_usd"] is None
    assert "no price for openai model 'my-finetune'" in caplog.text
    (done,) = harness.of_type(EventType.NODE_COMPLETED)
    assert done.data["usage"]["unpriced_calls"] == 1 and "cost_usd" not in done.data["usage"]


async def test_json_mode_says_json_to_the_model(
    harness: Harness, openai_srv: ProviderServer
) -> None:
    openai_srv.script(Text('{"ok": true}'))
    spec = llm(provider="openai", model="m", prompt="classify", response_format="json")
    await harness.run(one(spec))
    assert output_of(harness)["json"] == {"ok": True}
    body = openai_srv.requests[-1].body
    assert body["response_format"] == {"type": "json_object"}
    assert "JSON" in body["messages"][0]["content"]  # OpenAI refuses JSON mode otherwise


async def test_the_answer_is_a_durable_step(harness: Harness, openai_srv: ProviderServer) -> None:
    spec = llm(provider="openai", model="m", prompt="p")
    await harness.run(one(spec))
    (step,) = harness.of_type(EventType.NODE_STEP)
    assert step.data == {"node_id": "ask", "name": "answer", "ok": True}


# -- JSON answers ----------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {"label": {"enum": ["spam", "ham"]}},
    "required": ["label"],
}


async def test_a_json_schema_answer_is_parsed(harness: Harness, openai_srv: ProviderServer) -> None:
    openai_srv.script(Text('```json\n{"label": "ham"}\n```'))
    spec = llm(
        provider="openai", base_url=openai_srv.url, model="m", prompt="p", response_format=SCHEMA
    )
    outcome = await harness.run(one(spec))
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert output_of(harness)["json"] == {"label": "ham"}
    sent = openai_srv.requests[-1].body["response_format"]
    assert sent == {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA}}


async def test_a_non_conforming_answer_is_retried_then_fails(
    harness: Harness, openai_srv: ProviderServer
) -> None:
    openai_srv.script(Text('{"label": "eggs"}'), Text("not json"), Text('{"label": 1}'))
    spec = llm(
        provider="openai",
        base_url=openai_srv.url,
        model="m",
        prompt="p",
        response_format=SCHEMA,
        retry=RETRY,
    )
    outcome = await harness.run(one(spec))
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and outcome.error["code"] == "llm_answer_invalid"
    reasons = [e.data["error"]["message"] for e in harness.of_type(EventType.NODE_RETRY)]
    assert "does not match the schema at /label" in reasons[0]
    assert "not JSON" in reasons[1]
    assert openai_srv.counts["/v1/chat/completions"] == 3


async def test_anthropic_is_told_the_schema_in_its_system_prompt(harness: Harness) -> None:
    async with anthropic_server() as srv:
        srv.script(Text('{"label": "spam"}'))
        spec = llm(
            provider="anthropic", base_url=srv.base, model="c", prompt="p", response_format=SCHEMA
        )
        await harness.run(one(spec))
        assert output_of(harness)["json"] == {"label": "spam"}
        assert json.dumps(SCHEMA, separators=(",", ":")) in srv.requests[-1].body["system"]


def test_a_broken_schema_is_refused_at_validation(harness: Harness) -> None:
    spec = llm(provider="openai", model="m", prompt="p", response_format={"type": "objekt"})
    with pytest.raises(Exception, match="not a valid JSON Schema"):
        harness.scheduler().plan(one(spec))


# -- cancellation and secrets ----------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic", "ollama"])
async def test_cancelling_mid_stream_closes_the_providers_stream(
    harness: Harness, provider: str
) -> None:
    factory = {"openai": openai_server, "anthropic": anthropic_server, "ollama": ollama_server}
    async with factory[provider]() as srv:
        srv.script(Hang(tokens=2))
        url = srv.url if provider == "openai" else srv.base
        control = RunControl()
        spec = llm(provider=provider, base_url=url, model="m", prompt="tell me more")
        running = asyncio.create_task(harness.run(one(spec), control=control))
        await harness.wait_for_event(EventType.NODE_TOKEN)
        control.cancel()
        outcome = await running
        assert outcome.status is ExecutionStatus.CANCELLED
        await srv.disconnects.reach(1)


async def test_the_keys_appear_in_no_event_output_error_or_log(
    harness: Harness, openai_srv: ProviderServer, caplog: pytest.LogCaptureFixture
) -> None:
    # A provider that echoes the key it refused (OpenAI's 401 does, partly masked), and one
    # that quotes it in another error.
    openai_srv.script(
        Failure(401, f"Incorrect API key provided: {OPENAI_CANARY[:6]}****{OPENAI_CANARY[-4:]}"),
        Failure(500, f"upstream rejected {OPENAI_CANARY}"),
    )
    refused = llm("refused", provider="openai", model="m", prompt="p", continue_on_error=True)
    quoted = llm("quoted", provider="openai", model="q", prompt="p", continue_on_error=True)
    fine = llm("fine", provider="openai", model="m", prompt="p")
    doc = workflow([refused, quoted, fine], [edge("refused", "quoted"), edge("quoted", "fine")])
    with caplog.at_level(logging.DEBUG):
        outcome = await harness.run(doc, config={"dependency_strategy": "defaults"})
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    first, second = (e.data["error"]["message"] for e in harness.of_type(EventType.NODE_FAILED))
    assert first == "openai refused the request (401): check the key and its permissions"
    assert second == "openai answered 500: upstream rejected [secret]"
    stored = json.dumps(
        [e.data for e in harness.events()]
        + [c.records for c in harness.store.checkpoints.get("run-1", [])],
        default=repr,
    )
    for canary in (OPENAI_CANARY, ANTHROPIC_CANARY):
        assert canary not in stored
        assert canary not in caplog.text
        assert canary not in repr(outcome)
