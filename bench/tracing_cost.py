"""What tracing costs a node (the ``tracing`` section of ``python -m bench.observability``).

Targets: off ≤ 1 µs per node, 1 % sampled ≤ 3 µs, 100 % sampled ≤ 30 µs. Spans go through the
real batch processor to an exporter that drops them (the network is not the engine's cost).

- observer: exactly the calls the engine makes per node (node, one attempt, their ends) under a
  segment span, 100 segments of 100 nodes; 1 % sampled is a parent-based 1 % ratio, each
  segment a trace of its own (so about one in a hundred is recorded). Off is the no-op observer
  (tracing off installs nothing else).
- engine: a 10,000-node chain of no-op ``transform`` nodes through the scheduler (bench.engine's
  chain), inside one segment, with tracing off, sampled out, and recorded; the difference to
  off, per node. 1 % is then 0.99 * sampled out + 0.01 * recorded.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, TraceIdRatioBased

from app.domain.run import RunConfig
from app.domain.status import ExecutionStatus
from app.engine.compile.graph import Limits
from app.engine.ports import RunObserver
from app.engine.run.observe import UNWATCHED
from app.engine.run.scheduler import RunRequest, Scheduler
from app.observability.node_spans import SpanObserver
from app.store.memory import MemoryStore
from bench.engine import REGISTRY, SIZE, chain

SEGMENTS = 100
NODES = 100  # per segment
RUNS = 5


class Dropped(SpanExporter):
    """Takes every batch and keeps nothing."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        del spans
        return SpanExportResult.SUCCESS


def provider(ratio: float | None) -> TracerProvider:
    """Recording everything (None), or a parent-based ``ratio`` of traces."""
    sampler = ALWAYS_ON if ratio is None else ParentBased(TraceIdRatioBased(ratio))
    made = TracerProvider(sampler=sampler)
    made.add_span_processor(BatchSpanProcessor(Dropped()))
    return made


def observer_us(made: TracerProvider | None) -> tuple[float, float]:
    """Microseconds per node of the observer's calls, wall and CPU (the process's, the batch
    processor's thread included), median of RUNS."""
    tracer = (made or TracerProvider(sampler=ALWAYS_OFF)).get_tracer("bench")
    observer: RunObserver = UNWATCHED if made is None else SpanObserver(tracer)
    keys = [f"n{i}" for i in range(NODES)]
    walls, cpus = [], []
    for _ in range(RUNS):
        wall = cpu = 0.0
        for _ in range(SEGMENTS):
            with tracer.start_as_current_span("invoke_workflow bench"):
                started, started_cpu = time.perf_counter(), time.process_time()
                for key in keys:
                    node = observer.node(key, "transform")
                    node.attempt(1).end("completed")
                    node.end("completed")
                wall += time.perf_counter() - started
                cpu += time.process_time() - started_cpu
        walls.append(wall / (SEGMENTS * NODES) * 1e6)
        cpus.append(cpu / (SEGMENTS * NODES) * 1e6)
    return statistics.median(walls), statistics.median(cpus)


async def chain_run(observer: RunObserver, made: TracerProvider) -> float:
    store = MemoryStore()
    scheduler = Scheduler(
        executors=REGISTRY.executors,
        events=store,
        checkpoints=store,
        node_types=REGISTRY.node_types,
        limits=Limits(max_nodes=200_000, max_edges=400_000),
        observer=observer,
    )
    plan = scheduler.plan(chain(SIZE))
    config = RunConfig(checkpoint="never", max_concurrency=16)
    with made.get_tracer("bench").start_as_current_span("invoke_workflow chain"):
        started = time.perf_counter()
        outcome = await scheduler.run(RunRequest("bench", plan, {}, config))
        elapsed = time.perf_counter() - started
    assert outcome.status is ExecutionStatus.COMPLETED, outcome
    return elapsed / SIZE * 1e6


def bare_span_us(made: TracerProvider) -> float:
    """One span started and ended, nothing else: what the SDK costs on this machine."""
    tracer = made.get_tracer("bench")
    started = time.perf_counter()
    for _ in range(SEGMENTS * NODES):
        tracer.start_span("bare").end()
    return (time.perf_counter() - started) / (SEGMENTS * NODES) * 1e6


def bench_tracing() -> None:
    gc.freeze()  # as bench.engine and the server do: what imports built stays out of GC passes
    full, one_percent, unsampled = provider(None), provider(0.01), provider(0.0)
    print(f"tracing, observer calls per node ({SEGMENTS} segments of {NODES} nodes, median of 5)")
    for name, made in (("off", None), ("1 % sampled", one_percent), ("100 % sampled", full)):
        wall, cpu = observer_us(made)
        print(f"  {name:<14} {wall:6.2f} µs/node (CPU {cpu:.2f})")
    print(f"  (one bare SDK span, started and ended: {bare_span_us(full):.2f} µs)")
    print(f"tracing in the engine, {SIZE:,}-node chain (µs/node, median of {RUNS}, interleaved)")
    setups = {
        "off": (UNWATCHED, unsampled),
        "sampled out": (SpanObserver(unsampled.get_tracer("oxify")), unsampled),
        "recorded": (SpanObserver(full.get_tracer("oxify")), full),
    }
    times: dict[str, list[float]] = {name: [] for name in setups}
    for _ in range(RUNS):  # interleaved: a machine busy for a while slows all three alike
        for name, (observer, made) in setups.items():
            times[name].append(asyncio.run(chain_run(observer, made)))
    off, out, recorded = (statistics.median(times[name]) for name in setups)
    print(f"  off            {off:6.2f} µs/node")
    print(f"  sampled out    {out:6.2f} µs/node (+{out - off:.2f})")
    print(f"  recorded       {recorded:6.2f} µs/node (+{recorded - off:.2f})")
    print(f"  1 % sampled    +{0.99 * (out - off) + 0.01 * (recorded - off):.2f} µs/node")
    for made in (full, one_percent, unsampled):
        made.shutdown()
