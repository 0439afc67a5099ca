"""Migrations: down and up again on both backends, and no drift between them and ``tables.py``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Connection

from app.store import tables
from app.store.db import create_engine, current_revision, downgrade, head_revision, migrate


@pytest.fixture(params=["postgres", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database at head of its own: a fresh Postgres clone, or a new SQLite file."""
    if request.param == "postgres":
        # Resolved here (a sync fixture, outside the event loop) so SQLite runs need no Postgres.
        url: str = request.getfixturevalue("fresh_pg_url")
        return url
    url = f"sqlite+aiosqlite:///{tmp_path / 'oxify.db'}"
    asyncio.run(migrate(url))
    return url


async def table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            names: list[str] = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
            return set(names)
    finally:
        await engine.dispose()


async def schema_diff(url: str) -> list[Any]:
    def compare(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, tables.metadata))

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(compare)
    finally:
        await engine.dispose()


async def revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        return await current_revision(engine)
    finally:
        await engine.dispose()


async def test_downgrade_and_upgrade_twice(database_url: str) -> None:
    ours = set(tables.metadata.tables)
    assert await revision(database_url) == head_revision()
    assert ours <= await table_names(database_url)

    for _ in range(2):
        await downgrade(database_url, "base")
        assert await revision(database_url) is None
        assert not ours & await table_names(database_url)

        await migrate(database_url)
        assert await revision(database_url) == head_revision()
        assert ours <= await table_names(database_url)


async def test_autogenerate_finds_no_difference_from_tables(database_url: str) -> None:
    assert await schema_diff(database_url) == []


async def test_autogenerate_notices_a_difference(database_url: str) -> None:
    # The comparison above is only worth something if it can fail.
    await downgrade(database_url, "base")
    diff = await schema_diff(database_url)
    added = {d[1].name for d in diff if d[0] == "add_table"}
    assert added == set(tables.metadata.tables)


@pytest.mark.parametrize(
    ("before", "column"),
    [("0004", "steps"), ("0005", "usage")],
)
async def test_a_node_runs_column_comes_and_goes_keeping_the_rows(
    database_url: str, before: str, column: str
) -> None:
    row = {"execution_id": "x-1", "node_key": "a", "node_id": "a", "status": "completed"}
    await downgrade(database_url, before)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO node_runs (execution_id, node_key, node_id, status, attempt) "
                    "VALUES (:execution_id, :node_key, :node_id, :status, 1)"
                ),
                row,
            )
        await migrate(database_url)
        async with engine.connect() as conn:
            stored = (await conn.execute(select(tables.node_runs))).one()
        assert (stored.node_key, getattr(stored, column)) == ("a", None)  # read as none

        await downgrade(database_url, before)
        async with engine.connect() as conn:
            columns = await conn.run_sync(lambda sync: inspect(sync).get_columns("node_runs"))
            kept = (await conn.execute(text("SELECT node_key FROM node_runs"))).scalars().all()
        assert column not in {c["name"] for c in columns}
        assert kept == ["a"]
    finally:
        await engine.dispose()
