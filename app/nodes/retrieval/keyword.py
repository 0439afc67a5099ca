"""BM25 indexes of collections, built on demand and kept per process.

Keyword search ranks the chunks of a collection that match the node's filter, so its index is
built from exactly those chunks. Building one reads the whole (filtered) collection and costs
CPU, so indexes are cached under (store, collection, filter, revision): a write to the
collection changes its revision and the next search builds afresh. A store that cannot tell
revisions (a Qdrant server others write to) gets a fresh index on every search.
"""

from __future__ import annotations

import asyncio

import orjson
from cachetools import LRUCache

from app.nodes.resources import NodeResources
from app.nodes.retrieval.ranking import Hit, KeywordIndex
from app.nodes.retrieval.stores import Filter, VectorStore

INLINE_CHUNKS = 200  # below this many chunks BM25 work runs on the loop: a thread costs more

IndexCache = LRUCache[tuple[str, str, bytes, str | None], KeywordIndex]


async def search(
    resources: NodeResources,
    store: VectorStore,
    collection: str,
    query: str,
    *,
    top_k: int,
    where: Filter,
) -> list[Hit]:
    """The ``top_k`` chunks of ``collection`` (matching ``where``) by BM25 score for ``query``."""
    index = await _index(resources, store, collection, where)
    if len(index) < INLINE_CHUNKS:
        return index.search(query, top_k)
    return await asyncio.to_thread(index.search, query, top_k)


async def _index(
    resources: NodeResources, store: VectorStore, collection: str, where: Filter
) -> KeywordIndex:
    # The revision is read before the chunks: a write in between leaves newer chunks under an
    # older revision, which the next search replaces; never stale chunks under a new one.
    revision = await store.revision(collection)
    settings = resources.settings
    cache: IndexCache = resources.client(
        "bm25-indexes", lambda: LRUCache(settings.keyword_cache_chunks, getsizeof=_size)
    )
    key = (store.name, collection, orjson.dumps(where, option=orjson.OPT_SORT_KEYS), revision)
    if revision is not None and key in cache:
        return cache[key]
    chunks = await store.chunks(collection, where, limit=settings.keyword_max_chunks)
    index = (
        KeywordIndex(chunks)
        if len(chunks) < INLINE_CHUNKS
        else await asyncio.to_thread(KeywordIndex, chunks)
    )
    if revision is not None and _size(index) <= cache.maxsize:
        cache[key] = index
    return index


def _size(index: KeywordIndex) -> int:
    return max(1, len(index))  # an empty index still takes a place
