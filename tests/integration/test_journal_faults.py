"""The journal's writer when its connection to Postgres drops or hangs (through a proxy that
cuts or half-opens it): writes and appends go through on a new connection, or end in a clear
``DatabaseUnavailable`` within their bounds, never in a hang or a driver error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain.events import Event, EventType
from app.domain.status import ExecutionStatus, Move
from app.errors import DatabaseUnavailable
from app.store.db import create_engine
from app.store.journal import SqlJournal
from tests.e2e.pgproxy import PgProxy, proxied
from tests.integration.rows import add, add_workflows, status_of

TIMEOUT_S = 0.5  # seconds a writer's call may take here


@pytest.fixture
async def proxy(fresh_pg_url: str) -> AsyncIterator[PgProxy]:
    async with proxied(fresh_pg_url) as started:
        yield started


@pytest.fixture
async def engine(proxy: PgProxy, fresh_pg_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine that reaches the database through the proxy, with a stored workflow."""
    engine = create_engine(proxy.url(fresh_pg_url), timeout_s=TIMEOUT_S)
    await add_workflows(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def journal(engine: AsyncEngine) -> AsyncIterator[SqlJournal]:
    journal = SqlJournal(engine, timeout_s=TIMEOUT_S)
    try:
        yield journal
    finally:
        await journal.close()


def started(execution_id: str, seq: int) -> list[Event]:
    return [Event(execution_id, seq, EventType.NODE_PROGRESS, datetime.now(UTC))]


async def test_a_write_on_a_cut_connection_goes_through_on_a_new_one(
    proxy: PgProxy, journal: SqlJournal, engine: AsyncEngine
) -> None:
    async with engine.begin() as conn:
        run = await add(conn, status=ExecutionStatus.RUNNING)
    await journal.emit(started(run, 1))
    assert proxy.cut("oxify-journal") == 1

    await journal.emit(started(run, 2))

    assert [e.seq for e in await journal.read_events(run, 0, 10)] == [1, 2]
    assert journal.retries >= 1


async def test_a_write_on_a_half_open_connection_goes_through_on_a_new_one(
    proxy: PgProxy, journal: SqlJournal, engine: AsyncEngine
) -> None:
    async with engine.begin() as conn:
        run = await add(conn, status=ExecutionStatus.RUNNING)
    await journal.emit(started(run, 1))
    assert proxy.hang("oxify-journal") == 1

    async with asyncio.timeout(TIMEOUT_S * 10):
        await journal.emit(started(run, 2))

    assert [e.seq for e in await journal.read_events(run, 0, 10)] == [1, 2]


async def test_an_append_on_a_cut_connection_goes_through_on_a_new_one(
    proxy: PgProxy, journal: SqlJournal, engine: AsyncEngine
) -> None:
    async with engine.begin() as conn:
        run = await add(conn)
    await journal.renew("warm-up", {"none": 0}, 1.0)  # the writer's connection is open
    assert proxy.cut("oxify-journal") == 1

    event = await journal.append(run, Move.WITHDRAW, EventType.WORKFLOW_CANCELLED)

    assert event is not None and event.seq == 1
    assert await status_of(engine, run) is ExecutionStatus.CANCELLED


async def test_an_append_with_the_database_away_is_database_unavailable(
    proxy: PgProxy, journal: SqlJournal, engine: AsyncEngine
) -> None:
    async with engine.begin() as conn:
        run = await add(conn)
    proxy.down = True
    proxy.hang()

    async with asyncio.timeout(TIMEOUT_S * 20):
        with pytest.raises(DatabaseUnavailable):
            await journal.append(run, Move.WITHDRAW, EventType.WORKFLOW_CANCELLED)
