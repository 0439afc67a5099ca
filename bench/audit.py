"""What the audit row costs a run start: the start's transaction as ``ExecutionService.start``
writes it (the execution row, then the audit row as the last statement), with and without the
audit row.

``python -m bench.audit`` (``OXIFY_BENCH_DATABASE_URL`` or ``OXIFY_TEST_DATABASE_URL``, default
the local test database; a scratch database is created and dropped; an SQLite file beside it):

- sequential: one start after the other, latency per start (median, p99);
- concurrent: ``CONCURRENCY`` starters at once, starts per second: every audited start waits for
  the chain's head row, held through the previous holder's commit, so audited starts commit one
  after the other and their rate is bounded by 1 / (commit latency), printed beside it.

Modes alternate round by round so drift on a shared machine hits both alike.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.services import audit
from app.services.audit import AuditAction
from app.store import audit as audit_store
from app.store import db, workflows
from app.store import executions as store
from bench._server import database_url, scratch_database
from bench.durable import commit_latency_ms

ROUNDS = 6
SEQUENTIAL = 200  # starts per mode and round
CONCURRENCY = 32  # starters at once
CONCURRENT = 1000  # starts per mode and round
WORKFLOW_ID = "bench-audit"


async def start(engine: AsyncEngine, audited: bool) -> None:
    execution_id = str(uuid.uuid4())
    async with engine.begin() as conn:
        await store.insert_execution(
            conn,
            execution_id=execution_id,
            workflow_id=WORKFLOW_ID,
            workflow_version=1,
            inputs={"n": 1},
            config={},
            now=datetime.now(UTC),
        )
        if audited:
            await audit.record(
                conn,
                action=AuditAction.RUN_START,
                target=execution_id,
                detail={"workflow_id": WORKFLOW_ID, "version": 1},
            )


async def sequential(engine: AsyncEngine, audited: bool) -> list[float]:
    samples = []
    for _ in range(SEQUENTIAL):
        began = time.perf_counter()
        await start(engine, audited)
        samples.append((time.perf_counter() - began) * 1000)
    return samples


async def concurrent(engine: AsyncEngine, audited: bool) -> float:
    remaining = CONCURRENT

    async def starter() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await start(engine, audited)

    began = time.perf_counter()
    await asyncio.gather(*(starter() for _ in range(CONCURRENCY)))
    return CONCURRENT / (time.perf_counter() - began)


async def alternate(
    measure: Callable[[bool], Awaitable[list[float] | float]],
) -> dict[bool, list[float]]:
    results: dict[bool, list[float]] = {False: [], True: []}
    for round_ in range(ROUNDS):
        for audited in (False, True) if round_ % 2 == 0 else (True, False):
            value = await measure(audited)
            results[audited] += value if isinstance(value, list) else [value]
    return results


def p99(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.99)]


async def bench(label: str, url: str, *, with_concurrency: bool) -> None:
    await db.migrate(url)
    engine = db.create_engine(url)
    try:
        async with engine.begin() as conn:
            await workflows.insert_workflow(
                conn,
                workflow_id=WORKFLOW_ID,
                name="bench",
                document={"name": "bench", "nodes": [], "edges": []},
                content_hash="0" * 64,
                now=datetime.now(UTC),
            )
        await sequential(engine, True)  # warm the pool and the statements
        latency = await alternate(lambda audited: sequential(engine, audited))
        plain, audited = latency[False], latency[True]
        added = statistics.median(audited) - statistics.median(plain)
        print(
            f"{label} sequential start: without audit {statistics.median(plain):.3f} ms "
            f"(p99 {p99(plain):.3f}), with audit {statistics.median(audited):.3f} ms "
            f"(p99 {p99(audited):.3f}); added {added:.3f} ms"
        )
        if with_concurrency:
            rates = await alternate(lambda audited: concurrent(engine, audited))
            print(
                f"{label} {CONCURRENCY} concurrent starters: without audit "
                f"{statistics.median(rates[False]):.0f} starts/s, with audit "
                f"{statistics.median(rates[True]):.0f} starts/s (median of {ROUNDS} rounds)"
            )
        async with engine.connect() as conn:
            count, _hash = await audit_store.head(conn)
        print(f"{label} audit rows written: {count}")
    finally:
        await engine.dispose()


async def main() -> None:
    async with scratch_database(database_url()) as url:
        commits = await commit_latency_ms(
            make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        )
        print(f"postgres single-row commit: {statistics.median(commits):.3f} ms")
        await bench("postgres", url, with_concurrency=True)
    with tempfile.TemporaryDirectory() as directory:
        await bench(
            "sqlite", f"sqlite+aiosqlite:///{Path(directory) / 'bench.db'}", with_concurrency=False
        )


if __name__ == "__main__":
    asyncio.run(main())
