"""A side-effect recorder: a real HTTP server on loopback that counts the requests it gets per
``Idempotency-Key`` (execution id + node key), so a test can tell how often each node of each
run really reached the outside world, whatever happened to the replicas meanwhile."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.e2e.live import ReadyServer


class EffectRecorder:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def effect_url(self, delay_s: float) -> str:
        """The URL a node POSTs to; the answer comes after ``delay_s`` seconds."""
        return f"{self.url}/effect?delay={delay_s}"

    def of_run(self, execution_id: str) -> dict[str, int]:
        """node key → requests, for one run."""
        prefix = f"{execution_id}:"
        return {k.removeprefix(prefix): v for k, v in self.counts.items() if k.startswith(prefix)}

    def app(self) -> Starlette:
        async def effect(request: Request) -> Response:
            key = request.headers.get("idempotency-key", "")
            self.counts[key] += 1
            await asyncio.sleep(float(request.query_params.get("delay", "0")))
            return JSONResponse({"key": key, "seen": self.counts[key]})

        return Starlette(routes=[Route("/effect", effect, methods=["POST"])])


@asynccontextmanager
async def recording() -> AsyncIterator[EffectRecorder]:
    """A started recorder on a free loopback port."""
    recorder = EffectRecorder()
    async with _uvicorn(recorder.app) as port:
        recorder.port = port
        yield recorder


@asynccontextmanager
async def _uvicorn(app_factory: Callable[[], Any]) -> AsyncIterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app_factory(), log_level="warning", access_log=False, lifespan="off")
    server = ReadyServer(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    ready = asyncio.create_task(server.ready.wait())
    await asyncio.wait({serving, ready}, return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    assert server.started, "the recorder did not start"
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await serving
        sock.close()
