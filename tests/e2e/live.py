"""A real uvicorn serving the real app on a free loopback port, and a raw SSE reader."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from app.main import create_app
from app.services.container import Services
from app.settings import Settings

TIMEOUT_S = 15.0  # seconds any single wait on the server may take


class ReadyServer(uvicorn.Server):
    """A uvicorn server that says when it has started (instead of being polled)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


@dataclass
class LiveServer:
    app: FastAPI
    server: ReadyServer
    serving: asyncio.Task[None]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services

    async def stop(self) -> None:
        """Graceful stop: connections drain, then the lifespan pauses and requeues runs."""
        self.server.should_exit = True
        async with asyncio.timeout(TIMEOUT_S):
            await self.serving


async def start_uvicorn(
    app: Any, *, port: int = 0, **options: Any
) -> tuple[ReadyServer, asyncio.Task[None], socket.socket]:
    """Serve ``app`` with uvicorn on a loopback port (a free one unless ``port`` is given: a
    server started again where it was); returns once it is started."""
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it a response written in two parts waits ~40 ms for a delayed ACK on a reused
    # connection.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    server = ReadyServer(uvicorn.Config(app, log_level="warning", access_log=False, **options))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    ready = asyncio.create_task(server.ready.wait())
    await asyncio.wait({serving, ready}, return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    assert server.started, "the server did not start"
    return server, serving, sock


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[LiveServer]:
    app = create_app(settings)
    server, serving, sock = await start_uvicorn(app, lifespan="on", timeout_graceful_shutdown=10)
    live = LiveServer(app, server, serving, sock.getsockname()[1])
    try:
        yield live
    finally:
        if not serving.done():
            await live.stop()
        sock.close()


@dataclass
class SseEvent:
    id: int
    event: str
    data: dict[str, Any]


@dataclass
class SseReader:
    """Events off a raw ``text/event-stream`` body, parsed line by line."""

    response: httpx.Response
    comments: int = 0
    retry: int | None = None
    _lines: AsyncIterator[str] | None = field(default=None, repr=False)

    async def next(self) -> SseEvent | None:
        """The next event; None once the server closed the stream."""
        if self._lines is None:
            self._lines = self.response.aiter_lines()
        fields: dict[str, str] = {}
        async with asyncio.timeout(TIMEOUT_S):
            async for line in self._lines:
                if line == "":
                    if "event" in fields:
                        return SseEvent(
                            int(fields["id"]), fields["event"], json.loads(fields["data"])
                        )
                    fields = {}
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "":
                    self.comments += 1
                elif name == "retry":
                    self.retry = int(value)
                else:
                    fields[name] = value
        return None

    async def until(self, event_type: str) -> list[SseEvent]:
        """Events up to and including the next one of ``event_type``."""
        found: list[SseEvent] = []
        while True:
            event = await self.next()
            assert event is not None, f"the stream ended before {event_type}"
            found.append(event)
            if event.event == event_type:
                return found

    async def rest(self) -> list[SseEvent]:
        found: list[SseEvent] = []
        while (event := await self.next()) is not None:
            found.append(event)
        return found


@asynccontextmanager
async def sse(
    client: httpx.AsyncClient, path: str, headers: dict[str, str] | None = None
) -> AsyncIterator[SseReader]:
    async with client.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200, response.status_code
        assert response.headers["content-type"].startswith("text/event-stream")
        yield SseReader(response)


def loop_workflow(name: str, items: int, delay_s: float) -> dict[str, Any]:
    """start → foreach over ``items`` numbers (a tiny delay, then a transform) → end."""
    return {
        "name": name,
        "nodes": [
            {"id": "start", "type": "start"},
            {
                "id": "each",
                "type": "foreach",
                "config": {
                    "items": f"{{{{ list(range({items})) }}}}",
                    "body": {
                        "nodes": [
                            {"id": "nap", "type": "delay", "config": {"seconds": delay_s}},
                            {
                                "id": "double",
                                "type": "transform",
                                "config": {"value": "{{ item * 2 }}"},
                            },
                        ],
                        "edges": [{"from": "nap", "to": "double"}],
                    },
                },
            },
            {"id": "end", "type": "end", "config": {"outputs": {"n": "{{ len(each.output) }}"}}},
        ],
        "edges": [{"from": "start", "to": "each"}, {"from": "each", "to": "end"}],
    }


async def start_run(client: httpx.AsyncClient, document: dict[str, Any]) -> str:
    created = await client.post("/v1/workflows", json=document)
    assert created.status_code == 201, created.text
    started = await client.post(f"/v1/workflows/{created.json()['id']}/executions", json={})
    assert started.status_code == 202, started.text
    execution_id: str = started.json()["id"]
    return execution_id


def assert_gap_free(events: list[SseEvent]) -> None:
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    for event in events:
        assert event.data["seq"] == event.id
        assert event.data["type"] == event.event
