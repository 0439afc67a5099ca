"""The numbers the metrics read from the database: cluster-wide, runs by non-terminal status,
forms pending by kind and the oldest one's creation time (Core; each an aggregate over an indexed
column, so the answer costs the same however many finished runs the tables hold); and the
workflow name and creation time of runs that just finished (by primary key)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.status import TERMINAL_EXECUTION_STATUSES, ExecutionStatus
from app.store.tables import executions, forms, workflows

ACTIVE = [s.value for s in ExecutionStatus if s not in TERMINAL_EXECUTION_STATUSES]


@dataclass(frozen=True, slots=True)
class ClusterCounts:
    runs: dict[str, int] = field(default_factory=dict)  # non-terminal status -> runs
    forms_pending: dict[str, int] = field(default_factory=dict)  # kind -> pending forms
    oldest_pending_form: datetime | None = None


async def read(conn: AsyncConnection) -> ClusterCounts:
    runs = await conn.execute(
        select(executions.c.status, func.count())
        .where(executions.c.status.in_(ACTIVE))
        .group_by(executions.c.status)
    )
    pending = await conn.execute(
        select(forms.c.kind, func.count(), func.min(forms.c.created_at))
        .where(forms.c.status == "pending")
        .group_by(forms.c.kind)
    )
    by_kind = pending.all()
    oldest = min((row[2] for row in by_kind if row[2] is not None), default=None)
    return ClusterCounts(
        runs={status: 0 for status in ACTIVE} | {row[0]: row[1] for row in runs},
        forms_pending={"approval": 0, "form": 0} | {row[0]: row[1] for row in by_kind},
        oldest_pending_form=oldest,
    )


async def finished_runs(conn: AsyncConnection, ids: list[str]) -> dict[str, tuple[str, datetime]]:
    """The workflow name and creation time of the runs ``ids`` (those that still exist)."""
    rows = await conn.execute(
        select(executions.c.id, workflows.c.name, executions.c.created_at)
        .join(workflows, workflows.c.id == executions.c.workflow_id)
        .where(executions.c.id.in_(ids))
    )
    return {row.id: (row.name, row.created_at) for row in rows}
