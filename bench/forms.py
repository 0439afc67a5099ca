"""People answering forms, through HTTP on Postgres: ``python -m bench.forms``.

1. submit → ``workflow.completed`` for runs whose last node is a form: 200 runs wait, then each
   form is answered (POST /v1/forms/{id}/submit) while an SSE stream follows the run; the time
   from just before the POST to the arrival of the terminal frame (target p50 ≤ 5 ms).
2. memory: server RSS idle, then with 1,000 runs waiting on forms (each holds no task).

Asserts nothing.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import uvloop

from bench._server import SseTail, database_url, describe, scratch_database, serve

RUNS = 200
WAITING = 1000
POSTERS = 20

FORM = {
    "name": "last-step-form",
    "nodes": [
        {"id": "prepare", "type": "transform", "config": {"value": 1}},
        {
            "id": "confirm",
            "type": "form",
            "config": {
                "prompt": "Confirm?",
                "fields": {
                    "type": "object",
                    "properties": {"ok": {"type": "boolean"}},
                    "required": ["ok"],
                },
            },
        },
    ],
    "edges": [{"from": "prepare", "to": "confirm"}],
}


async def start_waiting(http: httpx.AsyncClient, workflow_id: str) -> tuple[str, str]:
    """A run stopped at its form: (execution id, form id)."""
    run = (await http.post(f"/v1/workflows/{workflow_id}/executions", json={})).json()
    while (await http.get(f"/v1/executions/{run['id']}/wait", params={"timeout_s": 30})).json()[
        "status"
    ] != "waiting":
        pass
    page = await http.get("/v1/forms", params={"execution_id": run["id"]})
    return run["id"], page.json()["items"][0]["id"]


async def answer_to_completion(server: Any, http: httpx.AsyncClient, run: tuple[str, str]) -> float:
    execution_id, form_id = run
    last_seq = (await http.get(f"/v1/executions/{execution_id}")).json()["last_seq"]
    tail = SseTail()
    seen = asyncio.Event()
    reading = asyncio.create_task(
        tail.read(server.url, f"/v1/executions/{execution_id}/events?after={last_seq}", seen)
    )
    await seen.wait()  # the stream is open (headers arrived)
    submitted = time.time()
    answer = await http.post(f"/v1/forms/{form_id}/submit", json={"values": {"ok": True}})
    answer.raise_for_status()
    await reading
    completed = [f for f in tail.frames if f.type == "workflow.completed"]
    return (completed[0].received - submitted) * 1000


async def main() -> None:
    async with (
        scratch_database(database_url()) as url,
        serve(url) as server,
        httpx.AsyncClient(base_url=server.url, timeout=60) as http,
    ):
        workflow_id = (await http.post("/v1/workflows", json=FORM)).json()["id"]
        for _ in range(10):  # warm-up
            await answer_to_completion(server, http, await start_waiting(http, workflow_id))
        runs = [await start_waiting(http, workflow_id) for _ in range(RUNS)]
        latencies = [await answer_to_completion(server, http, run) for run in runs]
        print(
            f"1. submit → workflow.completed frame, form as the last node, {RUNS} runs "
            f"answered one after another (POST /submit, the run is claimed, resumed from "
            f"its checkpoint, completes; the SSE frame arrives): {describe(latencies, 'ms', 2)}"
        )

        await asyncio.sleep(1.0)
        idle = server.rss_mb()
        gate = asyncio.Semaphore(POSTERS)

        async def one() -> tuple[str, str]:
            async with gate:
                return await start_waiting(http, workflow_id)

        await asyncio.gather(*(one() for _ in range(WAITING)))
        await asyncio.sleep(1.0)
        waiting = server.rss_mb()
        running = (await http.get("/metrics")).text
        count = next(
            line.split()[1]
            for line in running.splitlines()
            if line.startswith("oxify_runs_running ")
        )
        print(
            f"2. memory: server RSS idle {idle:.1f} MB; with {WAITING} more runs waiting on "
            f"forms {waiting:.1f} MB ({waiting - idle:+.1f} MB); runs held by the runner: "
            f"{float(count):.0f}"
        )


if __name__ == "__main__":
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
