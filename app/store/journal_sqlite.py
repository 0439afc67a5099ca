"""The journal's batch write on SQLite: Core statements in one transaction (one process, one
writer at a time, so fencing is a read of the generations inside the transaction)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain.status import ExecutionStatus
from app.store import codec
from app.store.journal_rows import BatchRows, FormRequest
from app.store.tables import checkpoints, events, executions, forms, node_runs

_E = ExecutionStatus


class SqliteBatchWriter:
    """Writes a batch with Core statements in one transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def write(self, rows: BatchRows) -> dict[str, str]:
        """Like the Postgres writer: the executions written, with their status now."""
        async with self._engine.begin() as connection:
            written = await _unfenced(connection, rows)
            rows = rows.only(written)
            if rows.events:
                await connection.execute(
                    events.insert(),
                    [
                        {
                            "execution_id": e.execution_id,
                            "seq": e.seq,
                            "type": e.type.value,
                            "ts": e.ts,
                            "node_id": e.node_id,
                            "level": e.level,
                            "data": e.data,
                        }
                        for e in rows.events
                    ],
                )
            if rows.checkpoints:
                await connection.execute(
                    checkpoints.insert(),
                    [
                        {
                            "execution_id": c.execution_id,
                            "number": c.number,
                            "seq": c.seq,
                            "created_at": c.created_at,
                            "records": [codec.record_to_json(r) for r in c.records],
                        }
                        for c in rows.checkpoints
                    ],
                )
            for row in rows.node_runs.values():
                await connection.execute(_sqlite_node_upsert(row))
            for form in rows.forms:
                await connection.execute(_form_insert(form, rows))
                # A node asks one question at a time (see the Postgres writer).
                await connection.execute(
                    update(forms)
                    .where(
                        forms.c.execution_id == form.execution_id,
                        forms.c.node_key == form.node_key,
                        forms.c.id != form.id,
                        forms.c.status == "pending",
                    )
                    .values(status="cancelled", decided_at=func.current_timestamp())
                )
            ended = [u.execution_id for u in rows.executions.values() if u.terminal]
            if ended:
                await connection.execute(
                    update(forms)
                    .where(forms.c.execution_id.in_(ended), forms.c.status == "pending")
                    .values(status="cancelled", decided_at=func.current_timestamp())
                )
            for change in rows.executions.values():
                await connection.execute(_execution_update(change))
            statuses = await connection.execute(
                select(executions.c.id, executions.c.status).where(executions.c.id.in_(written))
            )
            return {row.id: row.status for row in statuses}

    async def close(self) -> None:
        return None


async def _unfenced(connection: Any, rows: BatchRows) -> set[str]:
    """The executions of the batch whose generation is the writer's (or that no one drives)."""
    fenced = {u.execution_id: u.generation for u in rows.executions.values()}
    query = select(executions.c.id, executions.c.generation).where(
        executions.c.id.in_(list(fenced))
    )
    return {
        row.id
        for row in await connection.execute(query)
        if fenced[row.id] is None or fenced[row.id] == row.generation
    }


def _sqlite_node_upsert(row: Any) -> Any:
    statement = sqlite_insert(node_runs).values(
        execution_id=row.execution_id,
        node_key=row.node_key,
        node_id=row.node_id,
        status=row.status,
        attempt=row.attempt,
        output=row.output,
        error=row.error,
        started_at=row.started_at,
        finished_at=row.finished_at,
        duration_ms=row.duration_ms,
    )
    excluded = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[node_runs.c.execution_id, node_runs.c.node_key],
        set_={
            "node_id": excluded.node_id,
            "status": excluded.status,
            "attempt": case((excluded.attempt == 0, node_runs.c.attempt), else_=excluded.attempt),
            "output": excluded.output,
            "error": excluded.error,
            "started_at": func.coalesce(excluded.started_at, node_runs.c.started_at),
            "finished_at": excluded.finished_at,
            "duration_ms": excluded.duration_ms,
        },
    )


def _execution_update(change: Any) -> Any:
    values: dict[str, Any] = {
        "last_seq": func.max(executions.c.last_seq, change.last_seq),
        "updated_at": func.current_timestamp(),
    }
    if change.status is not None:
        # As on Postgres: a pause asked for while the run was starting is not overwritten by
        # its start, and a run about to wait whose answers arrived meanwhile is queued again.
        if change.status == _E.RUNNING.value:
            values["status"] = case(
                (executions.c.status == _E.PAUSING.value, executions.c.status),
                else_=change.status,
            )
        elif change.status == _E.WAITING.value:
            answered = executions.c.pending_answers > 0
            values["status"] = case((answered, _E.QUEUED.value), else_=change.status)
            values["resume_reason"] = case((answered, "answered"), else_=executions.c.resume_reason)
        else:
            values["status"] = change.status
        values["error"] = change.error
        values["finished_at"] = change.finished_at if change.terminal else None
        if change.terminal:
            values["outputs"] = change.outputs
    if change.started_at is not None:
        values["started_at"] = func.coalesce(executions.c.started_at, change.started_at)
    if change.completed_nodes is not None:
        values["completed_nodes"] = change.completed_nodes
    if change.total_nodes is not None:
        values["total_nodes"] = change.total_nodes
    return update(executions).where(executions.c.id == change.execution_id).values(**values)


def _form_insert(form: FormRequest, rows: BatchRows) -> Any:
    ended = rows.executions[form.execution_id].terminal
    workflow = select(executions.c.workflow_id).where(executions.c.id == form.execution_id)
    statement = sqlite_insert(forms).values(
        id=form.id,
        execution_id=form.execution_id,
        workflow_id=workflow.scalar_subquery(),
        node_key=form.node_key,
        kind=form.kind,
        status="cancelled" if ended else "pending",
        prompt=form.prompt,
        fields=form.fields,
        approvers=form.approvers,
        quorum=form.quorum,
        allow_self_approval=form.allow_self_approval,
        on_timeout=form.on_timeout,
        deadline=codec.parse_datetime(form.deadline),
        created_at=form.created_at,
    )
    return statement.on_conflict_do_nothing(index_elements=[forms.c.id])
