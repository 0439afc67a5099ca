"""``llm`` nodes in runs of the app on Postgres, against the local OpenAI-compatible server:
tokens reach the event log while the node runs and replay over SSE; keys reach no API answer."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.domain.events import EventType
from tests.api.helpers import create_workflow, next_event, serving, start_run, wait_run
from tests.providers import Failure, ProviderServer, Text, openai_server

CANARY = "sk-canary-api-5d1e0b77"


@pytest.fixture
async def provider() -> AsyncIterator[ProviderServer]:
    async with openai_server() as srv:
        yield srv


@pytest.fixture
async def client(
    pg_database_url: str, provider: ProviderServer
) -> AsyncIterator[httpx.AsyncClient]:
    settings = {"openai_api_key": CANARY, "openai_base_url": provider.url}
    async with serving(pg_database_url, shutdown_grace_s=2.0, **settings) as client:
        yield client


def ask(url: str, node_id: str = "ask", **extra: Any) -> dict[str, Any]:
    config = {"provider": "openai", "base_url": url, "model": "gpt-4o-mini", "prompt": "go"}
    return {"id": node_id, "type": "llm", "config": config, **extra}


def sse_events(body: str) -> list[dict[str, Any]]:
    return [
        json.loads(line.removeprefix("data: "))
        for line in body.splitlines()
        if line.startswith("data: ")
    ]


async def test_tokens_are_logged_while_the_node_runs_and_replay_from_last_event_id(
    client: httpx.AsyncClient, provider: ProviderServer
) -> None:
    chunks = [f"part{i} " for i in range(8)]
    provider.script(Text("".join(chunks), chunks=chunks, token_delay_s=0.03))
    workflow_id = await create_workflow(client, {"name": "tokens", "nodes": [ask(provider.url)]})
    execution = await start_run(client, workflow_id)
    first = await next_event(client, execution["id"], EventType.NODE_TOKEN)
    # Live: the first tokens are stored and published before the node has answered in full.
    assert provider.sent and len(provider.sent) < len(chunks)
    done = await wait_run(client, execution["id"])
    assert done["status"] == "completed", done
    log = (await client.get(f"/v1/executions/{execution['id']}/events/log")).json()["items"]
    tokens = [e for e in log if e["type"] == "node.token"]
    assert len(tokens) > 1
    assert [t["data"]["index"] for t in tokens] == list(range(len(tokens)))
    assert "".join(t["data"]["text"] for t in tokens) == "".join(chunks)
    assert tokens[0]["seq"] == first.seq
    completed = next(e for e in log if e["type"] == "node.completed")
    assert completed["seq"] > tokens[-1]["seq"]
    assert completed["data"]["output"]["text"] == "".join(chunks)

    replay = await client.get(
        f"/v1/executions/{execution['id']}/events",
        headers={"Last-Event-ID": str(first.seq)},
    )
    replayed = [e for e in sse_events(replay.text) if e["type"] == "node.token"]
    assert [e["seq"] for e in replayed] == [t["seq"] for t in tokens[1:]]


async def test_the_key_reaches_no_answer_of_the_api(
    client: httpx.AsyncClient, provider: ProviderServer, caplog: pytest.LogCaptureFixture
) -> None:
    provider.script(Failure(401, f"Incorrect API key provided: {CANARY}"))
    document = {"name": "keys", "nodes": [ask(provider.url)]}
    with caplog.at_level(logging.DEBUG):
        execution = await start_run(client, await create_workflow(client, document))
        done = await wait_run(client, execution["id"])
    assert done["status"] == "failed"
    assert provider.requests[0].headers["authorization"] == f"Bearer {CANARY}"
    answers = [
        await client.get(f"/v1/executions/{execution['id']}"),
        await client.get(f"/v1/executions/{execution['id']}/events/log"),
        await client.get(f"/v1/executions/{execution['id']}/checkpoints"),
        await client.get(f"/v1/executions/{execution['id']}/events"),
        await client.get("/v1/executions"),
    ]
    assert "check the key and its permissions" in answers[0].text  # the echo left out
    for answer in answers:
        assert answer.status_code == 200
        assert CANARY not in answer.text
    assert CANARY not in caplog.text
