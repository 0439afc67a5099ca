"""Chunks in Qdrant: a server (``url``, through ``AsyncQdrantClient``) or local mode (``path``,
a directory under ``OXIFY_QDRANT_LOCAL_ROOT``, or ``":memory:"``).

Local mode is Qdrant's search written in Python and NumPy: synchronous inside, even behind
``AsyncQdrantClient``. So local stores use the synchronous client, and every call runs on one
thread of their own, opening the directory too (it loads every point: seconds for a large
collection): the event loop stays free and the store sees one call at a time. A local store is
one per path per process (a ``:memory:`` one exists only there; a directory is locked by the
process that opened it), which is also why its revisions can be counted here.

Server clients and directories are held per process up to ``HELD_STORES``, the least recently
used idle one closed beyond that (see ``held.py``); ``:memory:`` stays while the process lives.

Points: a UUID derived from the chunk id; payload ``{"chunk_id", "document_id", "text",
"metadata"}``; filters match ``metadata.<key>``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

from qdrant_client import AsyncQdrantClient, QdrantClient, models
from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from app.errors import NodeConfigError
from app.nodes.resources import NodeResources
from app.nodes.retrieval import held, stores
from app.nodes.retrieval.chunking import Chunk
from app.nodes.retrieval.ranking import Hit

MEMORY = ":memory:"
POINT_NAMESPACE = uuid.UUID("5b0f0d5e-6f1c-4f55-9a43-0b8f2f6c1a11")
SCROLL_PAGE = 1024  # points per scroll request
UPSERT_BATCH = 512  # points per upsert request
HELD_STORES = 8  # server clients and local directories kept open per process
LOCKED = "already accessed by another instance"  # what local mode says of a locked directory


@asynccontextmanager
async def open_store(
    resources: NodeResources, *, url: str | None, path: str | None
) -> AsyncIterator[QdrantStore]:
    """The process's store for a Qdrant server ``url`` or a local ``path``, held open while
    the block runs."""
    if path == MEMORY:
        name = f"qdrant-local:{MEMORY}"
        yield resources.client(
            name, lambda: QdrantStore(name, local=MEMORY), close=QdrantStore.aclose
        )
        return
    if url is not None:
        name = f"qdrant:{url}"
        make = partial(QdrantStore, name, server=url)
    else:
        assert path is not None
        where = confined(resources.settings.qdrant_local_root, path)
        name = f"qdrant-local:{where}"
        make = partial(QdrantStore, name, local=where)
    held_stores: held.HeldStores[QdrantStore] = resources.client(
        "qdrant-stores",
        lambda: held.HeldStores(HELD_STORES, resources.logger),
        close=held.HeldStores.aclose,
    )
    async with held_stores.use(name, make) as store:
        yield store


def confined(root: Path, path: str) -> str:
    """``path`` (relative ones taken from ``root``) resolved, when it lies inside ``root``."""
    base = root.resolve()
    where = (base / path).resolve()
    if where == base or not where.is_relative_to(base):
        raise NodeConfigError(
            "config field 'path' must name a directory inside OXIFY_QDRANT_LOCAL_ROOT "
            "(or be a path relative to it)"
        )
    return str(where)


def _open_local(where: str) -> QdrantClient:
    if where == MEMORY:
        return QdrantClient(location=MEMORY)
    try:
        return QdrantClient(path=where)
    except RuntimeError as exc:
        if LOCKED not in str(exc):
            raise
        raise NodeConfigError(
            "the Qdrant directory of config field 'path' is held by another process (local "
            "mode is one process's: share a collection through a Qdrant server)"
        ) from None


class QdrantStore:
    """A :class:`~app.nodes.retrieval.stores.VectorStore` on one Qdrant client."""

    def __init__(self, name: str, *, server: str | None = None, local: str | None = None) -> None:
        self._name = name
        self._server = AsyncQdrantClient(url=server) if server is not None else None
        self._local = local
        self._client: QdrantClient | None = None  # local mode: opened on first use
        self._opening = asyncio.Lock()  # the directory is opened once
        self._thread = (
            ThreadPoolExecutor(1, thread_name_prefix="qdrant-local") if local is not None else None
        )
        # Local mode only (this process is the only writer): revisions count writes since
        # this opening, under a token of its own, so that one reopened later never meets the
        # indexes cached under the revisions of this one.
        self._opened = uuid.uuid4().hex[:12]
        self._revisions: dict[str, int] = {}

    @property
    def name(self) -> str:
        return self._name

    async def aclose(self) -> None:
        if self._server is not None:
            await self._server.close()
            return
        assert self._thread is not None
        async with self._opening:
            if self._client is not None:
                await asyncio.get_running_loop().run_in_executor(self._thread, self._client.close)
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
        elif vectors:
            await self._create(collection, len(vectors[0]))
        else:
            return  # nothing held, nothing to add
        # Bumped before (a search meanwhile builds its index under a revision that is over
        # once the write is) and after, also when the write fails or is cancelled half-done.
        self._bump(collection)
        try:
            await self._write(collection, document_ids, chunks, vectors, exists=exists)
        finally:
            self._bump(collection)

    async def _write(
        self,
        collection: str,
        document_ids: Sequence[str],
        chunks: Sequence[Chunk],
        vectors: Sequence[Sequence[float]],
        *,
        exists: bool,
    ) -> None:
        if exists:
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
        for start in range(0, len(chunks), UPSERT_BATCH):
            end = start + UPSERT_BATCH  # built batch by batch: the loop validates each point
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
                for chunk, vector in zip(chunks[start:end], vectors[start:end], strict=True)
            ]
            await self._call("upsert", collection_name=collection, points=points)

    def _bump(self, collection: str) -> None:
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

    async def chunks(self, collection: str, where: stores.Filter, *, limit: int) -> list[Hit]:
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
            if len(found) > limit:
                raise stores.too_many_chunks(collection, limit)
            if offset is None:
                return found

    async def revision(self, collection: str) -> str | None:
        if not await self._call("collection_exists", collection_name=collection):
            raise stores.missing(collection)
        if self._thread is None:
            return None
        return f"{self._opened}:{self._revisions.get(collection, 0)}"

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
        try:
            await self._call(
                "create_collection",
                collection_name=collection,
                vectors_config=models.VectorParams(size=size, distance=models.Distance.COSINE),
            )
        except (stores.StoreFailed, ValueError):  # a server's 409, local mode's ValueError
            if not await self._call("collection_exists", collection_name=collection):
                raise
            held = await self._size(collection)  # made meanwhile by another writer
            if held != size:
                raise stores.dimensions_differ(collection, held, size) from None
            return
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
        try:
            if self._server is not None:
                pending: Awaitable[Any] = getattr(self._server, method)(**arguments)
                return await pending
            call: Callable[..., Any] = getattr(await self._local_client(), method)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._thread, partial(call, **arguments))
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

    async def _local_client(self) -> QdrantClient:
        if self._client is None:
            assert self._local is not None
            async with self._opening:
                if self._client is None:
                    loop = asyncio.get_running_loop()
                    self._client = await loop.run_in_executor(
                        self._thread, _open_local, self._local
                    )
        return self._client


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
