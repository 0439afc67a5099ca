"""Durable execution on Postgres, in-process (engine + SQL journal, no HTTP).

``python -m bench.durable [S1 S2 S3 S4]`` (all four by default; ``OXIFY_BENCH_DATABASE_URL`` or
``OXIFY_TEST_DATABASE_URL``, default the local test database; a scratch database is created
and dropped). Each scenario runs 5 times; the median is printed with min and max.

S1  a 100-node chain of no-op transform nodes, ``every_node`` checkpoints: each node's result
    (and its events) committed before its successor starts — ms per node, beside this machine's
    single-row commit latency through asyncpg.
S2  start → 50 parallel no-op nodes → join: total ms.
S3  200 runs of 10-node chains, 20 at a time: durable node results per second (group commit
    lets concurrent runs share transactions).
S4  one node streams 10,000 items (``ctx.stream()``), in a tight loop and paced over ~0.6 s:
    ``node.token`` rows written, and the CPU the run costs beyond the same node only building
    the items (both measured in this process, the journal's writer included).
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
from opentelemetry.trace import Tracer
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain.node_types import NodeConfig, NodeType
from app.domain.run import RunConfig
from app.domain.status import ExecutionStatus
from app.engine.compile.graph import content_hash
from app.engine.ports import RunObserver
from app.engine.run.context import NodeContext
from app.engine.run.observe import UNWATCHED
from app.engine.run.outcomes import NodeOutput
from app.engine.run.scheduler import RunRequest, Scheduler
from app.nodes.registry import core_registry
from app.nodes.resources import NodeResources
from app.store import db
from app.store import executions as executions_store
from app.store import workflows as workflows_store
from app.store.journal import SqlJournal

RUNS = 5
DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def chain(size: int) -> dict[str, Any]:
    nodes = [{"id": f"n{i}", "type": "transform", "config": {"value": i}} for i in range(size)]
    edges = [{"from": f"n{i}", "to": f"n{i + 1}"} for i in range(size - 1)]
    return {"name": f"chain-{size}", "nodes": nodes, "edges": edges}


def fan(width: int) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": "start", "type": "start"}]
    nodes += [{"id": f"p{i}", "type": "transform", "config": {"value": i}} for i in range(width)]
    nodes.append({"id": "join", "type": "end"})
    edges = [{"from": "start", "to": f"p{i}"} for i in range(width)]
    edges += [{"from": f"p{i}", "to": "join"} for i in range(width)]
    return {"name": f"fan-{width}", "nodes": nodes, "edges": edges}


ITEMS = 10_000


class ItemsConfig(NodeConfig):
    items: int
    stream: bool = True
    paced: bool = False


class Items:
    """Builds ``items`` short texts and streams them, or only keeps them (the baseline)."""

    async def execute(self, ctx: NodeContext) -> NodeOutput:
        config: Any = ctx.config
        tokens = ctx.stream() if config.stream else None
        kept: list[str] = []
        for i in range(config.items):
            text = f"tok{i} "
            if tokens is not None:
                tokens.write(text)
            else:
                kept.append(text)
            if config.paced and i % 100 == 99:
                await asyncio.sleep(0.005)
        return NodeOutput(config.items)


def items(*, stream: bool, paced: bool) -> dict[str, Any]:
    config = {"items": ITEMS, "stream": stream, "paced": paced}
    return {"name": "items", "nodes": [{"id": "items", "type": "bench.items", "config": config}]}


class Bench:
    """The scenarios' harness. ``observer`` watches nodes (metrics, spans); with ``tracer`` each
    run is under a segment span of its own, as the runner makes them."""

    def __init__(
        self,
        engine: AsyncEngine,
        resources: NodeResources | None = None,
        *,
        observer: RunObserver = UNWATCHED,
        tracer: Tracer | None = None,
    ) -> None:
        registry = core_registry(resources or NodeResources()).with_type(
            NodeType("bench.items", ItemsConfig), Items()
        )
        self.engine = engine
        self.journal = SqlJournal(engine)
        self.scheduler = Scheduler(
            executors=registry.executors,
            events=self.journal,
            checkpoints=self.journal,
            node_types=registry.node_types,
            observer=observer,
        )
        self.tracer = tracer

    async def workflow(self, document: dict[str, Any]) -> str:
        workflow_id = str(uuid.uuid4())
        async with self.engine.begin() as conn:
            await workflows_store.insert_workflow(
                conn,
                workflow_id=workflow_id,
                name=document["name"],
                document=document,
                content_hash=content_hash(document),
                now=datetime.now(UTC),
                project="default",
            )
        return workflow_id

    async def executions(self, workflow_id: str, count: int) -> list[str]:
        ids = [str(uuid.uuid4()) for _ in range(count)]
        async with self.engine.begin() as conn:
            for execution_id in ids:
                await executions_store.insert_execution(
                    conn,
                    execution_id=execution_id,
                    workflow_id=workflow_id,
                    workflow_version=1,
                    inputs={},
                    config={},
                    status=ExecutionStatus.RUNNING,  # as a claim leaves it: driven
                    now=datetime.now(UTC),
                )
        return ids

    async def token_rows(self, execution_id: str) -> int:
        async with self.engine.connect() as conn:
            count = await conn.scalar(
                text("SELECT count(*) FROM events WHERE execution_id = :id AND type = :type"),
                {"id": execution_id, "type": "node.token"},
            )
        return int(count or 0)

    async def run(self, document: dict[str, Any], execution_id: str) -> None:
        request = RunRequest(
            execution_id, self.scheduler.plan(document), {}, RunConfig(checkpoint="every_node")
        )
        if self.tracer is None:
            outcome = await self.scheduler.run(request)
        else:
            with self.tracer.start_as_current_span(f"invoke_workflow {document['name']}"):
                outcome = await self.scheduler.run(request)
        assert outcome.status is ExecutionStatus.COMPLETED, outcome


async def timed(repeat: int, make: Callable[[], Awaitable[float]]) -> list[float]:
    return [await make() for _ in range(repeat)]


def summary(values: list[float], unit: str, digits: int = 3) -> str:
    return (
        f"{statistics.median(values):.{digits}f} {unit} "
        f"(min {min(values):.{digits}f}, max {max(values):.{digits}f}; median of {len(values)})"
    )


async def commit_latency_ms(dsn: str) -> list[float]:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("CREATE TABLE IF NOT EXISTS bench_commit (id int, v text)")
        samples = []
        for i in range(200):
            start = time.perf_counter()
            await connection.execute("INSERT INTO bench_commit VALUES ($1, 'x')", i)
            samples.append((time.perf_counter() - start) * 1000)
        return [statistics.median(samples[k : k + 40]) for k in range(0, 200, 40)]
    finally:
        await connection.close()


async def s1(bench: Bench) -> None:
    """A 100-node chain: ms per node."""
    s1 = chain(100)
    s1_id = await bench.workflow(s1)

    async def s1_once() -> float:
        (execution_id,) = await bench.executions(s1_id, 1)
        start = time.perf_counter()
        await bench.run(s1, execution_id)
        return (time.perf_counter() - start) * 1000 / len(s1["nodes"])

    await s1_once()  # warm-up: plan cache, connections
    s1_ms = await timed(RUNS, s1_once)
    print(f"S1 100-node chain, every_node, commit per step: {summary(s1_ms, 'ms/node')}")


async def s2(bench: Bench) -> None:
    """start → 50 parallel → join: total ms."""
    s2 = fan(50)
    s2_id = await bench.workflow(s2)

    async def s2_once() -> float:
        (execution_id,) = await bench.executions(s2_id, 1)
        start = time.perf_counter()
        await bench.run(s2, execution_id)
        return (time.perf_counter() - start) * 1000

    await s2_once()
    print(f"S2 start → 50 parallel → join: {summary(await timed(RUNS, s2_once), 'ms', 1)}")


S3_DOCUMENT = chain(10)


async def s3_round(bench: Bench, workflow_id: str) -> tuple[float, int]:
    """One round of S3: node results per second, and the journal's commits."""
    ids = await bench.executions(workflow_id, 200)
    gate = asyncio.Semaphore(20)
    commits_before = bench.journal.commits

    async def one(execution_id: str) -> None:
        async with gate:
            await bench.run(S3_DOCUMENT, execution_id)

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in ids))
    elapsed = time.perf_counter() - start
    return 200 * len(S3_DOCUMENT["nodes"]) / elapsed, bench.journal.commits - commits_before


async def s3(bench: Bench) -> None:
    """200 runs of 10-node chains, 20 at a time: node results per second."""
    workflow_id = await bench.workflow(S3_DOCUMENT)
    rounds = [await s3_round(bench, workflow_id) for _ in range(RUNS)]
    print(
        f"S3 200 runs x 10-node chains, 20 at a time: "
        f"{summary([rate for rate, _ in rounds], 'node results/s', 0)}; "
        f"{rounds[-1][1]} commits in the last round"
    )


async def s4(bench: Bench) -> None:
    """One node streaming 10,000 items: token rows, and CPU beyond building the items."""
    for paced in (False, True):
        streamed = await bench.workflow(items(stream=True, paced=paced))
        built = await bench.workflow(items(stream=False, paced=paced))
        cpu: dict[bool, list[float]] = {True: [], False: []}
        rows: list[int] = []
        for _ in range(RUNS + 1):  # the first round warms up
            for stream, workflow_id in ((True, streamed), (False, built)):
                (execution_id,) = await bench.executions(workflow_id, 1)
                document = items(stream=stream, paced=paced)
                start = time.process_time()
                await bench.run(document, execution_id)
                cpu[stream].append((time.process_time() - start) * 1000)
                if stream:
                    rows.append(await bench.token_rows(execution_id))
        beyond = [s - b for s, b in zip(cpu[True][1:], cpu[False][1:], strict=True)]
        how = "paced over ~0.6 s" if paced else "tight loop"
        print(
            f"S4 one node streams {ITEMS:,} items, {how}: {max(rows[1:])} node.token rows "
            f"(max of {RUNS}); CPU beyond building the items {summary(beyond, 'ms', 2)} "
            f"(building them alone: {summary(cpu[False][1:], 'ms', 2)})"
        )


SCENARIOS = {"S1": s1, "S2": s2, "S3": s3, "S4": s4}


async def main(url: str, scenarios: list[str]) -> None:
    admin_dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"oxify_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    bench_url = make_url(url).set(database=name).render_as_string(hide_password=False)
    engine = db.create_engine(bench_url)
    try:
        await db.migrate(bench_url)
        bench = Bench(engine)
        bench_dsn = make_url(bench_url).set(drivername="postgresql")
        commits = await commit_latency_ms(bench_dsn.render_as_string(hide_password=False))
        print(f"single-row commit (asyncpg, autocommit insert): {summary(commits, 'ms')}")

        for scenario in scenarios:
            await SCENARIOS[scenario](bench)
    finally:
        await bench.journal.close() if "bench" in locals() else None
        await engine.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    # As `oxify serve` does once started: what the imports built is kept out of full collections.
    gc.freeze()
    asyncio.run(
        main(
            os.environ.get("OXIFY_BENCH_DATABASE_URL")
            or os.environ.get("OXIFY_TEST_DATABASE_URL")
            or DEFAULT_URL,
            [s.upper() for s in sys.argv[1:]] or list(SCENARIOS),
        )
    )
