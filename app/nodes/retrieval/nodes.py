"""The ``index`` and ``retriever`` node types.

``index`` chunks documents by characters, embeds the chunks (batched, cached; every request one
``max_api_calls`` unit) and replaces each document's chunks in the store. ``retriever`` ranks a
collection's chunks for a query: by vector (cosine similarity), by keyword (BM25), or both fused
by Reciprocal Rank Fusion (``hybrid``); ``score_threshold`` is in the mode's own score.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import cast

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
from app.nodes.ai import embedders
from app.nodes.plugin import NodeDefinition
from app.nodes.resources import NodeResources
from app.nodes.retrieval import chunking, keyword, pgvector_store, qdrant_store, ranking, stores

HYBRID_CANDIDATES = 4  # each ranking offers top_k times this many chunks to the fusion


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
        return NodeOutput([hit.as_output() for hit in hits])


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
