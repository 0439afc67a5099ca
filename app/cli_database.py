"""Reaching the database from ``oxify serve`` and ``oxify migrate``, and saying in two lines what
went wrong when that fails: which database, what its server answered, and what to do about it.

Only failures to reach the database are translated (a missing database, a refused or unknown
host, refused credentials, an SQLite file that cannot be opened); anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import ValidationError
from sqlalchemy.engine import URL, make_url

from app.cli_errors import CliError
from app.settings import Settings, get_settings
from app.store import db

INVALID_CATALOG_NAME = "3D000"  # Postgres SQLSTATE: the database does not exist
AUTHORIZATION_FAILED = {"28000", "28P01"}  # no such role; wrong password
POSTGRES_PORT = 5432
SET_POSTGRES_URL = "OXIFY_DATABASE_URL=postgresql://user:password@host:5432/database"


def load_settings() -> Settings:
    """The settings, or one line per bad ``OXIFY_*`` variable."""
    try:
        return get_settings()
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = "OXIFY_" + "_".join(str(part) for part in error["loc"]).upper()
            cause = (error.get("ctx") or {}).get("error")
            why = str(cause) if isinstance(cause, ValueError) else error["msg"]
            lines.append(f"error: {name}: {why}")
        raise CliError(lines) from None


def prepare(url: str, *, migrate: bool) -> None:
    """Check that the database at ``url`` answers, then migrate it (if asked); a failure to
    reach it is a :class:`CliError`."""
    with reaching(url):
        asyncio.run(_prepare(url, migrate))


async def _prepare(url: str, migrate: bool) -> None:
    # Connecting first, on this loop, fails cleanly; alembic's own loop (in a worker thread)
    # would leave aiosqlite's thread posting to it after it closed (a second traceback). An
    # SQLite file is opened without aiosqlite first: its worker thread can outlive a failed
    # connect and post to a loop that is closed by then.
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        sqlite3.connect(parsed.database).close()
    engine = db.create_engine(url)
    try:
        async with engine.connect():
            pass
    finally:
        await engine.dispose()
    if migrate:
        await db.migrate(url)


@contextmanager
def reaching(url: str) -> Iterator[None]:
    """Turn a failure to reach the database at ``url`` into a :class:`CliError`."""
    try:
        yield
    except Exception as exc:
        lines = explain(exc, make_url(url))
        if lines is None:
            raise
        raise CliError(lines) from None


def explain(exc: BaseException, url: URL) -> list[str] | None:
    """What went wrong and what to do, or None when ``exc`` is not about reaching ``url``."""
    if url.get_backend_name() == "sqlite":
        for cause in _causes(exc):
            if isinstance(cause, sqlite3.OperationalError):
                return [
                    f"error: cannot open the SQLite database {url.database}: {cause}",
                    "does its directory exist, and may this user write there? "
                    "(OXIFY_DATABASE_URL=sqlite:///path/to/oxify.db)",
                ]
        return None
    where = f"{url.host or url.query.get('host') or 'localhost'}:{url.port or POSTGRES_PORT}"
    for cause in _causes(exc):
        sqlstate = getattr(cause, "sqlstate", None)
        if sqlstate == INVALID_CATALOG_NAME:
            return [
                f'error: the database "{url.database}" does not exist on the Postgres server '
                f"at {where}",
                f"create it ({_createdb(url)}), or set {SET_POSTGRES_URL}",
            ]
        if sqlstate in AUTHORIZATION_FAILED:
            return [
                f"error: the Postgres server at {where} refused the credentials: {cause}",
                f"set {SET_POSTGRES_URL} with a user (and password) it knows",
            ]
        if isinstance(cause, OSError):
            reason = "unknown host" if isinstance(cause, socket.gaierror) else _os_reason(cause)
            return [
                f"error: cannot reach the Postgres server at {where}: {reason}",
                f"is it running, there? {SET_POSTGRES_URL} says where it is",
            ]
    return None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps (SQLAlchemy wraps the driver's error, which wraps asyncpg's)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _os_reason(error: OSError) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, TimeoutError):
        return "no answer (timed out)"
    return error.strerror or str(error)


def _createdb(url: URL) -> str:
    """The ``createdb`` command that creates the database ``url`` names."""
    words = ["createdb"]
    if url.host:
        words += ["-h", url.host]
    if url.port:
        words += ["-p", str(url.port)]
    if url.username:
        words += ["-U", url.username]
    return " ".join([*words, url.database or "oxify"])
