"""The run-profile use case: load the run, the plan of the version it ran and its node events,
and profile them off the event loop (a 10,000-node run takes tens of milliseconds)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth import context
from app.domain import views as models
from app.engine.analysis import profile
from app.errors import ExecutionNotFound
from app.services.workflows import WorkflowService
from app.store import executions as store
from app.store import profiles as profile_store


async def run_profile(
    read: AsyncEngine, workflows: WorkflowService, execution_id: str
) -> models.RunProfile:
    """Where the run's time went so far (``partial`` while it has not finished)."""
    now = datetime.now(UTC).timestamp()
    async with read.connect() as conn:
        execution = await store.get_execution(
            conn, execution_id, with_nodes=False, project=context.project()
        )
        if execution is None:
            raise ExecutionNotFound(f"no execution {execution_id!r}")
        found = await profile_store.node_events(conn, execution_id, profile.NODE_EVENT_TYPES)
        rows = [] if found else await profile_store.node_times(conn, execution_id)
    plan = await workflows.plan_of_version(execution.workflow_id, execution.workflow_version)
    run = profile.RunTimes(
        execution_id=execution.id,
        status=execution.status,
        started_at=_seconds(execution.started_at),
        finished_at=_seconds(execution.finished_at),
        now=now,
        max_concurrency=execution.config.get("max_concurrency"),
    )

    if found:
        return await asyncio.to_thread(profile.profile_events, plan, run, found)
    return await asyncio.to_thread(profile.profile, plan, run, _from_rows(rows))


def _from_rows(rows: list[Row[Any]]) -> dict[str, profile.NodeTimeline]:
    """Timelines from node rows alone (retention deleted the events): no backoff, no waits."""
    return {
        row.node_key: profile.NodeTimeline(
            key=row.node_key,
            node_id=row.node_id,
            status=row.status,
            started_at=_seconds(row.started_at) or _seconds(row.finished_at),
            finished_at=_seconds(row.finished_at),
            attempts=row.attempt,
        )
        for row in rows
    }


def _seconds(at: datetime | None) -> float | None:
    return None if at is None else at.timestamp()
