"""Execution queries (Core) on a connection the caller passes: the service owns the transaction.

Events, node runs and checkpoints are written by the journal (``app.store.journal``); this
module creates runs, reads them, and changes their status for the API and the runner.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Row, delete, func, literal_column, null, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain import views as models
from app.domain.status import DRIVEN, ExecutionStatus, Move, NodeStatus
from app.errors import CursorInvalid, ExecutionNotFound
from app.store import projects, status_sql
from app.store.tables import (
    DEFAULT_PROJECT,
    checkpoints,
    events,
    executions,
    idempotency_keys,
    node_runs,
)
from app.store.workflows import decode_cursor, encode_cursor

_E = ExecutionStatus
# Columns ``move`` may change along with the status.
_STATUS_FIELDS = frozenset({"started_at", "finished_at", "error", "outputs", "cancel_requested"})
# Driven by a replica: not deletable, cancelled through the owner.
_DRIVEN = sorted(status.value for status in DRIVEN)


async def insert_execution(
    conn: AsyncConnection,
    *,
    execution_id: str,
    workflow_id: str,
    workflow_version: int,
    inputs: Any,
    config: dict[str, Any],
    status: ExecutionStatus = _E.QUEUED,
    started_by: str | None = None,
    trace_context: str | None = None,
    now: datetime,
    project: str = DEFAULT_PROJECT,
) -> int:
    """A new run of ``project``; returns its queue position (``queue_seq``, increasing in
    submission order)."""
    values: dict[str, Any] = {
        "id": execution_id,
        "project": project,
        "workflow_id": workflow_id,
        "workflow_version": workflow_version,
        "status": ExecutionStatus(status).value,
        "inputs": inputs,
        "config": config,
        "started_by": started_by,
        "trace_context": trace_context,
        "created_at": now,
        "updated_at": now,
    }
    if conn.dialect.name != "postgresql":
        # No identity columns on SQLite; its single writer makes MAX + 1 in the insert safe.
        values["queue_seq"] = select(
            func.coalesce(func.max(executions.c.queue_seq), 0) + 1
        ).scalar_subquery()
    result = await conn.execute(
        executions.insert().values(**values).returning(executions.c.queue_seq)
    )
    return int(result.scalar_one())


async def find_idempotency(
    conn: AsyncConnection, workflow_id: str, key: str
) -> tuple[str, str] | None:
    """(request_hash, execution_id) recorded for this key, if any."""
    result = await conn.execute(
        select(idempotency_keys.c.request_hash, idempotency_keys.c.execution_id).where(
            idempotency_keys.c.workflow_id == workflow_id, idempotency_keys.c.key == key
        )
    )
    row = result.first()
    return None if row is None else (row.request_hash, row.execution_id)


async def insert_idempotency(
    conn: AsyncConnection,
    *,
    workflow_id: str,
    key: str,
    request_hash: str,
    execution_id: str,
    now: datetime,
) -> None:
    """Record the key. A concurrent duplicate raises IntegrityError (the primary key): the
    caller rolls back its transaction, whose execution row goes with it, and re-reads."""
    await conn.execute(
        idempotency_keys.insert().values(
            workflow_id=workflow_id,
            key=key,
            request_hash=request_hash,
            execution_id=execution_id,
            created_at=now,
        )
    )


async def get_execution(
    conn: AsyncConnection,
    execution_id: str,
    *,
    with_nodes: bool = True,
    project: str | None = None,
) -> models.Execution | None:
    """The run; ``with_nodes``: with its node rows, read in the same statement (one round
    trip: a JSON array of them beside the run's row)."""
    columns: list[Any] = [executions]
    if with_nodes:
        columns.append(_node_rows(conn.dialect.name))
    query = select(*columns).where(
        executions.c.id == execution_id, projects.visible(executions, project)
    )
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    nodes: list[models.NodeState] = []
    if with_nodes:
        nodes = sorted((_node_state(n) for n in row.node_rows or ()), key=_node_order)
    return models.Execution(
        **_summary_fields(row),
        inputs=row.inputs,
        config=row.config,
        outputs=row.outputs,
        error=row.error,
        nodes=nodes,
        usage=models.ExecutionUsage.of(nodes),
        owner=row.owner,
        purged_at=row.purged_at,
        trace_id=_trace_id(row.trace_context),
    )


_NODE_FIELDS = (
    "node_key",
    "node_id",
    "status",
    "attempt",
    "output",
    "error",
    "started_at",
    "finished_at",
    "duration_ms",
    "steps",
    "usage",
)
_NODE_JSON_FIELDS = frozenset({"output", "error", "steps", "usage"})


def _node_rows(dialect: str) -> Any:
    """The run's node rows as one JSON array (a scalar subquery correlated to the run)."""
    n = node_runs.alias("n")
    if dialect == "postgresql":
        rows = func.json_agg(literal_column("n"), type_=JSON)
    else:  # SQLite: JSON columns are text there; json() embeds them as JSON
        pairs: list[Any] = []
        for name in _NODE_FIELDS:
            pairs += [name, func.json(n.c[name]) if name in _NODE_JSON_FIELDS else n.c[name]]
        rows = func.json_group_array(func.json_object(*pairs), type_=JSON)
    return (
        select(rows)
        .select_from(n)
        .where(n.c.execution_id == executions.c.id)
        .scalar_subquery()
        .label("node_rows")
    )


def _node_order(node: models.NodeState) -> tuple[bool, datetime, str]:
    """Started first, in the order they started; then the rest by key."""
    started = node.started_at
    return (started is None, started or datetime.min.replace(tzinfo=UTC), node.node_key)


def _trace_id(traceparent: str | None) -> str | None:
    # Stored as "00-<trace id>-<span id>-<flags>" (app.observability.trace_context.header).
    return traceparent[3:35] if traceparent else None


async def list_executions(
    conn: AsyncConnection,
    *,
    workflow_id: str | None = None,
    statuses: Collection[ExecutionStatus] | None = None,
    limit: int,
    cursor: str | None,
    project: str | None = None,
) -> models.Page[models.ExecutionSummary]:
    """Newest first (by queue_seq), keyset-paginated. Raises CursorInvalid (a ValueError)."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    query = (
        select(executions)
        .where(projects.visible(executions, project))
        .order_by(executions.c.queue_seq.desc())
    )
    if workflow_id is not None:
        query = query.where(executions.c.workflow_id == workflow_id)
    if statuses:
        query = query.where(executions.c.status.in_([_E(s).value for s in statuses]))
    if cursor is not None:
        query = query.where(executions.c.queue_seq < _queue_position(cursor))
    rows = (await conn.execute(query.limit(limit + 1))).all()
    items = [models.ExecutionSummary(**_summary_fields(row)) for row in rows[:limit]]
    next_cursor = encode_cursor("x", rows[limit - 1].queue_seq) if len(rows) > limit else None
    return models.Page[models.ExecutionSummary](items=items, next_cursor=next_cursor)


async def move(
    conn: AsyncConnection,
    execution_id: str,
    move_: Move,
    *,
    project: str | None = None,
    **fields: Any,
) -> ExecutionStatus | None:
    """Change the run's status by ``move_`` if it applies to the status it has now; the new
    status, or None when it did not apply (or there is no such run).

    One conditional UPDATE, so of two racing callers exactly one sees the status it expected
    (on Postgres the loser waits for the winner's commit and checks the row again). ``fields``
    may set started_at, finished_at, error, outputs and cancel_requested beside it.
    """
    unknown = fields.keys() - _STATUS_FIELDS
    if unknown:
        raise TypeError(f"move cannot set {sorted(unknown)}")
    values = {name: null() if value is None else value for name, value in fields.items()}
    values |= {
        "status": status_sql.target(move_),
        "resume_reason": status_sql.resume_reason(move_, executions.c.resume_reason),
        "updated_at": datetime.now(UTC),
    }
    result = await conn.execute(
        update(executions)
        .where(
            executions.c.id == execution_id,
            status_sql.applies(move_),
            projects.visible(executions, project),
        )
        .values(**values)
        .returning(executions.c.status)
    )
    status = result.scalar_one_or_none()
    return None if status is None else _E(status)


async def request_cancel(
    conn: AsyncConnection, execution_id: str, *, project: str | None = None
) -> bool:
    """Record a cancel for a run a replica drives (its owner acts on it); False when the run
    is not running or pausing."""
    result = await conn.execute(
        update(executions)
        .where(
            executions.c.id == execution_id,
            executions.c.status.in_(_DRIVEN),
            projects.visible(executions, project),
        )
        .values(cancel_requested=True, updated_at=datetime.now(UTC))
    )
    return bool(result.rowcount)


async def overdue_waiting(conn: AsyncConnection, now: datetime, limit: int = 1000) -> list[str]:
    """Waiting runs whose run deadline (timeout_s counting waiting time) has passed, most
    overdue first. The conditions are those of the partial index ix_executions_waiting_deadline
    (which only holds such runs), so the sweep reads the index, not the table."""
    query = (
        select(executions.c.id)
        .where(
            executions.c.status == _E.WAITING.value,
            executions.c.deadline_at.is_not(None),
            executions.c.deadline_at < now,
        )
        .order_by(executions.c.deadline_at)
        .limit(limit)
    )
    return list((await conn.execute(query)).scalars())


async def set_deadline(
    conn: AsyncConnection, execution_id: str, deadline_at: datetime, generation: int
) -> None:
    """When a run times out whatever it does (timeout_s with waiting time counted)."""
    await conn.execute(
        update(executions)
        .where(executions.c.id == execution_id, executions.c.generation == generation)
        .values(deadline_at=deadline_at)
    )


async def add_active_time(
    conn: AsyncConnection, execution_id: str, seconds: float, generation: int
) -> None:
    """Add a stretch of driving to the run's active time (its timeout counts it)."""
    await conn.execute(
        update(executions)
        .where(executions.c.id == execution_id, executions.c.generation == generation)
        .values(active_s=executions.c.active_s + seconds)
    )


async def set_trace_segment(
    conn: AsyncConnection, execution_id: str, traceparent: str, generation: int
) -> None:
    """Record the span of the segment the driver of ``generation`` runs (the next links to it)."""
    await conn.execute(
        update(executions)
        .where(executions.c.id == execution_id, executions.c.generation == generation)
        .values(trace_segment=traceparent)
    )


async def queued_count(conn: AsyncConnection) -> int:
    """Runs waiting to start, across replicas."""
    query = select(func.count()).where(executions.c.status == _E.QUEUED.value)
    return int((await conn.execute(query)).scalar_one())


async def delete_execution(
    conn: AsyncConnection, execution_id: str, *, project: str | None = None
) -> bool:
    """Delete a run no replica drives, with its log, checkpoints, node runs and forms; False
    when a replica drives it (cancel it first). Raises ExecutionNotFound when there is none."""
    mine = projects.visible(executions, project)
    result = await conn.execute(
        delete(executions)
        .where(executions.c.id == execution_id, executions.c.status.not_in(_DRIVEN), mine)
        .returning(executions.c.id)
    )
    if result.first() is None:
        exists = await conn.execute(
            select(executions.c.id).where(executions.c.id == execution_id, mine)
        )
        if exists.first() is None:
            raise ExecutionNotFound(f"no execution {execution_id!r}")
        return False
    # The journal's tables carry no foreign keys (see tables.py): their rows go explicitly.
    for table in (events, checkpoints, node_runs):
        await conn.execute(delete(table).where(table.c.execution_id == execution_id))
    return True


async def node_attempts(conn: AsyncConnection, execution_id: str) -> dict[str, int]:
    """node_key → attempts started so far (a node interrupted mid-run continues at + 1)."""
    result = await conn.execute(
        select(node_runs.c.node_key, node_runs.c.attempt).where(
            node_runs.c.execution_id == execution_id, node_runs.c.attempt > 0
        )
    )
    return {row.node_key: row.attempt for row in result}


async def list_checkpoints(conn: AsyncConnection, execution_id: str) -> list[models.CheckpointInfo]:
    query = (
        select(checkpoints)
        .where(checkpoints.c.execution_id == execution_id)
        .order_by(checkpoints.c.number)
    )
    return [
        models.CheckpointInfo(
            number=row.number,
            seq=row.seq,
            created_at=row.created_at,
            nodes=[record["key"] for record in row.records],
        )
        for row in await conn.execute(query)
    ]


# -- helpers ----------------------------------------------------------------------------------


def _summary_fields(row: Row[Any]) -> dict[str, Any]:
    completed, total = row.completed_nodes, row.total_nodes
    percent = round(100.0 * completed / total, 1) if total else 0.0
    return {
        "id": row.id,
        "workflow_id": row.workflow_id,
        "workflow_version": row.workflow_version,
        "status": _E(row.status),
        "progress": models.Progress(completed=completed, total=total, percent=percent),
        "created_at": row.created_at,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "last_seq": row.last_seq,
        "project": row.project,
    }


def _node_state(row: dict[str, Any]) -> models.NodeState:
    """A node row as the JSON array of :func:`_node_rows` holds it (timestamps as text; naive
    ones, SQLite's, are UTC)."""
    return models.NodeState(
        node_key=row["node_key"],
        node_id=row["node_id"],
        status=NodeStatus(row["status"]),
        attempt=row["attempt"],
        output=row["output"],
        error=row["error"],
        started_at=_utc(row["started_at"]),
        finished_at=_utc(row["finished_at"]),
        duration_ms=row["duration_ms"],
        steps=row["steps"] or [],
        usage=row["usage"],
    )


def _utc(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _queue_position(cursor: str) -> int:
    position = decode_cursor("x", cursor)
    if len(position) != 1 or type(position[0]) is not int:
        raise CursorInvalid(f"cursor {cursor!r} is not valid")
    return position[0]
