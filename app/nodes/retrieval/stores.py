"""What the retrieval nodes need of a vector store, and the store a node's config names.

A store holds chunks in named collections, with their texts, metadata and vectors (cosine
similarity). Writes go by document: :meth:`VectorStore.replace` drops every chunk of the given
documents and adds the new ones, so re-indexing a document never leaves stale chunks behind.
Each store also tells a collection's *revision*, a token that changes with every write, when it
can know it: the BM25 index of a collection is cached under it (see ``keyword.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from app.errors import NodeConfigError, NodeError
from app.nodes.retrieval.chunking import Chunk
from app.nodes.retrieval.ranking import Hit

Scalar = str | int | float | bool
Filter = Mapping[str, Scalar]


class CollectionMissing(NodeError):
    """The collection has never been indexed."""

    code = "retrieval_collection_missing"
    retryable = False


class StoreUnavailable(NodeError):
    """The vector store could not be reached, or was busy: worth another attempt."""

    code = "retrieval_store_unavailable"


class StoreFailed(NodeError):
    """The vector store refused the request."""

    code = "retrieval_store_failed"
    retryable = False


class TooManyChunks(NodeError):
    """The search would load more chunks than a keyword search may (OXIFY_KEYWORD_MAX_CHUNKS)."""

    code = "retrieval_too_many_chunks"
    retryable = False


class VectorStore(Protocol):
    """One configured store (a Qdrant server or local directory, a pgvector table)."""

    @property
    def name(self) -> str:
        """Tells stores apart in process-wide caches (never shown: it may hold a DSN digest)."""
        ...

    async def replace(
        self,
        collection: str,
        document_ids: Sequence[str],
        chunks: Sequence[Chunk],
        vectors: Sequence[Sequence[float]],
    ) -> None:
        """Drop the chunks of ``document_ids``, then add ``chunks`` (creating the collection,
        sized for ``vectors``, when it is new)."""
        ...

    async def search(
        self,
        collection: str,
        vector: Sequence[float],
        *,
        top_k: int,
        where: Filter,
        score_threshold: float | None,
    ) -> list[Hit]:
        """The ``top_k`` chunks nearest ``vector`` (cosine similarity), best first."""
        ...

    async def chunks(self, collection: str, where: Filter, *, limit: int) -> list[Hit]:
        """Every chunk of the collection matching ``where`` (score 0), in a stable order;
        TooManyChunks when there are more than ``limit``."""
        ...

    async def revision(self, collection: str) -> str | None:
        """A token that changes whenever the collection does; None when the store cannot
        know (another process may write to it unseen). Raises CollectionMissing."""
        ...


def check_filter(value: Any) -> dict[str, Scalar]:
    """A rendered ``filter``: top-level metadata keys mapped to scalar values."""
    if not isinstance(value, Mapping):
        raise NodeConfigError("config field 'filter' must be a mapping of metadata keys")
    checked: dict[str, Scalar] = {}
    for key, item in value.items():
        if not key or any(c in key for c in ".[]"):
            raise NodeConfigError(f"filter key {key!r} must be a plain metadata key")
        if not isinstance(item, str | int | float | bool):
            raise NodeConfigError(
                f"filter value of {key!r} must be a string, number or boolean, "
                f"not {type(item).__name__}"
            )
        checked[key] = item
    return checked


def missing(collection: str) -> CollectionMissing:
    return CollectionMissing(
        f"collection {collection!r} does not exist (index documents into it first)",
        details={"collection": collection},
    )


def too_many_chunks(collection: str, limit: int) -> TooManyChunks:
    return TooManyChunks(
        f"collection {collection!r} holds more than {limit} chunks passing the filter: too many "
        "for a keyword or hybrid search (narrow the filter, use vector mode, or raise "
        "OXIFY_KEYWORD_MAX_CHUNKS)",
        details={"collection": collection, "limit": limit},
    )


def dimensions_differ(collection: str, held: int, given: int) -> NodeConfigError:
    return NodeConfigError(
        f"collection {collection!r} holds {held}-dimensional vectors; the embedder gives {given} "
        "(index into a new collection, or use the embedder it was built with)"
    )
