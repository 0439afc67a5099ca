"""Chunks in PostgreSQL with the ``vector`` extension (pgvector), through SQLAlchemy on asyncpg.

One table holds the chunks of many collections (a ``collection`` column); its vectors have the
dimension of the first embedder that wrote to it. Beside it, ``<table>_collections`` holds one
row per collection with its *revision*, bumped in the same transaction as every write: that row
also serialises concurrent writers of a collection, and lets every process know when its cached
BM25 index went stale. Made on first write (``CREATE EXTENSION IF NOT EXISTS vector`` needs a
role that may create it, or an extension already there). An HNSW index (cosine) serves vector
search up to 2,000 dimensions, pgvector's limit; searches set ``hnsw.iterative_scan`` so a
filter never leaves fewer than ``top_k`` results behind (pgvector 0.8 or later).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger,
    Column,
    MetaData,
    Table,
    Text,
    delete,
    insert,
    literal,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from app.errors import NodeConfigError
from app.nodes.resources import NodeResources
from app.nodes.retrieval import stores
from app.nodes.retrieval.chunking import Chunk
from app.nodes.retrieval.ranking import Hit

HNSW_MAX_DIMENSIONS = 2000
UNDEFINED_TABLE = "42P01"
DATA_EXCEPTION_CLASS = "22"  # a vector of the wrong dimension, among others


def open_store(resources: NodeResources, *, dsn: str | None, table: str) -> PgvectorStore:
    """The store for ``table`` in the database at ``dsn``, else in the service's database."""
    if dsn is None:
        engine = resources.database
        if engine is None or engine.dialect.name != "postgresql":
            raise NodeConfigError(
                "pgvector needs a PostgreSQL database: give the node a 'dsn', or run the "
                "service on PostgreSQL"
            )
        where = "service"
    else:
        url = make_url(dsn).set(drivername="postgresql+asyncpg")
        where = hashlib.sha256(dsn.encode()).hexdigest()[:16]  # the DSN may hold a password
        engine = resources.client(
            f"pgvector:{where}", lambda: create_async_engine(url), close=AsyncEngine.dispose
        )
    name = f"pgvector:{where}:{table}"
    return resources.client(name, lambda: PgvectorStore(name, engine, table))


@lru_cache(maxsize=64)
def _tables(name: str) -> tuple[Table, Table]:
    metadata = MetaData()
    chunks = Table(
        name,
        metadata,
        Column("collection", Text, primary_key=True),
        Column("id", Text, primary_key=True),
        Column("document_id", Text, nullable=False),
        Column("text", Text, nullable=False),
        Column("metadata", JSONB, nullable=False),
        Column("embedding", Vector(), nullable=False),
    )
    collections = Table(
        f"{name}_collections",
        metadata,
        Column("collection", Text, primary_key=True),
        Column("revision", BigInteger, nullable=False),
    )
    return chunks, collections


class PgvectorStore:
    """A :class:`~app.nodes.retrieval.stores.VectorStore` on one table."""

    def __init__(self, name: str, engine: AsyncEngine, table: str) -> None:
        self._name = name
        self._engine = engine
        self._table = table
        self._chunks, self._collections = _tables(table)
        self._made = False  # the extension and tables exist (made or checked by this process)

    @property
    def name(self) -> str:
        return self._name

    async def replace(
        self,
        collection: str,
        document_ids: Sequence[str],
        chunks: Sequence[Chunk],
        vectors: Sequence[Sequence[float]],
    ) -> None:
        if vectors and not self._made:
            await self._create(len(vectors[0]))
            self._made = True
        elif not await self._exists():
            return  # nothing held, nothing to add
        rows = [
            {
                "collection": collection,
                "id": chunk.id,
                "document_id": chunk.document_id,
                "text": chunk.text,
                "metadata": chunk.metadata,
                "embedding": list(vector),
            }
            for chunk, vector in zip(chunks, vectors, strict=True)
        ]
        revisions = self._collections
        bump = pg_insert(revisions).values(collection=collection, revision=1)
        bump = bump.on_conflict_do_update(
            index_elements=[revisions.c.collection],
            set_={"revision": revisions.c.revision + 1},
        )
        async with self._connect(collection, vectors) as conn:
            await conn.execute(bump)  # first: holds the collection's row lock until commit
            await conn.execute(
                delete(self._chunks).where(
                    self._chunks.c.collection == collection,
                    self._chunks.c.document_id.in_(document_ids),
                )
            )
            if rows:
                await conn.execute(insert(self._chunks), rows)

    async def search(
        self,
        collection: str,
        vector: Sequence[float],
        *,
        top_k: int,
        where: stores.Filter,
        score_threshold: float | None,
    ) -> list[Hit]:
        table = self._chunks
        distance = table.c.embedding.cosine_distance(list(vector))
        score = (literal(1.0) - distance).label("score")
        query = (
            select(table.c.id, table.c.text, table.c.metadata, score)
            .where(table.c.collection == collection)
            .order_by(distance)
            .limit(top_k)
        )
        if where:
            query = query.where(table.c.metadata.contains(dict(where)))
        if score_threshold is not None:
            query = query.where(distance <= 1.0 - score_threshold)
        async with self._connect(collection, [vector]) as conn:
            await self._revision(conn, collection)
            await conn.execute(text("SET LOCAL hnsw.iterative_scan = strict_order"))
            rows = (await conn.execute(query)).all()
        return [Hit(row.id, row.text, float(row.score), row.metadata) for row in rows]

    async def chunks(self, collection: str, where: stores.Filter) -> list[Hit]:
        table = self._chunks
        query = (
            select(table.c.id, table.c.text, table.c.metadata)
            .where(table.c.collection == collection)
            .order_by(table.c.id)
        )
        if where:
            query = query.where(table.c.metadata.contains(dict(where)))
        async with self._connect(collection) as conn:
            await self._revision(conn, collection)
            rows = (await conn.execute(query)).all()
        return [Hit(row.id, row.text, 0.0, row.metadata) for row in rows]

    async def revision(self, collection: str) -> str | None:
        async with self._connect(collection) as conn:
            return str(await self._revision(conn, collection))

    async def _revision(self, conn: AsyncConnection, collection: str) -> int:
        revisions = self._collections
        found = await conn.scalar(
            select(revisions.c.revision).where(revisions.c.collection == collection)
        )
        if found is None:
            raise stores.missing(collection)
        return int(found)

    async def _exists(self) -> bool:
        async with self._engine.connect() as conn:
            found = await conn.scalar(select(text("to_regclass(:name)")), {"name": self._table})
        return found is not None

    async def _create(self, dimensions: int) -> None:
        table = self._table
        statements = [
            "CREATE EXTENSION IF NOT EXISTS vector",
            f"CREATE TABLE IF NOT EXISTS {table} (collection text NOT NULL, id text NOT NULL, "
            "document_id text NOT NULL, text text NOT NULL, metadata jsonb NOT NULL, "
            f"embedding vector({dimensions}) NOT NULL, PRIMARY KEY (collection, id))",
            f"CREATE INDEX IF NOT EXISTS {table}_document ON {table} (collection, document_id)",
            f"CREATE TABLE IF NOT EXISTS {table}_collections "
            "(collection text PRIMARY KEY, revision bigint NOT NULL)",
        ]
        if dimensions <= HNSW_MAX_DIMENSIONS:
            statements.append(
                f"CREATE INDEX IF NOT EXISTS {table}_embedding ON {table} "
                "USING hnsw (embedding vector_cosine_ops)"
            )
        try:
            async with self._engine.begin() as conn:
                for statement in statements:
                    await conn.execute(text(statement))
        except SQLAlchemyError as exc:
            raise _store_error(exc, f"could not create the pgvector table {table!r}") from None

    @asynccontextmanager
    async def _connect(
        self, collection: str, vectors: Sequence[Sequence[float]] = ()
    ) -> AsyncIterator[AsyncConnection]:
        """A transaction; the database's failures as node errors."""
        try:
            async with self._engine.begin() as conn:
                yield conn
        except DBAPIError as exc:
            state = _sqlstate(exc)
            if state == UNDEFINED_TABLE:
                raise stores.missing(collection) from None
            if state is not None and state.startswith(DATA_EXCEPTION_CLASS) and vectors:
                held = await self._dimensions()
                if held is not None and held != len(vectors[0]):
                    raise stores.dimensions_differ(collection, held, len(vectors[0])) from None
            raise _store_error(exc, "pgvector") from None
        except (SQLAlchemyError, OSError) as exc:
            raise _store_error(exc, "pgvector") from None

    async def _dimensions(self) -> int | None:
        """The dimension of the table's vectors (its column type's modifier)."""
        query = text(
            "SELECT atttypmod FROM pg_attribute "
            "WHERE attrelid = to_regclass(:name) AND attname = 'embedding'"
        )
        async with self._engine.connect() as conn:
            found = await conn.scalar(query, {"name": self._table})
        return int(found) if found is not None and found > 0 else None


def _sqlstate(exc: DBAPIError) -> str | None:
    state: Any = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return state if isinstance(state, str) else None


def _store_error(exc: BaseException, where: str) -> stores.StoreUnavailable | stores.StoreFailed:
    """A short message (never the statement or its parameters, which SQLAlchemy's carry)."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    first_line = str(cause).splitlines()[0] if str(cause) else ""
    message = f"{where}: {type(cause).__name__}: {first_line}"[:600]
    lost = isinstance(exc, OSError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)
    if lost or isinstance(cause, OSError):
        return stores.StoreUnavailable(message)
    return stores.StoreFailed(message)
