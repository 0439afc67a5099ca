"""Workflow analysis over HTTP on Postgres: health (stored and unsaved), complexity, batching,
and the estimate, static and then from past runs against the local OpenAI-compatible server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.api.helpers import assert_problem, create_workflow, start_run, wait_run
from tests.providers import ProviderServer, openai_server
from tests.support import node, workflow
from tests.unit.engine.analysis.documents import branchy, unhealthy

UNKNOWN = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
async def openai_srv() -> AsyncIterator[ProviderServer]:
    async with openai_server() as srv:
        yield srv


async def test_health_of_a_stored_version_and_of_an_unsaved_document(
    client: httpx.AsyncClient,
) -> None:
    workflow_id = await create_workflow(client, unhealthy())
    stored = await client.get(f"/v1/workflows/{workflow_id}/health")
    assert stored.status_code == 200, stored.text
    assert stored.json()["score"] == 24
    codes = {issue["code"] for issue in stored.json()["issues"]}
    assert {"literal_secret", "insecure_http", "unreachable_node", "no_retry"} <= codes
    unsaved = await client.post("/v1/workflows/health", json=unhealthy())
    assert unsaved.json() == stored.json()
    versioned = await client.get(f"/v1/workflows/{workflow_id}/health", params={"version": 1})
    assert versioned.json() == stored.json()


async def test_unknown_workflows_are_404_and_invalid_documents_422(
    client: httpx.AsyncClient,
) -> None:
    for path in ("health", "complexity", "batching"):
        response = await client.get(f"/v1/workflows/{UNKNOWN}/{path}")
        assert_problem(response, 404, "workflow_not_found")
    assert_problem(
        await client.post(f"/v1/workflows/{UNKNOWN}/estimate"), 404, "workflow_not_found"
    )
    broken = {"name": "x", "nodes": [{"id": "a", "type": "nope"}], "edges": []}
    body = assert_problem(
        await client.post("/v1/workflows/health", json=broken), 422, "workflow_invalid"
    )
    assert any(error.get("pointer") == "/nodes/0/type" for error in body["errors"])


async def test_complexity_and_batching(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(client, branchy())
    complexity = (await client.get(f"/v1/workflows/{workflow_id}/complexity")).json()
    assert (complexity["nodes"], complexity["cyclomatic"], complexity["score"]) == (8, 4, 11)
    calls = [
        node(n, "http", url=f"https://api.example.com/{n}", retry={"max_retries": 1})
        for n in ("a", "b")
    ]
    other = await create_workflow(client, workflow(calls, []))
    batching = (await client.get(f"/v1/workflows/{other}/batching")).json()
    assert [(g["target"], g["node_ids"]) for g in batching["groups"]] == [
        ("api.example.com", ["a", "b"])
    ]


async def test_the_estimate_brackets_real_runs_then_learns_from_them(
    client: httpx.AsyncClient, openai_srv: ProviderServer
) -> None:
    ask = node(
        "ask",
        "llm",
        provider="openai",
        base_url=openai_srv.url,
        model="gpt-4o-mini",
        prompt="Describe {{ item }} in one line.",
        max_tokens=64,
        stream=False,
        cache=False,  # every run calls the model (a cached answer spends nothing)
    )
    loop = node("loop", "foreach", items="{{ inputs.things }}", body={"nodes": [ask], "edges": []})
    workflow_id = await create_workflow(client, workflow([loop], []))
    inputs = {"things": ["a", "b", "c"]}

    static = await client.post(f"/v1/workflows/{workflow_id}/estimate", json={"inputs": inputs})
    assert static.status_code == 200, static.text
    (before,) = static.json()["nodes"]
    assert before["basis"] == "static"
    assert before["calls"] == {"low": 3, "expected": 3, "high": 3}
    assert static.json()["assumptions"]

    runs = []
    for _ in range(2):
        started = await start_run(client, workflow_id, {"inputs": inputs})
        done = await wait_run(client, started["id"])
        assert done["status"] == "completed", done
        runs.append(done["usage"])
    for usage in runs:
        assert before["tokens"]["low"] <= usage["tokens"] <= before["tokens"]["high"]
        assert before["cost_usd"]["low"] <= usage["cost_usd"] <= before["cost_usd"]["high"]

    learned = await client.post(f"/v1/workflows/{workflow_id}/estimate")
    (after,) = learned.json()["nodes"]
    assert after["basis"] == "past_runs"
    assert after["measured"]["runs"] == 2
    tokens = [usage["tokens"] for usage in runs]
    assert after["tokens"] == {
        "low": min(tokens),
        "expected": sum(tokens) / 2,
        "high": max(tokens),
    }
