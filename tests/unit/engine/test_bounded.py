"""Where and how far expressions run: cheap ones on the loop, heavy ones in a worker thread,
under a budget of steps, CPU time and bytes built (the run-level view is in test_run_limits)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from app.engine.compile.budget import Budget, BudgetExceeded, Escalate
from app.engine.compile.expressions import compile_expression
from app.engine.compile.graph import Limits
from app.engine.run import bounded
from app.errors import ExpressionLimitExceeded
from tests.unit.engine.test_run_limits import HEAVY, tree


class Recording(Mapping[str, Any]):
    """Names that remember on which threads they were read (and tell the loop the first time
    a worker thread reads them)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.threads: set[int] = set()
        self.loop = asyncio.get_running_loop()
        self.in_worker = asyncio.Event()

    def __getitem__(self, name: str) -> Any:
        thread = threading.get_ident()
        self.threads.add(thread)
        if thread != threading.main_thread().ident:
            self.loop.call_soon_threadsafe(self.in_worker.set)
        return self.data[name]

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("names are only indexed")

    def __len__(self) -> int:
        raise AssertionError("names are only indexed")


# -- where evaluations run -------------------------------------------------------------------------


async def test_cheap_expressions_stay_on_the_loop_and_heavy_ones_move_to_a_worker() -> None:
    cheap = compile_expression("inputs.x + 1")
    names = Recording({"inputs": {"x": 1, "items": list(range(10_000))}})
    assert await bounded.run(cheap.evaluate, names, Limits()) == 2
    assert names.threads == {threading.get_ident()}

    heavy = compile_expression("sum([x for x in inputs.items if x % 2 == 0])")
    assert await bounded.run(heavy.evaluate, names, Limits()) == sum(range(0, 10_000, 2))
    assert names.in_worker.is_set()
    assert len(names.threads) == 2  # tried on the loop, then finished in a worker


async def test_an_evaluation_stops_when_its_node_stops_waiting() -> None:
    heavy = compile_expression(HEAVY)
    names = Recording({"inputs": tree(12)})
    limits = Limits(max_expression_cpu_s=60, max_node_output_bytes=10**12)
    evaluation = asyncio.ensure_future(bounded.run(heavy.evaluate, names, limits))
    await names.in_worker.wait()

    evaluation.cancel()
    with pytest.raises(asyncio.CancelledError):
        await evaluation

    # Every worker takes one of these, and all must meet: only once the evaluation stopped.
    barrier = threading.Barrier(bounded.WORKERS, timeout=30)
    pool = bounded._pool()
    await asyncio.gather(
        *(asyncio.wrap_future(pool.submit(barrier.wait)) for _ in range(bounded.WORKERS))
    )


# -- the budget ------------------------------------------------------------------------------------


def test_an_inline_budget_asks_to_escalate_and_a_full_one_names_the_cpu_limit() -> None:
    heavy = compile_expression(HEAVY)
    names = {"inputs": tree(12)}
    with pytest.raises(Escalate):
        heavy.evaluate(names, Budget())
    with pytest.raises(ExpressionLimitExceeded) as info:
        heavy.evaluate(names, Budget.started(cpu_s=0.05, max_bytes=10**12))
    assert "more than 0.05 s of CPU time (limit OXIFY_MAX_EXPRESSION_CPU_S)" in info.value.message
    assert info.value.code == "expression_limit_exceeded"


@pytest.mark.parametrize(
    "source",
    [
        "inputs.s + inputs.s",  # each operation is within its own bound
        "[s * 2 for s in ['x' * 30000] * 3]",
        "[[i] for i in range(5000)]",
        "jsonpath('$.inputs..*')",  # matches are charged too
        "str(inputs) + str(inputs)",
    ],
)
def test_what_an_evaluation_builds_is_bounded(source: str) -> None:
    names = {"inputs": tree(10) | {"s": "x" * 25_000}}
    with pytest.raises(ExpressionLimitExceeded) as info:
        compile_expression(source).evaluate(names, Budget.started(max_bytes=40_000))
    assert "more than 40000 bytes of values (limit OXIFY_MAX_NODE_OUTPUT_BYTES)" in str(info.value)


def test_a_cancelled_budget_stops_at_its_next_check() -> None:
    budget = Budget.started()
    budget.cancel()
    with pytest.raises(BudgetExceeded, match="cancelled"):
        budget.step(10_000)
