"""The journal's SQL: one batch write per backend, and the reads the engine and streams need."""

from __future__ import annotations

from typing import Any

import asyncpg
from sqlalchemy import case, func, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain.events import Event
from app.domain.run import Checkpoint
from app.domain.status import ExecutionStatus
from app.store import codec
from app.store.db import asyncpg_dsn
from app.store.journal_rows import BatchRows
from app.store.tables import checkpoints, events, executions, node_runs

_PG_BATCH = """
WITH u AS (
    SELECT * FROM unnest($23::text[], $24::int[], $25::text[], $26::text[], $27::text[],
                         $28::timestamptz[], $29::timestamptz[], $30::int[], $31::int[],
                         $32::bool[], $33::int[])
         AS u(id, last_seq, status, outputs, error, started_at, finished_at, completed_nodes,
              total_nodes, terminal, generation)
), ok AS (
    -- Fencing: a run's rows are written only while its generation is the writer's (a null
    -- generation is a write for a run no replica drives). Locked in id order, as lease renewal
    -- locks them; a concurrent claim is waited for and then re-checked.
    SELECT x.id FROM executions AS x JOIN u ON u.id = x.id
    WHERE u.generation IS NULL OR x.generation = u.generation
    ORDER BY x.id
    FOR UPDATE OF x
), ev AS (
    INSERT INTO events (execution_id, seq, type, ts, node_id, level, data)
    SELECT e.execution_id, e.seq, e.type, e.ts, e.node_id, e.level, e.data::json
    FROM unnest($1::text[], $2::int[], $3::text[], $4::timestamptz[], $5::text[], $6::int[],
                $7::text[]) AS e(execution_id, seq, type, ts, node_id, level, data)
    WHERE e.execution_id IN (SELECT id FROM ok)
), cp AS (
    INSERT INTO checkpoints (execution_id, number, seq, created_at, records)
    SELECT c.execution_id, c.number, c.seq, c.created_at, c.records::json
    FROM unnest($8::text[], $9::int[], $10::int[], $11::timestamptz[], $12::text[])
         AS c(execution_id, number, seq, created_at, records)
    WHERE c.execution_id IN (SELECT id FROM ok)
), nr AS (
    INSERT INTO node_runs (execution_id, node_key, node_id, status, attempt, output, error,
                           started_at, finished_at, duration_ms)
    SELECT n.execution_id, n.node_key, n.node_id, n.status, n.attempt, n.output::json,
           n.error::json, n.started_at, n.finished_at, n.duration_ms
    FROM unnest($13::text[], $14::text[], $15::text[], $16::text[], $17::int[], $18::text[],
                $19::text[], $20::timestamptz[], $21::timestamptz[], $22::float8[])
         AS n(execution_id, node_key, node_id, status, attempt, output, error, started_at,
              finished_at, duration_ms)
    WHERE n.execution_id IN (SELECT id FROM ok)
    ON CONFLICT (execution_id, node_key) DO UPDATE SET
        node_id = EXCLUDED.node_id,
        status = EXCLUDED.status,
        attempt = CASE WHEN EXCLUDED.attempt = 0 THEN node_runs.attempt ELSE EXCLUDED.attempt END,
        output = EXCLUDED.output,
        error = EXCLUDED.error,
        started_at = COALESCE(EXCLUDED.started_at, node_runs.started_at),
        finished_at = EXCLUDED.finished_at,
        duration_ms = EXCLUDED.duration_ms
)
UPDATE executions AS x SET
    last_seq = GREATEST(x.last_seq, u.last_seq),
    -- A pause asked for while the run was starting must not be overwritten by its start.
    status = CASE WHEN u.status = 'running' AND x.status = 'pausing' THEN x.status
                  ELSE COALESCE(u.status, x.status) END,
    outputs = CASE WHEN u.terminal THEN u.outputs::jsonb ELSE x.outputs END,
    error = CASE WHEN u.status IS NULL THEN x.error ELSE u.error::jsonb END,
    started_at = COALESCE(x.started_at, u.started_at),
    finished_at = CASE WHEN u.terminal THEN u.finished_at
                       WHEN u.status IS NULL THEN x.finished_at END,
    completed_nodes = COALESCE(u.completed_nodes, x.completed_nodes),
    total_nodes = COALESCE(u.total_nodes, x.total_nodes),
    updated_at = now()
FROM u
WHERE x.id = u.id AND x.id IN (SELECT id FROM ok)
RETURNING x.id
"""


def _json_or_none(value: Any) -> str | None:
    return None if value is None else codec.dumps(value)


class PostgresBatchWriter:
    """Writes a batch with one statement on a dedicated asyncpg connection."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._dsn = asyncpg_dsn(engine)
        self._connection: asyncpg.Connection | None = None

    async def write(self, rows: BatchRows) -> set[str]:
        """Write the batch; the ids of the executions whose rows were written (the others
        were fenced off)."""
        connection = self._connection
        if connection is None or connection.is_closed():
            connection = self._connection = await asyncpg.connect(self._dsn)
        try:
            written = await connection.fetch(_PG_BATCH, *_pg_arguments(rows))
        except (OSError, asyncpg.exceptions.ConnectionDoesNotExistError):
            self._connection = None
            raise
        return {row[0] for row in written}

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None


def _pg_arguments(rows: BatchRows) -> list[list[Any]]:
    ev, cp, nr = rows.events, rows.checkpoints, list(rows.node_runs.values())
    ex = list(rows.executions.values())
    return [
        [e.execution_id for e in ev],
        [e.seq for e in ev],
        [e.type.value for e in ev],
        [e.ts for e in ev],
        [e.node_id for e in ev],
        [e.level for e in ev],
        [codec.dumps(e.data) for e in ev],
        [c.execution_id for c in cp],
        [c.number for c in cp],
        [c.seq for c in cp],
        [c.created_at for c in cp],
        [codec.dumps([codec.record_to_json(r) for r in c.records]) for c in cp],
        [n.execution_id for n in nr],
        [n.node_key for n in nr],
        [n.node_id for n in nr],
        [n.status for n in nr],
        [n.attempt for n in nr],
        [_json_or_none(n.output) for n in nr],
        [_json_or_none(n.error) for n in nr],
        [n.started_at for n in nr],
        [n.finished_at for n in nr],
        [n.duration_ms for n in nr],
        [u.execution_id for u in ex],
        [u.last_seq for u in ex],
        [u.status for u in ex],
        [_json_or_none(u.outputs) for u in ex],
        [_json_or_none(u.error) for u in ex],
        [u.started_at for u in ex],
        [u.finished_at for u in ex],
        [u.completed_nodes for u in ex],
        [u.total_nodes for u in ex],
        [u.terminal for u in ex],
        [u.generation for u in ex],
    ]


class SqliteBatchWriter:
    """Writes a batch with Core statements in one transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def write(self, rows: BatchRows) -> set[str]:
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
            for change in rows.executions.values():
                await connection.execute(_execution_update(change))
        return written

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
        # A pause asked for while the run was starting must not be overwritten by its start.
        values["status"] = (
            case(
                (executions.c.status == ExecutionStatus.PAUSING.value, executions.c.status),
                else_=change.status,
            )
            if change.status == ExecutionStatus.RUNNING.value
            else change.status
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


async def load_checkpoints(engine: AsyncEngine, execution_id: str) -> list[Checkpoint]:
    query = (
        select(checkpoints)
        .where(checkpoints.c.execution_id == execution_id)
        .order_by(checkpoints.c.number)
    )
    async with engine.connect() as connection:
        result = await connection.execute(query)
        return [codec.checkpoint_from_row(row) for row in result]


async def read_events(
    engine: AsyncEngine, execution_id: str, after_seq: int, limit: int
) -> list[Event]:
    query = (
        select(events)
        .where(events.c.execution_id == execution_id, events.c.seq > after_seq)
        .order_by(events.c.seq)
        .limit(limit)
    )
    async with engine.connect() as connection:
        result = await connection.execute(query)
        return [codec.event_from_row(row) for row in result]
