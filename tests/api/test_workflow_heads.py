"""A replica remembers workflow heads (latest version, archived, project) so a run's submission
reads none; the submission checks the head it assumed, so a workflow changed through another
replica is never started at a stale version, nor once archived."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from app.auth import context
from tests.api.helpers import assert_problem, doubler, services_of, serving, start_run, wait_run


def tripler() -> dict[str, Any]:
    document = doubler()
    for node in document["nodes"]:
        if node["id"] == "double":
            node["config"] = {"value": "{{ inputs.n * 3 }}"}
    return document


async def test_a_head_changed_on_another_replica_is_never_started_stale(
    pg_database_url: str,
) -> None:
    settings = {"shutdown_grace_s": 2.0}
    async with (
        serving(pg_database_url, replica_id="a", **settings) as a,
        serving(pg_database_url, replica_id="b", **settings) as b,
    ):
        created = await a.post("/v1/workflows", json=doubler())
        workflow_id = created.json()["id"]
        first = await start_run(a, workflow_id, {"inputs": {"n": 2}})  # a remembers version 1
        assert (await wait_run(a, first["id"]))["outputs"] == {"result": 4}

        # Replica a now submits without reading the workflow ...
        statements: list[str] = []

        def executed(*args: Any) -> None:
            if context.current() is not None:
                statements.append(args[2])

        engine = services_of(a).engine.sync_engine
        event.listen(engine, "before_cursor_execute", executed)
        try:
            await start_run(a, workflow_id, {"inputs": {"n": 1}})
        finally:
            event.remove(engine, "before_cursor_execute", executed)
        reads = [sql for sql in statements if sql.lstrip().startswith("SELECT")]
        assert [sql for sql in reads if "workflows" in sql] == []

        # ... but b's new version is what a starts next, and b's archive stops a.
        assert (await b.put(f"/v1/workflows/{workflow_id}", json=tripler())).status_code == 200
        second = await start_run(a, workflow_id, {"inputs": {"n": 2}})
        assert second["workflow_version"] == 2
        assert (await wait_run(a, second["id"]))["outputs"] == {"result": 6}
        pinned = await a.post(
            f"/v1/workflows/{workflow_id}/executions",
            params={"version": 1},
            json={"inputs": {"n": 2}},
        )
        assert pinned.status_code == 202, pinned.text
        assert (await wait_run(a, pinned.json()["id"]))["outputs"] == {"result": 4}
        assert (await b.delete(f"/v1/workflows/{workflow_id}")).status_code == 204
        refused = await a.post(f"/v1/workflows/{workflow_id}/executions", json={"inputs": {"n": 1}})
        assert_problem(refused, 409, "workflow_archived")
