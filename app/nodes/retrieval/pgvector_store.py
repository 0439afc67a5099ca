"""Chunks in PostgreSQL with the ``vector`` extension (pgvector), through SQLAlchemy on asyncpg.

One table holds the chunks of many collections (a ``collection`` column); its vectors have the
dimension of the first embedder that wrote to it. Beside it, ``<table>_collections`` holds one
row per collection with its *revision*, bumped in the same transaction as every write: that row
also serialises concurrent writers of a collection, and lets every process know when its cached
BM25 index went stale. Made on first write (``CREATE EXTENSION IF NOT EXISTS vector`` needs a
role that may create it, or an extension already there), under an advisory lock so that
processes making it at once do not collide. An HNSW index (cosine) serves vector search up to
2,000 dimensions, pgvector's limit; searches set ``hnsw.iterative_scan`` so a filter never
leaves fewer than ``top_k`` results behind (pgvector 0.8 or later).

Each database gets an engine of its own, also the service's database: a pool apart from the
journal's, without the service's 5-second bounds (an index of 10,000 chunks takes longer), with
``OXIFY_PGVECTOR_TIMEOUT_S`` instead. Vectors travel in pgvector's binary format (asyncpg
codec), chunks go in by ``COPY`` in batches: formatting floats as text would hold the event loop
for seconds on a large index.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

import asyncpg
import numpy as np
import orjson
from asyncpg.exceptions import ConnectionDoesNotExistError
from pgvector.asyncpg import register_vector
from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    MetaData,
    Table,
    Text,
    delete,
    literal,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.types import UserDefinedType

from app.errors import NodeConfigError
from app.nodes.resources import NodeResources
from app.nodes.retrieval import held, stores
from app.nodes.retrieval.chunking import Chunk
from app.nodes.retrieval.ranking import Hit
from app.settings import async_database_url

HNSW_MAX_DIMENSIONS = 2000
UNDEFINED_TABLE = "42P01"
DATA_EXCEPTION_CLASS = "22"  # a vector of the wrong dimension, among others
# Worth another attempt: connection (08), resources (53), shutdown (57P), conflicts (40), a
# statement cancelled by its timeout (57014), a lock not available (55P03).
UNAVAILABLE_SQLSTATES = ("08", "53", "57P", "40", "57014", "55P03")
HELD_DATABASES = 8  # engines (each a pool) kept open per process; idle ones beyond are closed
POOL_SIZE = 5  # connections per database, plus as many again at peaks
CONNECT_TIMEOUT_S = 10.0  # seconds
COPY_BATCH = 256  # chunks per COPY: the loop encodes one batch's vectors between round trips
COLUMNS = ("collection", "id", "document_id", "text", "metadata", "embedding")
CODEC_REGISTERED = "oxify_pgvector_codec"  # in a pooled connection's info


@asynccontextmanager
async def open_store(
    resources: NodeResources, *, dsn: str | None, table: str
) -> AsyncIterator[PgvectorStore]:
    """The store for ``table`` in the database at ``dsn``, else in the service's database,
    held open while the block runs."""
    if dsn is None:
        engine = resources.database
        if engine is None or engine.dialect.name != "postgresql":
            raise NodeConfigError(
                "pgvector needs a PostgreSQL database: give the node a 'dsn', or run the "
                "service on PostgreSQL"
            )
        url, where = engine.url, "service"
    else:
        url = _url(dsn)
        where = hashlib.sha256(dsn.encode()).hexdigest()[:16]  # the DSN may hold a password
    timeout_s = resources.settings.pgvector_timeout_s
    databases: held.HeldStores[Database] = resources.client(
        "pgvector-databases",
        lambda: held.HeldStores(HELD_DATABASES, resources.logger),
        close=held.HeldStores.aclose,
    )
    async with databases.use(where, lambda: Database(where, _engine(url, timeout_s))) as database:
        yield PgvectorStore(database, table)


def _url(dsn: str) -> URL:
    """``dsn`` as an asyncpg URL (libpq's ``sslmode`` as asyncpg's ``ssl``); a config error
    that never repeats it (it may hold a password)."""
    try:
        url = make_url(async_database_url(dsn))
    except ValueError as exc:
        raise NodeConfigError(f"config field 'dsn' is not a PostgreSQL URL: {exc}") from None
    if url.get_backend_name() != "postgresql":
        raise NodeConfigError("config field 'dsn' must be a PostgreSQL URL (postgresql://…)")
    return url


def _engine(url: URL, timeout_s: float) -> AsyncEngine:
    milliseconds = str(max(1, int(timeout_s * 1000)))
    return create_async_engine(
        url,
        pool_size=POOL_SIZE,
        max_overflow=POOL_SIZE,
        pool_timeout=timeout_s,
        connect_args={
            "timeout": CONNECT_TIMEOUT_S,
            "command_timeout": timeout_s,
            "server_settings": {
                "application_name": "oxify-pgvector",
                "statement_timeout": milliseconds,
                "lock_timeout": milliseconds,
            },
        },
    )


class Database:
    """One database's engine, and which of its tables this process made or found."""

    def __init__(self, where: str, engine: AsyncEngine) -> None:
        self.where = where
        self.engine = engine
        self.made: set[str] = set()
        self.making = asyncio.Lock()  # this process makes one table at a time

    async def aclose(self) -> None:
        await self.engine.dispose()


class _Vector(UserDefinedType[Any]):
    """pgvector's ``vector``, passed to asyncpg as is: a NumPy array, encoded by the binary
    codec (``pgvector.sqlalchemy.Vector`` formats it as text on the loop)."""

    cache_ok = True

    def get_col_spec(self, **_: Any) -> str:
        return "vector"

    class comparator_factory(UserDefinedType.Comparator[Any]):
        def cosine_distance(self, other: Any) -> Any:
            return self.op("<=>", return_type=Float)(other)


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
        Column("embedding", _Vector(), nullable=False),
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

    def __init__(self, database: Database, table: str) -> None:
        self._name = f"pgvector:{database.where}:{table}"
        self._database = database
        self._engine = database.engine
        self._table = table
        self._chunks, self._collections = _tables(table)

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
        if vectors:
            if self._table not in self._database.made:
                await self._create(len(vectors[0]))
        elif not await self._exists():
            return  # nothing held, nothing to add
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
            if chunks:
                driver = await _binary_vectors(conn)
                for start in range(0, len(chunks), COPY_BATCH):
                    end = start + COPY_BATCH
                    batch = np.asarray(vectors[start:end], dtype=np.float32)
                    records = [
                        (
                            collection,
                            chunk.id,
                            chunk.document_id,
                            chunk.text,
                            orjson.dumps(chunk.metadata).decode(),
                            vector,
                        )
                        for chunk, vector in zip(chunks[start:end], batch, strict=True)
                    ]
                    await driver.copy_records_to_table(
                        self._table, records=records, columns=COLUMNS
                    )

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
        distance = table.c.embedding.cosine_distance(np.asarray(vector, dtype=np.float32))
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
            await _binary_vectors(conn)
            await conn.execute(text("SET LOCAL hnsw.iterative_scan = strict_order"))
            rows = (await conn.execute(query)).all()
        return [Hit(row.id, row.text, float(row.score), row.metadata) for row in rows]

    async def chunks(self, collection: str, where: stores.Filter, *, limit: int) -> list[Hit]:
        table = self._chunks
        query = (
            select(table.c.id, table.c.text, table.c.metadata)
            .where(table.c.collection == collection)
            .order_by(table.c.id)
            .limit(limit + 1)
        )
        if where:
            query = query.where(table.c.metadata.contains(dict(where)))
        async with self._connect(collection) as conn:
            await self._revision(conn, collection)
            rows = (await conn.execute(query)).all()
        if len(rows) > limit:
            raise stores.too_many_chunks(collection, limit)
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
        query = select(text("to_regclass(:name)"))
        async with _translated("pgvector"), self._engine.connect() as conn:
            found = await conn.scalar(query, {"name": self._table})
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
        # IF NOT EXISTS does not make concurrent creators safe (both may insert the type's
        # pg_type row): one at a time in this process, and across processes by advisory lock.
        digest = hashlib.sha256(f"oxify-pgvector:{table}".encode()).digest()
        key = int.from_bytes(digest[:8], signed=True)
        async with self._database.making:
            if table in self._database.made:
                return
            async with (
                _translated(f"could not create the pgvector table {table!r}"),
                self._engine.begin() as conn,
            ):
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
                for statement in statements:
                    await conn.execute(text(statement))
            self._database.made.add(table)

    @asynccontextmanager
    async def _connect(
        self, collection: str, vectors: Sequence[Sequence[float]] = ()
    ) -> AsyncIterator[AsyncConnection]:
        """A transaction; the database's failures as node errors."""
        try:
            async with self._engine.begin() as conn:
                yield conn
        except (DBAPIError, asyncpg.PostgresError) as exc:
            state = _sqlstate(exc)
            if state == UNDEFINED_TABLE:
                raise stores.missing(collection) from None
            if state is not None and state.startswith(DATA_EXCEPTION_CLASS) and vectors:
                held = await self._dimensions()
                if held is not None and held != len(vectors[0]):
                    raise stores.dimensions_differ(collection, held, len(vectors[0])) from None
            raise _store_error(exc, "pgvector") from None
        except _FAILURES as exc:
            raise _store_error(exc, "pgvector") from None

    async def _dimensions(self) -> int | None:
        """The dimension of the table's vectors (its column type's modifier)."""
        query = text(
            "SELECT atttypmod FROM pg_attribute "
            "WHERE attrelid = to_regclass(:name) AND attname = 'embedding'"
        )
        async with _translated("pgvector"), self._engine.connect() as conn:
            found = await conn.scalar(query, {"name": self._table})
        return int(found) if found is not None and found > 0 else None


_FAILURES = (SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


@asynccontextmanager
async def _translated(where: str) -> AsyncIterator[None]:
    try:
        yield
    except _FAILURES as exc:
        raise _store_error(exc, where) from None


async def _binary_vectors(conn: AsyncConnection) -> asyncpg.Connection:
    """The connection's asyncpg connection, sending and reading vectors in binary (registered
    once per connection, when the extension exists: it may be made after connecting)."""
    raw = await conn.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection
    if not conn.info.get(CODEC_REGISTERED):
        schema = await conn.scalar(
            text(
                "SELECT nspname FROM pg_type JOIN pg_namespace ON pg_namespace.oid = typnamespace "
                "WHERE typname = 'vector'"
            )
        )
        await register_vector(driver, schema=schema or "public")
        conn.info[CODEC_REGISTERED] = True
    return driver


def _sqlstate(exc: BaseException) -> str | None:
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    state: Any = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    return state if isinstance(state, str) else None


def _store_error(exc: BaseException, where: str) -> stores.StoreUnavailable | stores.StoreFailed:
    """A short message (never the statement or its parameters, which SQLAlchemy's carry)."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    first_line = str(cause).splitlines()[0] if str(cause) else ""
    message = f"{where}: {type(cause).__name__}: {first_line}"[:600]
    state = _sqlstate(exc)
    lost = (
        isinstance(cause, OSError | TimeoutError | PoolTimeout | ConnectionDoesNotExistError)
        or (isinstance(exc, DBAPIError) and exc.connection_invalidated)
        or (state is not None and state.startswith(UNAVAILABLE_SQLSTATES))
    )
    if lost:
        return stores.StoreUnavailable(message)
    return stores.StoreFailed(message)
