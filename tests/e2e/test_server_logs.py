"""``oxify serve``'s stderr is JSON lines: a run whose node logs (a fault point on its first
attempt, then a retry), requests in the access log, a provider key that never shows."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.e2e.live import sse, start_run
from tests.e2e.processes import ServerProcess

CANARY = "sk-canary-0b9d7e41"
FAULT = [{"point": "node.execute", "action": "error", "times": 1, "match": "double"}]
DOCUMENT = {
    "name": "logs",
    "nodes": [
        {"id": "start", "type": "start"},
        {
            "id": "double",
            "type": "transform",
            "config": {"value": "{{ 2 * 21 }}"},
            "retry": {"max_retries": 1, "initial_delay_ms": 1},
        },
    ],
    "edges": [{"from": "start", "to": "double"}],
}


async def test_every_line_is_json_with_the_ids_and_no_secret(fresh_pg_url: str) -> None:
    server = ServerProcess(
        fresh_pg_url,
        settings={
            "log_level": "info",
            "replica_id": "logs-r1",
            "faults": json.dumps(FAULT),
            "openai_api_key": CANARY,
        },
    )
    try:
        await server.start()
        async with httpx.AsyncClient(base_url=server.url, timeout=15) as client:
            execution_id = await start_run(client, DOCUMENT)
            async with sse(client, f"/v1/executions/{execution_id}/events") as reader:
                events = await reader.rest()
            assert events[-1].event == "workflow.completed"
            # A key in a URL reaches the access log: it is scrubbed there.
            missing = await client.get(f"/v1/workflows/missing-{CANARY}")
            assert missing.status_code == 404
        await server.stop()
        server.log.seek(0)
        raw = server.log.read().decode()
    finally:
        server.close()

    assert CANARY not in raw
    lines: list[dict[str, Any]] = [json.loads(line) for line in raw.splitlines()]
    assert all(line.keys() >= {"time", "level", "logger", "message"} for line in lines)
    assert all(line["replica_id"] == "logs-r1" for line in lines)
    assert not any("color_message" in line for line in lines)

    (fault,) = [line for line in lines if line["message"] == "fault point node.execute: error"]
    assert [fault[key] for key in ("execution_id", "node_id", "attempt")] == [
        execution_id,
        "double",
        1,
    ]

    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    started = next(line for line in access if line["method"] == "POST" and line["status"] == 202)
    assert started["path"].endswith("/executions")
    refused = next(line for line in access if line["status"] == 404)
    assert refused["path"] == "/v1/workflows/missing-[secret]"
    assert any(line["logger"] == "uvicorn.error" for line in lines)  # startup and shutdown
