"""The journal's batch write on SQLite: Core statements in one transaction (one process, one
writer at a time, so fencing is a read of the generations inside the transaction)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, literal, literal_column, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.domain.status import DRIVEN, ExecutionStatus
from app.store import audit, codec, status_sql
from app.store.journal_rows import (
    Append,
    BatchRows,
    ExecutionUpdate,
    FormRequest,
    NodeRunRow,
    RowState,
)
from app.store.leases import LeaseState
from app.store.tables import checkpoints, events, executions, forms, node_runs

_E = ExecutionStatus
_DRIVEN = sorted(s.value for s in DRIVEN)


class SqliteBatchWriter:
    """The journal's statements as Core statements, each write in one transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def write(self, rows: BatchRows) -> dict[str, RowState]:
        """Like the Postgres writer: how each run of the batch stands afterwards."""
        async with self._engine.begin() as connection:
            found = await _rows(connection, list(rows.executions))
            written = {
                u.execution_id
                for u in rows.executions.values()
                if u.execution_id in found and _writable(u, found[u.execution_id])
            }
            if written:
                await _write(connection, rows.only(written))
                after = await _rows(connection, sorted(written))
                found.update(after)
            return {
                execution_id: RowState(
                    written=execution_id in written,
                    status=row.status,
                    last_seq=row.last_seq,
                    generation=row.generation,
                )
                for execution_id, row in found.items()
            }

    async def append(self, change: Append) -> tuple[int, str] | None:
        status = executions.c.status
        condition = and_(executions.c.id == change.execution_id, status_sql.applies(change.move))
        if change.fence is not None:
            condition = and_(condition, executions.c.generation == change.fence)
        values: dict[str, Any] = {
            "status": status_sql.target(change.move, status),
            "resume_reason": status_sql.resume_reason(change.move, executions.c.resume_reason),
            "last_seq": executions.c.last_seq + 1,
            "updated_at": func.current_timestamp(),
        }
        if change.terminal:
            values |= {"error": change.data.get("error"), "finished_at": change.ts}
        async with self._engine.begin() as connection:
            result = await connection.execute(
                update(executions)
                .where(condition)
                .values(**values)
                .returning(executions.c.last_seq, executions.c.status)
            )
            row = result.first()
            if row is None:
                return None
            await connection.execute(
                events.insert().values(
                    execution_id=change.execution_id,
                    seq=row.last_seq,
                    type=change.type.value,
                    ts=change.ts,
                    data=change.data,
                )
            )
            if change.terminal:
                await _cancel_pending_forms(connection, [change.execution_id])
            if change.audit is not None:
                await audit.append(connection, change.audit)
            return int(row.last_seq), str(row.status)

    async def renew(
        self, owner: str, held: Mapping[str, int], lease_s: float
    ) -> dict[str, LeaseState]:
        expires = datetime.now(UTC) + timedelta(seconds=lease_s)
        async with self._engine.begin() as connection:
            mine = [
                execution_id
                for execution_id, row in (await _rows(connection, list(held))).items()
                if row.generation == held[execution_id]
                and row.owner == owner
                and row.status in _DRIVEN
            ]
            if mine:
                await connection.execute(
                    update(executions)
                    .where(executions.c.id.in_(mine))
                    .values(lease_expires_at=expires)
                )
            return {
                execution_id: LeaseState(
                    execution_id,
                    row.generation,
                    _E(row.status),
                    bool(row.cancel_requested),
                    execution_id in mine,
                )
                for execution_id, row in (await _rows(connection, list(held))).items()
            }

    def reset(self) -> None:
        """Nothing to drop: each statement checks a connection out of the pool."""

    async def close(self) -> None:
        return None


async def _rows(connection: AsyncConnection, ids: list[str]) -> dict[str, Any]:
    query = select(
        executions.c.id,
        executions.c.status,
        executions.c.last_seq,
        executions.c.generation,
        executions.c.owner,
        executions.c.cancel_requested,
    ).where(executions.c.id.in_(ids))
    return {row.id: row for row in await connection.execute(query)}


def _writable(update_: ExecutionUpdate, row: Any) -> bool:
    """The Postgres statement's fence, in Python: driven, ours, and the next seq."""
    return (
        row.status in _DRIVEN
        and (update_.fence is None or row.generation == update_.fence)
        and row.last_seq == update_.first_seq - 1
    )


async def _write(connection: AsyncConnection, rows: BatchRows) -> None:
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
        await _cancel_pending_forms(connection, ended)
    for change in rows.executions.values():
        await connection.execute(_execution_update(change))


async def _cancel_pending_forms(connection: AsyncConnection, ids: list[str]) -> None:
    await connection.execute(
        update(forms)
        .where(forms.c.execution_id.in_(ids), forms.c.status == "pending")
        .values(status="cancelled", decided_at=func.current_timestamp())
    )


def _sqlite_node_upsert(row: NodeRunRow) -> Any:
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
        steps=row.steps,
        usage=row.usage,
    )
    excluded = statement.excluded
    # Steps are appended to the row's; usage (a sum over all attempts already) replaces it.
    accrued: dict[str, Any] = {} if row.steps is None else {"steps": _appended_steps(row.steps)}
    if row.usage is not None:
        accrued["usage"] = excluded.usage
    if row.partial:
        return statement.on_conflict_do_update(
            index_elements=[node_runs.c.execution_id, node_runs.c.node_key], set_=accrued
        )
    return statement.on_conflict_do_update(
        index_elements=[node_runs.c.execution_id, node_runs.c.node_key],
        set_={
            **accrued,
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


def _appended_steps(steps: list[dict[str, Any]]) -> Any:
    """The row's steps with ``steps`` appended (json1's ``$[#]``: past the array's end). A row
    written without steps holds JSON ``null`` (SQLAlchemy's JSON stores None so), which
    json_insert would keep as it is: it counts as no steps."""
    appended: list[Any] = []
    for step in steps:
        appended += ["$[#]", func.json(codec.dumps(step))]
    stored = func.nullif(node_runs.c.steps, literal_column("'null'"))
    return func.json_insert(func.coalesce(stored, literal_column("'[]'")), *appended)


def _execution_update(change: ExecutionUpdate) -> Any:
    values: dict[str, Any] = {
        "last_seq": change.last_seq,
        "updated_at": func.current_timestamp(),
    }
    if change.move is not None:
        move = literal(change.move.value)
        answered = executions.c.pending_answers > 0
        asked = executions.c.cancel_requested
        values["status"] = status_sql.journal_status(move, executions.c.status, answered, asked)
        values["resume_reason"] = status_sql.journal_reason(
            move, executions.c.resume_reason, answered, asked
        )
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
    run = executions.c.id == form.execution_id
    statement = sqlite_insert(forms).values(
        id=form.id,
        execution_id=form.execution_id,
        workflow_id=select(executions.c.workflow_id).where(run).scalar_subquery(),
        project=select(executions.c.project).where(run).scalar_subquery(),
        node_key=form.node_key,
        kind=form.kind,
        status="cancelled" if ended else "pending",
        prompt=form.prompt,
        fields=form.fields,
        context=form.context,
        approvers=form.approvers,
        quorum=form.quorum,
        allow_self_approval=form.allow_self_approval,
        on_timeout=form.on_timeout,
        deadline=codec.parse_datetime(form.deadline),
        created_at=form.created_at,
    )
    return statement.on_conflict_do_nothing(index_elements=[forms.c.id])
