"""What exact quotas cost a run submission: ``python -m bench.quotas [SUBMITS]``.

On a scratch Postgres database (``OXIFY_BENCH_DATABASE_URL`` or ``OXIFY_TEST_DATABASE_URL``):

1  the submission's statement (:mod:`app.store.submissions`: the run, its quota charges, its
   hold and its audit row, one autocommit statement): with concurrent runs and runs/day
   limited on both the key and the project (two advisory locks, two counts, two conditional
   upserts), with runs/day only, and with no limit (the hold only). What the quotas cost is
   the difference to the last (target ≤ 0.5 ms).
2  commits and statements per submission through ``ExecutionService.start``, limits on and
   off, counted on the engine: the quota adds no commit (target: the same number).

Prints numbers, asserts nothing. The service's runner is not started: nothing competes with the
submissions for the CPU or the database.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import event, text

from app.auth import context
from app.auth.audit import OK, AuditEntry
from app.auth.principal import Principal
from app.auth.scopes import Scope
from app.domain.limits import Limits
from app.services.limits import LimitService
from app.store import db, submissions
from bench._server import database_url, describe, scratch_database

SUBMITS = 2000
WARMUP = 200
UNFINISHED = 50  # the runs of each key and project left unfinished while the rest are timed
_ENDED = text(
    "WITH ended AS (UPDATE executions SET status = 'completed' WHERE id = :id) "
    "UPDATE run_quotas SET active = false WHERE execution_id = :id"
)
LIMITED = Limits(concurrent_runs=1_000_000, runs_per_day=1_000_000_000)
DAILY = Limits(runs_per_day=1_000_000_000)


def principal(limits: Limits | None, project: str) -> Principal:
    key = uuid.uuid4().hex[:12]
    return Principal(scopes=frozenset({Scope.RUNNER}), project=project, key_id=key, limits=limits)


async def submission_cost(
    engine: Any, limits: LimitService, workflow_id: str, caller: Principal, n: int
) -> list[float]:
    """Milliseconds of each submission's statement, committed (the runs stay queued: nothing
    runs them)."""
    samples = []
    project = caller.project or "default"
    daily, concurrent = limits.run_limits(caller, project)
    for i in range(n + WARMUP):
        run_id, now = str(uuid.uuid4()), datetime.now(UTC)
        new = submissions.NewRun(
            id=run_id,
            project=project,
            workflow_id=workflow_id,
            workflow_version=1,
            inputs={},
            config={},
            created_at=now,
            audit=AuditEntry(now, caller.actor, "run.start", run_id, project, OK),
            key_id=caller.key_id,
            runs_per_day=daily,
            concurrent=concurrent,
        )
        async with db.one_statement(engine) as conn:
            started = time.perf_counter()
            await submissions.submit(conn, new)
            if i >= WARMUP:
                samples.append((time.perf_counter() - started) * 1000)
            if i >= UNFINISHED:  # it ends at once: the count stays at UNFINISHED runs
                await conn.execute(_ENDED, {"id": run_id})
        if i == UNFINISHED:
            async with engine.connect() as conn:
                await conn.execute(text("ANALYZE"))
    return samples


async def per_submit(services: Any, workflow_id: str, caller: Principal) -> tuple[float, float]:
    """Commits and statements per ``ExecutionService.start``, counted on the service's engine
    (its reads included: autocommit reads issue no COMMIT)."""
    submits = 300
    counts = {"commit": 0, "statement": 0}

    def committed(*_: Any) -> None:
        counts["commit"] += 1

    def executed(*_: Any) -> None:
        counts["statement"] += 1

    engine = services.engine.sync_engine
    event.listen(engine, "commit", committed)
    event.listen(engine, "before_cursor_execute", executed)
    token = context.bind(context.RequestContext(caller))
    try:
        for _ in range(submits):
            await services.executions.start(workflow_id, inputs={}, config=None)
    finally:
        context.reset(token)
        event.remove(engine, "commit", committed)
        event.remove(engine, "before_cursor_execute", executed)
    return counts["commit"] / submits, counts["statement"] / submits


async def workflow_of(services: Any, caller: Principal) -> str:
    """A one-node workflow in the caller's project (a run belongs to its workflow's)."""
    token = context.bind(context.RequestContext(caller))
    try:
        created = await services.workflows.create(
            {"name": "one", "nodes": [{"id": "start", "type": "start"}]}
        )
    finally:
        context.reset(token)
    return str(created.id)


async def main(n: int) -> None:
    from app.main import running_services
    from app.observability.metrics import Metrics
    from app.settings import Settings

    async with scratch_database(database_url()) as url:
        await db.migrate(url)
        settings = Settings(database_url=url, max_concurrent_runs=1, limits_refresh_s=3600)
        metrics = Metrics(version="bench", max_workflows=5, max_models=5)
        async with running_services(settings, metrics) as services:
            await services.runner.shutdown(0)  # submissions only: nothing runs them
            limits = services.limits
            await limits.set_project_limits("limited", LIMITED)
            engine = services.engine
            await limits.set_project_limits("daily", DAILY)
            cases = {
                "concurrent + runs/day, key and project": principal(LIMITED, "limited"),
                "runs/day, key and project": principal(DAILY, "daily"),
                "no limits (the hold only)": principal(None, "open"),
            }
            print(
                f"1. the submission's statement, {n} submissions each after {WARMUP} "
                f"({UNFINISHED} unfinished runs of the key and project; each timed run is "
                "ended after it was timed)"
            )
            workflows = {label: await workflow_of(services, c) for label, c in cases.items()}
            p50s = {}
            for label, caller in cases.items():
                samples = await submission_cost(engine, limits, workflows[label], caller, n)
                p50s[label] = statistics.median(samples)
                print(f"   {label}: {describe(samples, 'ms', 3)}")
            bare = p50s["no limits (the hold only)"]
            for label, p50 in list(p50s.items())[:-1]:
                print(f"   the quotas' cost, {label}: {p50 - bare:+.3f} ms at p50")
            print("2. per ExecutionService.start (the submit itself, no HTTP)")
            for label, caller in cases.items():
                commits, statements = await per_submit(services, workflows[label], caller)
                print(f"   {label}: {commits:.2f} commits, {statements:.2f} statements")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else SUBMITS))
