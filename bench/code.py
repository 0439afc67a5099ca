"""Per-call overhead of the ``code`` node, in-process (engine + memory store, no HTTP).

``python -m bench.code [SCENARIO ...]`` (all by default). Each scenario runs a one-node workflow
(a ``code`` node) many times and prints the median, min and max per run, minus the median of
the same workflow with a ``transform`` node instead (the engine's own cost of a run).

expression   ``language: expression`` (in-process, compiled at validation).
python-cold  ``language: python`` without warm workers (``OXIFY_CODE_WORKERS=0``): every call
             starts an interpreter.
python-warm  with 2 warm workers, the pool refilled before each call: what one call costs
             when a worker is waiting.
python-burst 20 calls back to back with 2 warm workers: calls per second when they outrun the
             refill (each worker runs one script, so most calls start their own).
wasm-cold    ``language: wasm``, the module compiled on each call (cache emptied).
wasm-cached  the module compiled once and kept (the usual case).
"""

from __future__ import annotations

import asyncio
import base64
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import wasmtime

from app.domain.run import RunConfig
from app.domain.status import ExecutionStatus
from app.engine.run.scheduler import RunRequest, Scheduler
from app.nodes.code import runtime as code_runtime
from app.nodes.registry import core_registry
from app.nodes.resources import NodeResources
from app.settings import Settings
from app.store.memory import MemoryStore

ROOT = Path(__file__).resolve().parent.parent
PYTHON_SOURCE = "def main(inputs):\n    return {'n': inputs['inputs']['n'] + 1}\n"
EXPRESSION = "inputs.n + 1"
MODULE = wasmtime.wat2wasm((ROOT / "examples/code_wasm.wat").read_text())


def one_node(config: dict[str, Any], type_: str = "code") -> dict[str, Any]:
    return {"name": "bench", "nodes": [{"id": "n", "type": type_, "config": config}], "edges": []}


class Bench:
    def __init__(self, resources: NodeResources) -> None:
        self.resources = resources
        self.store = MemoryStore()
        registry = core_registry(resources)
        self.scheduler = Scheduler(
            executors=registry.executors,
            events=self.store,
            checkpoints=self.store,
            loader=self.store,
            node_types=registry.node_types,
        )
        self.runs = 0

    async def run_ms(
        self, document: dict[str, Any], times: int, before: Before = None
    ) -> list[float]:
        plan = self.scheduler.plan(document)
        timings = []
        for _ in range(times):
            if before is not None:
                await before()
            self.runs += 1
            request = RunRequest(
                execution_id=f"run-{self.runs}",
                plan=plan,
                inputs={"n": 41},
                config=RunConfig(),
                resume=False,
                last_seq=0,
                resume_values={},
            )
            start = time.perf_counter()
            outcome = await self.scheduler.run(request, None)
            timings.append((time.perf_counter() - start) * 1000)
            if outcome.status is not ExecutionStatus.COMPLETED:
                raise RuntimeError(f"the run did not complete: {outcome.error}")
        return timings

    async def baseline_ms(self) -> float:
        return statistics.median(await self.run_ms(one_node({"value": 1}, "transform"), 200))


Before = Callable[[], Awaitable[None]] | None


def summary(values: list[float], base: float) -> str:
    over = [v - base for v in values]
    return (
        f"{statistics.median(over):.2f} ms (min {min(over):.2f}, max {max(over):.2f}, "
        f"n={len(over)})"
    )


async def with_resources(workers: int, work: Callable[[Bench], Awaitable[None]]) -> None:
    settings = Settings(database_url="sqlite+aiosqlite:///:memory:", code_workers=workers)
    async with NodeResources(settings=settings) as resources:
        await work(Bench(resources))


async def expression(bench: Bench) -> None:
    base = await bench.baseline_ms()
    doc = one_node({"language": "expression", "source": EXPRESSION})
    print(f"expression       {summary(await bench.run_ms(doc, 500), base)}")


async def python_cold(bench: Bench) -> None:
    base = await bench.baseline_ms()
    doc = one_node({"language": "python", "source": PYTHON_SOURCE})
    print(f"python-cold      {summary(await bench.run_ms(doc, 30), base)}")


async def python_warm(bench: Bench) -> None:
    base = await bench.baseline_ms()
    doc = one_node({"language": "python", "source": PYTHON_SOURCE})
    await bench.run_ms(doc, 1)  # the first call starts the pool

    warm = code_runtime.code_runtime(bench.resources).warm
    print(f"python-warm      {summary(await bench.run_ms(doc, 30, warm), base)}")


async def python_burst(bench: Bench) -> None:
    doc = one_node({"language": "python", "source": PYTHON_SOURCE})
    await bench.run_ms(doc, 1)
    start = time.perf_counter()
    await bench.run_ms(doc, 20)
    seconds = time.perf_counter() - start
    print(f"python-burst     {20 / seconds:.1f} calls/s sequentially (2 warm workers)")


async def wasm_cold(bench: Bench) -> None:
    base = await bench.baseline_ms()
    timings = []
    for i in range(50):  # a custom section of its own: new bytes, so compiled afresh
        name = f"bench-{i}".encode()
        section = bytes([len(name)]) + name
        unique = MODULE + bytes([0, len(section)]) + section
        doc = one_node({"language": "wasm", "module": base64.b64encode(unique).decode()})
        timings += await bench.run_ms(doc, 1)
    print(f"wasm-cold        {summary(timings, base)}")


async def wasm_cached(bench: Bench) -> None:
    base = await bench.baseline_ms()
    doc = one_node({"language": "wasm", "module": base64.b64encode(MODULE).decode()})
    await bench.run_ms(doc, 1)
    print(f"wasm-cached      {summary(await bench.run_ms(doc, 200), base)}")


SCENARIOS: dict[str, tuple[int, Callable[[Bench], Awaitable[None]]]] = {
    "expression": (0, expression),
    "python-cold": (0, python_cold),
    "python-warm": (2, python_warm),
    "python-burst": (2, python_burst),
    "wasm-cold": (0, wasm_cold),
    "wasm-cached": (0, wasm_cached),
}


async def main(names: list[str]) -> None:
    print("per-call overhead over a one-node transform run (median, min, max):")
    for name in names:
        workers, scenario = SCENARIOS[name]
        await with_resources(workers, scenario)


if __name__ == "__main__":
    gc.freeze()
    asyncio.run(main([s.lower() for s in sys.argv[1:]] or list(SCENARIOS)))
