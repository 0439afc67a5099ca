"""Retention: the bulk of finished runs' history (events, checkpoints, node outputs) goes after
a while; the execution row, its outputs or error and its node statuses stay.

Each call purges one batch in the caller's transaction, so a sweep never holds many locks for
long. Rows another sweeper holds are skipped (Postgres), so two replicas never do the same work.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.status import TERMINAL_EXECUTION_STATUSES
from app.store.tables import checkpoints, events, executions, node_runs

SWEEP_LOCK = 7_140_001  # advisory lock key (arbitrary, Oxify's): one retention sweeper at a time


async def purge_finished(conn: AsyncConnection, *, before: datetime, limit: int) -> int:
    """Purge up to ``limit`` runs that finished before ``before``; returns how many."""
    query = (
        select(executions.c.id)
        .where(
            executions.c.finished_at < before,
            executions.c.purged_at.is_(None),
            executions.c.status.in_([s.value for s in TERMINAL_EXECUTION_STATUSES]),
        )
        .order_by(executions.c.finished_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list((await conn.execute(query)).scalars())
    if not ids:
        return 0
    await conn.execute(delete(events).where(events.c.execution_id.in_(ids)))
    await conn.execute(delete(checkpoints).where(checkpoints.c.execution_id.in_(ids)))
    await conn.execute(
        update(node_runs).where(node_runs.c.execution_id.in_(ids)).values(output=None)
    )
    await conn.execute(
        update(executions).where(executions.c.id.in_(ids)).values(purged_at=datetime.now(UTC))
    )
    return len(ids)


async def try_sweep_lock(conn: AsyncConnection) -> bool:
    """Take the sweep's advisory lock for this transaction (Postgres); always True on SQLite,
    where one process is the only sweeper."""
    if conn.dialect.name != "postgresql":
        return True
    result = await conn.execute(select(func.pg_try_advisory_xact_lock(SWEEP_LOCK)))
    return bool(result.scalar_one())
