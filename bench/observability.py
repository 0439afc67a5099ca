"""Observability and analysis costs: ``python -m bench.observability [SECTION ...]``.

Sections:

- ``profile``: a run profile of a 10,000-node run (target ≤ 100 ms). The document is 100 levels
  of 100 ``transform`` nodes, each depending on two nodes of the level before and reading one
  of them (so half the edges are unread); the run's node events are synthetic (each node starts
  when its last dependency ends, plus a little queueing; one node in 50 retries once). Timed:
  the timelines from the events plus the profile, median of 5; the database reads and the
  planning (cached per version in the service) are not in it.
- ``scrape``: ``GET /metrics`` of a serving app (SQLite, a real uvicorn in-process) whose registry
  holds at least 10,000 series (HTTP histograms of synthetic routes on top of what a started
  app reports), scraped 200 times one after another (target p99 ≤ 50 ms), while a ticker task
  on the same event loop records how late it wakes (target: the longest stall ≤ 10 ms).
- ``tracing``: what tracing costs a node, off, 1 % and 100 % sampled (see bench/tracing_cost.py;
  targets ≤ 1, 3 and 30 µs).
- ``requests``: what the FastAPI instrumentation costs a request: ``GET /v1/node-types``
  through ASGI in-process, 2,000 times, on an app without tracing and on one whose every request
  is a recorded server span (spans batched to an exporter that drops them); CPU per request,
  the difference against the target ≤ 100 µs.
- ``durable``: bench/durable.py's S3 (200 runs of 10-node chains, 20 at a time, on Postgres)
  with everything off; with node metrics and JSON logs at info (to /dev/null); and with those
  and tracing, 1 % and 100 % of runs sampled (spans batched to an exporter that drops them);
  rounds interleaved, medians compared (target: all on ≤ 5 % below all off).
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `app` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.domain.events import Event, EventType
from app.domain.status import ExecutionStatus
from app.engine.analysis import profile
from app.engine.compile import graph
from app.engine.compile.plan import Plan
from bench.tracing_cost import bench_tracing

RUNS = 5
LEVELS = 100
WIDTH = 100  # LEVELS * WIDTH = 10,000 nodes
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def wide_deep_document(seed: int = 0) -> dict[str, Any]:
    """LEVELS levels of WIDTH nodes; each node after the first level has two sources in the
    level before and reads the first of them."""
    rng = random.Random(seed)
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, str]] = []
    for level in range(LEVELS):
        for i in range(WIDTH):
            node_id = f"n{level}_{i}"
            if level == 0:
                nodes.append({"id": node_id, "type": "transform", "config": {"value": i}})
                continue
            sources = rng.sample(range(WIDTH), 2)
            read = f"n{level - 1}_{sources[0]}"
            config = {"value": f"{{{{ {read}.output }}}}"}
            nodes.append({"id": node_id, "type": "transform", "config": config})
            edges.extend({"from": f"n{level - 1}_{s}", "to": node_id} for s in sources)
    return {"name": "bench-profile", "nodes": nodes, "edges": edges}


def synthetic_events(plan: Plan, seed: int = 0) -> tuple[list[Event], float]:
    """Node events of a run of ``plan`` in topological order, and the run's end (seconds)."""
    rng = random.Random(seed)
    ends: dict[str, float] = {}
    found: list[Event] = []

    def add(kind: EventType, key: str, at: float, data: dict[str, Any]) -> None:
        ts = T0 + timedelta(seconds=at)
        found.append(Event("bench", len(found) + 1, kind, ts, key, None, data))

    for node_id in plan.order:
        start = max((ends[s] for s in plan.nodes[node_id].sources), default=0.0)
        start += rng.uniform(0, 0.002)
        add(EventType.NODE_STARTED, node_id, start, {"type": "transform", "attempt": 1})
        end = start + rng.uniform(0.001, 0.05)
        if rng.randrange(50) == 0:
            add(EventType.NODE_RETRY, node_id, end, {"delay_ms": 10.0, "retry": 1})
            end += 0.02
        add(EventType.NODE_COMPLETED, node_id, end, {"output": None, "attempt": 1})
        ends[node_id] = end
    return found, max(ends.values())


def bench_profile() -> float:
    """Median milliseconds to profile the 10,000-node run."""
    document = wide_deep_document()
    plan = graph.plan_workflow(document)
    events, end = synthetic_events(plan)
    base = T0.timestamp()
    run = profile.RunTimes("bench", ExecutionStatus.COMPLETED, base, base + end, base + end, 16)
    times, cpu = [], []
    for _ in range(RUNS):
        started, started_cpu = time.perf_counter(), time.process_time()
        found = profile.profile_events(plan, run, events)
        times.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    median = statistics.median(times)
    print(
        f"profile {len(plan.nodes)} nodes, {len(document['edges'])} edges, {len(events)} events: "
        f"{median:.1f} ms (median of {RUNS}; target ≤ 100 ms; CPU {statistics.median(cpu):.1f} "
        f"ms, which other processes on the machine do not inflate); critical path "
        f"{len(found.critical_path)} nodes, {len(found.bottlenecks)} bottlenecks"
    )
    return median


SCRAPES = 200
SERIES = 10_000
TICK_S = 0.001


async def _scrape() -> None:
    import httpx

    from app.api import metrics
    from app.settings import Settings
    from app.store import db
    from tests.e2e.live import serve

    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(database_url=f"sqlite+aiosqlite:///{folder}/bench.db")
        await db.migrate(settings.database_url)
        async with serve(settings) as live, httpx.AsyncClient(base_url=live.url) as client:
            registry = metrics.of(live.app)
            route = 0
            while _series(await client.get("/metrics")) < SERIES:
                for _ in range(100):  # a route's histogram and counter: ~17 series
                    registry.observe_request("GET", f"/bench/{route}", 200, route % 7 / 100)
                    route += 1
            body = (await client.get("/metrics")).text
            stalls: list[float] = []
            ticking = asyncio.create_task(_tick(stalls))
            times = []
            for _ in range(SCRAPES):
                started = time.perf_counter()
                answer = await client.get("/metrics")
                answer.raise_for_status()
                times.append((time.perf_counter() - started) * 1000)
            ticking.cancel()
    print(
        f"scrape {_series(body)} series ({len(body) / 1e6:.1f} MB), {SCRAPES} scrapes: "
        f"p50 {_quantile(times, 0.5):.1f} ms, p99 {_quantile(times, 0.99):.1f} ms (target "
        f"≤ 50 ms); the event loop's stalls while scraping: p50 "
        f"{_quantile(stalls, 0.5) * 1000:.1f} ms, p99 {_quantile(stalls, 0.99) * 1000:.1f} ms, "
        f"longest {max(stalls) * 1000:.1f} ms (target ≤ 10 ms; the server and this client "
        "share the loop, and other processes on the machine inflate it)"
    )


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _series(answer: Any) -> int:
    text = answer if isinstance(answer, str) else answer.text
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


async def _tick(stalls: list[float]) -> None:
    """How late, beyond TICK_S, each wake-up of a task sleeping TICK_S comes."""
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(TICK_S)
        stalls.append(loop.time() - before - TICK_S)


def bench_scrape() -> None:
    asyncio.run(_scrape())


REQUESTS = 2_000


async def _requests() -> None:
    import httpx
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from app.main import create_app
    from app.observability.tracing import Tracing
    from app.settings import Settings
    from app.store import db

    class Dropped(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:  # noqa: ARG002 (dropped)
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropped()))
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(database_url=f"sqlite+aiosqlite:///{folder}/bench.db")
        await db.migrate(settings.database_url)
        apps = {
            "off": create_app(settings, tracing=Tracing()),
            "on": create_app(settings, tracing=Tracing(provider)),
        }
        for _ in range(RUNS):
            for name, app in apps.items():
                transport = httpx.ASGITransport(app=app)
                async with (
                    app.router.lifespan_context(app),
                    httpx.AsyncClient(transport=transport, base_url="http://bench") as client,
                ):
                    await client.get("/v1/node-types")  # warm-up
                    started = time.process_time()
                    for _ in range(REQUESTS):
                        (await client.get("/v1/node-types")).raise_for_status()
                    cpu[name].append((time.process_time() - started) / REQUESTS * 1e6)
                provider.force_flush()
    provider.shutdown()
    # The least of the rounds: the app's background loops (the runner's polls, housekeeping)
    # and the collector add noise of their own to some rounds, never less work.
    off, on = min(cpu["off"]), min(cpu["on"])
    print(
        f"requests, CPU per GET /v1/node-types through ASGI (client included; least of {RUNS} "
        f"x {REQUESTS}): tracing off {off:.0f} µs, every request a server span {on:.0f} µs: "
        f"the request instrumentation costs {on - off:.0f} µs a request (target ≤ 100 µs)"
    )


def bench_requests() -> None:
    asyncio.run(_requests())


async def _durable() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    from app.observability import logs
    from app.observability.metrics import Metrics
    from app.observability.observers import combined
    from app.observability.tracing import Tracing
    from app.store import db
    from bench._server import database_url, scratch_database
    from bench.durable import S3_DOCUMENT, Bench, s3_round

    class Dropped(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:  # noqa: ARG002 (dropped)
            return SpanExportResult.SUCCESS

    def traced(ratio: float) -> Tracing:
        provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(ratio)))
        provider.add_span_processor(BatchSpanProcessor(Dropped()))
        return Tracing(provider)

    metrics = Metrics(version="bench", max_workflows=50, max_models=50)
    tracings = {"1 %": traced(0.01), "100 %": traced(1.0)}
    async with scratch_database(database_url()) as url:
        await db.migrate(url)
        engine = db.create_engine(url)
        benches = {
            "all off": Bench(engine),
            "metrics + logs": Bench(engine, observer=metrics.nodes),
        }
        for ratio, tracing in tracings.items():
            observer = combined([tracing.observer(), metrics.nodes])
            benches[f"metrics + logs + tracing {ratio} sampled"] = Bench(
                engine, observer=observer, tracer=tracing.tracer
            )
        workflow_id = await benches["all off"].workflow(S3_DOCUMENT)
        rates: dict[str, list[float]] = {name: [] for name in benches}
        try:
            await s3_round(benches["all off"], workflow_id)  # warm-up: plans, connections
            with open(os.devnull, "w") as sink:  # noqa: ASYNC230 (opening /dev/null blocks nothing)
                names = list(benches)
                for round_ in range(RUNS):  # each round in another order: none always goes first
                    for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                        bench = benches[name]
                        listener = None
                        if name != "all off":
                            listener = logs.configure(log_format="json", level="info", stream=sink)
                        try:
                            rates[name].append((await s3_round(bench, workflow_id))[0])
                        finally:
                            if listener is not None:
                                listener.stop()
                        # The batched spans are exported now, not during the next round.
                        for tracing in tracings.values():
                            assert tracing.provider is not None
                            tracing.provider.force_flush()
        finally:
            for bench in benches.values():
                await bench.journal.close()
            await engine.dispose()
            for tracing in tracings.values():
                assert tracing.provider is not None
                tracing.provider.shutdown()
    off = statistics.median(rates["all off"])
    print(f"S3 durable node results/s on Postgres (median of {RUNS}, rounds interleaved):")
    for name, values in rates.items():
        rate = statistics.median(values)
        change = "" if name == "all off" else f" ({(rate / off - 1) * 100:+.1f} % vs all off)"
        print(f"  {name:<42} {rate:6.0f}{change}")
    print("  (target: all on ≤ 5 % below all off)")


def bench_durable() -> None:
    asyncio.run(_durable())


SECTIONS = {
    "profile": bench_profile,
    "scrape": bench_scrape,
    "tracing": bench_tracing,
    "requests": bench_requests,
    "durable": bench_durable,
}


def main(argv: list[str]) -> None:
    for name in argv or list(SECTIONS):
        SECTIONS[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
