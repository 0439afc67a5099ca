"""Limits and quota counters (Core) on a connection the caller passes: the service owns the
transaction, so a quota is charged in the transaction that uses it and rolls back with it."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.gauges import ACTIVE
from app.store.tables import executions, project_limits, quota_usage, replicas, run_quotas


def _insert(conn: AsyncConnection) -> Any:
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


# -- limits -------------------------------------------------------------------------------------


async def all_project_limits(conn: AsyncConnection) -> dict[str, dict[str, Any]]:
    """Every project's limits (a deployment has tens of projects, not millions)."""
    rows = await conn.execute(select(project_limits.c.project, project_limits.c.limits))
    return {row.project: row.limits for row in rows}


async def put_project_limits(
    conn: AsyncConnection, project: str, limits: dict[str, Any], now: datetime
) -> None:
    statement = _insert(conn)(project_limits).values(project=project, limits=limits, updated_at=now)
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[project_limits.c.project],
            set_={"limits": statement.excluded.limits, "updated_at": now},
        )
    )


async def live_replicas(conn: AsyncConnection, since: datetime) -> int:
    """Replicas that beat since ``since`` and did not stop (at least this one)."""
    count = await conn.scalar(
        select(func.count()).where(
            replicas.c.stopped_at.is_(None), replicas.c.heartbeat_at >= since
        )
    )
    return max(1, int(count or 0))


# -- concurrent runs ----------------------------------------------------------------------------


async def hold(conn: AsyncConnection, execution_id: str, project: str, key_id: str | None) -> None:
    """The new run counts against its project and key."""
    await conn.execute(
        run_quotas.insert().values(
            execution_id=execution_id, project=project, key_id=key_id, active=True
        )
    )


async def reactivate(conn: AsyncConnection, execution_id: str) -> None:
    """A retried run counts again."""
    await conn.execute(
        update(run_quotas).where(run_quotas.c.execution_id == execution_id).values(active=True)
    )


async def release_finished(conn: AsyncConnection) -> int:
    """Stop holding runs that ended (or were deleted): keeps the count's index small."""
    running = select(executions.c.id).where(executions.c.status.in_(ACTIVE))
    result = await conn.execute(
        update(run_quotas)
        .where(run_quotas.c.active, run_quotas.c.execution_id.not_in(running))
        .values(active=False)
    )
    return int(result.rowcount or 0)


async def run_scopes(conn: AsyncConnection, execution_id: str) -> tuple[str, str | None] | None:
    """The project and key a run counts against (None: a run started before quotas)."""
    row = (
        await conn.execute(
            select(run_quotas.c.project, run_quotas.c.key_id).where(
                run_quotas.c.execution_id == execution_id
            )
        )
    ).first()
    return None if row is None else (row.project, row.key_id)


async def mark_paused(conn: AsyncConnection, execution_id: str, day: date) -> None:
    await conn.execute(
        update(run_quotas).where(run_quotas.c.execution_id == execution_id).values(paused_on=day)
    )


async def paused_before(conn: AsyncConnection, day: date) -> list[str]:
    """Runs tokens/day paused on a day before ``day``: their window has reset."""
    rows = await conn.execute(
        select(run_quotas.c.execution_id).where(
            run_quotas.c.paused_on.is_not(None), run_quotas.c.paused_on < day
        )
    )
    return [row.execution_id for row in rows]


async def unmark_paused(conn: AsyncConnection, execution_id: str) -> None:
    await conn.execute(
        update(run_quotas).where(run_quotas.c.execution_id == execution_id).values(paused_on=None)
    )


# -- daily counters -----------------------------------------------------------------------------


async def charge(
    conn: AsyncConnection, scope: str, quota: str, day: date, amount: int, limit: int | None
) -> int | None:
    """Add ``amount`` to the day's counter and return the new total; with a ``limit``, only if
    the total stays within it (else None and nothing changes). One atomic statement: two
    transactions cannot both take the last unit."""
    if limit is not None and amount > limit:
        return None
    statement = _insert(conn)(quota_usage).values(scope=scope, quota=quota, day=day, used=amount)
    total = quota_usage.c.used + statement.excluded.used
    where: ColumnElement[bool] | None = None if limit is None else total <= limit
    statement = statement.on_conflict_do_update(
        index_elements=[quota_usage.c.scope, quota_usage.c.quota, quota_usage.c.day],
        set_={"used": total},
        where=where,
    ).returning(quota_usage.c.used)
    used = (await conn.execute(statement)).scalar_one_or_none()
    return None if used is None else int(used)


async def used(conn: AsyncConnection, scope: str, quota: str, day: date) -> int:
    found = await conn.scalar(
        select(quota_usage.c.used).where(
            quota_usage.c.scope == scope, quota_usage.c.quota == quota, quota_usage.c.day == day
        )
    )
    return int(found or 0)


async def used_many(
    conn: AsyncConnection, scopes: list[str], quota: str, day: date
) -> dict[str, int]:
    """What each of ``scopes`` used of ``quota`` on ``day`` (absent: nothing)."""
    rows = await conn.execute(
        select(quota_usage.c.scope, quota_usage.c.used).where(
            quota_usage.c.scope.in_(scopes), quota_usage.c.quota == quota, quota_usage.c.day == day
        )
    )
    return {row.scope: int(row.used) for row in rows}


async def forget_before(conn: AsyncConnection, day: date) -> None:
    """Drop counters of days before ``day``."""
    await conn.execute(quota_usage.delete().where(quota_usage.c.day < day))


def _active_count(column: str, name: str) -> Any:
    return (
        select(func.count())
        .select_from(run_quotas.join(executions, executions.c.id == run_quotas.c.execution_id))
        .where(
            run_quotas.c[column] == bindparam(name),
            run_quotas.c.active,
            executions.c.status.in_(ACTIVE),
        )
        .scalar_subquery()
    )


# Built once: a submission with a concurrent-runs limit pays no statement construction.
_ACTIVE_COUNTS: dict[tuple[str, ...], Any] = {
    columns: select(*(_active_count(c, f"v{i}") for i, c in enumerate(columns)))
    for columns in (("key_id",), ("project",), ("key_id", "project"))
}


async def active_counts(conn: AsyncConnection, scopes: list[tuple[str, str]]) -> list[int]:
    """Unfinished runs of each ``(column, value)`` (``key_id`` before ``project``), in one
    statement."""
    statement = _ACTIVE_COUNTS[tuple(column for column, _ in scopes)]
    row = (await conn.execute(statement, {f"v{i}": v for i, (_, v) in enumerate(scopes)})).one()
    return [int(count) for count in row]
