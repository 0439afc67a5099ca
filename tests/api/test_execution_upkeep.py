"""Deleting runs, admission control (429) and retention, through the API on Postgres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import update

from app.domain.events import EventType
from app.services.housekeeping import Housekeeping
from app.store import tables
from tests.api.helpers import (
    assert_problem,
    create_workflow,
    delays,
    doubler,
    next_event,
    services_of,
    serving,
    start_run,
    wait_run,
)


async def test_delete_removes_a_finished_run_and_refuses_a_running_one(
    client: httpx.AsyncClient,
) -> None:
    done = await wait_run(
        client,
        (await start_run(client, await create_workflow(client, doubler()), {"inputs": {"n": 2}}))[
            "id"
        ],
    )
    running = await start_run(client, await create_workflow(client, delays(1, 30.0)))
    await next_event(client, running["id"], EventType.NODE_STARTED)

    assert (await client.delete(f"/v1/executions/{done['id']}")).status_code == 204
    assert_problem(await client.get(f"/v1/executions/{done['id']}"), 404, "execution_not_found")
    assert_problem(await client.delete(f"/v1/executions/{done['id']}"), 404, "execution_not_found")
    refused = assert_problem(
        await client.delete(f"/v1/executions/{running['id']}"), 409, "invalid_state"
    )
    assert "cancel" in refused["detail"]

    await client.post(f"/v1/executions/{running['id']}/cancel", params={"wait": "true"})
    assert (await client.delete(f"/v1/executions/{running['id']}")).status_code == 204


async def test_new_runs_get_429_while_too_many_wait(fresh_pg_url: str) -> None:
    async with serving(fresh_pg_url, max_concurrent_runs=1, max_queued_runs=1) as client:
        slow = await create_workflow(client, delays(1, 30.0))
        blocker = await start_run(client, slow)
        await next_event(client, blocker["id"], EventType.NODE_STARTED)  # the one slot is taken
        waiting = await start_run(client, slow)  # queued: the bound is reached

        refused = await client.post(f"/v1/workflows/{slow}/executions", json={})

        body = assert_problem(refused, 429, "queue_full")
        assert int(refused.headers["Retry-After"]) >= 1
        assert "limit 1" in body["detail"]
        for run in (waiting, blocker):
            await client.post(f"/v1/executions/{run['id']}/cancel", params={"wait": "true"})


async def test_retention_purges_old_history_and_keeps_the_summary(fresh_pg_url: str) -> None:
    async with serving(fresh_pg_url) as client:
        workflow_id = await create_workflow(client, doubler())
        old = await wait_run(
            client, (await start_run(client, workflow_id, {"inputs": {"n": 1}}))["id"]
        )
        new = await wait_run(
            client, (await start_run(client, workflow_id, {"inputs": {"n": 2}}))["id"]
        )
        services = services_of(client)
        async with services.engine.begin() as conn:
            await conn.execute(
                update(tables.executions)
                .where(tables.executions.c.id == old["id"])
                .values(finished_at=datetime.now(UTC) - timedelta(days=40))
            )

        housekeeping = Housekeeping(
            services.engine,
            forms=services.forms,
            executions=services.executions,
            deadline_sweep_s=1,
            retention_days=30,
            retention_interval_s=60,
        )
        purged = await housekeeping.purge()

        assert purged == 1
        kept = (await client.get(f"/v1/executions/{old['id']}")).json()
        assert kept["status"] == "completed" and kept["outputs"] == {"result": 2}
        assert kept["purged_at"] is not None
        assert all(node["output"] is None for node in kept["nodes"])
        log = (await client.get(f"/v1/executions/{old['id']}/events/log")).json()
        assert log["items"] == []
        assert (await client.get(f"/v1/executions/{old['id']}/events")).status_code == 204
        assert (await client.get(f"/v1/executions/{old['id']}/checkpoints")).json()["items"] == []
        # The newer run is untouched.
        assert (await client.get(f"/v1/executions/{new['id']}/events/log")).json()["items"]
