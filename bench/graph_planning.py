"""Validation + planning time of random DAGs: ``python -m bench.graph_planning [SIZE ...]``.

Each DAG has ``transform`` nodes with small constant configs and about two edges per node (each
node after the first depends on two random earlier ones). Prints the median of 5 runs per size.
The time includes hashing the document (``Plan.content_hash``, also shown alone) and the
garbage collector's first pass over the plan's new objects, which planning defers (it pauses
the collector) but does not avoid.
"""

from __future__ import annotations

import gc
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `app` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.engine.compile import graph

RUNS = 5
EDGES_PER_NODE = 2


def random_dag(size: int, *, seed: int = 0) -> dict[str, Any]:
    """A workflow document: ``size`` transform nodes, ~2 edges per node, all forward."""
    rng = random.Random(seed)
    nodes = [
        {"id": f"n{i}", "type": "transform", "config": {"value": {"x": i % 7, "label": "k"}}}
        for i in range(size)
    ]
    edges = []
    for i in range(1, size):
        for source in {rng.randrange(i) for _ in range(EDGES_PER_NODE)}:
            edges.append({"from": f"n{source}", "to": f"n{i}"})
    return {"name": f"bench-{size}", "nodes": nodes, "edges": edges}


def bench_planning(sizes: tuple[int, ...] = (10_000, 100_000)) -> list[tuple[int, float]]:
    """Median milliseconds of ``plan_workflow`` (validation + planning) per DAG size."""
    results = []
    for size in sizes:
        document = random_dag(size)
        limits = graph.Limits(max_nodes=max(size, 10_000), max_edges=max(3 * size, 50_000))
        times = []
        for _ in range(RUNS):
            start = time.perf_counter()
            plan = graph.plan_workflow(document, limits=limits)
            gc.collect(0)  # the pass the next allocation would trigger: part of the cost
            times.append((time.perf_counter() - start) * 1000)
            del plan  # freeing it is not planning: outside the timed part
        median = statistics.median(times)
        hashing = statistics.median(_timed(graph.content_hash, document) for _ in range(RUNS))
        print(
            f"plan_workflow {size:>7} nodes {len(document['edges']):>7} edges: "
            f"{median:8.1f} ms (median of {RUNS}; {1000 * median / size:5.2f} µs/node;"
            f" content hash alone {hashing:.1f} ms)"
        )
        results.append((size, median))
    return results


def _timed(function: Any, *args: Any) -> float:
    start = time.perf_counter()
    function(*args)
    return (time.perf_counter() - start) * 1000


if __name__ == "__main__":
    bench_planning(tuple(int(arg) for arg in sys.argv[1:]) or (10_000, 100_000))
