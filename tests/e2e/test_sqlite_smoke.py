"""The same tour on SQLite: create, run, tail over SSE to the end, pause and resume; and a run
that waits for approvers."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from app.settings import Settings
from app.store.db import migrate
from tests.e2e.live import assert_gap_free, loop_workflow, serve, sse, start_run

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def test_sqlite_tour(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'oxify.db'}"
    await migrate(url)
    async with (
        serve(Settings(database_url=url)) as live,
        httpx.AsyncClient(base_url=live.url, timeout=15) as client,
    ):
        execution_id = await start_run(client, loop_workflow("smoke", items=10, delay_s=0.01))
        path = f"/v1/executions/{execution_id}/events"
        async with sse(client, path) as reader:
            first = await reader.rest()
        assert_gap_free(first)
        assert first[0].event == "workflow.started"
        assert first[-1].event == "workflow.completed"

        execution_id = await start_run(client, loop_workflow("pausable", items=20, delay_s=0.02))
        path = f"/v1/executions/{execution_id}/events"
        async with sse(client, path) as reader:
            seen = await reader.until("node.completed")
            paused = await client.post(f"/v1/executions/{execution_id}/pause")
            assert paused.status_code == 202, paused.text
            seen += await reader.until("workflow.paused")
            resumed = await client.post(f"/v1/executions/{execution_id}/resume")
            assert resumed.status_code == 202, resumed.text
            seen += await reader.rest()
        assert_gap_free(seen)
        assert "workflow.resumed" in [e.event for e in seen]
        assert seen[-1].event == "workflow.completed"
        final = await client.get(f"/v1/executions/{execution_id}")
        assert final.json()["status"] == "completed"
        assert (await client.get(path, params={"after": seen[-1].id})).status_code == 204


async def test_sqlite_approval(tmp_path: Path) -> None:
    """A run waits for two approvers on SQLite, and continues when they have answered."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'oxify.db'}"
    await migrate(url)
    document = json.loads((EXAMPLES / "approval.json").read_text())
    async with (
        serve(Settings(database_url=url)) as live,
        httpx.AsyncClient(base_url=live.url, timeout=15) as client,
    ):
        created = await client.post("/v1/workflows", json=document)
        started = await client.post(
            f"/v1/workflows/{created.json()['id']}/executions",
            json={"inputs": {"amount": 1800, "filed_by": "ada"}, "by": "ada"},
        )
        run_id = started.json()["id"]
        waiting = await client.get(f"/v1/executions/{run_id}/wait", params={"timeout_s": 10})
        assert waiting.json()["status"] == "waiting"
        inbox = (await client.get("/v1/forms", params={"assignee": "grace"})).json()["items"]
        [form] = [f for f in inbox if f["execution_id"] == run_id]

        for who in ("grace", "linus"):
            answer = await client.post(
                f"/v1/forms/{form['id']}/submit",
                json={"values": {"decision": "approved"}, "by": who},
            )
            assert answer.status_code == 200, answer.text
        done = await client.get(f"/v1/executions/{run_id}/wait", params={"timeout_s": 10})

        assert done.json()["status"] == "completed"
        assert done.json()["outputs"]["result"]["approved_by"] == ["grace", "linus"]
