"""The ``index`` and ``retriever`` node types.

``index`` chunks documents by characters, embeds the chunks (batched, cached; every request one
``max_api_calls`` unit) and replaces each document's chunks in the store. ``retriever`` ranks a
collection's chunks for a query: by vector (cosine similarity), by keyword (BM25), or both fused
by Reciprocal Rank Fusion (``hybrid``); ``score_threshold`` is in the mode's own score.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager
from typing import cast

from opentelemetry.trace import Span, SpanKind

from app.domain.node_types import CORE_NODE_TYPES
from app.domain.retrieval_nodes import (
    DocumentIn,
    RetrieverConfig,
    StoreConfig,
    check_collection,
    check_table,
)
from app.engine.run.context import NodeContext
from app.engine.run.outcomes import NodeOutput
from app.errors import NodeConfigError
from app.nodes import span_content, spans
from app.nodes.ai import embedders
from app.nodes.plugin import NodeDefinition
from app.nodes.resources import NodeResources
from app.nodes.retrieval import chunking, keyword, pgvector_store, qdrant_store, ranking, stores
from app.observability import semconv
from app.settings import Settings

HYBRID_CANDIDATES = 4  # each ranking offers top_k times this many chunks to the fusion
DB_SYSTEMS = {"qdrant": "qdrant", "pgvector": "postgresql"}  # db.system.name of each backend


def definitions(resources: NodeResources) -> list[NodeDefinition]:
    """The ``index`` and ``retriever`` node types."""
    return [
        NodeDefinition(CORE_NODE_TYPES["index"], IndexExecutor(resources)),
        NodeDefinition(CORE_NODE_TYPES["retriever"], RetrieverExecutor(resources)),
    ]


class IndexExecutor:
    def __init__(self, resources: NodeResources) -> None:
        self._resources = resources

    async def execute(self, ctx: NodeContext) -> NodeOutput:
        documents: list[DocumentIn] = await ctx.render("documents")
        size: int = await ctx.render("chunk_size")
        overlap: int = await ctx.render("chunk_overlap")
        if overlap >= size:
            raise NodeConfigError("chunk_overlap must be smaller than chunk_size")
        ids = [document.id for document in documents]
        if len(set(ids)) != len(ids):
            twice = next(i for i in ids if ids.count(i) > 1)
            raise NodeConfigError(f"document id {twice!r} is given twice")
        chunks = [
            chunk
            for document in documents
            for chunk in chunking.chunk_document(
                document.id, document.text, document.metadata, size, overlap
            )
        ]
        spec = embedders.embedder_of(self._resources, await ctx.render("embedder"))
        collection = await _collection(ctx)
        vectors = await embedders.embed(self._resources, ctx, spec, [c.text for c in chunks])
        async with _store(self._resources, ctx) as store:
            await store.replace(collection, ids, chunks, vectors)
        return NodeOutput({"indexed": len(documents), "chunks": len(chunks)})


class RetrieverExecutor:
    def __init__(self, resources: NodeResources) -> None:
        self._resources = resources

    async def execute(self, ctx: NodeContext) -> NodeOutput:
        config = cast(RetrieverConfig, ctx.config)
        query = await ctx.render("query")
        if not isinstance(query, str):
            raise NodeConfigError(f"config field 'query' must render to text, not {query!r}")
        top_k: int = await ctx.render("top_k")
        threshold: float | None = await ctx.render("score_threshold")
        where = stores.check_filter(await ctx.render("filter"))
        collection = await _collection(ctx)
        resources = self._resources
        vector: list[float] = []
        if config.mode != "keyword":
            spec = embedders.embedder_of(resources, await ctx.render("embedder"))
            vector = (await embedders.embed(resources, ctx, spec, [query]))[0]
        with retrieval_span(config, collection, top_k, query, resources.settings) as span:
            async with _store(resources, ctx) as store:
                if config.mode == "keyword":
                    hits = await keyword.search(
                        resources, store, collection, query, top_k=top_k, where=where
                    )
                elif config.mode == "vector":
                    hits = await store.search(
                        collection, vector, top_k=top_k, where=where, score_threshold=threshold
                    )
                else:
                    wanted = top_k * HYBRID_CANDIDATES
                    by_vector = await store.search(
                        collection, vector, top_k=wanted, where=where, score_threshold=None
                    )
                    by_keyword = await keyword.search(
                        resources, store, collection, query, top_k=wanted, where=where
                    )
                    hits = ranking.fuse([by_vector, by_keyword])[:top_k]
            if threshold is not None:
                hits = [hit for hit in hits if hit.score >= threshold]
            if span.is_recording():
                span.set_attribute(semconv.RETRIEVAL_HITS, len(hits))
        return NodeOutput([hit.as_output() for hit in hits])


def retrieval_span(
    config: RetrieverConfig, collection: str, top_k: int, query: str, settings: Settings
) -> AbstractContextManager[Span]:
    """``retrieval {collection}`` (CLIENT) around the search of the store (the query's
    embedding is an ``embeddings`` span before it); the query text only as
    :mod:`app.nodes.span_content` says."""

    def attributes() -> spans.Attributes:
        found: spans.Attributes = {
            semconv.GEN_AI_OPERATION_NAME: semconv.OP_RETRIEVAL,
            semconv.GEN_AI_DATA_SOURCE_ID: collection,
            semconv.GEN_AI_REQUEST_TOP_K: top_k,
            semconv.DB_SYSTEM_NAME: DB_SYSTEMS[config.backend],
            semconv.RETRIEVAL_MODE: config.mode,
        }
        if settings.trace_content:
            secrets = span_content.secrets(settings)
            found[semconv.GEN_AI_RETRIEVAL_QUERY_TEXT] = span_content.as_json(query, secrets)
        return found

    return spans.span(f"{semconv.OP_RETRIEVAL} {collection}", SpanKind.CLIENT, attributes)


async def _collection(ctx: NodeContext) -> str:
    return _checked(check_collection, await _text(ctx, "collection") or "")


@asynccontextmanager
async def _store(resources: NodeResources, ctx: NodeContext) -> AsyncIterator[stores.VectorStore]:
    """The store the node's (rendered) store keys name, held open while the block runs."""
    config = cast(StoreConfig, ctx.config)
    opened: AbstractAsyncContextManager[stores.VectorStore]
    if config.backend == "qdrant":
        url, path = await _text(ctx, "url"), await _text(ctx, "path")
        if url is not None:  # qdrant-client connects by itself: its URL is checked up front
            await resources.egress.check_url(url)
        opened = qdrant_store.open_store(resources, url=url, path=path)
    else:
        table = _checked(check_table, await _text(ctx, "table") or "")
        dsn = await _text(ctx, "dsn")
        opened = pgvector_store.open_store(resources, dsn=dsn, table=table)
    async with opened as store:
        yield store


async def _text(ctx: NodeContext, field: str) -> str | None:
    value = await ctx.render(field)
    if value is not None and not isinstance(value, str):
        raise NodeConfigError(f"config field {field!r} must render to text")
    return value


def _checked(check: Callable[[str], str], value: str) -> str:
    try:
        return check(value)
    except ValueError as exc:
        raise NodeConfigError(str(exc)) from None
