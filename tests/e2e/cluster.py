"""Several ``oxify serve`` replicas on one Postgres database, and what tests ask of them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from tests.e2e.live import sse
from tests.e2e.processes import ServerProcess

# Short leases so a test sees a recovery within seconds: 1 s lease, renewed every ~0.33 s,
# lapsed leases looked for every 0.2 s.
FAST_LEASES = {"lease_s": "1", "poll_s": "0.2", "shutdown_grace_s": "3"}
HTTP_TIMEOUT_S = 30.0


@dataclass
class Cluster:
    replicas: list[ServerProcess]

    def replica(self, replica_id: str) -> ServerProcess:
        return self.replicas[int(replica_id.removeprefix("r"))]

    def alive(self) -> list[ServerProcess]:
        return [r for r in self.replicas if r.alive]

    def other_than(self, *replicas: ServerProcess) -> ServerProcess:
        """A live replica that is none of ``replicas``."""
        return next(r for r in self.alive() if r not in replicas)


@asynccontextmanager
async def cluster(
    database_url: str, size: int = 3, *, env: Mapping[str, str] | None = None, **settings: str
) -> AsyncIterator[Cluster]:
    """``size`` replicas named r0, r1, … (their lease ids), started together; ``env``: other
    variables than the ``OXIFY_*`` ``settings`` (OTEL_*)."""
    replicas = [
        ServerProcess(
            database_url,
            settings={**FAST_LEASES, **settings, "replica_id": f"r{i}"},
            env=env,
        )
        for i in range(size)
    ]
    try:
        await asyncio.gather(*(r.start() for r in replicas))
        yield Cluster(replicas)
    finally:
        await asyncio.gather(*(r.stop() for r in replicas))
        for replica in replicas:
            replica.close()


def client(replica: ServerProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=replica.url, timeout=HTTP_TIMEOUT_S)


async def create_workflow(replica: ServerProcess, document: dict[str, Any]) -> str:
    async with client(replica) as http:
        created = await http.post("/v1/workflows", json=document)
    assert created.status_code == 201, created.text
    workflow_id: str = created.json()["id"]
    return workflow_id


async def start_run(replica: ServerProcess, workflow_id: str) -> str:
    async with client(replica) as http:
        started = await http.post(f"/v1/workflows/{workflow_id}/executions", json={})
    assert started.status_code == 202, started.text
    execution_id: str = started.json()["id"]
    return execution_id


async def owner_once_started(replica: ServerProcess, execution_id: str) -> str:
    """The replica id driving the run, once its first node started (followed over SSE)."""
    async with client(replica) as http:
        async with sse(http, f"/v1/executions/{execution_id}/events") as events:
            await events.until("node.started")
        execution = (await http.get(f"/v1/executions/{execution_id}")).json()
    owner: str = execution["owner"]
    return owner


async def settled(replica: ServerProcess, execution_id: str) -> dict[str, Any]:
    """The run once it is terminal, paused or waiting (long-polled)."""
    async with client(replica) as http:
        for _ in range(10):
            response = await http.get(
                f"/v1/executions/{execution_id}/wait", params={"timeout_s": 20}
            )
            assert response.status_code == 200, response.text
            execution: dict[str, Any] = response.json()
            if execution["status"] not in ("queued", "running", "pausing"):
                return execution
    raise AssertionError(f"run {execution_id} did not settle: {execution['status']}")


async def event_log(replica: ServerProcess, execution_id: str) -> list[dict[str, Any]]:
    """Every stored event of the run, in seq order."""
    events: list[dict[str, Any]] = []
    async with client(replica) as http:
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 500}
            if cursor is not None:
                params["cursor"] = cursor
            page = (
                await http.get(f"/v1/executions/{execution_id}/events/log", params=params)
            ).json()
            events += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return events


def assert_gap_free_log(events: list[dict[str, Any]]) -> None:
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    terminal = [e for e in events if e["type"] in TERMINAL]
    assert len(terminal) == 1 and events[-1] is terminal[0], [e["type"] for e in terminal]


TERMINAL = {"workflow.completed", "workflow.failed", "workflow.cancelled", "workflow.timed_out"}
