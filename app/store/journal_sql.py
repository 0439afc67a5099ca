"""The journal's SQL: one batch write per backend, and the reads the engine and streams need."""

from __future__ import annotations

from typing import Any

import asyncpg
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.domain.events import Event
from app.domain.run import Checkpoint
from app.store import codec
from app.store.db import asyncpg_dsn
from app.store.journal_rows import BatchRows
from app.store.tables import checkpoints, events

_PG_BATCH = """
WITH u AS (
    SELECT * FROM unnest($23::text[], $24::int[], $25::text[], $26::text[], $27::text[],
                         $28::timestamptz[], $29::timestamptz[], $30::int[], $31::int[],
                         $32::bool[], $33::int[])
         AS u(id, last_seq, status, outputs, error, started_at, finished_at, completed_nodes,
              total_nodes, terminal, generation)
), ok AS (
    -- Fencing: a run's rows are written only while its generation is the writer's (a null
    -- generation is a write for a run no replica drives); a concurrent claim is waited for and
    -- the condition checked again. Every other part of the batch depends on what this wrote.
    UPDATE executions AS x SET
        last_seq = GREATEST(x.last_seq, u.last_seq),
        -- A pause asked for while the run was starting must not be overwritten by its
        -- start; a run about to wait whose answers arrived meanwhile is queued instead.
        status = CASE WHEN u.status = 'running' AND x.status = 'pausing' THEN x.status
                      WHEN u.status = 'waiting' AND x.pending_answers > 0 THEN 'queued'
                      ELSE COALESCE(u.status, x.status) END,
        resume_reason = CASE WHEN u.status = 'waiting' AND x.pending_answers > 0 THEN 'answered'
                             ELSE x.resume_reason END,
        outputs = CASE WHEN u.terminal THEN u.outputs::jsonb ELSE x.outputs END,
        error = CASE WHEN u.status IS NULL THEN x.error ELSE u.error::jsonb END,
        started_at = COALESCE(x.started_at, u.started_at),
        finished_at = CASE WHEN u.terminal THEN u.finished_at
                           WHEN u.status IS NULL THEN x.finished_at END,
        completed_nodes = COALESCE(u.completed_nodes, x.completed_nodes),
        total_nodes = COALESCE(u.total_nodes, x.total_nodes),
        updated_at = now()
    FROM u
    WHERE x.id = u.id AND (u.generation IS NULL OR x.generation = u.generation)
    RETURNING x.id, x.status
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
), nf AS (
    SELECT * FROM jsonb_to_recordset($34::jsonb)
         AS f(id text, execution_id text, node_key text, kind text, prompt text, fields jsonb,
              approvers jsonb, quorum int, allow_self_approval bool, on_timeout text,
              deadline timestamptz, created_at timestamptz)
    WHERE f.execution_id IN (SELECT id FROM ok)
), fm AS (
    -- Form requests: one row per form.requested (the same id when a request is replayed).
    INSERT INTO forms (id, execution_id, workflow_id, node_key, kind, status, prompt, fields,
                       approvers, quorum, allow_self_approval, on_timeout, deadline, created_at)
    SELECT f.id, f.execution_id, x.workflow_id, f.node_key, f.kind,
           CASE WHEN u.terminal THEN 'cancelled' ELSE 'pending' END, f.prompt, f.fields::json,
           f.approvers::json, f.quorum, f.allow_self_approval, f.on_timeout, f.deadline,
           f.created_at
    FROM nf AS f
    JOIN executions AS x ON x.id = f.execution_id
    JOIN u ON u.id = f.execution_id
    ON CONFLICT (id) DO NOTHING
), stale AS (
    -- Pending requests no one will wait for: an earlier request of a node that asks again (made
    -- before a crash cut its run short), and every request of a run that ended. Rows an answer
    -- holds locked are skipped (forms are locked before executions everywhere else); that
    -- answer then decides a request whose run has moved on, which changes nothing.
    SELECT o.id FROM forms AS o
    WHERE o.execution_id IN (SELECT id FROM ok) AND o.status = 'pending'
      AND (EXISTS (SELECT 1 FROM nf WHERE nf.execution_id = o.execution_id
                                      AND nf.node_key = o.node_key AND nf.id <> o.id)
           OR o.execution_id IN (SELECT u.id FROM u JOIN ok ON ok.id = u.id WHERE u.terminal))
    FOR UPDATE SKIP LOCKED
), fc AS (
    UPDATE forms SET status = 'cancelled', decided_at = now()
    WHERE id IN (SELECT id FROM stale)
)
SELECT id, status FROM ok
"""


def _json_or_none(value: Any) -> str | None:
    return None if value is None else codec.dumps(value)


class PostgresBatchWriter:
    """Writes a batch with one statement on a dedicated asyncpg connection."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._dsn = asyncpg_dsn(engine)
        self._connection: asyncpg.Connection | None = None

    async def write(self, rows: BatchRows) -> dict[str, str]:
        """Write the batch; the executions whose rows were written (the others were fenced
        off), with their status now."""
        connection = self._connection
        if connection is None or connection.is_closed():
            connection = self._connection = await asyncpg.connect(self._dsn)
        try:
            written = await connection.fetch(_PG_BATCH, *_pg_arguments(rows))
        except (OSError, asyncpg.exceptions.ConnectionDoesNotExistError):
            self._connection = None
            raise
        return {row[0]: row[1] for row in written}

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None


def _pg_arguments(rows: BatchRows) -> list[Any]:
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
        codec.dumps([form.as_json() for form in rows.forms]),
    ]


async def load_checkpoints(engine: AsyncEngine, execution_id: str) -> list[Checkpoint]:
    async with engine.connect() as connection:
        return await checkpoints_of(connection, execution_id)


async def checkpoints_of(connection: AsyncConnection, execution_id: str) -> list[Checkpoint]:
    """The execution's checkpoints, oldest first."""
    query = (
        select(checkpoints)
        .where(checkpoints.c.execution_id == execution_id)
        .order_by(checkpoints.c.number)
    )
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
