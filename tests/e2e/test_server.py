"""End to end against a real uvicorn on a loopback port, on Postgres: create, run, tail over
SSE and WebSocket, reconnect, pause/resume, cancel, and a run surviving a graceful restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter

import httpx
import pytest
import websockets
from websockets.asyncio.client import connect

from app.settings import Settings
from tests.e2e.live import (
    SseEvent,
    assert_gap_free,
    loop_workflow,
    serve,
    sse,
    start_run,
)

KNOWN_TYPES = {
    "workflow.started",
    "workflow.completed",
    "workflow.paused",
    "workflow.resumed",
    "workflow.cancelled",
    "level.started",
    "level.completed",
    "node.started",
    "node.completed",
    "node.skipped",
    "checkpoint.created",
    "progress.update",
}


def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, shutdown_grace_s=10)


async def test_tail_reconnect_and_websocket(fresh_pg_url: str) -> None:
    async with (
        serve(settings(fresh_pg_url)) as live,
        httpx.AsyncClient(base_url=live.url, timeout=15) as client,
    ):
        execution_id = await start_run(client, loop_workflow("tour", items=30, delay_s=0.01))
        path = f"/v1/executions/{execution_id}/events"

        async with sse(client, path) as reader:
            head = [event for _ in range(10) if (event := await reader.next()) is not None]
        # Disconnected after 10 events; EventSource would reconnect with the last id it saw.
        async with sse(client, path, headers={"Last-Event-ID": str(head[-1].id)}) as reader:
            tail = await reader.rest()
            assert reader.retry == 2000

        events = head + tail
        assert_gap_free(events)
        assert events[0].event == "workflow.started"
        assert events[-1].event == "workflow.completed"
        assert [e.event for e in events].count("workflow.completed") == 1
        assert {e.event for e in events} <= KNOWN_TYPES
        naps = [e for e in events if e.event == "node.completed" and ".nap" in e.data["node_id"]]
        assert len(naps) == 30

        # A fresh replay of the finished run is the same log; after its end there is nothing.
        async with sse(client, path) as reader:
            replay = await reader.rest()
        assert [e.data for e in replay] == [e.data for e in events]
        done = await client.get(path, headers={"Last-Event-ID": str(events[-1].id)})
        assert done.status_code == 204

        async with connect(f"{live.ws_url}/v1/executions/{execution_id}/ws") as ws:
            frames = [json.loads(message) async for message in ws]
            assert ws.close_code == 1000
        assert frames == [e.data for e in events]

        async with connect(f"{live.ws_url}/v1/executions/{execution_id}/ws?after=12") as ws:
            frames = [json.loads(message) async for message in ws]
        assert frames == [e.data for e in events[12:]]

        async with connect(f"{live.ws_url}/v1/executions/missing/ws") as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4404
        assert live.services.bus.subscriber_count(execution_id) == 0


async def test_pause_resume_and_cancel_over_http(fresh_pg_url: str) -> None:
    async with (
        serve(settings(fresh_pg_url)) as live,
        httpx.AsyncClient(base_url=live.url, timeout=15) as client,
    ):
        execution_id = await start_run(client, loop_workflow("pausable", items=30, delay_s=0.02))
        async with sse(client, f"/v1/executions/{execution_id}/events") as reader:
            seen = await reader.until("node.completed")
            paused = await client.post(f"/v1/executions/{execution_id}/pause")
            assert paused.status_code == 202, paused.text
            seen += await reader.until("workflow.paused")
            status = await client.get(f"/v1/executions/{execution_id}")
            assert status.json()["status"] == "paused"

            resumed = await client.post(f"/v1/executions/{execution_id}/resume")
            assert resumed.status_code == 202, resumed.text
            seen += await reader.until("workflow.resumed")
            seen += await reader.rest()
        assert_gap_free(seen)
        assert seen[-1].event == "workflow.completed"

        execution_id = await start_run(client, loop_workflow("doomed", items=30, delay_s=0.02))
        async with sse(client, f"/v1/executions/{execution_id}/events") as reader:
            seen = await reader.until("node.completed")
            cancelled = await client.post(f"/v1/executions/{execution_id}/cancel?wait=true")
            assert cancelled.status_code == 200, cancelled.text
            assert cancelled.json()["status"] == "cancelled"
            seen += await reader.rest()
        assert_gap_free(seen)
        assert seen[-1].event == "workflow.cancelled"


async def test_a_run_survives_a_graceful_restart(fresh_pg_url: str) -> None:
    document = loop_workflow("long", items=50, delay_s=0.03)
    async with (
        serve(settings(fresh_pg_url)) as first,
        httpx.AsyncClient(base_url=first.url, timeout=15) as client,
    ):
        execution_id = await start_run(client, document)
        path = f"/v1/executions/{execution_id}/events"
        seen: list[SseEvent] = []
        async with sse(client, path) as reader:
            for _ in range(8):
                seen += await reader.until("node.completed")
            # Graceful stop with a client still tailing: the server closes the stream, then its
            # lifespan shutdown pauses the run at a checkpoint and puts it back in the queue.
            stopping = asyncio.create_task(first.stop())
            with contextlib.suppress(httpx.RemoteProtocolError):
                while (event := await reader.next()) is not None:
                    seen.append(event)
            await stopping
        assert first.services.runner.running_count == 0
    assert not any(e.event == "workflow.completed" for e in seen)

    async with (
        serve(settings(fresh_pg_url)) as second,
        httpx.AsyncClient(base_url=second.url, timeout=15) as client,
    ):
        # The client reconnects (to another server) from the last id it saw.
        async with sse(client, path, headers={"Last-Event-ID": str(seen[-1].id)}) as reader:
            rest = await reader.rest()
        async with sse(client, path) as reader:
            events = await reader.rest()

    assert [e.data for e in seen + rest] == [e.data for e in events]
    assert_gap_free(events)
    types = [e.event for e in events]
    assert types.count("workflow.started") == 1
    assert types.count("workflow.paused") == 1
    assert types.count("workflow.resumed") == 1
    assert types.index("workflow.paused") < types.index("workflow.resumed")
    assert events[-1].event == "workflow.completed"
    resumed_at = types.index("workflow.resumed")
    assert events[resumed_at].data["data"]["reason"] == "shutdown"

    assert_no_completed_node_ran_again(events[:resumed_at], events[resumed_at:])


def assert_no_completed_node_ran_again(before: list[SseEvent], after: list[SseEvent]) -> None:
    completed = {e.data["node_id"] for e in before if e.event == "node.completed"}
    assert completed, "nothing completed before the restart"
    restarted = {e.data["node_id"] for e in after if e.event == "node.started"}
    assert not completed & restarted
    # Every node key starts once per attempt, across both servers.
    starts = Counter(e.data["node_id"] for e in before + after if e.event == "node.started")
    retries = Counter(e.data["node_id"] for e in before + after if e.event == "node.retry")
    ran_twice = {
        key for key, count in starts.items() if count > 1 + retries[key] and key in completed
    }
    assert not ran_twice
