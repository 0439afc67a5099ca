"""What a run spent, in ``GET /v1/executions/{id}``: the app on Postgres, the real ``llm`` node
against the local OpenAI-compatible server, and the real ``http`` node against a local server
that fails its first call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.api.helpers import create_workflow, flaky_endpoint, linear, start_run, wait_run
from tests.providers import ProviderServer, openai_server


@pytest.fixture
async def openai_srv() -> AsyncIterator[ProviderServer]:
    async with openai_server() as srv:
        yield srv


@pytest.fixture
async def flaky_url() -> AsyncIterator[str]:
    """A local server whose ``/flaky`` answers 503 (retryable) once, then 200."""
    async with flaky_endpoint(1) as url:
        yield url


def spent(api_calls: int, tokens: int, cost_usd: float, unpriced_calls: int = 0) -> dict[str, Any]:
    return {
        "api_calls": api_calls,
        "tokens": tokens,
        "cost_usd": cost_usd,
        "unpriced_calls": unpriced_calls,
    }


# Whatever the checkpoint policy: the nodes' endings carry what they spent.
@pytest.mark.parametrize("checkpoint", ["every_node", "every_level", "never"])
async def test_the_run_shows_its_calls_tokens_and_cost_per_node_and_in_total(
    client: httpx.AsyncClient, openai_srv: ProviderServer, flaky_url: str, checkpoint: str
) -> None:
    llm = {"provider": "openai", "base_url": openai_srv.url, "stream": False}
    retry = {"max_retries": 2, "initial_delay_ms": 1, "max_delay_ms": 1}
    document = linear(
        {"id": "start", "type": "start"},
        {"id": "priced", "type": "llm", "config": {**llm, "model": "gpt-4o-mini", "prompt": "hi"}},
        # A model the price table does not know: its tokens count, its cost adds nothing.
        {"id": "local", "type": "llm", "config": {**llm, "model": "my-local", "prompt": "ho"}},
        {"id": "fetch", "type": "http", "config": {"url": flaky_url}, "retry": retry},
        {"id": "end", "type": "end"},
        name="spender",
    )
    workflow_id = await create_workflow(client, document)

    body = {"config": {"checkpoint": checkpoint}}
    done = await wait_run(client, (await start_run(client, workflow_id, body))["id"])

    assert done["status"] == "completed", done
    nodes = {n["node_id"]: n for n in done["nodes"]}
    priced, local = nodes["priced"]["output"], nodes["local"]["output"]
    assert priced["cost_usd"] > 0 and local["cost_usd"] is None
    priced_tokens = priced["usage"]["input_tokens"] + priced["usage"]["output_tokens"]
    local_tokens = local["usage"]["input_tokens"] + local["usage"]["output_tokens"]
    assert priced_tokens > 0 and local_tokens > 0
    assert {key: (n["attempt"], n["usage"]) for key, n in nodes.items()} == {
        "start": (1, None),
        "priced": (1, spent(1, priced_tokens, priced["cost_usd"])),
        "local": (1, spent(1, local_tokens, 0.0, unpriced_calls=1)),
        "fetch": (2, spent(2, 0, 0.0)),  # its retry is a call
        "end": (1, None),
    }
    assert done["usage"] == {
        "nodes": 6,
        "api_calls": 4,
        "tokens": priced_tokens + local_tokens,
        "cost_usd": round(priced["cost_usd"], 10),
        "unpriced_calls": 1,
    }
    assert len(openai_srv.requests) == 2
    assert (await client.get(f"/v1/executions/{done['id']}")).json() == done
