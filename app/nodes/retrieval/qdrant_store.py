"""Chunks in Qdrant: a server (``url``, through ``AsyncQdrantClient``) or local mode (``path``,
a directory or ``":memory:"``).

Local mode is Qdrant's search written in Python and NumPy: synchronous inside, even behind
``AsyncQdrantClient``. So local stores use the synchronous client, and every call runs on one
thread of their own: the event loop stays free and the store sees one call at a time. A local
store is one per path per process (a ``:memory:`` one exists only there; a directory is locked
by the process that opened it), which is also why its revisions can be counted here.

Points: a UUID derived from the chunk id; payload ``{"chunk_id", "document_id", "text",
"metadata"}``; filters match ``metadata.<key>``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from qdrant_client import AsyncQdrantClient, QdrantClient, models
from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from app.nodes.resources import NodeResources
from app.nodes.retrieval import stores
from app.nodes.retrieval.chunking import Chunk
from app.nodes.retrieval.ranking import Hit

MEMORY = ":memory:"
POINT_NAMESPACE = uuid.UUID("5b0f0d5e-6f1c-4f55-9a43-0b8f2f6c1a11")
SCROLL_PAGE = 1024  # points per scroll request
UPSERT_BATCH = 512  # points per upsert request


def open_store(resources: NodeResources, *, url: str | None, path: str | None) -> QdrantStore:
    """The process's store for a Qdrant server ``url`` or a local ``path``."""
    if url is not None:
        return resources.client(
            f"qdrant:{url}",
            lambda: QdrantStore(f"qdrant:{url}", AsyncQdrantClient(url=url)),
            close=QdrantStore.aclose,
        )
    assert path is not None
    where = path if path == MEMORY else str(Path(path).resolve())
    return resources.client(
        f"qdrant-local:{where}",
        lambda: QdrantStore(f"qdrant-local:{where}", _local_client(where), local=True),
        close=QdrantStore.aclose,
    )


def _local_client(where: str) -> QdrantClient:
    return QdrantClient(location=MEMORY) if where == MEMORY else QdrantClient(path=where)


class QdrantStore:
    """A :class:`~app.nodes.retrieval.stores.VectorStore` on one Qdrant client."""

    def __init__(
        self, name: str, client: AsyncQdrantClient | QdrantClient, *, local: bool = False
    ) -> None:
        self._name = name
        self._client = client
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="qdrant-local") if local else None
        self._revisions: dict[str, int] = {}  # local mode only: this process is the only writer

    @property
    def name(self) -> str:
        return self._name

    async def aclose(self) -> None:
        await self._call("close")
        if self._thread is not None:
            self._thread.shutdown(wait=True)

    async def replace(
        self,
        collection: str,
        document_ids: Sequence[str],
        chunks: Sequence[Chunk],
        vectors: Sequence[Sequence[float]],
    ) -> None:
        exists = await self._call("collection_exists", collection_name=collection)
        if exists:
            held = await self._size(collection)
            if vectors and held != len(vectors[0]):
                raise stores.dimensions_differ(collection, held, len(vectors[0]))
            await self._call(
                "delete",
                collection_name=collection,
                points_selector=models.FilterSelector(
                    filter=models.Filter(
                        must=[
                            models.FieldCondition(
                                key="document_id", match=models.MatchAny(any=list(document_ids))
                            )
                        ]
                    )
                ),
            )
        elif vectors:
            await self._create(collection, len(vectors[0]))
        else:
            return  # nothing held, nothing to add
        points = [
            models.PointStruct(
                id=str(uuid.uuid5(POINT_NAMESPACE, chunk.id)),
                vector=list(vector),
                payload={
                    "chunk_id": chunk.id,
                    "document_id": chunk.document_id,
                    "text": chunk.text,
                    "metadata": chunk.metadata,
                },
            )
            for chunk, vector in zip(chunks, vectors, strict=True)
        ]
        for start in range(0, len(points), UPSERT_BATCH):
            await self._call(
                "upsert", collection_name=collection, points=points[start : start + UPSERT_BATCH]
            )
        if self._thread is not None:
            self._revisions[collection] = self._revisions.get(collection, 0) + 1

    async def search(
        self,
        collection: str,
        vector: Sequence[float],
        *,
        top_k: int,
        where: stores.Filter,
        score_threshold: float | None,
    ) -> list[Hit]:
        held = await self._size(collection)
        if held != len(vector):
            raise stores.dimensions_differ(collection, held, len(vector))
        answer = await self._call(
            "query_points",
            collection_name=collection,
            query=list(vector),
            query_filter=_filter(where),
            limit=top_k,
            score_threshold=score_threshold,
            with_payload=True,
        )
        return [_hit(point.payload, point.score) for point in answer.points]

    async def chunks(self, collection: str, where: stores.Filter) -> list[Hit]:
        if not await self._call("collection_exists", collection_name=collection):
            raise stores.missing(collection)
        found: list[Hit] = []
        offset: Any = None
        while True:
            records, offset = await self._call(
                "scroll",
                collection_name=collection,
                scroll_filter=_filter(where),
                limit=SCROLL_PAGE,
                offset=offset,
                with_payload=True,
                with_vectors=False,
            )
            found.extend(_hit(record.payload, 0.0) for record in records)
            if offset is None:
                return found

    async def revision(self, collection: str) -> str | None:
        if not await self._call("collection_exists", collection_name=collection):
            raise stores.missing(collection)
        if self._thread is None:
            return None
        return str(self._revisions.get(collection, 0))

    async def _size(self, collection: str) -> int:
        try:
            info = await self._call("get_collection", collection_name=collection)
        except stores.StoreFailed as exc:
            if exc.details.get("status") == 404:
                raise stores.missing(collection) from None
            raise
        except ValueError:  # local mode's way of saying so
            raise stores.missing(collection) from None
        params = info.config.params.vectors
        assert isinstance(params, models.VectorParams)
        return int(params.size)

    async def _create(self, collection: str, size: int) -> None:
        await self._call(
            "create_collection",
            collection_name=collection,
            vectors_config=models.VectorParams(size=size, distance=models.Distance.COSINE),
        )
        if self._thread is None:  # local mode has no payload indexes (and warns about them)
            await self._call(
                "create_payload_index",
                collection_name=collection,
                field_name="document_id",
                field_schema=models.PayloadSchemaType.KEYWORD,
            )

    async def _call(self, method: str, **arguments: Any) -> Any:
        """``method`` of the client: on the store's thread in local mode, awaited otherwise;
        a server's failures as node errors."""
        call: Callable[..., Any] = getattr(self._client, method)
        try:
            if self._thread is not None:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._thread, partial(call, **arguments))
            pending: Awaitable[Any] = call(**arguments)
            return await pending
        except ResourceExhaustedResponse as exc:
            raise stores.StoreUnavailable(
                f"qdrant is busy: {exc}", retry_after_s=float(exc.retry_after_s)
            ) from None
        except ResponseHandlingException as exc:
            cause = exc.source
            raise stores.StoreUnavailable(
                f"qdrant could not be reached: {type(cause).__name__}: {cause}"
            ) from None
        except UnexpectedResponse as exc:
            status = exc.status_code or 0
            failure = (
                stores.StoreUnavailable if status == 429 or status >= 500 else stores.StoreFailed
            )
            raise failure(
                f"qdrant answered {status}: {exc.content[:500].decode(errors='replace')}",
                details={"status": status},
            ) from None


def _filter(where: stores.Filter) -> models.Filter | None:
    if not where:
        return None
    conditions: list[models.Condition] = []
    for key, value in where.items():
        field = f"metadata.{key}"
        if isinstance(value, float):  # Qdrant matches only keywords, integers and booleans
            conditions.append(
                models.FieldCondition(key=field, range=models.Range(gte=value, lte=value))
            )
        else:
            conditions.append(
                models.FieldCondition(key=field, match=models.MatchValue(value=value))
            )
    return models.Filter(must=conditions)


def _hit(payload: dict[str, Any] | None, score: float) -> Hit:
    data = payload or {}
    return Hit(
        id=str(data.get("chunk_id", "")),
        text=str(data.get("text", "")),
        score=float(score),
        metadata=dict(data.get("metadata") or {}),
    )
