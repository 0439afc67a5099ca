"""AI node benchmarks against the local OpenAI-compatible server of ``tests/providers`` (in a
thread of this process; the same server for both sides of every comparison).

``python -m bench.ai [overhead] [tokens]`` (both by default).

overhead  The ``llm`` node's cost over the raw ``openai`` SDK call it makes: N runs of a one-node
          workflow (in-process engine, in-memory store, no cache) against N bare SDK calls,
          interleaved in rounds; without streaming (ms per call) and streaming 1,000 tokens
          (µs per token). A one-node ``transform`` run is printed as the engine's own share.
tokens    ``node.token`` end to end: a real ``oxify serve`` on a scratch Postgres database, an
          llm node streaming 2,000 tokens the provider sends at 1,000 tokens/s, followed by an SSE
          client: tokens/s delivered, events written, and the latency from the provider sending a
          token to the client reading the event that holds it (p50, p99: coalescing included).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import openai

from app.domain.run import RunConfig
from app.domain.status import ExecutionStatus
from app.engine.run.scheduler import RunRequest, Scheduler
from app.nodes.registry import core_registry
from app.nodes.resources import NodeResources
from app.settings import Settings
from app.store.memory import MemoryStore
from bench._server import SseTail, database_url, percentile, scratch_database, serve
from tests.providers import ProviderServer, Tokens, openai_server

ROUNDS = 6
PER_ROUND = 50
STREAM_TOKENS = 1000
E2E_TOKENS = 2000
E2E_RATE = 1000.0  # tokens per second the provider sends


def llm_document(url: str, *, stream: bool) -> dict[str, Any]:
    config = {
        "provider": "openai",
        "base_url": url,
        "model": "gpt-4o-mini",
        "prompt": "{{ inputs.q }}",
        "stream": stream,
        "cache": False,
    }
    return {"name": "llm", "nodes": [{"id": "ask", "type": "llm", "config": config}]}


TRANSFORM = {"name": "t", "nodes": [{"id": "t", "type": "transform", "config": {"value": 1}}]}


class Engine:
    def __init__(self, resources: NodeResources) -> None:
        registry = core_registry(resources)
        self.store = MemoryStore()
        self.scheduler = Scheduler(
            executors=registry.executors,
            events=self.store,
            checkpoints=self.store,
            node_types=registry.node_types,
        )
        self.runs = 0

    async def run(self, document: dict[str, Any]) -> None:
        self.runs += 1
        request = RunRequest(
            f"run-{self.runs}",
            self.scheduler.plan(document),
            {"q": "how fast is this"},
            RunConfig(checkpoint="every_node"),
        )
        outcome = await self.scheduler.run(request)
        assert outcome.status is ExecutionStatus.COMPLETED, outcome.error


async def timed(count: int, call: Any) -> float:
    """Seconds per call over ``count`` sequential calls."""
    start = time.perf_counter()
    for _ in range(count):
        await call()
    return (time.perf_counter() - start) / count


async def overhead(server: ProviderServer) -> None:
    settings = Settings(database_url="sqlite+aiosqlite:///:memory:")
    async with NodeResources(settings=settings) as resources:
        engine = Engine(resources)
        client = openai.AsyncOpenAI(base_url=server.url, api_key="k", max_retries=0)
        messages = [{"role": "user", "content": "how fast is this"}]
        plain, streamed = (
            llm_document(server.url, stream=False),
            llm_document(server.url, stream=True),
        )

        async def raw() -> None:
            await client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]

        async def raw_stream() -> None:
            stream = await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=messages,  # type: ignore[arg-type]
                stream=True,
                stream_options={"include_usage": True},
            )
            async with stream:
                async for _ in stream:
                    pass

        samples: dict[str, list[float]] = {k: [] for k in ("raw", "node", "transform")}
        server.default = Tokens(8)
        await timed(20, raw), await timed(20, lambda: engine.run(plain))  # warm up
        for _ in range(ROUNDS):
            samples["raw"].append(await timed(PER_ROUND, raw))
            samples["node"].append(await timed(PER_ROUND, lambda: engine.run(plain)))
            samples["transform"].append(await timed(PER_ROUND, lambda: engine.run(TRANSFORM)))
        ms = {k: statistics.median(v) * 1000 for k, v in samples.items()}
        print(
            f"llm node, no streaming: {ms['node']:.3f} ms per run vs raw SDK call "
            f"{ms['raw']:.3f} ms -> overhead {ms['node'] - ms['raw']:.3f} ms per call "
            f"(of which a one-node transform run: {ms['transform']:.3f} ms; target < 1 ms); "
            f"medians of {ROUNDS} rounds x {PER_ROUND}"
        )

        server.default = Tokens(STREAM_TOKENS)
        streams: dict[str, list[float]] = {"raw": [], "node": []}
        await timed(2, raw_stream), await timed(2, lambda: engine.run(streamed))
        for _ in range(ROUNDS):
            streams["raw"].append(await timed(5, raw_stream))
            streams["node"].append(await timed(5, lambda: engine.run(streamed)))
        raw_ms = statistics.median(streams["raw"]) * 1000
        node_ms = statistics.median(streams["node"]) * 1000
        per_token_us = (node_ms - raw_ms) * 1000 / STREAM_TOKENS
        print(
            f"llm node, streaming {STREAM_TOKENS:,} tokens: {node_ms:.1f} ms vs raw SDK stream "
            f"{raw_ms:.1f} ms -> {per_token_us:.2f} µs per token "
            f"({len(engine.store.events[f'run-{engine.runs}'])} events in the last run)"
        )
        await client.close()


async def tokens(server: ProviderServer) -> None:
    server.default = Tokens(E2E_TOKENS, per_s=E2E_RATE)
    async with (
        scratch_database(database_url()) as url,
        serve(url) as oxify,
        httpx.AsyncClient(base_url=oxify.url, timeout=30) as http,
    ):
        created = await http.post("/v1/workflows", json=llm_document(server.url, stream=True))
        created.raise_for_status()
        workflow_id = created.json()["id"]
        server.sent.clear()
        started = await http.post(
            f"/v1/workflows/{workflow_id}/executions", json={"inputs": {"q": "go"}}
        )
        started.raise_for_status()
        execution_id = started.json()["id"]
        tail = SseTail()
        await tail.read(oxify.url, f"/v1/executions/{execution_id}/events")
    frames = [f for f in tail.frames if f.type == "node.token"]
    sent = list(server.sent)
    latencies: list[float] = []  # per token: provider sent it -> the client read its event
    seen = 0
    for frame in frames:
        count = frame.data["text"].count("tok ")
        latencies += [(frame.received - at) * 1000 for at in sent[seen : seen + count]]
        seen += count
    assert seen == E2E_TOKENS == len(sent), (seen, len(sent))
    span = frames[-1].received - sent[0]
    print(
        f"node.token end to end ({E2E_TOKENS:,} tokens, the provider sending "
        f"{E2E_TOKENS / (sent[-1] - sent[0]):,.0f}/s, through oxify serve on Postgres to an SSE "
        f"client): {seen / span:,.0f} tokens/s delivered in {len(frames)} events "
        f"({len(frames) / span:.1f} events/s); per token, provider send -> client read: "
        f"p50 {percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} ms "
        f"(the 50 ms coalescing window included)"
    )


async def main(parts: list[str]) -> None:
    with openai_server() as server:  # its own thread, beside the client's loop
        if "overhead" in parts:
            await overhead(server)
        if "tokens" in parts:
            await tokens(server)


if __name__ == "__main__":
    gc.freeze()
    asyncio.run(main([p.lower() for p in sys.argv[1:]] or ["overhead", "tokens"]))
