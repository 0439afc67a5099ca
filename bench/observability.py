"""Observability and analysis costs: ``python -m bench.observability [SECTION ...]``.

Sections:

- ``profile``: a run profile of a 10,000-node run (target ≤ 100 ms). The document is 100 levels
  of 100 ``transform`` nodes, each depending on two nodes of the level before and reading one
  of them (so half the edges are unread); the run's node events are synthetic (each node starts
  when its last dependency ends, plus a little queueing; one node in 50 retries once). Timed:
  the timelines from the events plus the profile, median of 5; the database reads and the
  planning (cached per version in the service) are not in it.
- ``tracing``: what tracing costs a node, off, 1 % and 100 % sampled (see bench/tracing_cost.py;
  targets ≤ 1, 3 and 30 µs).
"""

from __future__ import annotations

import random
import statistics
import sys
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


SECTIONS = {"profile": bench_profile, "tracing": bench_tracing}


def main(argv: list[str]) -> None:
    for name in argv or list(SECTIONS):
        SECTIONS[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
