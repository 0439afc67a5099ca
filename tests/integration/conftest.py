"""Store tests run on real databases: a fresh Postgres clone and a fresh SQLite file per test;
the retrieval tests on a PostgreSQL with pgvector."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.db import create_engine, migrate
from tests.integration.rows import add_workflows
from tests.pgvector_server import pgvector_server


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    asyncio.run(migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(params=["postgres", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("fresh_pg_url")
        return url
    shutil.copyfile(sqlite_template, tmp_path / "oxify.db")
    return f"sqlite+aiosqlite:///{tmp_path / 'oxify.db'}"


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await add_workflows(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def pgvector_url() -> Iterator[str]:
    """A PostgreSQL with pgvector for the retrieval tests (started once per session)."""
    try:
        with pgvector_server() as url:
            yield url
    except (ImportError, OSError, RuntimeError) as exc:
        message = f"no PostgreSQL with pgvector could be started: {exc}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
