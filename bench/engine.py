"""Engine benchmarks on the in-memory store: ``python -m bench.engine``.

Prints:
- per-node overhead of the scheduler for a 10,000-node chain and a 10,000-wide fan-out of no-op
  ``transform`` nodes (events, progress, checkpoints included; target ≤ 25 µs per node);
- validation + planning time of random DAGs of 10,000 and 100,000 nodes (target < 50 ms for
  10,000, linear growth);
- makespan ÷ critical path on a skewed DAG of sleeping nodes (target ≤ 1.05; a level barrier
  would give ~2).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `app` and `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.domain.run import RunConfig
from app.domain.status import ExecutionStatus
from app.engine.compile.graph import Limits
from app.engine.run.scheduler import RunRequest, Scheduler
from app.nodes.registry import core_registry
from app.nodes.resources import NodeResources
from app.store.memory import MemoryStore
from bench.graph_planning import bench_planning

RUNS = 5
SIZE = 10_000


def chain(size: int) -> dict[str, Any]:
    nodes = [{"id": f"n{i}", "type": "transform", "config": {"value": i}} for i in range(size)]
    edges = [{"from": f"n{i}", "to": f"n{i + 1}"} for i in range(size - 1)]
    return {"name": "chain", "nodes": nodes, "edges": edges}


def fan_out(width: int) -> dict[str, Any]:
    nodes = [{"id": "root", "type": "start"}]
    nodes += [{"id": f"n{i}", "type": "transform", "config": {"value": i}} for i in range(width)]
    edges = [{"from": "root", "to": f"n{i}"} for i in range(width)]
    return {"name": "fan-out", "nodes": nodes, "edges": edges}


def skewed(steps: int = 20, long_s: float = 0.2) -> tuple[dict[str, Any], float]:
    """Two branches from ``start``: A is one long node then a short one; B is ``steps`` short
    nodes. The critical path is A (long + short). Level barriers would make every level of B
    wait for A's long node: makespan ≈ 2 * long. Dependency-driven scheduling overlaps them."""
    short = long_s / steps
    nodes: list[dict[str, Any]] = [{"id": "s", "type": "start"}, {"id": "e", "type": "end"}]
    edges: list[dict[str, Any]] = []

    def sleeper(node_id: str, seconds: float, after: str) -> str:
        nodes.append({"id": node_id, "type": "delay", "config": {"seconds": seconds}})
        edges.append({"from": after, "to": node_id})
        return node_id

    edges.append({"from": sleeper("a2", short, sleeper("a1", long_s, "s")), "to": "e"})
    previous = "s"
    for k in range(steps):
        previous = sleeper(f"b{k}", short, previous)
    edges.append({"from": previous, "to": "e"})
    return {"name": "skewed", "nodes": nodes, "edges": edges}, long_s + short


# Built once, as a server builds it once: plans are cached per registry, and a registry per run
# would leave a 10,000-node plan in the cache after every run for the collector to walk.
REGISTRY = core_registry(NodeResources())


async def run_once(document: dict[str, Any], config: RunConfig) -> float:
    registry = REGISTRY
    store = MemoryStore()
    scheduler = Scheduler(
        executors=registry.executors,
        events=store,
        checkpoints=store,
        node_types=registry.node_types,
        limits=Limits(max_nodes=200_000, max_edges=400_000),
    )
    plan = scheduler.plan(document)
    start = time.perf_counter()
    outcome = await scheduler.run(RunRequest("bench", plan, {}, config))
    elapsed = time.perf_counter() - start
    assert outcome.status is ExecutionStatus.COMPLETED, outcome
    return elapsed


def per_node(name: str, document: dict[str, Any], config: RunConfig) -> None:
    times = [asyncio.run(run_once(document, config)) for _ in range(RUNS)]
    us = [t / len(document["nodes"]) * 1e6 for t in times]
    print(
        f"{name:<44} {statistics.median(us):6.1f} µs/node "
        f"(min {min(us):.1f}, max {max(us):.1f}; median of {RUNS})"
    )


def main() -> None:
    # As `oxify run` and `oxify serve` do once started: what the imports built lives as long as
    # the process, and is kept out of the collector's full passes.
    gc.freeze()
    print(f"scheduler overhead, {SIZE:,} no-op transform nodes, in-memory store")
    for policy in ("every_node", "never"):
        config = RunConfig(checkpoint=policy, max_concurrency=16)
        per_node(f"  chain, checkpoint={policy}", chain(SIZE), config)
        per_node(f"  fan-out, checkpoint={policy}", fan_out(SIZE), config)
    print("validation + planning, random DAGs (~2 edges per node)")
    bench_planning((10_000, 100_000))
    document, critical = skewed()
    makespans = [
        asyncio.run(run_once(document, RunConfig(max_concurrency=64))) for _ in range(RUNS)
    ]
    ratio = statistics.median(makespans) / critical
    print(
        f"skewed DAG of sleeping nodes: makespan {statistics.median(makespans) * 1000:.1f} ms, "
        f"critical path {critical * 1000:.1f} ms, ratio {ratio:.3f} (target ≤ 1.05)"
    )


if __name__ == "__main__":
    main()
