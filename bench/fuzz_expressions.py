"""Worst cases of the expression language: ``python -m bench.fuzz_expressions [CPU_S]``.

Each entry of the escape corpus (tests/strategies/expressions.py) is compiled and evaluated
over the fuzz tests' run context under a full budget of ``CPU_S`` seconds of CPU (default 0.05,
the target of issue 16; a run's default is ``DEFAULT_CPU_S``) and the default byte limit.
Prints per entry how it ended (the value's type, or the error's class), the worst wall time and
the worst CPU time of the evaluating thread over ``RUNS`` evaluations in ms (the budget counts
CPU; on a shared machine the wall time also holds the waits for a core), and the peak memory
of one more evaluation traced by ``tracemalloc`` (in MB; tracing slows Python down, so it is
measured apart from the times). The last lines name the worst entries.
"""

from __future__ import annotations

import os
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `app` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.engine.compile.budget import Budget
from app.engine.compile.expressions import compile_expression
from app.errors import OxifyError
from tests.strategies.expressions import CORPUS, context

RUNS = 5
TARGET_CPU_S = 0.05  # seconds: the bound issue 16 sets for one evaluation


def once(source: str, names: dict[str, Any], cpu_s: float) -> str:
    """Compile and evaluate ``source``; how it ended."""
    try:
        value = compile_expression(source).evaluate(names, Budget.started(cpu_s=cpu_s))
    except OxifyError as exc:
        return type(exc).__name__
    return f"value ({type(value).__name__})"


def measure(source: str, names: dict[str, Any], cpu_s: float) -> tuple[str, float, float, float]:
    """How it ended, the worst wall and CPU times in ms, the peak traced memory in MB."""
    worst_wall = worst_cpu = 0.0
    outcome = ""
    for _ in range(RUNS):
        wall, cpu = time.perf_counter(), time.thread_time()
        outcome = once(source, names, cpu_s)
        worst_cpu = max(worst_cpu, time.thread_time() - cpu)
        worst_wall = max(worst_wall, time.perf_counter() - wall)
    tracemalloc.start()
    try:
        once(source, names, cpu_s)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return outcome, worst_wall * 1000, worst_cpu * 1000, peak / 1e6


def main(argv: list[str]) -> None:
    cpu_s = float(argv[0]) if argv else TARGET_CPU_S
    names = context()
    load = " ".join(f"{n:.2f}" for n in os.getloadavg())
    print(f"budget: {cpu_s * 1000:g} ms of CPU per evaluation; worst of {RUNS} runs; load {load}")
    print(f"{'entry':<24} {'outcome':<26} {'wall ms':>8} {'cpu ms':>8} {'peak MB':>8}")
    rows = []
    for label, source in CORPUS:
        outcome, wall_ms, cpu_ms, mb = measure(source, names, cpu_s)
        rows.append((label, wall_ms, cpu_ms, mb))
        print(f"{label:<24} {outcome:<26} {wall_ms:>8.1f} {cpu_ms:>8.1f} {mb:>8.2f}")
    for column, what, unit in ((1, "wall time", "ms"), (2, "CPU time", "ms"), (3, "memory", "MB")):
        label, value = max(((row[0], row[column]) for row in rows), key=lambda pair: pair[1])
        print(f"worst {what}: {label} {value:.2f} {unit}")


if __name__ == "__main__":
    main(sys.argv[1:])
