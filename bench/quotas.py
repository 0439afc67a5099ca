"""What exact quotas cost a run submission: ``python -m bench.quotas [SUBMITS]``.

On a scratch Postgres database (``OXIFY_BENCH_DATABASE_URL`` or ``OXIFY_TEST_DATABASE_URL``):

1  the quota check alone, timed inside the transaction that inserts the run (as
   ``ExecutionService.start`` does): with concurrent runs and runs/day limited on both the key
   and the project (two advisory locks, the hold, two counts, two conditional upserts), and
   with no limit at all (the hold only). Target p50 ≤ 0.5 ms.
2  commits and statements per submission through ``ExecutionService.start``, limits on and
   off, counted on the engine: the quota adds no commit (target: the same number).

Prints numbers, asserts nothing. The service's runner is not started: nothing competes with the
submissions for the CPU or the database.
"""

from __future__ import annotations

import asyncio
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
from app.auth.principal import Principal
from app.auth.scopes import Scope
from app.domain.limits import Limits
from app.services.limits import LimitService
from app.store import db
from app.store import executions as runs
from bench._server import database_url, describe, scratch_database

SUBMITS = 2000
WARMUP = 200
UNFINISHED = 50  # queued runs of the limited key and project while the check is timed
LIMITED = Limits(concurrent_runs=1_000, runs_per_day=1_000_000_000)
DAILY = Limits(runs_per_day=1_000_000_000)


def principal(limits: Limits | None, project: str) -> Principal:
    key = uuid.uuid4().hex[:12]
    return Principal(scopes=frozenset({Scope.RUNNER}), project=project, key_id=key, limits=limits)


async def check_cost(
    engine: Any, limits: LimitService, workflow_id: str, caller: Principal, n: int
) -> list[float]:
    """Milliseconds of ``charge_run`` in a transaction that inserted the run first, rolled
    back after (the state stays the same: UNFINISHED runs, the counters as they were)."""
    samples = []
    for i in range(n + WARMUP):
        execution_id = str(uuid.uuid4())
        now = datetime.now(UTC)
        async with engine.connect() as conn:
            transaction = await conn.begin()
            await insert(conn, execution_id, workflow_id, now)
            started = time.perf_counter()
            await limits.charge_run(conn, execution_id, caller, caller.project or "default", now)
            if i >= WARMUP:
                samples.append((time.perf_counter() - started) * 1000)
            await transaction.rollback()
    return samples


async def insert(conn: Any, execution_id: str, workflow_id: str, now: datetime) -> None:
    await runs.insert_execution(
        conn,
        execution_id=execution_id,
        workflow_id=workflow_id,
        workflow_version=1,
        inputs={},
        config={},
        now=now,
    )


async def unfinished(
    engine: Any, limits: LimitService, workflow_id: str, caller: Principal
) -> None:
    """UNFINISHED queued runs of the caller's key and project, then fresh statistics."""
    for _ in range(UNFINISHED):
        execution_id, now = str(uuid.uuid4()), datetime.now(UTC)
        async with engine.begin() as conn:
            await insert(conn, execution_id, workflow_id, now)
            await limits.charge_run(conn, execution_id, caller, caller.project or "default", now)
    async with engine.connect() as conn:
        await conn.execute(text("ANALYZE"))


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
            created = await services.workflows.create(
                {"name": "one", "nodes": [{"id": "start", "type": "start"}]}
            )
            await limits.set_project_limits("daily", DAILY)
            cases = {
                "concurrent + runs/day, key and project": principal(LIMITED, "limited"),
                "runs/day, key and project": principal(DAILY, "daily"),
                "no limits (the hold only)": principal(None, "open"),
            }
            await unfinished(engine, limits, created.id, cases[next(iter(cases))])
            print(
                f"1. quota check inside the submit transaction, {n} submissions each "
                f"({UNFINISHED} unfinished runs of the key and project)"
            )
            for label, caller in cases.items():
                samples = await check_cost(engine, limits, created.id, caller, n)
                print(f"   {label}: {describe(samples, 'ms', 3)}")
            print("2. per ExecutionService.start (the submit itself, no HTTP)")
            for label, caller in cases.items():
                commits, statements = await per_submit(services, created.id, caller)
                print(f"   {label}: {commits:.2f} commits, {statements:.2f} statements")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else SUBMITS))
