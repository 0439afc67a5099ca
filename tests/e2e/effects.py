"""A side-effect recorder: a real HTTP server on loopback that counts the requests it gets per
``Idempotency-Key`` (execution id + node key), so a test can tell how often each node of each
run really reached the outside world, whatever happened to the replicas meanwhile."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.e2e.live import start_uvicorn


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
    server, serving, sock = await start_uvicorn(recorder.app(), lifespan="off")
    recorder.port = sock.getsockname()[1]
    try:
        yield recorder
    finally:
        server.should_exit = True
        await serving
        sock.close()


def effects_chain(recorder: EffectRecorder, steps: int, step_s: float) -> dict[str, Any]:
    """``steps`` http nodes in a line, each one recorded side effect of ``step_s`` seconds,
    sent with the node's idempotency key (so the recorder counts per node and run)."""
    nodes = [
        {
            "id": f"s{i}",
            "type": "http",
            "config": {
                "method": "POST",
                "url": recorder.effect_url(step_s),
                "idempotency_key": True,
            },
        }
        for i in range(steps)
    ]
    edges = [{"from": f"s{i}", "to": f"s{i + 1}"} for i in range(steps - 1)]
    return {"name": "effects", "nodes": nodes, "edges": edges}
