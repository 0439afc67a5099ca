"""Database engine and migrations.

``OXIFY_DATABASE_URL`` picks the database: Postgres through asyncpg in production, SQLite through
aiosqlite as the embedded default. Migrations are alembic's, run programmatically so
``oxify serve`` can migrate before serving.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.store import codec

_PACKAGE = Path(__file__).resolve().parent.parent
# A wheel carries them inside the package; a source checkout has them at the top.
MIGRATIONS_DIR = (
    _PACKAGE / "_migrations"
    if (_PACKAGE / "_migrations").is_dir()
    else _PACKAGE.parent / "migrations"
)
_VERSION = text("SELECT version_num FROM alembic_version")  # alembic's default version table


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine with settings fit for each backend (one JSON encoder for all)."""
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
    return create_async_engine(url, **kwargs)


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
