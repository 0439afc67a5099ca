"""`GET /v1/executions/{id}/profile` on Postgres: a real run with delays and an ``http`` node
that fails twice (retryable) before it answers, a run waiting for a form, an unknown run."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import delete

from app.store import tables
from tests.api.helpers import (
    assert_problem,
    create_workflow,
    delays,
    flaky_endpoint,
    linear,
    services_of,
    start_run,
    wait_run,
)

FAILURES = 2  # answers 503 before the first 200


@pytest.fixture
async def flaky_url() -> AsyncIterator[str]:
    """A local server whose ``/flaky`` answers 503 (retryable) twice, then 200."""
    async with flaky_endpoint(FAILURES) as url:
        yield url


async def test_a_finished_run_has_its_critical_path_backoff_and_bottlenecks(
    client: httpx.AsyncClient, flaky_url: str
) -> None:
    retry = {"max_retries": FAILURES, "initial_delay_ms": 20, "max_delay_ms": 20}
    document = {
        "name": "profiled",
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "slow", "type": "delay", "config": {"seconds": 0.6}},
            {"id": "fetch", "type": "http", "config": {"url": flaky_url}, "retry": retry},
            {"id": "end", "type": "end", "config": {"outputs": {"slept": "{{ slow.output }}"}}},
        ],
        "edges": [
            {"from": "start", "to": "slow"},
            {"from": "start", "to": "fetch"},
            {"from": "slow", "to": "end"},
            {"from": "fetch", "to": "end"},
        ],
    }
    workflow_id = await create_workflow(client, document)
    done = await wait_run(client, (await start_run(client, workflow_id))["id"])
    assert done["status"] == "completed", done

    response = await client.get(f"/v1/executions/{done['id']}/profile")
    assert response.status_code == 200, response.text
    found = response.json()
    assert (found["execution_id"], found["status"], found["partial"]) == (
        done["id"],
        "completed",
        False,
    )
    assert [n["node_id"] for n in found["critical_path"]] == ["start", "slow", "end"]
    assert [n["gated_by"] for n in found["critical_path"]] == [None, "start", "slow"]
    assert 600 <= found["critical_path_ms"] <= found["makespan_ms"]
    assert found["slowest"][0]["node_id"] == "slow"
    assert 0 < found["time"]["backoff_ms"] <= FAILURES * 20
    assert found["time"]["waiting_ms"] == 0
    assert 0 < found["parallelism"]["efficiency"] <= 1
    assert found["parallelism"]["width"] == 2
    assert found["nodes_profiled"] == 4
    kinds = {b["type"]: b for b in found["bottlenecks"]}
    assert kinds["retry_storm"]["nodes"] == ["fetch"]
    assert kinds["slow_critical_node"]["nodes"] == ["slow"]


async def test_a_run_waiting_for_a_form_has_a_partial_profile(client: httpx.AsyncClient) -> None:
    fields = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    document = linear(
        {"id": "start", "type": "start"},
        {"id": "ask", "type": "form", "config": {"prompt": "ok?", "fields": fields}},
        {"id": "end", "type": "end"},
        name="asking",
    )
    workflow_id = await create_workflow(client, document)
    waiting = await wait_run(client, (await start_run(client, workflow_id))["id"])
    assert waiting["status"] == "waiting", waiting

    found = (await client.get(f"/v1/executions/{waiting['id']}/profile")).json()
    assert (found["status"], found["partial"]) == ("waiting", True)
    ask = found["critical_path"][-1]
    assert (ask["node_id"], ask["status"]) == ("ask", "waiting")
    assert ask["waiting_ms"] > 0
    assert found["time"]["waiting_ms"] == ask["waiting_ms"]


async def test_a_run_whose_events_were_purged_is_profiled_from_its_node_rows(
    client: httpx.AsyncClient,
) -> None:
    workflow_id = await create_workflow(client, delays(2, 0.05))
    done = await wait_run(client, (await start_run(client, workflow_id))["id"])
    async with services_of(client).engine.begin() as conn:  # what retention deletes
        await conn.execute(delete(tables.events).where(tables.events.c.execution_id == done["id"]))

    found = (await client.get(f"/v1/executions/{done['id']}/profile")).json()
    path = ["start", "d1", "d2", "end"]
    assert [n["node_id"] for n in found["critical_path"]] == path
    assert found["critical_path_ms"] >= 100
    assert found["time"]["backoff_ms"] == found["time"]["waiting_ms"] == 0


async def test_an_unknown_run_has_no_profile(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/executions/nope/profile")
    assert_problem(response, 404, "execution_not_found")
