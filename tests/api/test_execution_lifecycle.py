"""Less common paths of a run's life: queued runs held and cancelled, paused runs cancelled and
retried, run timeouts, and racing idempotent starts."""

from __future__ import annotations

import asyncio

import httpx

from app.domain.events import EventType
from tests.api.helpers import (
    create_workflow,
    delays,
    doubler,
    next_event,
    serving,
    start_run,
    wait_run,
)


async def test_a_queued_run_can_be_paused_resumed_and_cancelled(pg_database_url: str) -> None:
    async with serving(pg_database_url, max_concurrent_runs=1, shutdown_grace_s=2.0) as client:
        slow = await create_workflow(client, delays(1, 30.0))
        quick = await create_workflow(client, doubler())
        blocker = await start_run(client, slow)
        await next_event(client, blocker["id"], EventType.NODE_STARTED, "d1")

        held = await start_run(client, quick, {"inputs": {"n": 5}})
        dropped = await start_run(client, quick, {"inputs": {"n": 6}})
        assert held["status"] == dropped["status"] == "queued"  # the one slot is taken

        paused = await client.post(f"/v1/executions/{held['id']}/pause")
        assert paused.status_code == 202
        assert paused.json()["status"] == "paused"
        cancelled = await client.post(f"/v1/executions/{dropped['id']}/cancel")
        assert cancelled.status_code == 202
        assert cancelled.json()["status"] == "cancelled"

        stopped = await client.post(f"/v1/executions/{blocker['id']}/cancel", params={"wait": True})
        assert stopped.json()["status"] == "cancelled"
        # The free slot must not start the paused run.
        assert (await wait_run(client, held["id"]))["status"] == "paused"

        assert (await client.post(f"/v1/executions/{held['id']}/resume")).status_code == 202
        done = await wait_run(client, held["id"])
        assert done["status"] == "completed"
        assert done["outputs"] == {"result": 10}
        log = await client.get(f"/v1/executions/{dropped['id']}/events/log")
        assert [e["type"] for e in log.json()["items"]] == ["workflow.cancelled"]


async def test_a_paused_run_can_be_cancelled_then_retried(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(client, delays(2, 0.2))
    run = await start_run(client, workflow_id)
    await next_event(client, run["id"], EventType.NODE_STARTED, "d1")
    await client.post(f"/v1/executions/{run['id']}/pause")
    assert (await wait_run(client, run["id"]))["status"] == "paused"

    cancelled = await client.post(f"/v1/executions/{run['id']}/cancel", params={"wait": True})
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"

    assert (await client.post(f"/v1/executions/{run['id']}/retry")).status_code == 202
    done = await wait_run(client, run["id"])
    assert done["status"] == "completed"
    attempts = {n["node_id"]: n["attempt"] for n in done["nodes"]}
    assert attempts["d1"] == 1  # finished before the pause: not run again
    log = await client.get(f"/v1/executions/{run['id']}/events/log", params={"limit": 500})
    seqs = [e["seq"] for e in log.json()["items"]]
    assert seqs == list(range(1, done["last_seq"] + 1))


async def test_a_run_over_its_timeout_is_timed_out(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(client, delays(1, 30.0))
    run = await start_run(client, workflow_id, {"config": {"timeout_s": 0.3}})
    done = await wait_run(client, run["id"])
    assert done["status"] == "timed_out"
    assert done["finished_at"] is not None
    listed = await client.get("/v1/executions", params={"status": "timed_out"})
    assert run["id"] in {e["id"] for e in listed.json()["items"]}


async def test_racing_starts_with_one_key_make_one_run(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(client, doubler())
    url = f"/v1/workflows/{workflow_id}/executions"

    async def start() -> httpx.Response:
        return await client.post(
            url, json={"inputs": {"n": 4}}, headers={"Idempotency-Key": "race"}
        )

    responses = await asyncio.gather(*(start() for _ in range(8)))
    assert sorted(r.status_code for r in responses) == [200] * 7 + [202]
    assert len({r.json()["id"] for r in responses}) == 1
    listed = await client.get("/v1/executions", params={"workflow_id": workflow_id})
    assert len(listed.json()["items"]) == 1
    assert (await wait_run(client, responses[0].json()["id"]))["outputs"] == {"result": 8}


async def test_a_run_survives_a_restart(fresh_pg_url: str) -> None:
    async with serving(fresh_pg_url, shutdown_grace_s=5.0) as client:
        workflow_id = await create_workflow(client, delays(3, 0.2))
        run = await start_run(client, workflow_id)
        await next_event(client, run["id"], EventType.NODE_STARTED, "d1")
    # The lifespan ended: the run was paused at a checkpoint and queued for the next start.
    async with serving(fresh_pg_url) as client:
        done = await wait_run(client, run["id"])
        assert done["status"] == "completed", done
        assert {n["node_id"]: n["attempt"] for n in done["nodes"]}["d1"] == 1
        log = await client.get(f"/v1/executions/{run['id']}/events/log", params={"limit": 500})
        types = [e["type"] for e in log.json()["items"]]
        assert "workflow.resumed" in types
        assert types[-1] == "workflow.completed"


async def test_runs_keep_the_version_they_started_on(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(client, doubler())
    first = await start_run(client, workflow_id, {"inputs": {"n": 1}})
    tripler = doubler()
    tripler["nodes"][1]["config"]["value"] = "{{ inputs.n * 3 }}"
    assert (await client.put(f"/v1/workflows/{workflow_id}", json=tripler)).status_code == 200
    second = await start_run(client, workflow_id, {"inputs": {"n": 1}})
    pinned = await client.post(
        f"/v1/workflows/{workflow_id}/executions", json={"inputs": {"n": 1}}, params={"version": 1}
    )
    assert [first["workflow_version"], second["workflow_version"]] == [1, 2]
    assert pinned.json()["workflow_version"] == 1
    assert (await wait_run(client, first["id"]))["outputs"] == {"result": 2}
    assert (await wait_run(client, second["id"]))["outputs"] == {"result": 3}
    assert (await wait_run(client, pinned.json()["id"]))["outputs"] == {"result": 2}
