"""Tool nodes: what a node adds over doing its work by hand, in-process (engine on the memory
store, no database).

``python -m bench.tools [http graphql expression python-cold ...]`` (every section by default).
Each section runs 5 times; the median is printed with min and max. The code node's sections
(``expression``, ``python-cold``, ``python-warm``, ``python-burst``, ``wasm-cold``,
``wasm-cached``) live in :mod:`bench.code`.

http     ``CALLS`` GETs to a local uvicorn server: a raw ``httpx.AsyncClient`` loop against the
         http node inside a ``repeat`` (egress check, per-host policies with a rate limit high
         enough never to wait, redirects, the scheduler's events): µs per call, and the
         difference.
graphql  the same with the graphql node POSTing one query, against raw httpx POSTs.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from app.domain.status import ExecutionStatus
from app.nodes.registry import core_registry
from app.nodes.resources import NodeResources
from app.settings import Settings
from bench import code
from tests.integration.net_server import NetServer, net_server
from tests.support import Harness, workflow

CALLS = 500  # per run
RUNS = 5
QUERY = "query Order($id: ID!) { order(id: $id) { total } }"


def summary(values: list[float], unit: str) -> str:
    return (
        f"median {statistics.median(values):.0f} {unit} "
        f"(min {min(values):.0f}, max {max(values):.0f})"
    )


async def per_call_us(work: Callable[[], Awaitable[None]]) -> list[float]:
    """µs per call of ``work`` (``CALLS`` calls each), over ``RUNS`` runs after a warm-up."""
    await work()
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        await work()
        times.append((time.perf_counter() - started) / CALLS * 1e6)
    return times


async def compare(
    name: str, raw: Callable[[httpx.AsyncClient], Awaitable[None]], node: dict[str, Any]
) -> None:
    async with httpx.AsyncClient() as client:
        bare = await per_call_us(lambda: raw(client))
    settings = Settings(http_rate_limits={"127.0.0.1": {"per_s": 1e6, "burst": 1_000_000}})
    async with NodeResources(settings=settings) as resources:
        harness = Harness(registry=core_registry(resources))
        loop = {"id": "loop", "type": "repeat", "config": {"count": CALLS, "body": node}}
        doc = workflow([loop], [])

        async def run() -> None:
            outcome = await harness.run(doc)
            assert outcome.status is ExecutionStatus.COMPLETED, outcome.error

        through = await per_call_us(run)
    extra = [t - b for t, b in zip(through, bare, strict=True)]
    print(f"{name}: raw httpx {summary(bare, 'µs')}")
    print(f"{name}: node in a repeat {summary(through, 'µs')}")
    print(f"{name}: overhead per call {summary(extra, 'µs')}")


async def http_section(server: NetServer) -> None:
    url = f"{server.url}/echo/x"

    async def raw(client: httpx.AsyncClient) -> None:
        for _ in range(CALLS):
            (await client.get(url)).raise_for_status()

    body = {"nodes": [{"id": "get", "type": "http", "config": {"url": url}}], "edges": []}
    await compare("http", raw, body)


async def graphql_section(server: NetServer) -> None:
    url = f"{server.url}/graphql"
    payload = {"query": QUERY, "variables": {"id": "o-1"}, "operationName": "Order"}

    async def raw(client: httpx.AsyncClient) -> None:
        for _ in range(CALLS):
            answer = (await client.post(url, json=payload)).raise_for_status().json()
            assert "data" in answer

    config = {"url": url, "query": QUERY, "variables": {"id": "o-1"}, "operation_name": "Order"}
    body = {"nodes": [{"id": "ask", "type": "graphql", "config": config}], "edges": []}
    await compare("graphql", raw, body)


SECTIONS: dict[str, Callable[[NetServer], Awaitable[None]]] = {
    "http": http_section,
    "graphql": graphql_section,
}


async def main(sections: list[str]) -> None:
    unknown = [s for s in sections if s not in SECTIONS and s not in code.SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown sections {unknown}: {[*SECTIONS, *code.SCENARIOS]}")
    network = [s for s in sections if s in SECTIONS]
    if network:
        async with net_server() as server:
            for section in network:
                await SECTIONS[section](server)
                server.requests.clear()
    scripts = [s for s in sections if s in code.SCENARIOS]
    if scripts:
        await code.main(scripts)


if __name__ == "__main__":
    gc.freeze()
    asyncio.run(main([s.lower() for s in sys.argv[1:]] or [*SECTIONS, *code.SCENARIOS]))
