"""What a run profile reads (Core, on the caller's connection): the run's node events, and
its node rows for a run whose events retention deleted."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.events import Event
from app.store import codec
from app.store.tables import events, node_runs


async def node_events(
    conn: AsyncConnection, execution_id: str, types: Collection[str]
) -> list[Event]:
    """The run's events of ``types``, in ``seq`` order (tokens, steps and the like stay out)."""
    query = (
        select(events)
        .where(events.c.execution_id == execution_id, events.c.type.in_(sorted(types)))
        .order_by(events.c.seq)
    )
    return [codec.event_from_row(row) for row in await conn.execute(query)]


async def node_times(conn: AsyncConnection, execution_id: str) -> list[Row[Any]]:
    """Each node key's status, attempt and times, without its output."""
    query = select(
        node_runs.c.node_key,
        node_runs.c.node_id,
        node_runs.c.status,
        node_runs.c.attempt,
        node_runs.c.started_at,
        node_runs.c.finished_at,
    ).where(node_runs.c.execution_id == execution_id)
    return list(await conn.execute(query))
