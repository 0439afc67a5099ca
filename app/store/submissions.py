"""A run's submission, written whole: the run, what it is charged against its quotas, its
idempotency key and its audit row commit together or not at all.

On Postgres it is ONE statement sent in autocommit (one round trip, no BEGIN or COMMIT), built
of data-modifying CTEs in this order:

1. ``locks``: an advisory lock per scope with a concurrent-runs limit (key before project, so
   two submissions never wait on each other in a cycle);
2. ``unfinished``: the unfinished runs of each such scope, counted by
   ``oxify_unfinished_runs`` (migration 0015): a VOLATILE PL/pgSQL function takes a snapshot
   of its own when it runs, after the locks, so a run committed while this one waited for a
   lock is counted (the statement's own snapshot is older than the lock);
3. ``charged``: one run added to each runs/day counter that has room (a conditional upsert,
   exact under concurrency: a row another submission holds is re-read once it commits);
4. ``admitted``: the workflow's head still what the submitter read (its latest version, not
   archived: the head may come from memory), every counter charged and every scope under its
   limit, else ``oxify_refuse_run`` raises (SQLSTATE ``OX429``) and the statement, charges
   included, rolls back;
5. the run, its hold (``run_quotas``), its idempotency key and its audit row, each inserted
   from ``admitted``. The audit head is locked last and held only for the implicit commit.

SQLite has no data-modifying CTEs; its single writer serializes the same steps in one
transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import TextClause, bindparam, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth.audit import AuditEntry
from app.domain import limits as windows
from app.domain.status import ExecutionStatus
from app.store import audit, quotas
from app.store import executions as runs
from app.store import workflows as workflow_store
from app.store.gauges import ACTIVE
from app.store.tables import executions

REFUSED_SQLSTATE = "OX429"  # raised by oxify_refuse_run (migration 0015)
HEAD_CHANGED = "head"  # oxify_refuse_run's reason when the workflow's head moved


@dataclass(frozen=True, slots=True)
class Limit:
    """A quota a new run is charged against: of a key or of a project."""

    scope: str  # quota_usage.scope and the advisory lock's name: "key:<id>", "project:<name>"
    column: str  # the run_quotas column that holds the scope: key_id or project
    value: str
    limit: int


@dataclass(frozen=True, slots=True)
class NewRun:
    """Everything a submission writes: the run (queued), who submitted it, the limits it is
    charged against (runs/day in the UTC day of ``created_at``), its idempotency key and the
    audit row of its start."""

    id: str
    project: str
    workflow_id: str
    workflow_version: int
    inputs: Any
    config: dict[str, Any]
    created_at: datetime
    audit: AuditEntry
    started_by: str | None = None
    trace_context: str | None = None
    key_id: str | None = None
    runs_per_day: Sequence[Limit] = ()
    concurrent: Sequence[Limit] = ()
    idempotency: tuple[str, str] | None = None  # (key, request hash)
    # The workflow's latest version as the submitter knew it (perhaps from memory): the run is
    # written only while it still is, and the workflow is not archived.
    workflow_head: int | None = None


class HeadChanged(Exception):
    """The workflow got a new version or was archived since the submitter read its head.
    Nothing was written."""


class QuotaReached(Exception):
    """The run was refused: ``quota`` (``runs`` a day or ``concurrent`` runs) of ``limit`` is
    used up. Nothing was written."""

    def __init__(self, quota: str, limit: Limit) -> None:
        super().__init__(f"{quota} quota of {limit.scope} reached")
        self.quota = quota
        self.limit = limit


async def submit(conn: AsyncConnection, new: NewRun) -> None:
    """Write ``new`` on ``conn``: on Postgres an autocommit connection (one statement), on
    SQLite one in a transaction (:func:`app.store.db.one_statement` gives either). Raises
    QuotaReached, or IntegrityError when the idempotency key was taken meanwhile."""
    for limit in (*new.runs_per_day, *new.concurrent):
        if limit.limit <= 0:
            raise QuotaReached("runs" if limit in new.runs_per_day else "concurrent", limit)
    if conn.dialect.name == "postgresql":
        await _submit_pg(conn, new)
    else:
        await _submit_serially(conn, new)


# -- Postgres: one statement --------------------------------------------------------------------


async def _submit_pg(conn: AsyncConnection, new: NewRun) -> None:
    statement = _statement(
        len(new.concurrent),
        len(new.runs_per_day),
        new.idempotency is not None,
        new.workflow_head is not None,
    )
    params: dict[str, Any] = {
        **{name: getattr(new, name) for name in _RUN_FIELDS},
        "status": ExecutionStatus.QUEUED.value,
        "updated_at": new.created_at,
        "key_id": new.key_id,
        "day": windows.window(new.created_at),
        "workflow_head": new.workflow_head,
        "unfinished_statuses": ACTIVE,
        **{f"audit_{name}": value for name, value in audit.pg_arguments(new.audit).items()},
    }
    for i, limit in enumerate(new.concurrent):
        params |= {f"c{i}_scope": limit.scope, f"c{i}_column": limit.column}
        params |= {f"c{i}_value": limit.value, f"c{i}_limit": limit.limit}
    for i, limit in enumerate(new.runs_per_day):
        params |= {f"d{i}_scope": limit.scope, f"d{i}_limit": limit.limit}
    if new.idempotency is not None:
        params["idem_key"], params["idem_hash"] = new.idempotency
    try:
        await conn.execute(statement, params)
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != REFUSED_SQLSTATE:
            raise
        quota, scope = str(getattr(exc.orig, "detail", "")).split(" ", 1)
        if quota == HEAD_CHANGED:
            raise HeadChanged(scope) from None
        chosen = new.runs_per_day if quota == "runs" else new.concurrent
        raise QuotaReached(quota, next(lim for lim in chosen if lim.scope == scope)) from None


_RUN_FIELDS = (
    "id",
    "project",
    "workflow_id",
    "workflow_version",
    "inputs",
    "config",
    "started_by",
    "trace_context",
    "created_at",
)
_RUN_COLUMNS = (*_RUN_FIELDS, "status", "updated_at")
_STATEMENTS: dict[tuple[int, int, bool, bool], TextClause] = {}


def _statement(concurrent: int, daily: int, idempotent: bool, headed: bool) -> TextClause:
    """The submission's statement for its shape (built once per shape: a handful exist)."""
    shape = (concurrent, daily, idempotent, headed)
    found = _STATEMENTS.get(shape)
    if found is None:
        found = _STATEMENTS[shape] = _build(*shape)
    return found


def _build(concurrent: int, daily: int, idempotent: bool, headed: bool) -> TextClause:
    locks = "".join(
        f", pg_advisory_xact_lock(hashtext(CAST(:c{i}_scope AS text))) AS l{i}"
        for i in range(concurrent)
    )
    ctes = [f"locks AS MATERIALIZED (SELECT 1 AS ok{locks})"]
    refusals = []
    if headed:
        refusals.append(
            "WHEN NOT EXISTS (SELECT 1 FROM workflows WHERE id = CAST(:workflow_id AS varchar) "
            "AND project = CAST(:project AS varchar) "
            "AND latest_version = CAST(:workflow_head AS integer) AND archived_at IS NULL) "
            f"THEN oxify_refuse_run('{HEAD_CHANGED}', CAST(:workflow_id AS text))"
        )
    if concurrent:
        counts = ", ".join(
            f"oxify_unfinished_runs(CAST(:c{i}_column AS text), CAST(:c{i}_value AS text), "
            f"CAST(:unfinished_statuses AS text[])) AS n{i}"
            for i in range(concurrent)
        )
        ctes.append(f"unfinished AS MATERIALIZED (SELECT {counts} FROM locks)")
    if daily:
        scopes = ", ".join(f"(CAST(:d{i}_scope AS varchar))" for i in range(daily))
        limits = " ".join(
            f"WHEN CAST(:d{i}_scope AS varchar) THEN CAST(:d{i}_limit AS bigint)"
            for i in range(daily)
        )
        ctes.append(
            "charged AS (INSERT INTO quota_usage (scope, quota, day, used) "
            f"SELECT v.scope, 'runs', CAST(:day AS date), 1 FROM locks, (VALUES {scopes}) "
            "AS v(scope) ON CONFLICT (scope, quota, day) DO UPDATE "
            "SET used = quota_usage.used + 1 "
            f"WHERE quota_usage.used < CASE quota_usage.scope {limits} END "
            "RETURNING quota_usage.scope)"
        )
        refusals += [
            f"WHEN NOT EXISTS (SELECT 1 FROM charged WHERE scope = CAST(:d{i}_scope AS varchar)) "
            f"THEN oxify_refuse_run('runs', CAST(:d{i}_scope AS text))"
            for i in range(daily)
        ]
    refusals += [
        f"WHEN (SELECT n{i} FROM unfinished) >= CAST(:c{i}_limit AS bigint) "
        f"THEN oxify_refuse_run('concurrent', CAST(:c{i}_scope AS text))"
        for i in range(concurrent)
    ]
    verdict = f"CASE {' '.join(refusals)} ELSE 1 END" if refusals else "1"
    ctes.append(f"admitted AS MATERIALIZED (SELECT {verdict} AS ok FROM locks)")
    columns = ", ".join(_RUN_COLUMNS)
    values = ", ".join(f"CAST(:{name} AS {_pg_type(name)})" for name in _RUN_COLUMNS)
    ctes.append(
        f"run_ AS (INSERT INTO executions ({columns}) SELECT {values} FROM admitted RETURNING id)"
    )
    ctes.append(
        "hold_ AS (INSERT INTO run_quotas (execution_id, project, key_id, active) "
        "SELECT CAST(:id AS varchar), CAST(:project AS varchar), CAST(:key_id AS varchar), "
        "true FROM admitted)"
    )
    if idempotent:
        ctes.append(
            "idem_ AS (INSERT INTO idempotency_keys (workflow_id, key, request_hash, "
            "execution_id, created_at) SELECT CAST(:workflow_id AS varchar), "
            "CAST(:idem_key AS varchar), CAST(:idem_hash AS varchar), id, "
            "CAST(:created_at AS timestamptz) FROM run_)"
        )
    ctes.append(
        audit.pg_statement(lambda name: f":audit_{name}", guard="EXISTS (SELECT 1 FROM admitted)")
    )
    sql = f"WITH {', '.join(ctes)} SELECT id FROM run_"
    json_type = executions.c.inputs.type
    return text(sql).bindparams(
        bindparam("inputs", type_=json_type), bindparam("config", type_=json_type)
    )


def _pg_type(column: str) -> str:
    return {
        "workflow_version": "integer",
        "inputs": "jsonb",
        "config": "jsonb",
        "created_at": "timestamptz",
        "updated_at": "timestamptz",
    }.get(column, "varchar")


# -- SQLite: the same steps, serialized by its single writer ----------------------------------


async def _submit_serially(conn: AsyncConnection, new: NewRun) -> None:
    if new.workflow_head is not None:
        head = await workflow_store.workflow_head(conn, new.workflow_id, project=new.project)
        if head is None or head[:2] != (new.workflow_head, False):
            raise HeadChanged(new.workflow_id)
    await runs.insert_execution(
        conn,
        execution_id=new.id,
        workflow_id=new.workflow_id,
        workflow_version=new.workflow_version,
        inputs=new.inputs,
        config=new.config,
        started_by=new.started_by,
        trace_context=new.trace_context,
        now=new.created_at,
        project=new.project,
    )
    if new.concurrent:
        counts = await quotas.active_counts(
            conn, [(lim.column, lim.value) for lim in new.concurrent]
        )
        for limit, count in zip(new.concurrent, counts, strict=True):
            if count >= limit.limit:
                raise QuotaReached("concurrent", limit)
    await quotas.hold(conn, new.id, new.project, new.key_id)
    day = windows.window(new.created_at)
    for limit in new.runs_per_day:
        if await quotas.charge(conn, limit.scope, "runs", day, 1, limit.limit) is None:
            raise QuotaReached("runs", limit)
    if new.idempotency is not None:
        key, request_hash = new.idempotency
        await runs.insert_idempotency(
            conn,
            workflow_id=new.workflow_id,
            key=key,
            request_hash=request_hash,
            execution_id=new.id,
            now=new.created_at,
        )
    await audit.append(conn, new.audit)
