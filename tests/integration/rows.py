"""Rows for store tests: executions of two stored workflows, in any status."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.domain.status import ExecutionStatus
from app.store import executions as store
from app.store import workflows

S = ExecutionStatus
T0 = datetime(2020, 6, 1, 8, 0, 0, 500000, tzinfo=UTC)
WORKFLOW = "wf-1"
OTHER = "wf-2"


async def add(
    conn: AsyncConnection,
    *,
    workflow_id: str = WORKFLOW,
    status: ExecutionStatus = S.QUEUED,
    execution_id: str | None = None,
    **extra: Any,
) -> str:
    execution_id = execution_id or str(uuid.uuid4())
    await store.insert_execution(
        conn,
        execution_id=execution_id,
        workflow_id=workflow_id,
        workflow_version=1,
        inputs=extra.pop("inputs", {"n": 1}),
        config=extra.pop("config", {"max_concurrency": 4}),
        status=status,
        now=T0,
        **extra,
    )
    return execution_id


async def add_workflows(engine: AsyncEngine) -> None:
    """The two stored workflows the rows of these tests belong to."""
    async with engine.begin() as conn:
        for workflow_id in (WORKFLOW, OTHER):
            await workflows.insert_workflow(
                conn,
                workflow_id=workflow_id,
                name=workflow_id,
                document={"name": workflow_id, "nodes": [], "edges": []},
                content_hash="0" * 64,
                now=T0,
                project="default",
            )


async def status_of(engine: AsyncEngine, execution_id: str) -> ExecutionStatus:
    async with engine.connect() as conn:
        row = await store.get_execution(conn, execution_id, with_nodes=False)
    assert row is not None
    return row.status
