"""The retrieval stores under load and misuse: pgvector's own pool and bound (also in the
service's database), concurrent first writes, config errors, Qdrant local directories (their
root, their lock, their opening, closing and reopening), and the bounds of keyword search."""

from __future__ import annotations

import asyncio
import gc
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from cachetools import LRUCache
from qdrant_client import QdrantClient
from sqlalchemy.engine import make_url

from app.domain.status import ExecutionStatus
from app.nodes.registry import core_registry
from app.nodes.resources import NodeResources
from app.nodes.retrieval import keyword, qdrant_store
from app.nodes.retrieval.chunking import Chunk
from app.settings import Settings
from app.store.db import create_engine
from tests.integration.test_retrieval_nodes import (
    ANIMALS,
    embedder,
    failure,
    index_node,
    retriever_node,
    run_node,
)
from tests.providers import ProviderServer, ollama_server, openai_server
from tests.providers.replies import Failure
from tests.support import Harness, workflow

SERVICE_TIMEOUT_S = 0.5


@pytest.fixture
async def embeddings() -> AsyncIterator[ProviderServer]:
    async with openai_server() as server:
        yield server


def harness_for(resources: NodeResources) -> Harness:
    return Harness(registry=core_registry(resources))


async def asyncpg_connect(url: str) -> asyncpg.Connection:
    parsed = make_url(url)
    connection: asyncpg.Connection = await asyncpg.connect(
        user=parsed.username, database=parsed.database, host=parsed.query["host"]
    )
    return connection


async def waiting_for_a_lock(holder: asyncpg.Connection, writing: asyncio.Task[Any]) -> None:
    """Returns once a session waits for a lock (the server tells no one: it is polled)."""
    query = "SELECT count(*) FROM pg_locks WHERE NOT granted"
    while not await holder.fetchval(query):
        assert not writing.done(), writing.result().error
        await asyncio.sleep(0.02)


async def test_pgvector_in_the_service_database_has_its_own_bound(
    pgvector_url: str, embeddings: ProviderServer, tmp_path: Path
) -> None:
    """The service's engine bounds every call by OXIFY_DB_TIMEOUT_S; a write of the pgvector
    store waits for a lock past that, and fails retryably past its own bound."""
    service = create_engine(pgvector_url, timeout_s=SERVICE_TIMEOUT_S)
    table = f"t{uuid.uuid4().hex[:8]}"
    store = {"backend": "pgvector", "table": table, "collection": "held"}
    spec = embedder(embeddings)
    holder = await asyncpg_connect(pgvector_url)
    try:
        async with NodeResources(settings=Settings(), database=service) as resources:
            harness = harness_for(resources)
            await run_node(harness, index_node(store, ANIMALS, embedder=spec))
            locked = holder.transaction()
            await locked.start()
            await holder.execute(f"SELECT * FROM {table}_collections FOR UPDATE")
            writing = asyncio.create_task(
                harness.run(
                    workflow([index_node(store, ANIMALS[:1], embedder=spec)], []),
                    execution_id="waits",
                )
            )
            await waiting_for_a_lock(holder, writing)
            done, _ = await asyncio.wait({writing}, timeout=SERVICE_TIMEOUT_S * 4)
            assert not done, writing.result().error  # past the service's bound, still waiting
            await locked.rollback()
            outcome = await writing
            assert outcome.status is ExecutionStatus.COMPLETED, outcome.error

        bounded = Settings(pgvector_timeout_s=SERVICE_TIMEOUT_S)
        async with NodeResources(settings=bounded, database=service) as resources:
            async with holder.transaction():
                await holder.execute(f"SELECT * FROM {table}_collections FOR UPDATE")
                error = await failure(
                    harness_for(resources), index_node(store, ANIMALS[:1], embedder=spec)
                )
            assert error["code"] == "retrieval_store_unavailable", error
    finally:
        await holder.close()
        await service.dispose()


async def test_processes_making_one_table_at_once(
    pgvector_url: str, embeddings: ProviderServer
) -> None:
    spec = embedder(embeddings)
    for _ in range(3):
        table = f"t{uuid.uuid4().hex[:8]}"
        async with (
            NodeResources(settings=Settings()) as one,
            NodeResources(settings=Settings()) as other,
        ):
            written = await asyncio.gather(
                *(
                    run_node(
                        harness_for(resources),
                        index_node(
                            {
                                "backend": "pgvector",
                                "dsn": pgvector_url,
                                "table": table,
                                "collection": f"c{i}",
                            },
                            ANIMALS,
                            embedder=spec,
                        ),
                    )
                    for i, resources in enumerate([one, other, one, other])
                )
            )
        assert written == [{"indexed": 4, "chunks": 4}] * 4


async def test_pgvector_dsn_forms(pgvector_url: str, embeddings: ProviderServer) -> None:
    spec = embedder(embeddings)
    async with NodeResources(settings=Settings()) as resources:
        harness = harness_for(resources)
        ssl = {"backend": "pgvector", "dsn": f"{pgvector_url}&sslmode=disable", "collection": "s"}
        assert await run_node(harness, index_node(ssl, ANIMALS, embedder=spec)) == {
            "indexed": 4,
            "chunks": 4,
        }
        bad_port = {
            "backend": "pgvector",
            "dsn": "postgresql://u:secret@h:port/db",
            "collection": "s",
        }
        error = await failure(harness, index_node(bad_port, ANIMALS, embedder=spec))
        assert error["code"] == "node_config_invalid"
        assert "secret" not in error["message"]
        templated = {
            "backend": "pgvector",
            "dsn": pgvector_url,
            "collection": "{{ inputs.c }}",
            "table": "{{ inputs.t }}",
        }
        for inputs in ({"t": "executions", "c": "s"}, {"t": "chunks", "c": ".."}):
            outcome = await harness.run(
                workflow([index_node(templated, ANIMALS, embedder=spec)], []),
                inputs,
                execution_id=uuid.uuid4().hex,
            )
            assert outcome.error is not None
            assert outcome.error["code"] == "node_config_invalid", outcome.error


async def test_qdrant_local_paths_live_under_the_root(
    tmp_path: Path, embeddings: ProviderServer
) -> None:
    spec = embedder(embeddings)
    root = tmp_path / "root"
    async with NodeResources(settings=Settings(qdrant_local_root=root)) as resources:
        harness = harness_for(resources)
        relative = {"backend": "qdrant", "path": "team/a", "collection": "c"}
        await run_node(harness, index_node(relative, ANIMALS, embedder=spec))
        assert (root / "team" / "a").is_dir()
        inside = {"backend": "qdrant", "path": str(root / "team" / "a"), "collection": "c"}
        found = await run_node(harness, retriever_node(inside, "owls", mode="keyword"))
        assert [hit["id"] for hit in found] == ["owl#0"]
        for escaping in ("../elsewhere", str(tmp_path / "elsewhere"), "."):
            outside = {"backend": "qdrant", "path": escaping, "collection": "c"}
            error = await failure(harness, index_node(outside, ANIMALS, embedder=spec))
            assert error["code"] == "node_config_invalid", error
            assert "OXIFY_QDRANT_LOCAL_ROOT" in error["message"]
    assert not (tmp_path / "elsewhere").exists()


# qdrant-client leaves its lock file open when it finds the directory locked: collected here, under
# this test's filter (left to a later collection, the warning would fail whichever test runs then).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_qdrant_directory_held_elsewhere_is_a_config_error(
    tmp_path: Path, embeddings: ProviderServer
) -> None:
    holder = QdrantClient(path=str(tmp_path / "held"))
    try:
        async with NodeResources(settings=Settings(qdrant_local_root=tmp_path)) as resources:
            store = {"backend": "qdrant", "path": "held", "collection": "c"}
            error = await failure(
                harness_for(resources), index_node(store, ANIMALS, embedder=embedder(embeddings))
            )
        assert error["code"] == "node_config_invalid"
        assert "another process" in error["message"]
    finally:
        holder.close()
        gc.collect()


async def test_qdrant_directories_opened_once_closed_when_idle_and_reopened(
    tmp_path: Path, embeddings: ProviderServer
) -> None:
    """Runs starting at once on a new directory share one opening; past HELD_STORES the
    least recently used directories are closed (their lock released) and reopen on use."""
    spec = embedder(embeddings)
    async with NodeResources(settings=Settings(qdrant_local_root=tmp_path)) as resources:
        harness = harness_for(resources)
        first = {"backend": "qdrant", "path": "d0", "collection": "c"}
        await asyncio.gather(
            *(run_node(harness, index_node(first, [animal], embedder=spec)) for animal in ANIMALS)
        )
        found = await run_node(harness, retriever_node(first, "owls cat", mode="keyword"))
        assert sorted(hit["id"] for hit in found) == ["cat#0", "owl#0"]
        for n in range(1, qdrant_store.HELD_STORES + 2):
            other = {"backend": "qdrant", "path": f"d{n}", "collection": "c"}
            await run_node(harness, index_node(other, ANIMALS[:1], embedder=spec))
        closed = QdrantClient(path=str(tmp_path / "d0"))  # its lock was released
        closed.close()
        await run_node(harness, index_node(first, [ANIMALS[1] | {"text": "owls"}], embedder=spec))
        found = await run_node(harness, retriever_node(first, "owls cat", mode="keyword"))
        assert sorted(hit["id"] for hit in found) == ["cat#0", "owl#0"]
        assert found[0]["id"] == "cat#0" and found[0]["text"] == "owls"


async def test_a_failed_write_never_leaves_a_stale_keyword_index(tmp_path: Path) -> None:
    """A replace that fails half-way (its second batch refused) changed the collection: the
    next keyword search must see the change, not the index cached before."""
    settings = Settings(qdrant_local_root=tmp_path)
    async with (
        NodeResources(settings=settings) as resources,
        qdrant_store.open_store(resources, url=None, path="d") as store,
    ):
        old = Chunk("doc#0", "doc", "zebra stripes", {})
        await store.replace("c", ["doc"], [old], [[1.0, 0.0]])
        found = await keyword.search(resources, store, "c", "zebra", top_k=5, where={})
        assert [hit.id for hit in found] == ["doc#0"]
        size = qdrant_store.UPSERT_BATCH + 1
        new = [Chunk(f"doc#{i}", "doc", "owl", {}) for i in range(size)]
        vectors = [[0.0, 1.0]] * (size - 1) + [[1.0, 0.0, 0.0]]
        with pytest.raises(ValueError, match="dimension"):
            await store.replace("c", ["doc"], new, vectors)
        found = await keyword.search(resources, store, "c", "zebra", top_k=5, where={})
        assert found == []


@pytest.mark.parametrize("backend", ["qdrant", "pgvector"])
async def test_keyword_search_loads_a_bounded_number_of_chunks(
    backend: str, tmp_path: Path, embeddings: ProviderServer, request: pytest.FixtureRequest
) -> None:
    store: dict[str, Any] = {"backend": backend, "collection": f"c{uuid.uuid4().hex[:8]}"}
    if backend == "qdrant":
        store["path"] = "d"
    else:
        store["dsn"] = request.getfixturevalue("pgvector_url")
    settings = Settings(qdrant_local_root=tmp_path, keyword_max_chunks=3, keyword_cache_chunks=5)
    async with NodeResources(settings=settings) as resources:
        harness = harness_for(resources)
        spec = embedder(embeddings)
        await run_node(harness, index_node(store, ANIMALS, embedder=spec))
        error = await failure(harness, retriever_node(store, "owls", mode="keyword"))
        assert error["code"] == "retrieval_too_many_chunks"
        assert "OXIFY_KEYWORD_MAX_CHUNKS" in error["message"]
        for kind in ("pet", "wild", "pet"):
            found = await run_node(
                harness,
                retriever_node(store, "the", mode="hybrid", embedder=spec, filter={"kind": kind}),
            )
            assert {hit["metadata"]["kind"] for hit in found} == {kind}
        (cache,) = resources.made(LRUCache).values()
        assert 0 < cache.currsize <= 5


async def test_ollama_embedder_failures_are_clear(tmp_path: Path) -> None:
    """Ollama's ``{"error": …}`` message reaches the node's error; embeddings that are not
    lists of numbers are a final provider error, not a crash."""
    async with ollama_server() as ollama:
        spec = {"provider": "ollama", "model": "nomic-embed-text", "base_url": ollama.base}
        store = {"backend": "qdrant", "path": ":memory:", "collection": "c"}
        ollama.script_embeddings(
            Failure(404, 'model "nomic-embed-text" not found, try pulling it first'),
            Failure(200, body={"embeddings": [["0.5", None]]}),
        )
        async with NodeResources(settings=Settings(qdrant_local_root=tmp_path)) as resources:
            harness = harness_for(resources)
            error = await failure(harness, index_node(store, ANIMALS, embedder=spec))
            assert error["code"] == "llm_provider_error"
            assert "try pulling it first" in error["message"]
            error = await failure(harness, index_node(store, ANIMALS, embedder=spec))
            assert error["code"] == "llm_provider_error"
            assert "lists of numbers" in error["message"]
