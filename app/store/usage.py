"""What past runs of a workflow version spent, node by node (for cost estimates)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.status import ExecutionStatus
from app.store.tables import executions, node_runs


async def node_usage(
    conn: AsyncConnection, workflow_id: str, version: int, *, runs: int
) -> list[tuple[str, str, dict[str, Any]]]:
    """``(execution_id, node_key, usage)`` of every node row with a usage, over the version's
    last ``runs`` completed runs (the newest first by submission order)."""
    recent = (
        select(executions.c.id)
        .where(
            executions.c.workflow_id == workflow_id,
            executions.c.workflow_version == version,
            executions.c.status == ExecutionStatus.COMPLETED.value,
        )
        .order_by(executions.c.queue_seq.desc())
        .limit(runs)
        .subquery()
    )
    query = select(node_runs.c.execution_id, node_runs.c.node_key, node_runs.c.usage).where(
        node_runs.c.execution_id.in_(select(recent.c.id)), node_runs.c.usage.is_not(None)
    )
    rows = (await conn.execute(query)).all()
    return [(row.execution_id, row.node_key, row.usage) for row in rows if row.usage]
