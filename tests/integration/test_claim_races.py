"""Claims and renewals racing other writers, with the race forced open (Postgres).

A trigger makes the claim stop between two rows it claims, so that a form answer commits
after the claim's statement started but before it locked the second run; a second connection
holds a run's row while its owner renews. Each test fails on code that reads a run's history
in the claim's own snapshot, or that skips locked rows when it renews.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store import claims, tables
from app.store import forms as forms_store
from app.store.journal import SqlJournal
from tests.integration.rows import T0, WORKFLOW, add

SLEEP_S = 1.0  # seconds the trigger holds the claim between its two rows


@pytest.fixture(autouse=True)
def postgres_only(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("row locks and snapshots: Postgres")


async def add_form(engine: AsyncEngine, execution_id: str, node_key: str, status: str) -> str:
    form_id = f"{node_key}-{execution_id}"
    async with engine.begin() as conn:
        await conn.execute(
            tables.forms.insert().values(
                id=form_id,
                execution_id=execution_id,
                workflow_id=WORKFLOW,
                node_key=node_key,
                kind="form",
                status=status,
                prompt="?",
                fields={"type": "object"},
                on_timeout="fail",
                answer={"values": {"from": node_key}} if status != "pending" else None,
                created_at=T0,
            )
        )
    return form_id


async def until_sleeping(engine: AsyncEngine) -> None:
    """Return once some backend of this database sits in the trigger's pg_sleep."""
    async with engine.connect() as conn:
        while True:
            sleeping = await conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' "
                    "AND datname = current_database()"
                )
            )
            await conn.rollback()
            if sleeping:
                return


async def test_an_answer_committed_while_a_claim_runs_is_delivered(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        first = await add(conn)  # claimed first: the trigger holds the claim on it
        run = await add(conn)  # waited on two forms; one answer in, so it is queued
        await conn.execute(
            update(tables.executions)
            .where(tables.executions.c.id == run)
            .values(last_seq=3, pending_answers=1)
        )
        await conn.execute(
            text(
                "CREATE FUNCTION hold_claim() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.id = '{first}' AND NEW.generation <> OLD.generation THEN "
                f"PERFORM pg_sleep({SLEEP_S}); END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
            )
        )
        await conn.execute(
            text(
                "CREATE TRIGGER hold_claim BEFORE UPDATE ON executions "
                "FOR EACH ROW EXECUTE FUNCTION hold_claim()"
            )
        )
    await add_form(engine, run, "left", "submitted")
    right = await add_form(engine, run, "right", "pending")
    claimer = claims.for_engine(engine)
    try:
        claiming = asyncio.create_task(claimer.claim("queued", "r1", 2, 30.0))
        await until_sleeping(engine)
        async with engine.begin() as conn:  # the second answer, while the claim is under way
            form = await forms_store.lock(conn, right)
            assert form is not None
            await forms_store.decide(
                conn, form, status=forms_store.SUBMITTED, answer={"values": {"n": 2}}, at=T0
            )
        taken = await claiming
    finally:
        await claimer.close()

    resumed = next(r for r in taken if r.id == run)
    assert resumed.history is not None
    assert set(resumed.history.answers) == {"left", "right"}


async def test_a_renewal_waits_for_a_locked_row_instead_of_skipping_it(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        queued = await add(conn)
    claimer = claims.for_engine(engine)
    try:
        [run] = await claimer.claim("queued", "r1", 1, 1.0)  # a lease of one second
    finally:
        await claimer.close()
    journal = SqlJournal(engine)
    try:
        async with engine.connect() as holder:
            # Another writer holds the row (a form answer, the journal of this very run).
            await holder.execute(
                select(tables.executions.c.id)
                .where(tables.executions.c.id == queued)
                .with_for_update()
            )
            renewing = asyncio.create_task(journal.renew("r1", {run.id: run.generation}, 30.0))
            await asyncio.sleep(0)
            await until_waiting(engine)
            await holder.commit()
            states = await renewing
    finally:
        await journal.close()

    assert states[run.id].renewed
    async with engine.connect() as conn:
        expires = await conn.scalar(
            select(tables.executions.c.lease_expires_at).where(tables.executions.c.id == run.id)
        )
    assert expires is not None and expires > datetime.now(UTC) + timedelta(seconds=20)


async def until_waiting(engine: AsyncEngine) -> None:
    """Return once some backend of this database waits for a row lock."""
    async with engine.connect() as conn:
        while True:
            waiting: Any = await conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
            )
            await conn.rollback()
            if waiting:
                return
