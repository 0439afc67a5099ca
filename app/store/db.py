"""Database engine and migrations.

``OXIFY_DATABASE_URL`` picks the database: Postgres through asyncpg in production, SQLite through
aiosqlite as the embedded default. Migrations are alembic's, run programmatically so
``oxify serve`` can migrate before serving.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.store import codec

_PACKAGE = Path(__file__).resolve().parent.parent
# A wheel carries them inside the package; a source checkout has them at the top.
MIGRATIONS_DIR = (
    _PACKAGE / "_migrations"
    if (_PACKAGE / "_migrations").is_dir()
    else _PACKAGE.parent / "migrations"
)


DEFAULT_TIMEOUT_S = 5.0  # seconds any one database call may take (connect, statement, lock)


def create_engine(url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, **kwargs: Any) -> AsyncEngine:
    """An async engine with settings fit for each backend (one JSON encoder for all).

    On Postgres every call is bounded by ``timeout_s``: connecting, waiting for a pooled
    connection, each statement on the server (``statement_timeout``, ``lock_timeout``) and on
    the client (asyncpg's ``command_timeout``, which also ends a wait on a half-open socket).
    """
    kwargs.setdefault("json_serializer", codec.dumps)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # Enough connections for concurrent requests plus the runner: below that, overflow
    # connections are opened and closed per checkout (measured: 31 new sessions/s at 20 clients).
    kwargs.setdefault("pool_size", 30)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_timeout", timeout_s)
    kwargs.setdefault("connect_args", asyncpg_arguments("oxify", timeout_s))
    return create_async_engine(url, **kwargs)


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
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
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


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None when it was never migrated)."""

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
    if isinstance(exc, OSError | TimeoutError | asyncpg.InterfaceError):
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
