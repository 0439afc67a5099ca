"""Database engine and migrations.

``OXIFY_DATABASE_URL`` picks the database: Postgres through asyncpg in production, SQLite through
aiosqlite as the embedded default. Migrations are alembic's, run programmatically so
``oxify serve`` can migrate before serving.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Dialect, ExceptionContext
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.errors import DatabaseUnavailable
from app.store import codec

log = logging.getLogger(__name__)

_PACKAGE = Path(__file__).resolve().parent.parent
# A wheel carries them inside the package; a source checkout has them at the top.
MIGRATIONS_DIR = (
    _PACKAGE / "_migrations"
    if (_PACKAGE / "_migrations").is_dir()
    else _PACKAGE.parent / "migrations"
)
RETRY_AFTER_S = 1  # seconds a client waits before trying again while the database is away
# Class 08 (connection exception); 57P01-57P03 (shut down by an admin or a crash, starting up);
# 53300 (too many connections).
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")
_VERSION = text("SELECT version_num FROM alembic_version")  # alembic's default version table


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine with settings fit for each backend (one JSON encoder for all).

    Pooled connections are not pinged at checkout (a round trip per checkout). A connection
    found dead when used, or one that cannot be opened, raises :class:`DatabaseUnavailable`
    (the API answers 503 with ``Retry-After``); a dead one also makes the pool discard every
    connection opened before it, so once the database is back the next checkout reconnects.
    """
    kwargs.setdefault("json_serializer", codec.dumps)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        # Enough connections for concurrent requests plus the runner: below that, overflow
        # connections are opened and closed per checkout (measured: 31 new sessions/s at 20
        # clients).
        kwargs.setdefault("pool_size", 30)
        kwargs.setdefault("max_overflow", 20)
        engine = create_async_engine(url, **kwargs)
    event.listen(engine.sync_engine, "do_connect", _connect)
    event.listen(engine.sync_engine, "handle_error", _translate)
    return engine


def is_disconnect(error: BaseException) -> bool:
    """Whether ``error`` (the driver's, or SQLAlchemy's around it) says the database cannot be
    reached now (a connection lost or refused, a server shutting down or starting up, no free
    connection slot) rather than that a statement failed."""
    cause: BaseException | None = error
    if isinstance(error, DBAPIError):
        if error.connection_invalidated:
            return True
        cause = error.orig
    if isinstance(cause, OSError):  # refused, reset, unreachable, timed out
        return True
    sqlstate = getattr(cause, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATES)


def _translate(context: ExceptionContext) -> BaseException | None:
    error = context.original_exception
    if not isinstance(error, Exception):
        return None  # a cancelled statement (its connection is dropped) stays a cancellation
    if not (context.is_disconnect or is_disconnect(error)):
        return None
    context.is_disconnect = True  # the pool drops the connection (and those older than it)
    log.warning("database unavailable: %s", error)
    return DatabaseUnavailable(retry_after_s=RETRY_AFTER_S)


def _connect(dialect: Dialect, _record: Any, cargs: Any, cparams: Any) -> Any:
    # Socket errors are not the driver's errors, so SQLAlchemy hands them on untouched.
    try:
        return dialect.connect(*cargs, **cparams)
    except OSError as exc:
        log.warning("database unavailable: %s", exc)
        raise DatabaseUnavailable(retry_after_s=RETRY_AFTER_S) from exc


def autocommit(engine: AsyncEngine) -> AsyncEngine:
    """The same pool, each statement its own transaction: no BEGIN/COMMIT round trips, and no
    lock held between statements (for single-statement work such as claims and renewals)."""
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def is_postgres(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


def asyncpg_dsn(engine: AsyncEngine) -> str:
    """A DSN for asyncpg itself (dedicated connections: journal writer, notifications)."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets stream readers proceed while a run writes; foreign keys are off by default.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url)
    return config


async def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision`` (alembic runs in a worker thread)."""
    await asyncio.to_thread(command.upgrade, alembic_config(url), revision)


async def downgrade(url: str, revision: str) -> None:
    await asyncio.to_thread(command.downgrade, alembic_config(url), revision)


@functools.cache
def head_revision() -> str | None:
    """The newest migration this code carries; the scripts are read once per process (they do
    not change under it), not on every readiness probe."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None when it was never migrated).

    One statement outside a transaction; only when it fails (no version table yet) does
    alembic look, checking for the table first.
    """
    try:
        async with autocommit(engine).connect() as connection:
            return (await connection.execute(_VERSION)).scalar_one_or_none()
    except DBAPIError:
        pass

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        return await connection.run_sync(read)
