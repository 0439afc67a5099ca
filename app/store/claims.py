"""Claiming runs: queued ones in submission order, and those whose owner's lease lapsed.

A claim is one ``UPDATE`` over a locking CTE (``SELECT … ORDER BY queue_seq LIMIT n FOR UPDATE
SKIP LOCKED``): concurrent claimers never wait on each other and never take the same row, and
each claim increments the run's ``generation`` (see :mod:`app.store.leases` for fencing).

Submit → first node started is bounded by how fast a claim is, so on Postgres the claims run on
a dedicated asyncpg connection (:class:`PgClaims`), as the statements below compiled once: no
pool checkout, no ping, no SQLAlchemy per-call work. :class:`SqlClaims` runs the same statements
through SQLAlchemy on any backend (SQLite).

A resumed run's history (checkpoints, attempts, answers) is read by a second statement, after
the claim committed: a statement's subqueries see the snapshot it started with, not the row
it locked, so an answer committed while the claim waited for the row would be zeroed from
``pending_answers`` by the claim yet missing from a history read inside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

import asyncpg
import orjson
from sqlalchemy import (
    Integer,
    Interval,
    String,
    Update,
    any_,
    bindparam,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncEngine

from app import faults
from app.domain.run import Checkpoint
from app.domain.status import ExecutionStatus, Move
from app.store import codec, db, journal_sql, status_sql
from app.store import executions as executions_store
from app.store import forms as forms_store
from app.store.forms import ANSWERED
from app.store.leases import DRIVEN
from app.store.tables import DEFAULT_PROJECT, Timestamp, checkpoints, executions, forms, node_runs

_E = ExecutionStatus
Kind = Literal["queued", "expired"]


@dataclass(frozen=True, slots=True)
class ClaimedRun:
    """An execution row as a claim returned it: everything needed to start driving it."""

    id: str
    status: ExecutionStatus
    workflow_id: str
    workflow_version: int
    inputs: Any
    config: dict[str, Any]
    last_seq: int
    resume_reason: str | None
    generation: int
    cancel_requested: bool
    started_at: datetime | None  # first start (None for a run never started)
    active_s: float  # seconds the run was driven so far
    trace_context: str | None  # the run's trace (a traceparent) its segments parent on
    trace_segment: str | None  # the last recorded segment's span, which the next links to
    project: str = DEFAULT_PROJECT  # what the run may reach (its sub-workflows, credentials)
    # For metrics: the claim's time and the row as the claim found it.
    claimed_at: datetime | None = None
    queued_at: datetime | None = None  # when a queued run was queued (its last update)
    lease_expired_at: datetime | None = None  # a recovered run's lapsed lease (None: released)
    previous_owner: str | None = None  # the replica whose lease it was
    history: History | None = None  # Postgres: what resuming needs, read by the claim itself


@dataclass(frozen=True, slots=True)
class History:
    """What a resumed run needs beyond its row: checkpoints, attempts started per node, and
    the answers its forms got."""

    checkpoints: list[Checkpoint]
    attempts: dict[str, int]
    answers: dict[str, Any]


class Claims(Protocol):
    async def claim(self, kind: Kind, owner: str, limit: int, lease_s: float) -> list[ClaimedRun]:
        """Take up to ``limit`` runs of ``kind`` for ``owner``, in submission order."""
        ...

    async def close(self) -> None: ...


_CLAIMED_COLUMNS = (
    executions.c.id,
    executions.c.queue_seq,
    executions.c.status,
    executions.c.workflow_id,
    executions.c.workflow_version,
    executions.c.inputs,
    executions.c.config,
    executions.c.last_seq,
    executions.c.resume_reason,
    executions.c.generation,
    executions.c.cancel_requested,
    executions.c.started_at,
    executions.c.active_s,
    executions.c.trace_context,
    executions.c.trace_segment,
    executions.c.project,
)


def statement(kind: Kind, dialect: str) -> Update:
    """The claim of ``kind``, with bound parameters ``owner`` and ``limit``, and ``lease`` (a
    timedelta) on Postgres, which takes the time from its own clock, or ``now`` and
    ``expires_at`` on SQLite."""
    if dialect == "postgresql":
        now: Any = func.now()
        expires_at: Any = now + bindparam("lease", type_=Interval())
        # = ANY(array), not IN: one parameter however many statuses (compiled once, below).
        driven = executions.c.status == any_(bindparam("driven", list(DRIVEN), ARRAY(String)))
    else:
        now = bindparam("now", type_=Timestamp())
        expires_at = bindparam("expires_at", type_=Timestamp())
        driven = executions.c.status.in_(DRIVEN)
    move = Move.CLAIM if kind == "queued" else Move.RECOVER
    values: dict[str, Any] = {
        "status": status_sql.target(move),
        "resume_reason": status_sql.resume_reason(move, executions.c.resume_reason),
    }
    if kind == "queued":
        where: Any = status_sql.applies(move)
    else:
        lapsed = (executions.c.lease_expires_at < now) | executions.c.lease_expires_at.is_(None)
        where = driven & lapsed
    # A CTE, not ``IN (subquery)``: Postgres never inlines a locking CTE, so the rows are picked
    # (and locked) exactly once, whatever join the planner chooses.
    chosen = (
        select(
            executions.c.id,
            executions.c.updated_at.label("queued_at"),
            executions.c.lease_expires_at.label("lease_expired_at"),
            executions.c.owner.label("previous_owner"),
        )
        .where(where)
        .order_by(executions.c.queue_seq)
        .limit(bindparam("limit", type_=Integer))
        .with_for_update(skip_locked=True)
        .cte("chosen")
    )
    return (
        update(executions)
        .where(executions.c.id == chosen.c.id)
        .values(
            owner=bindparam("owner", type_=String),
            generation=executions.c.generation + 1,
            # The answers that arrived so far are read when the run starts (see forms).
            pending_answers=0,
            lease_expires_at=expires_at,
            updated_at=now,
            **values,
        )
        .returning(*_CLAIMED_COLUMNS, *_before(chosen, dialect))
    )


def _before(chosen: Any, dialect: str) -> list[Any]:
    """The claimed rows as the claim found them (for metrics), from the locking CTE. SQLite's
    RETURNING cannot name a FROM table, only read it through a subquery (correlated by the
    qualified name, which SQLAlchemy leaves out of SQLite's RETURNING columns)."""
    before = [chosen.c.queued_at, chosen.c.lease_expired_at, chosen.c.previous_owner]
    if dialect != "postgresql":
        before = [
            select(column)
            .where(chosen.c.id == literal_column("executions.id"))
            .scalar_subquery()
            .label(column.name)
            for column in before
        ]
    return [executions.c.updated_at.label("claimed_at"), *before]


def history_query() -> Any:
    """JSON of the checkpoints, node attempts and answered forms of the runs ``ids`` (one row
    each), in one round trip (Postgres)."""
    mine = executions.c.id
    checkpoint = func.json_build_object(
        "number",
        checkpoints.c.number,
        "seq",
        checkpoints.c.seq,
        "created_at",
        checkpoints.c.created_at,
        "records",
        checkpoints.c.records,
    )
    answer = func.json_build_object(
        "node_key",
        forms.c.node_key,
        "form_id",
        forms.c.id,
        "status",
        forms.c.status,
        "answer",
        forms.c.answer,
    )
    columns = [
        select(func.json_agg(aggregate_order_by(checkpoint, checkpoints.c.number)))
        .where(checkpoints.c.execution_id == mine)
        .scalar_subquery()
        .label("checkpoints"),
        select(func.json_object_agg(node_runs.c.node_key, node_runs.c.attempt))
        .where(node_runs.c.execution_id == mine, node_runs.c.attempt > 0)
        .scalar_subquery()
        .label("attempts"),
        select(func.json_agg(aggregate_order_by(answer, forms.c.created_at)))
        .where(
            forms.c.execution_id == mine,
            forms.c.status == any_(bindparam("answered", list(ANSWERED), ARRAY(String))),
        )
        .scalar_subquery()
        .label("answers"),
    ]
    ids = bindparam("ids", type_=ARRAY(String))
    return select(executions.c.id, *columns).where(executions.c.id == any_(ids))


def _history(execution_id: str, row: Mapping[str, Any]) -> History:
    answers: dict[str, Any] = {}
    for answer in orjson.loads(row["answers"] or "[]"):  # later requests of a node win
        node_key = answer.pop("node_key")
        answers[node_key] = answer
    return History(
        checkpoints=[
            codec.checkpoint_from_json(execution_id, c)
            for c in orjson.loads(row["checkpoints"] or "[]")
        ],
        attempts=orjson.loads(row["attempts"] or "{}"),
        answers=answers,
    )


def _runs(rows: Sequence[Mapping[str, Any]], decode: bool) -> list[ClaimedRun]:
    ordered = sorted(rows, key=lambda row: row["queue_seq"])  # RETURNING follows no order
    return [
        ClaimedRun(
            id=row["id"],
            status=_E(row["status"]),
            workflow_id=row["workflow_id"],
            workflow_version=row["workflow_version"],
            inputs=orjson.loads(row["inputs"]) if decode else row["inputs"],
            config=orjson.loads(row["config"]) if decode else row["config"],
            last_seq=row["last_seq"],
            resume_reason=row["resume_reason"],
            generation=row["generation"],
            cancel_requested=bool(row["cancel_requested"]),
            started_at=_aware(row["started_at"]),
            active_s=row["active_s"],
            project=row["project"],
            claimed_at=_aware(row["claimed_at"]),
            queued_at=_aware(row["queued_at"]),
            lease_expired_at=_aware(row["lease_expired_at"]),
            previous_owner=row["previous_owner"],
            trace_context=row["trace_context"],
            trace_segment=row["trace_segment"],
        )
        for row in ordered
    ]


def _resumed(runs: list[ClaimedRun]) -> list[str]:
    """The runs that logged something before: they continue from their history."""
    return [run.id for run in runs if run.last_seq > 0]


def _with(runs: list[ClaimedRun], histories: Mapping[str, History]) -> list[ClaimedRun]:
    return [replace(run, history=histories.get(run.id)) for run in runs]


def _aware(value: datetime | None) -> datetime | None:
    """asyncpg gives aware UTC datetimes; SQLite through SQLAlchemy's Timestamp does too."""
    return value if value is None or value.tzinfo is not None else value.replace(tzinfo=UTC)


class SqlClaims:
    """Claims through SQLAlchemy, each statement its own transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        dialect = engine.dialect.name
        self._statements = {kind: statement(kind, dialect) for kind in ("queued", "expired")}

    async def claim(self, kind: Kind, owner: str, limit: int, lease_s: float) -> list[ClaimedRun]:
        now = datetime.now(UTC)
        lease = timedelta(seconds=lease_s)
        parameters = {
            "owner": owner,
            "limit": limit,
            "lease": lease,
            "now": now,
            "expires_at": now + lease,
        }
        await faults.hit("claims.before", owner)
        async with self._engine.connect() as conn:
            result = await conn.execute(self._statements[kind], parameters)
            runs = _runs([dict(row._mapping) for row in result], decode=False)
            await faults.hit("claims.after", owner, *(run.id for run in runs))
            histories = {
                execution_id: History(
                    checkpoints=await journal_sql.checkpoints_of(conn, execution_id),
                    attempts=await executions_store.node_attempts(conn, execution_id),
                    answers=await forms_store.answers(conn, execution_id),
                )
                for execution_id in _resumed(runs)
            }
        return _with(runs, histories)

    async def close(self) -> None:
        return None


class PgClaims:
    """Claims on one dedicated asyncpg connection (opened on first use, again after a loss),
    each call bounded by ``timeout_s``."""

    def __init__(self, engine: AsyncEngine, *, timeout_s: float = db.DEFAULT_TIMEOUT_S) -> None:
        self._dsn = db.asyncpg_dsn(engine)
        self._timeout_s = timeout_s
        self._connection: asyncpg.Connection | None = None
        # SQL text, parameter names in order, and the values the statement itself binds.
        self._compiled: dict[Kind, tuple[str, tuple[str, ...], dict[str, Any]]] = {}
        for kind in ("queued", "expired"):
            compiled = statement(kind, "postgresql").compile(dialect=engine.dialect)
            names = tuple(compiled.positiontup or ())
            self._compiled[kind] = (compiled.string, names, dict(compiled.params))
        history = history_query().compile(dialect=engine.dialect)
        self._history = (history.string, tuple(history.positiontup or ()), dict(history.params))

    def sql(self, kind: Kind, owner: str, limit: int, lease_s: float) -> tuple[str, list[Any]]:
        """The claim as asyncpg takes it: SQL text and arguments (also for EXPLAIN)."""
        sql, names, bound = self._compiled[kind]
        values = {**bound, "owner": owner, "limit": limit, "lease": timedelta(seconds=lease_s)}
        return sql, [values[name] for name in names]

    async def claim(self, kind: Kind, owner: str, limit: int, lease_s: float) -> list[ClaimedRun]:
        sql, arguments = self.sql(kind, owner, limit, lease_s)
        await faults.hit("claims.before", owner)
        runs = _runs([dict(row) for row in await self._fetch(sql, arguments)], decode=True)
        await faults.hit("claims.after", owner, *(run.id for run in runs))
        resumed = _resumed(runs)
        if not resumed:
            return runs
        sql, names, bound = self._history
        values = {**bound, "ids": resumed}
        rows = await self._fetch(sql, [values[name] for name in names])
        return _with(runs, {row["id"]: _history(row["id"], row) for row in rows})

    async def _fetch(self, sql: str, arguments: list[Any]) -> list[asyncpg.Record]:
        connection = self._connection
        if connection is None or connection.is_closed():
            connection = self._connection = await db.connect_asyncpg(
                self._dsn, "oxify-claims", timeout_s=self._timeout_s
            )
        try:
            # The connection's command_timeout bounds the wait (a half-open socket included).
            rows: list[asyncpg.Record] = await connection.fetch(sql, *arguments)
        except BaseException as exc:
            if not isinstance(exc, asyncpg.PostgresError) or db.is_transient(exc):
                self._connection = None
                connection.terminate()
            raise
        return rows

    async def close(self) -> None:
        if self._connection is not None:
            try:
                await self._connection.close(timeout=self._timeout_s)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                self._connection.terminate()
            self._connection = None


def for_engine(engine: AsyncEngine, *, timeout_s: float = db.DEFAULT_TIMEOUT_S) -> Claims:
    """The fastest claims the engine's backend allows."""
    if engine.dialect.name == "postgresql":
        return PgClaims(engine, timeout_s=timeout_s)
    return SqlClaims(engine)
