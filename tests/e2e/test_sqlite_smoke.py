"""The same tour on SQLite: create, run, tail over SSE to the end, pause and resume."""

from __future__ import annotations

from pathlib import Path

import httpx

from app.settings import Settings
from app.store.db import migrate
from tests.e2e.live import assert_gap_free, loop_workflow, serve, sse, start_run


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
