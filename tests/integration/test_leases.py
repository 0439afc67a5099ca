"""Leases on real databases: claims in order, skip-locked claimers, lapsed leases, renewal,
fencing of the journal, and the claim query's use of an index."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain.events import Event, EventType
from app.domain.status import Move
from app.errors import LeaseLost
from app.store import claims, leases, tables
from app.store import executions as store
from app.store.db import asyncpg_dsn, is_postgres
from app.store.journal import SqlJournal
from tests.integration.rows import OTHER, S, add, status_of

LEASE_S = 30.0
LAPSED = datetime(2000, 1, 1, tzinfo=UTC)  # a lease that ran out long ago


async def claim(
    engine: AsyncEngine, owner: str, limit: int = 10, kind: claims.Kind = "queued"
) -> list[claims.ClaimedRun]:
    """Claim through what the runner uses on this backend (asyncpg on Postgres)."""
    claimer = claims.for_engine(engine)
    try:
        return await claimer.claim(kind, owner, limit, LEASE_S)
    finally:
        await claimer.close()


async def recover(engine: AsyncEngine, owner: str) -> list[claims.ClaimedRun]:
    return await claim(engine, owner, 10, "expired")


async def lapse(engine: AsyncEngine, *ids: str) -> None:
    """Make the leases of ``ids`` run out (as if their owner stopped renewing)."""
    async with engine.begin() as conn:
        await conn.execute(
            update(tables.executions)
            .where(tables.executions.c.id.in_(ids))
            .values(lease_expires_at=LAPSED)
        )


async def test_claims_follow_submission_order_and_start_the_runs(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        first = await add(conn)
        await add(conn, status=S.RUNNING)
        second = await add(conn, workflow_id=OTHER)
        third = await add(conn)

    taken = await claim(engine, "a", 2)
    assert [run.id for run in taken] == [first, second]
    assert all(run.status is S.RUNNING and run.generation == 1 for run in taken)
    assert [run.id for run in await claim(engine, "b")] == [third]
    assert await claim(engine, "b") == []
    async with engine.connect() as conn:
        owner = await conn.execute(
            select(tables.executions.c.owner).where(tables.executions.c.id == first)
        )
        assert owner.scalar_one() == "a"


async def test_concurrent_claimers_never_take_the_same_run(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        ids = {await add(conn) for _ in range(30)}

    batches = await asyncio.gather(*(claim(engine, f"r{i}", 4) for i in range(10)))

    taken = [run.id for batch in batches for run in batch]
    assert len(taken) == len(set(taken)) == 30
    assert set(taken) == ids


async def test_a_row_another_claimer_holds_is_skipped(engine: AsyncEngine) -> None:
    if not is_postgres(engine):
        pytest.skip("SKIP LOCKED: Postgres")
    async with engine.begin() as conn:
        first, second = await add(conn), await add(conn)

    async with engine.connect() as one:
        await one.execute(
            select(tables.executions.c.id).where(tables.executions.c.id == first).with_for_update()
        )
        # `one` holds the first row: the claimer takes the next one instead of waiting.
        assert [r.id for r in await claim(engine, "b")] == [second]
        await one.rollback()
    assert [r.id for r in await claim(engine, "b")] == [first]


async def test_lapsed_leases_are_recovered_with_a_new_generation(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        run = await add(conn)
        pausing = await add(conn)
    await claim(engine, "a")
    async with engine.begin() as conn:
        await store.move(conn, pausing, Move.REQUEST_PAUSE)
    assert await recover(engine, "b") == []  # still held

    await lapse(engine, run, pausing)
    recovered = await recover(engine, "b")

    assert {(r.id, r.status, r.generation) for r in recovered} == {
        (run, S.RUNNING, 2),
        (pausing, S.PAUSING, 2),
    }
    assert {r.resume_reason for r in recovered} == {"recovered"}
    # For the takeover metrics: whose lease it was, when it lapsed, when it was taken.
    assert {r.previous_owner for r in recovered} == {"a"}
    assert {r.lease_expired_at for r in recovered} == {LAPSED}
    assert all(r.claimed_at is not None and r.claimed_at > LAPSED for r in recovered)


async def test_a_claim_reports_when_each_run_was_queued(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        first, second = await add(conn), await add(conn)
        queued = await conn.execute(
            select(tables.executions.c.id, tables.executions.c.updated_at).where(
                tables.executions.c.id.in_([first, second])
            )
        )
        queued_at = {row.id: row.updated_at for row in queued}

    taken = await claim(engine, "a")

    assert {run.id: run.queued_at for run in taken} == queued_at
    assert all(run.claimed_at is not None for run in taken)
    assert {run.previous_owner for run in taken} == {None}
    assert {run.lease_expired_at for run in taken} == {None}
    async with engine.connect() as conn:
        updated = await conn.execute(
            select(tables.executions.c.id, tables.executions.c.updated_at).where(
                tables.executions.c.id.in_([first, second])
            )
        )
        assert {run.id: run.claimed_at for run in taken} == {r.id: r.updated_at for r in updated}


async def test_renewal_keeps_what_the_owner_holds_and_reports_the_rest(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        kept, lost, cancelled, gone = [await add(conn) for _ in range(4)]
    held = {run.id: run.generation for run in await claim(engine, "a")}
    await lapse(engine, lost)
    await recover(engine, "b")  # takes `lost` over
    async with engine.begin() as conn:
        assert await store.request_cancel(conn, cancelled)
        await conn.execute(tables.executions.delete().where(tables.executions.c.id == gone))

    journal = SqlJournal(engine)
    try:
        states = await journal.renew("a", held, LEASE_S)
    finally:
        await journal.close()

    assert states[kept].generation == held[kept] and not states[kept].cancel_requested
    assert states[kept].renewed
    assert states[lost].generation == held[lost] + 1  # fenced: stop driving it
    assert not states[lost].renewed
    assert states[cancelled].cancel_requested and states[cancelled].renewed
    assert gone not in states


async def test_expire_ends_the_leases_of_one_owner_or_all(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        mine, theirs = await add(conn), await add(conn)
    await claim(engine, "a", 1)
    await claim(engine, "b", 1)
    async with engine.begin() as conn:
        assert await leases.expire(conn, owner="a") == 1
    assert [r.id for r in await recover(engine, "c")] == [mine]
    async with engine.begin() as conn:
        assert await leases.expire(conn, owner=None) == 2
    assert {r.id for r in await recover(engine, "c")} == {mine, theirs}


async def test_the_journal_refuses_writes_of_a_fenced_owner(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        run_id = await add(conn)
    [run] = await claim(engine, "a")
    journal = SqlJournal(engine)
    now = datetime.now(UTC)
    await journal.emit([Event(run.id, 1, EventType.WORKFLOW_STARTED, now)], fence=run.generation)

    await lapse(engine, run_id)
    [taken] = await recover(engine, "b")
    assert taken.last_seq == 1
    with pytest.raises(LeaseLost):
        await journal.emit(
            [Event(run.id, 2, EventType.NODE_STARTED, now, node_id="x")], fence=run.generation
        )
    assert journal.fenced == 1  # what oxify_fenced_writes_total shows

    successor = SqlJournal(engine)
    await successor.emit(
        [Event(run.id, 2, EventType.WORKFLOW_RESUMED, now)], fence=taken.generation
    )
    async with engine.connect() as conn:
        logged = await conn.execute(
            select(tables.events.c.seq, tables.events.c.type)
            .where(tables.events.c.execution_id == run_id)
            .order_by(tables.events.c.seq)
        )
        assert logged.all() == [(1, "workflow.started"), (2, "workflow.resumed")]
    assert await status_of(engine, run_id) is S.RUNNING
    await journal.close()
    await successor.close()


async def test_deleting_refuses_a_driven_run_and_removes_everything_else(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        driven, done = await add(conn, status=S.RUNNING), await add(conn, status=S.RUNNING)
    journal = SqlJournal(engine)
    now = datetime.now(UTC)
    await journal.emit([Event(done, 1, EventType.WORKFLOW_COMPLETED, now)])
    await journal.close()

    async with engine.begin() as conn:
        assert await store.delete_execution(conn, driven) is False
        assert await store.delete_execution(conn, done) is True
        left = await conn.execute(
            select(tables.events.c.seq).where(tables.events.c.execution_id == done)
        )
        assert left.all() == []
        assert await store.get_execution(conn, done) is None


async def test_the_claim_uses_an_index_not_a_table_scan(engine: AsyncEngine) -> None:
    if not is_postgres(engine):
        pytest.skip("EXPLAIN of the Postgres plan")
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO executions (id, workflow_id, workflow_version, status, inputs, "
                "config, created_at, updated_at) SELECT gen_random_uuid()::text, 'wf-1', 1, "
                "CASE WHEN i <= 30000 THEN 'completed' ELSE 'queued' END, '{}', '{}', now(), "
                "now() FROM generate_series(1, 40000) AS i"
            )
        )
        await conn.execute(text("ANALYZE executions"))
    claimer = claims.PgClaims(engine)
    dsn = asyncpg_dsn(engine)
    connection = await asyncpg.connect(dsn)
    try:
        # The finished runs come first in queue order: walking that order to find queued ones
        # would read all of them, so the queued claim must use the index of queued rows only.
        for kind, index in (
            ("queued", "ix_executions_queued"),
            ("expired", "ix_executions_status"),
        ):
            sql, arguments = claimer.sql(kind, "replica-x", 10, LEASE_S)
            plan = "\n".join(row[0] for row in await connection.fetch("EXPLAIN " + sql, *arguments))
            assert "Seq Scan on executions" not in plan, plan
            assert f"Index Scan using {index} on executions" in plan, plan
    finally:
        await connection.close()
