"""Ownership of runs by lease (Core, both backends): renewal, recovery at start-up, replicas.

A run in ``running`` or ``pausing`` is driven by the replica in ``owner`` until
``lease_expires_at``; every claim (:mod:`app.store.claims`) increments ``generation``, and the
journal refuses writes that carry an older generation, so a replica that comes back after losing
its lease cannot touch the run again (fencing). Renewals go through the journal's writer
(:meth:`app.store.journal.SqlJournal.renew`), so they stop when its connection does. Lease
times come from the database clock on Postgres (replicas' clocks may drift); SQLite has one
process, whose clock is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, func, literal, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.status import DRIVEN as DRIVEN_STATUSES
from app.domain.status import ExecutionStatus
from app.store.tables import Timestamp, executions, replicas

_E = ExecutionStatus
DRIVEN = tuple(sorted(status.value for status in DRIVEN_STATUSES))  # driven under a lease


@dataclass(frozen=True, slots=True)
class LeaseState:
    """What the database says of a run a replica believes it drives."""

    id: str
    generation: int
    status: ExecutionStatus
    cancel_requested: bool
    renewed: bool = False  # a renewal extended its lease just now


def db_now(dialect: str) -> ColumnElement[datetime]:
    """The current time as the database sees it (Postgres), or this process's (SQLite)."""
    if dialect == "postgresql":
        return func.now()
    return literal(datetime.now(UTC), Timestamp())


async def lease_states(conn: AsyncConnection, ids: list[str]) -> dict[str, LeaseState]:
    """The ownership columns of ``ids`` (for a control notification)."""
    query = select(*_STATE_COLUMNS).where(executions.c.id.in_(ids))
    return {row.id: _state(row) for row in await conn.execute(query)}


_STATE_COLUMNS = (
    executions.c.id,
    executions.c.generation,
    executions.c.status,
    executions.c.cancel_requested,
)


def _state(row: Any) -> LeaseState:
    return LeaseState(row.id, row.generation, _E(row.status), bool(row.cancel_requested))


async def expire(conn: AsyncConnection, *, owner: str | None) -> int:
    """End the leases of runs driven by ``owner`` (every driven run when None) at once, so the
    next claim recovers them. For start-up: a replica that restarted under the same id, or the
    single process of an SQLite deployment, knows no one drives them any more."""
    query = update(executions).where(executions.c.status.in_(DRIVEN))
    if owner is not None:
        query = query.where(executions.c.owner == owner)
    result = await conn.execute(query.values(lease_expires_at=None))
    return int(result.rowcount)


async def release(conn: AsyncConnection, owner: str, held: Mapping[str, int]) -> None:
    """Give up the leases of ``held`` runs now (shutdown): another replica may take them at once."""
    if not held:
        return
    mine = tuple_(executions.c.id, executions.c.generation).in_(list(held.items()))
    await conn.execute(
        update(executions)
        .where(mine, executions.c.owner == owner, executions.c.status.in_(DRIVEN))
        .values(lease_expires_at=None)
    )


async def beat(conn: AsyncConnection, replica_id: str, host: str, pid: int) -> None:
    """Record that replica ``replica_id`` is alive (inserted on its first beat)."""
    now = db_now(conn.dialect.name)
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = insert(replicas).values(
        id=replica_id, host=host, pid=pid, started_at=now, heartbeat_at=now
    )
    statement = statement.on_conflict_do_update(
        index_elements=[replicas.c.id],
        set_={"heartbeat_at": statement.excluded.heartbeat_at, "stopped_at": None},
    )
    await conn.execute(statement)


async def stopped(conn: AsyncConnection, replica_id: str) -> None:
    await conn.execute(
        update(replicas)
        .where(replicas.c.id == replica_id)
        .values(stopped_at=db_now(conn.dialect.name))
    )
