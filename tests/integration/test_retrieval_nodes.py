"""The ``index`` and ``retriever`` nodes through the scheduler, on real stores (Qdrant local
mode in memory and in a folder, pgvector on a real PostgreSQL) with real embedding servers
(OpenAI-compatible and Ollama, on loopback)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from app.domain.ai_nodes import EmbedderSpec
from app.domain.status import ExecutionStatus
from app.nodes.registry import core_registry
from app.nodes.resources import NodeResources
from app.settings import Settings
from tests.providers import ProviderServer, ollama_server, openai_server
from tests.spans import SpanTrace, traceparent
from tests.support import Harness, edge, node, workflow

DIMENSIONS = 1024  # few hash collisions among the test texts' words
RRF_K = 60


@pytest.fixture(params=["qdrant-memory", "qdrant-path", "pgvector"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """A node's store keys, with a collection of its own."""
    collection = f"c{uuid.uuid4().hex[:12]}"
    if request.param == "qdrant-memory":
        return {"backend": "qdrant", "path": ":memory:", "collection": collection}
    if request.param == "qdrant-path":
        return {"backend": "qdrant", "path": str(tmp_path / "qdrant"), "collection": collection}
    url = request.getfixturevalue("pgvector_url")
    return {"backend": "pgvector", "dsn": url, "table": "chunks", "collection": collection}


@pytest.fixture
async def embeddings() -> AsyncIterator[ProviderServer]:
    async with openai_server() as server:
        yield server


@pytest.fixture
async def resources(tmp_path: Path) -> AsyncIterator[NodeResources]:
    async with NodeResources(settings=Settings(qdrant_local_root=tmp_path)) as shared:
        yield shared


@pytest.fixture
def harness(resources: NodeResources) -> Harness:
    return Harness(registry=core_registry(resources))


def embedder(server: ProviderServer) -> dict[str, Any]:
    return {
        "provider": "openai",
        "model": "embed-1",
        "base_url": server.url,
        "dimensions": DIMENSIONS,
    }


def index_node(store: dict[str, Any], documents: Any, **config: Any) -> dict[str, Any]:
    return node("index", "index", **store, documents=documents, **config)


def retriever_node(store: dict[str, Any], query: str, **config: Any) -> dict[str, Any]:
    return node("find", "retriever", **store, query=query, **config)


async def run_node(harness: Harness, spec: dict[str, Any], inputs: Any = None) -> Any:
    outcome = await harness.run(workflow([spec], []), inputs, execution_id=uuid.uuid4().hex)
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    return outcome.outputs


async def failure(harness: Harness, spec: dict[str, Any]) -> dict[str, Any]:
    outcome = await harness.run(workflow([spec], []), execution_id=uuid.uuid4().hex)
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None
    return dict(outcome.error)


ANIMALS = [
    {"id": "zebra", "text": "zebras graze on the savanna grass", "metadata": {"kind": "wild"}},
    {"id": "cat", "text": "a cat sleeps on the warm sofa", "metadata": {"kind": "pet", "legs": 4}},
    {"id": "dog", "text": "the dog fetches the ball in the park", "metadata": {"kind": "pet"}},
    {"id": "owl", "text": "owls hunt mice at night", "metadata": {"kind": "wild", "w": 0.5}},
]


async def test_index_then_retrieve_round_trip(
    harness: Harness, store: dict[str, Any], embeddings: ProviderServer
) -> None:
    spec = embedder(embeddings)
    indexed = await run_node(
        harness,
        index_node(store, "{{ inputs.docs }}", embedder=spec, chunk_size=20, chunk_overlap=5),
        {"docs": ANIMALS},
    )
    assert indexed == {"indexed": 4, "chunks": 9}
    found = await run_node(
        harness, retriever_node(store, "the cat sleeps on the sofa", embedder=spec, top_k=3)
    )
    assert len(found) == 3
    assert found[0]["id"].startswith("cat#")
    assert found[0]["metadata"] == {"kind": "pet", "legs": 4}
    assert found[0]["text"] in ANIMALS[1]["text"]
    scores = [hit["score"] for hit in found]
    assert scores == sorted(scores, reverse=True) and scores[0] <= 1.0 + 1e-6


async def test_reindexing_a_document_replaces_its_chunks(
    harness: Harness, store: dict[str, Any], embeddings: ProviderServer
) -> None:
    spec = embedder(embeddings)
    long = {"id": "doc", "text": "alpha " * 50, "metadata": {"v": 1}}
    other = {"id": "other", "text": "beta gamma", "metadata": {}}
    first = await run_node(
        harness, index_node(store, [long, other], embedder=spec, chunk_size=40, chunk_overlap=10)
    )
    assert first == {"indexed": 2, "chunks": 11}
    short = {"id": "doc", "text": "delta epsilon", "metadata": {"v": 2}}
    assert await run_node(harness, index_node(store, [short], embedder=spec)) == {
        "indexed": 1,
        "chunks": 1,
    }
    found = await run_node(harness, retriever_node(store, "anything", embedder=spec, top_k=50))
    assert sorted(hit["id"] for hit in found) == ["doc#0", "other#0"]
    assert next(h for h in found if h["id"] == "doc#0")["metadata"] == {"v": 2}
    by_keyword = await run_node(harness, retriever_node(store, "alpha", mode="keyword"))
    assert by_keyword == []  # the old chunks' words are gone too


async def test_filter_and_score_threshold(
    harness: Harness, store: dict[str, Any], embeddings: ProviderServer
) -> None:
    spec = embedder(embeddings)
    await run_node(harness, index_node(store, ANIMALS, embedder=spec))
    pets = await run_node(
        harness,
        retriever_node(store, "{{ inputs.q }}", embedder=spec, filter={"kind": "pet"}, top_k=10),
        {"q": "animals"},
    )
    assert sorted(hit["id"] for hit in pets) == ["cat#0", "dog#0"]
    exact = {"legs": 4, "kind": "{{ inputs.kind }}"}
    legged = await run_node(
        harness,
        retriever_node(store, "animals", embedder=spec, filter=exact),
        {"kind": "pet"},
    )
    assert [hit["id"] for hit in legged] == ["cat#0"]
    floats = await run_node(harness, retriever_node(store, "x", embedder=spec, filter={"w": 0.5}))
    assert [hit["id"] for hit in floats] == ["owl#0"]

    everything = await run_node(harness, retriever_node(store, "the dog park", embedder=spec))
    cut = (everything[0]["score"] + everything[1]["score"]) / 2
    above = await run_node(
        harness, retriever_node(store, "the dog park", embedder=spec, score_threshold=cut)
    )
    assert [hit["id"] for hit in above] == ["dog#0"]
    keyword = await run_node(
        harness, retriever_node(store, "dog ball", mode="keyword", score_threshold=0.001)
    )
    assert [hit["id"] for hit in keyword] == ["dog#0"]
    assert keyword[0]["score"] > 0.001


async def test_hybrid_fuses_the_rankings_by_rrf(
    harness: Harness, store: dict[str, Any], embeddings: ProviderServer
) -> None:
    """Stopwords count for the (bag-of-words) embedder but not for BM25: fillers made of the
    query's stopwords are vector-only matches, a long text holding the query's one real word
    among 200 others is a keyword-only match, ``both`` is in both rankings."""
    spec = embedder(embeddings)
    fillers = [
        {"id": f"filler{i}", "text": "the of and" + " q" * i, "metadata": {}} for i in range(25)
    ]
    rare = " ".join(f"w{i}" for i in range(200))
    documents = [
        *fillers,
        {"id": "keyword_only", "text": f"zebra {rare}", "metadata": {}},
        {"id": "both", "text": "zebra the of and q q", "metadata": {}},
    ]
    await run_node(harness, index_node(store, documents, embedder=spec, chunk_size=2000))
    query = "the of and zebra"
    top_k = 5
    candidates = top_k * 4
    by_vector = await run_node(
        harness, retriever_node(store, query, embedder=spec, top_k=candidates)
    )
    by_keyword = await run_node(
        harness, retriever_node(store, query, mode="keyword", top_k=candidates)
    )
    assert [hit["id"] for hit in by_keyword] == ["both#0", "keyword_only#0"]
    vector_ids = [hit["id"] for hit in by_vector]
    assert "keyword_only#0" not in vector_ids and "both#0" in vector_ids

    expected: dict[str, float] = {}
    for ranking in (by_vector, by_keyword):
        for rank, hit in enumerate(ranking, start=1):
            expected[hit["id"]] = expected.get(hit["id"], 0.0) + 1 / (RRF_K + rank)
    best = sorted(expected, key=lambda chunk_id: -expected[chunk_id])[:top_k]

    fused = await run_node(harness, retriever_node(store, query, embedder=spec, mode="hybrid"))
    assert [(hit["id"], hit["score"]) for hit in fused] == [(i, expected[i]) for i in best]
    assert fused[0]["id"] == "both#0"
    assert fused[0]["score"] == 1 / (RRF_K + vector_ids.index("both#0") + 1) + 1 / (RRF_K + 1)
    assert {"id": "keyword_only#0", "score": 1 / (RRF_K + 2)}.items() <= next(
        h for h in fused if h["id"] == "keyword_only#0"
    ).items()
    assert vector_ids[0].startswith("filler") and fused[1]["id"] == vector_ids[0]
    assert fused[1]["score"] == 1 / (RRF_K + 1)

    threshold = 1 / (RRF_K + 1)
    kept = await run_node(
        harness,
        retriever_node(store, query, embedder=spec, mode="hybrid", score_threshold=threshold),
    )
    assert [hit["id"] for hit in kept] == ["both#0", vector_ids[0]]


async def test_identical_texts_are_embedded_once(
    harness: Harness, embeddings: ProviderServer
) -> None:
    store = {"backend": "qdrant", "path": ":memory:", "collection": "cached"}
    spec = embedder(embeddings)
    documents = [
        {"id": f"d{i}", "text": f"document number {i}", "metadata": {}} for i in range(300)
    ]
    assert await run_node(harness, index_node(store, documents, embedder=spec)) == {
        "indexed": 300,
        "chunks": 300,
    }
    assert embeddings.counts["/v1/embeddings"] == 2  # 256 texts per request
    await run_node(harness, index_node(store, documents, embedder=spec))
    assert embeddings.counts["/v1/embeddings"] == 2
    question = retriever_node(store, "which document is number 7", embedder=spec)
    await run_node(harness, question)
    await run_node(harness, question)
    assert embeddings.counts["/v1/embeddings"] == 3


async def test_ollama_embedder_and_the_default_embedder_setting(
    embeddings: ProviderServer,
) -> None:
    async with ollama_server() as ollama:
        setting = EmbedderSpec(provider="ollama", model="nomic-embed-text", base_url=ollama.base)
        async with NodeResources(settings=Settings(embedder=setting)) as resources:
            harness = Harness(registry=core_registry(resources))
            store = {"backend": "qdrant", "path": ":memory:", "collection": "ollama"}
            await run_node(harness, index_node(store, ANIMALS))
            found = await run_node(harness, retriever_node(store, "owls at night", top_k=1))
        assert [hit["id"] for hit in found] == ["owl#0"]
        assert ollama.counts["/api/embed"] == 2
        assert ollama.requests[0].body["model"] == "nomic-embed-text"
    assert embeddings.counts["/v1/embeddings"] == 0


async def test_without_an_embedder_the_node_fails_clearly(harness: Harness) -> None:
    store = {"backend": "qdrant", "path": ":memory:", "collection": "none"}
    error = await failure(harness, index_node(store, ANIMALS))
    assert error["code"] == "node_config_invalid"
    assert "OXIFY_EMBEDDER" in error["message"]
    error = await failure(harness, retriever_node(store, "cats"))
    assert "OXIFY_EMBEDDER" in error["message"]


async def test_a_collection_never_indexed_is_an_error(
    harness: Harness, store: dict[str, Any], embeddings: ProviderServer
) -> None:
    error = await failure(harness, retriever_node(store, "cats", embedder=embedder(embeddings)))
    assert error["code"] == "retrieval_collection_missing"
    error = await failure(harness, retriever_node(store, "cats", mode="keyword"))
    assert error["code"] == "retrieval_collection_missing"


async def test_another_embedder_dimension_is_refused(
    harness: Harness, store: dict[str, Any], embeddings: ProviderServer
) -> None:
    await run_node(harness, index_node(store, ANIMALS, embedder=embedder(embeddings)))
    smaller = embedder(embeddings) | {"dimensions": 32}
    error = await failure(harness, retriever_node(store, "cats", embedder=smaller))
    assert error["code"] == "node_config_invalid"
    assert f"holds {DIMENSIONS}-dimensional vectors" in error["message"]


async def test_pgvector_in_the_service_database(
    pgvector_url: str, embeddings: ProviderServer
) -> None:
    engine = create_async_engine(pgvector_url)
    async with NodeResources(settings=Settings(), database=engine) as resources:
        harness = Harness(registry=core_registry(resources))
        store = {"backend": "pgvector", "table": "service_chunks", "collection": "svc"}
        spec = embedder(embeddings)
        await run_node(harness, index_node(store, ANIMALS, embedder=spec))
        found = await run_node(harness, retriever_node(store, "a sleeping cat", embedder=spec))
        assert found[0]["id"] == "cat#0"
    await engine.dispose()


async def test_a_workflow_indexes_then_retrieves(
    harness: Harness, embeddings: ProviderServer
) -> None:
    store = {"backend": "qdrant", "path": ":memory:", "collection": "flow"}
    spec = embedder(embeddings)
    doc = workflow(
        [
            node("docs", value=ANIMALS),
            index_node(store, "{{ docs.output }}", embedder=spec),
            retriever_node(store, "{{ inputs.question }}", embedder=spec, top_k=1),
        ],
        [edge("docs", "index"), edge("index", "find")],
    )
    outcome = await harness.run(doc, {"question": "where do zebras graze"})
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert [hit["id"] for hit in outcome.outputs] == ["zebra#0"]


async def test_embeddings_and_retrieval_spans(
    harness: Harness, store: dict[str, Any], embeddings: ProviderServer, traced: SpanTrace
) -> None:
    spec = embedder(embeddings)
    with traced.root():
        await run_node(harness, index_node(store, ANIMALS, embedder=spec))
        found = await run_node(
            harness, retriever_node(store, "a sleepy cat", embedder=spec, top_k=2, mode="hybrid")
        )
    indexing, querying = traced.named("embeddings embed-1")
    assert dict(indexing.attributes or {}) == {
        "gen_ai.operation.name": "embeddings",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "embed-1",
        "gen_ai.embeddings.dimension.count": DIMENSIONS,
        "gen_ai.usage.input_tokens": sum(len(a["text"].split()) for a in ANIMALS),
        "server.address": "127.0.0.1",
        "server.port": embeddings.port,
    }
    (http,) = traced.children(querying)
    assert embeddings.requests[-1].headers["traceparent"] == traceparent(http)
    retrieval = traced.one(f"retrieval {store['collection']}")
    assert dict(retrieval.attributes or {}) == {
        "gen_ai.operation.name": "retrieval",
        "gen_ai.data_source.id": store["collection"],
        "gen_ai.request.top_k": 2,
        "db.system.name": "postgresql" if store["backend"] == "pgvector" else "qdrant",
        "oxify.retrieval.mode": "hybrid",
        "oxify.retrieval.hits": len(found),
    }
