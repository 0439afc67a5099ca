"""The journal's SQL on Postgres (one statement per batch, on a dedicated connection), and the
reads the engine and streams need on any backend.

Each write is one statement, so it commits or not as a whole, and its outcome per run can be
read back from what it returns (see :class:`RowState`). Statuses come from the domain's table
of moves through :mod:`app.store.status_sql`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import asyncpg
from sqlalchemy import ColumnElement, literal_column, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.domain.events import Event
from app.domain.run import Checkpoint
from app.domain.status import DRIVEN, MOVES, ExecutionStatus, Move
from app.store import audit, codec, db, status_sql
from app.store.journal_rows import Append, BatchRows, RowState
from app.store.leases import LeaseState
from app.store.tables import checkpoints, events


def _sql(expression: ColumnElement[Any]) -> str:
    """A generated expression as Postgres text (its values are the table's literals)."""
    compiled = expression.compile(
        dialect=postgresql.dialect(),  # type: ignore[no-untyped-call]
        compile_kwargs={"literal_binds": True},
    )
    return str(compiled)


_X_STATUS: ColumnElement[Any] = literal_column("x.status")
_MOVE: ColumnElement[Any] = literal_column("u.move")
_ANSWERED: ColumnElement[bool] = literal_column("x.pending_answers > 0")
_CANCEL_ASKED: ColumnElement[bool] = literal_column("x.cancel_requested")
_DRIVEN_SQL = ", ".join(f"'{s.value}'" for s in sorted(DRIVEN))
# A node's steps: the stored ones, then the batch's (a new attempt keeps the earlier ones).
_APPENDED_STEPS = """CASE WHEN EXCLUDED.steps IS NULL THEN node_runs.steps
             ELSE (COALESCE(node_runs.steps::jsonb, '[]'::jsonb)
                   || EXCLUDED.steps::jsonb)::json END"""
# A node's usage: the batch's record says what it spent over all its attempts; none, the stored.
_LATEST_USAGE = "COALESCE(EXCLUDED.usage, node_runs.usage)"

_PG_BATCH = f"""
WITH u AS (
    SELECT * FROM unnest($23::text[], $24::int[], $25::int[], $26::text[], $27::text[],
                         $28::text[], $29::timestamptz[], $30::timestamptz[], $31::int[],
                         $32::int[], $33::bool[], $34::int[])
         AS u(id, first_seq, last_seq, move, outputs, error, started_at, finished_at,
              completed_nodes, total_nodes, terminal, generation)
), ok AS (
    -- Fencing: a run's rows are written only while a replica drives it under the writer's
    -- generation (a null generation: no lease applies), and only when the batch's events
    -- follow the last stored one. A concurrent claim is waited for and the conditions checked
    -- again. Every other part of the batch depends on what this wrote.
    UPDATE executions AS x SET
        last_seq = u.last_seq,
        status = {_sql(status_sql.journal_status(_MOVE, _X_STATUS, _ANSWERED, _CANCEL_ASKED))},
        resume_reason = {
    _sql(
        status_sql.journal_reason(
            _MOVE, literal_column("x.resume_reason"), _ANSWERED, _CANCEL_ASKED
        )
    )
},
        outputs = CASE WHEN u.terminal THEN u.outputs::jsonb ELSE x.outputs END,
        error = CASE WHEN u.move IS NULL THEN x.error ELSE u.error::jsonb END,
        started_at = COALESCE(x.started_at, u.started_at),
        finished_at = CASE WHEN u.terminal THEN u.finished_at
                           WHEN u.move IS NULL THEN x.finished_at END,
        completed_nodes = COALESCE(u.completed_nodes, x.completed_nodes),
        total_nodes = COALESCE(u.total_nodes, x.total_nodes),
        updated_at = now()
    FROM u
    WHERE x.id = u.id AND x.status IN ({_DRIVEN_SQL})
      AND (u.generation IS NULL OR x.generation = u.generation)
      AND x.last_seq = u.first_seq - 1
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
), n AS (
    SELECT * FROM unnest($13::text[], $14::text[], $15::text[], $16::text[], $17::int[],
                         $18::text[], $19::text[], $20::timestamptz[], $21::timestamptz[],
                         $22::float8[], $36::text[], $37::bool[], $38::text[])
         AS n(execution_id, node_key, node_id, status, attempt, output, error, started_at,
              finished_at, duration_ms, steps, partial, usage)
    WHERE n.execution_id IN (SELECT id FROM ok)
), nr AS (
    INSERT INTO node_runs (execution_id, node_key, node_id, status, attempt, output, error,
                           started_at, finished_at, duration_ms, steps, usage)
    SELECT n.execution_id, n.node_key, n.node_id, n.status, n.attempt, n.output::json,
           n.error::json, n.started_at, n.finished_at, n.duration_ms, n.steps::json,
           n.usage::json
    FROM n WHERE NOT n.partial
    ON CONFLICT (execution_id, node_key) DO UPDATE SET
        node_id = EXCLUDED.node_id,
        status = EXCLUDED.status,
        attempt = CASE WHEN EXCLUDED.attempt = 0 THEN node_runs.attempt ELSE EXCLUDED.attempt END,
        output = EXCLUDED.output,
        error = EXCLUDED.error,
        started_at = COALESCE(EXCLUDED.started_at, node_runs.started_at),
        finished_at = EXCLUDED.finished_at,
        duration_ms = EXCLUDED.duration_ms,
        steps = {_APPENDED_STEPS},
        usage = {_LATEST_USAGE}
), ns AS (
    -- Nodes the batch only saw finish sub-steps or spend (a checkpoint's record): their steps
    -- are appended and their usage set, the rest of the row stays. (Each node is in one of nr
    -- and ns, never both: a row is written once.)
    INSERT INTO node_runs (execution_id, node_key, node_id, status, attempt, steps, usage)
    SELECT n.execution_id, n.node_key, n.node_id, n.status, n.attempt, n.steps::json,
           n.usage::json
    FROM n WHERE n.partial
    ON CONFLICT (execution_id, node_key) DO UPDATE SET
        steps = {_APPENDED_STEPS},
        usage = {_LATEST_USAGE}
), nf AS (
    SELECT * FROM jsonb_to_recordset($35::jsonb)
         AS f(id text, execution_id text, node_key text, kind text, prompt text, fields jsonb,
              context jsonb, approvers jsonb, quorum int, allow_self_approval bool,
              on_timeout text, deadline timestamptz, created_at timestamptz)
    WHERE f.execution_id IN (SELECT id FROM ok)
), fm AS (
    -- Form requests: one row per form.requested (the same id when a request is replayed).
    INSERT INTO forms (id, execution_id, workflow_id, node_key, kind, status, prompt, fields,
                       context, approvers, quorum, allow_self_approval, on_timeout, deadline,
                       created_at, project)
    SELECT f.id, f.execution_id, x.workflow_id, f.node_key, f.kind,
           CASE WHEN u.terminal THEN 'cancelled' ELSE 'pending' END, f.prompt, f.fields::json,
           f.context::json, f.approvers::json, f.quorum, f.allow_self_approval, f.on_timeout,
           f.deadline, f.created_at, x.project
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

# How the runs a batch did not write stand (rare: fenced, or retried after a lost answer).
_PG_STATES = """
SELECT id, status, last_seq, generation FROM executions WHERE id = ANY($1::text[])
"""


_STALE_FORMS = """
    -- Pending requests of a run that ended. Rows an answer holds locked are skipped (forms are
    -- locked before executions everywhere else); that answer then decides a request whose run
    -- has moved on, which changes nothing.
    SELECT o.id FROM forms AS o
    WHERE o.execution_id IN (SELECT id FROM x WHERE {terminal}) AND o.status = 'pending'
    FOR UPDATE SKIP LOCKED
"""


_APPEND_ARGUMENTS = 7  # $1..$7; an audit row's parameters follow


def _append_sql(move: Move, audited: bool) -> str:
    """One statement that changes a run's status by ``move`` (if it applies, and under the
    fence if one is given) and logs its event as the run's next seq; ``audited``: with the
    audit row (its parameters after the append's own) when the move applied."""
    names = list(audit.PG_PARAMETERS)
    audit_cte = (
        ", "
        + audit.pg_statement(
            lambda name: f"${_APPEND_ARGUMENTS + 1 + names.index(name)}",
            guard="EXISTS (SELECT 1 FROM x)",
        )
        if audited
        else ""
    )
    status: ColumnElement[Any] = literal_column("status")
    terminal = "x.status IN ('completed', 'failed', 'cancelled', 'timed_out')"
    return f"""
WITH x AS (
    UPDATE executions SET
        status = {_sql(status_sql.target(move, status))},
        resume_reason = {_sql(status_sql.resume_reason(move, literal_column("resume_reason")))},
        last_seq = last_seq + 1,
        error = CASE WHEN $6::bool THEN $5::jsonb ELSE error END,
        finished_at = CASE WHEN $6::bool THEN $4 ELSE finished_at END,
        updated_at = now()
    WHERE id = $1 AND {_sql(status_sql.applies(move, status))}
      AND ($7::int IS NULL OR generation = $7::int)
    RETURNING id, last_seq, status
), ev AS (
    INSERT INTO events (execution_id, seq, type, ts, node_id, level, data)
    SELECT id, last_seq, $2, $4, NULL, NULL, $3::json FROM x
), stale AS ({_STALE_FORMS.format(terminal=terminal)}), fc AS (
    UPDATE forms SET status = 'cancelled', decided_at = now()
    WHERE id IN (SELECT id FROM stale)
){audit_cte}
SELECT last_seq, status FROM x
"""


_APPEND_SQL = {
    (move, audited): _append_sql(move, audited)
    for move in Move
    if MOVES[move]
    for audited in (False, True)
}

_PG_RENEW = f"""
WITH held AS (
    SELECT * FROM unnest($2::text[], $3::int[]) AS h(id, generation)
), locked AS (
    -- Waited for, never skipped: a renewal that skipped a row would report a lease it did not
    -- extend. Rows are locked in id order, as every multi-row write of them does.
    SELECT x.id FROM executions AS x JOIN held ON held.id = x.id
    WHERE x.generation = held.generation AND x.owner = $1 AND x.status IN ({_DRIVEN_SQL})
    ORDER BY x.id
    FOR UPDATE OF x
), renewed AS (
    UPDATE executions AS x SET lease_expires_at = now() + $4::interval
    FROM locked WHERE x.id = locked.id
    RETURNING x.id, x.generation, x.status, x.cancel_requested
)
SELECT id, generation, status, cancel_requested, true AS renewed FROM renewed
UNION ALL
SELECT id, generation, status, cancel_requested, false FROM executions
WHERE id = ANY($2::text[]) AND id NOT IN (SELECT id FROM renewed)
"""


def _json_or_none(value: Any) -> str | None:
    return None if value is None else codec.dumps(value)


class PostgresBatchWriter:
    """The journal's statements, one at a time, on one dedicated asyncpg connection (opened on
    first use and after :meth:`reset`), each bounded by ``timeout_s``."""

    def __init__(self, engine: AsyncEngine, *, timeout_s: float) -> None:
        self._dsn = db.asyncpg_dsn(engine)
        self._timeout_s = timeout_s
        self._connection: asyncpg.Connection | None = None

    async def _conn(self) -> asyncpg.Connection:
        connection = self._connection
        if connection is None or connection.is_closed():
            connection = self._connection = await db.connect_asyncpg(
                self._dsn, "oxify-journal", timeout_s=self._timeout_s
            )
        return connection

    async def _fetch(self, sql: str, *arguments: Any) -> list[asyncpg.Record]:
        connection = await self._conn()
        # The connection's command_timeout bounds the wait on the client, a half-open socket
        # included (the server's statement_timeout cannot: it never hears of the statement).
        rows: list[asyncpg.Record] = await connection.fetch(sql, *arguments)
        return rows

    async def write(self, rows: BatchRows) -> dict[str, RowState]:
        """Write the batch; how each of its runs stands afterwards (for a run not written, as
        read just after the statement)."""
        written = {
            row["id"]: RowState(True, row["status"], 0, 0)
            for row in await self._fetch(_PG_BATCH, *_pg_arguments(rows))
        }
        others = [i for i in rows.executions if i not in written]
        if others:
            for row in await self._fetch(_PG_STATES, others):
                written[row["id"]] = RowState(
                    False, row["status"], row["last_seq"], row["generation"]
                )
        return written

    async def append(self, change: Append) -> tuple[int, str] | None:
        """Apply ``change``; the seq its event got and the run's status, or None when the
        move did not apply (or the fence refused it)."""
        audited = []
        if change.audit is not None:
            arguments = audit.pg_arguments(change.audit)
            audited = [arguments[name] for name in audit.PG_PARAMETERS]
        result = await self._fetch(
            _APPEND_SQL[change.move, change.audit is not None],
            change.execution_id,
            change.type.value,
            codec.dumps(change.data),
            change.ts,
            _json_or_none(change.data.get("error")),
            change.terminal,
            change.fence,
            *audited,
        )
        return (result[0]["last_seq"], result[0]["status"]) if result else None

    async def renew(
        self, owner: str, held: Mapping[str, int], lease_s: float
    ) -> dict[str, LeaseState]:
        ids = list(held)
        result = await self._fetch(
            _PG_RENEW, owner, ids, [held[i] for i in ids], timedelta(seconds=lease_s)
        )
        return {
            row["id"]: LeaseState(
                row["id"],
                row["generation"],
                ExecutionStatus(row["status"]),
                row["cancel_requested"],
                row["renewed"],
            )
            for row in result
        }

    def reset(self) -> None:
        """Drop the connection (it failed or hung): the next statement opens a new one."""
        if self._connection is not None:
            self._connection.terminate()
            self._connection = None

    async def close(self) -> None:
        if self._connection is not None:
            try:
                await self._connection.close(timeout=self._timeout_s)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                self._connection.terminate()
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
        [u.first_seq for u in ex],
        [u.last_seq for u in ex],
        [None if u.move is None else u.move.value for u in ex],
        [_json_or_none(u.outputs) for u in ex],
        [_json_or_none(u.error) for u in ex],
        [u.started_at for u in ex],
        [u.finished_at for u in ex],
        [u.completed_nodes for u in ex],
        [u.total_nodes for u in ex],
        [u.terminal for u in ex],
        [u.fence for u in ex],
        codec.dumps([form.as_json() for form in rows.forms]),
        [_json_or_none(n.steps) for n in nr],
        [n.partial for n in nr],
        [_json_or_none(n.usage) for n in nr],
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
