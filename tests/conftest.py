"""Real Postgres for store, API and end-to-end tests.

The schema is built once per test session with ``alembic upgrade head`` into a template database;
each test module gets its own database cloned from it (``CREATE DATABASE … TEMPLATE``), so
modules are isolated and run in any order. Without a reachable Postgres these tests skip — except
under CI=true, where that is a failure. And ``traced``: a trace of a test's own, its spans kept in
memory.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from app.store.db import migrate
from tests import spans
from tests.spans import SpanTrace

DEFAULT_TEST_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def _admin_dsn(url: str) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return os.environ.get("OXIFY_TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)


@pytest.fixture(scope="session")
def postgres_template(postgres_url: str) -> Iterator[str]:
    """The name of a migrated template database (dropped at the end of the session)."""

    async def create() -> str:
        try:
            admin = await asyncpg.connect(_admin_dsn(postgres_url), timeout=5)
        except (OSError, asyncpg.PostgresError) as exc:
            message = f"Postgres is not reachable at {postgres_url}: {exc}"
            if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
                pytest.fail(message)
            pytest.skip(message)
        name = f"oxify_tpl_{uuid.uuid4().hex[:10]}"
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        await migrate(_with_database(postgres_url, name))
        return name

    name = asyncio.run(create())
    yield name
    asyncio.run(_drop(postgres_url, name))


async def _drop(postgres_url: str, name: str) -> None:
    admin = await asyncpg.connect(_admin_dsn(postgres_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="module")
def pg_database_url(postgres_url: str, postgres_template: str) -> Iterator[str]:
    """A fresh migrated database for one test module; its SQLAlchemy URL."""
    name = f"oxify_t_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        admin = await asyncpg.connect(_admin_dsn(postgres_url))
        try:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"')
        finally:
            await admin.close()

    asyncio.run(create())
    yield _with_database(postgres_url, name)
    asyncio.run(_drop(postgres_url, name))


@pytest.fixture
async def fresh_pg_url(postgres_url: str, postgres_template: str) -> AsyncIterator[str]:
    """A fresh migrated database for one test (when a module needs several)."""
    name = f"oxify_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_admin_dsn(postgres_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"')
    finally:
        await admin.close()
    yield _with_database(postgres_url, name)
    await _drop(postgres_url, name)


@pytest.fixture
def traced() -> Iterator[SpanTrace]:
    """A trace of the test's own, its spans kept in memory (see tests/spans.py: the process's
    global tracer provider is an SDK one from the first test that asks). The memory is emptied
    before and after: spans of other tests do not pile up."""
    memory = spans.exporter()
    memory.clear()
    yield SpanTrace(memory)
    memory.clear()


@pytest.fixture(autouse=True)
def _signal_handlers_restored() -> Iterator[None]:
    """Each test leaves SIGTERM and SIGINT as it found them. A uvicorn server installs its own
    handlers and puts back what it found when it stops: servers stopped out of order leave a
    stopped server's handler behind, and sse-starlette (which looks for the running server
    through that handler) then ends every later event stream of the process at once."""
    kept = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    yield
    for number, handler in kept.items():
        signal.signal(number, handler)
