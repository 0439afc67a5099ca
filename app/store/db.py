"""Database engine and migrations.

``OXIFY_DATABASE_URL`` picks the database: Postgres through asyncpg in production, SQLite through
aiosqlite as the embedded default. Migrations are alembic's, run programmatically so
``oxify serve`` can migrate before serving.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Dialect, ExceptionContext
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

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


DEFAULT_TIMEOUT_S = 5.0  # seconds any one database call may take (connect, statement, lock)


def create_engine(url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, **kwargs: Any) -> AsyncEngine:
    """An async engine with settings fit for each backend (one JSON encoder for all).

    On Postgres every call is bounded by ``timeout_s``: connecting, waiting for a pooled
    connection, each statement on the server (``statement_timeout``, ``lock_timeout``) and on
    the client (asyncpg's ``command_timeout``, which also ends a wait on a half-open socket).

    Pooled connections are not pinged at checkout (a round trip per checkout). A connection
    found dead when used, or one that cannot be opened, raises :class:`DatabaseUnavailable`
    (the API answers 503 with ``Retry-After``); a dead one also makes the pool discard every
    connection opened before it, so once the database is back the next checkout reconnects. A
    statement that timed out, or lost a deadlock, is :class:`DatabaseUnavailable` too.
    """
    kwargs.setdefault("json_serializer", codec.dumps)
    kwargs.setdefault("json_deserializer", orjson.loads)  # reads what codec.dumps wrote
    if url.startswith("sqlite"):
        engine = create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        # Enough connections for concurrent requests plus the runner: below that, overflow
        # connections are opened and closed per checkout (measured: 31 new sessions/s at 20
        # clients).
        kwargs.setdefault("pool_size", 30)
        kwargs.setdefault("max_overflow", 20)
        kwargs.setdefault("pool_timeout", timeout_s)
        kwargs.setdefault("connect_args", asyncpg_arguments("oxify", timeout_s))
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
    if context.is_disconnect or is_disconnect(error):
        context.is_disconnect = True  # the pool drops the connection (and those older than it)
    elif not is_transient(error):
        return None
    log.warning("database unavailable: %s", error)
    return DatabaseUnavailable(retry_after_s=RETRY_AFTER_S)


def _connect(dialect: Dialect, _record: Any, cargs: Any, cparams: Any) -> Any:
    # Socket errors are not the driver's errors, so SQLAlchemy hands them on untouched.
    try:
        return dialect.connect(*cargs, **cparams)
    except OSError as exc:
        log.warning("database unavailable: %s", exc)
        raise DatabaseUnavailable(retry_after_s=RETRY_AFTER_S) from exc


def asyncpg_arguments(name: str, timeout_s: float) -> dict[str, Any]:
    """asyncpg ``connect`` arguments that bound every call, and name the connection in
    ``pg_stat_activity`` (operators, and tests that cut one kind of connection, find it)."""
    milliseconds = str(max(1, int(timeout_s * 1000)))
    return {
        "timeout": timeout_s,
        "command_timeout": timeout_s,
        "server_settings": {
            "application_name": name,
            "statement_timeout": milliseconds,
            "lock_timeout": milliseconds,
            "idle_in_transaction_session_timeout": str(max(1, int(timeout_s * 4000))),
        },
    }


async def connect_asyncpg(dsn: str, name: str, *, timeout_s: float) -> asyncpg.Connection:
    """A dedicated asyncpg connection (journal writer, claims, notifications), bounded like
    the pool's (see :func:`asyncpg_arguments`)."""
    connection: asyncpg.Connection = await asyncpg.connect(
        dsn, **asyncpg_arguments(name, timeout_s)
    )
    return connection


def autocommit(engine: AsyncEngine) -> AsyncEngine:
    """The same pool, each statement its own transaction: no BEGIN/COMMIT round trips, and no
    lock held between statements (for single-statement work such as claims and renewals)."""
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def one_statement(
    engine: AsyncEngine, autocommitting: AsyncEngine | None = None
) -> AbstractAsyncContextManager[AsyncConnection]:
    """A connection for work that is one statement on Postgres (autocommit: no BEGIN or COMMIT
    round trip) and a few in one transaction on SQLite (no data-modifying CTEs there).
    ``autocommitting``: the engine's :func:`autocommit` twin, when the caller keeps one (a
    new one per call costs a few percent of a busy server's CPU)."""
    if not is_postgres(engine):
        return engine.begin()
    return (autocommitting or autocommit(engine)).connect()


def is_postgres(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


def asyncpg_dsn(engine: AsyncEngine) -> str:
    """A DSN for asyncpg itself (dedicated connections: journal writer, notifications).

    The engine's URL says ``ssl`` (asyncpg.connect's keyword); a DSN says ``sslmode`` (libpq's
    name, the one asyncpg reads there)."""
    url = engine.url.set(drivername="postgresql")
    if "ssl" in url.query:
        query = dict(url.query)
        query["sslmode"] = query.pop("ssl")
        url = url.set(query=query)
    return url.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets stream readers proceed while a run writes; foreign keys are off by default.
    # The busy timeout comes first: setting the journal mode takes a lock, and a connection
    # opened while another writes would otherwise fail at once ("database is locked").
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # A config option is interpolated: a percent-encoded character (in a password) is "%%".
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
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


# SQLSTATE classes and codes worth trying again: connection exceptions, the server shutting
# down or starting, resources, serialization failures and deadlocks, a statement cancelled by a
# timeout, a lock not available in time.
_TRANSIENT_SQLSTATE_CLASSES = ("08", "53", "57P", "40")
_TRANSIENT_SQLSTATES = frozenset({"57014", "55P03"})


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` says the database could not be reached or answer in time, rather than
    that it refused the statement: the same statement may succeed if sent again."""
    if isinstance(exc, OSError | TimeoutError | asyncpg.InterfaceError | DatabaseUnavailable):
        return True
    sqlstate = getattr(exc, "sqlstate", None) or getattr(
        getattr(exc, "orig", None), "sqlstate", None
    )
    if isinstance(sqlstate, str):
        return sqlstate in _TRANSIENT_SQLSTATES or sqlstate.startswith(_TRANSIENT_SQLSTATE_CLASSES)
    cause = getattr(exc, "orig", None) or exc.__cause__
    if cause is not None and cause is not exc:
        return is_transient(cause)
    # SQLite: another writer holds the database (busy_timeout ran out).
    return "database is locked" in str(exc)
