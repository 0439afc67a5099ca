"""CPU-bound work of a run, kept off the event loop: expressions, checks of outputs and inputs.

Both start inline, where nearly all of them finish: an expression under an inline budget
(``budget.INLINE_STEPS``), a payload walk over ``INLINE_WALK_ITEMS`` items. Work that needs
more runs again (expressions are pure) or goes on in a worker thread, awaited by the node: the
thread's pure-Python loop gives the event loop the interpreter every switch interval, so other
runs, health checks and streams go on meanwhile. In the worker an expression has the full
budget: ``Limits.max_expression_cpu_s`` of CPU and ``Limits.max_node_output_bytes`` of values
built; past either it fails with ExpressionLimitExceeded naming the setting, and a node that
stops waiting for it (cancelled, timed out) makes it stop at its next budget check.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from app.engine.compile.budget import BYTES_SETTING as MAX_OUTPUT_SETTING
from app.engine.compile.budget import Budget, Escalate
from app.engine.compile.builder import Limits
from app.engine.run import payload
from app.engine.run.scope import Scope
from app.errors import ErrorDetail, InputsInvalid, InputsTooLarge, OutputInvalid, OutputTooLarge

T = TypeVar("T")
Work = Callable[[Mapping[str, Any], Budget], T]

WORKERS = 2  # threads for work that outgrew the inline budget (GIL-bound: more add contention)
INLINE_WALK_ITEMS = 10_000  # items of a payload checked on the event loop before handing off
INPUTS_SETTING = "OXIFY_MAX_INPUT_BYTES"


class _Inline(threading.local):
    def __init__(self) -> None:
        self.budget = Budget()


_INLINE = _Inline()
_pool_lock = threading.Lock()
_pools: list[ThreadPoolExecutor] = []


async def run(work: Work[T], names: Mapping[str, Any], limits: Limits) -> T:
    """``work(names, budget)``: a template's ``render`` or an expression's ``evaluate``.

    Inline under the inline budget; when that runs out, again in a worker thread under the
    full budget of ``limits``.
    """
    try:
        return work(names, _INLINE.budget.renew(limits.max_node_output_bytes))
    except Escalate:
        pass
    budget = Budget(max_bytes=limits.max_node_output_bytes, cpu_s=limits.max_expression_cpu_s)

    def started() -> T:
        budget.start()  # the CPU clock of the worker thread, from when it takes the work
        return work(_isolated(names), budget)

    return await _in_worker(started, cancel=budget.cancel)


async def check_payload(value: Any, limit: int) -> payload.Problem | None:
    """``payload.check(value, limit)``: inline up to ``INLINE_WALK_ITEMS`` items, the rest in
    a worker thread (the walk stops at ``limit``, so it is bounded however large the value)."""
    problem = payload.check(value, limit, INLINE_WALK_ITEMS)
    if not isinstance(problem, payload.Walk):
        return problem
    walk = problem
    await _in_worker(walk.run, cancel=lambda: None)
    return walk.problem


async def check_value(value: Any, what: str, limits: Limits) -> None:
    """Raise OutputTooLarge past ``limits.max_node_output_bytes``, OutputInvalid when ``value``
    is not storable as JSON (both name ``what``, the limit and where); non-retryable.

    A small value is checked inline, a large one in a worker thread.
    """
    limit = limits.max_node_output_bytes
    problem = await check_payload(value, limit)
    if problem is None:
        return
    if problem.kind == "too_large":
        raise OutputTooLarge(
            f"{what} is larger than {limit} bytes (at least {problem.size} bytes as JSON; "
            f"limit {MAX_OUTPUT_SETTING})"
        )
    where = f" at {problem.pointer}" if problem.pointer else ""
    raise OutputInvalid(f"{what} cannot be stored as JSON: {problem.message}{where}")


async def check_inputs(inputs: Any, limit: int) -> None:
    """Refuse run inputs larger than ``limit`` bytes as JSON (InputsTooLarge) or not storable
    as JSON (InputsInvalid, with the pointer); a large value is walked in a worker thread."""
    problem = await check_payload(inputs, limit)
    if problem is None:
        return
    if problem.kind == "too_large":
        raise InputsTooLarge(
            f"the inputs are larger than {limit} bytes (at least {problem.size} bytes as JSON; "
            f"limit {INPUTS_SETTING})"
        )
    pointer = f"/inputs{problem.pointer}"
    message = f"cannot be stored as JSON: {problem.message}"
    raise InputsInvalid([ErrorDetail(pointer, message, "invalid_value")])


def _isolated(names: Mapping[str, Any]) -> Mapping[str, Any]:
    """``names`` with its own copy of ``vars``, which other nodes may change meanwhile on the
    loop (iterating a dict that changes size fails); node results are never changed."""
    if not isinstance(names, Scope):
        return names
    try:
        return names.child(vars=dict(names.variables))
    except LookupError:
        return names


async def _in_worker(fn: Callable[[], T], *, cancel: Callable[[], None]) -> T:
    future = _pool().submit(fn)
    try:
        return await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        cancel()  # a queued call never starts; a running one stops at its next check
        raise


def _pool() -> ThreadPoolExecutor:
    with _pool_lock:
        if not _pools:
            _pools.append(ThreadPoolExecutor(WORKERS, thread_name_prefix="oxify-bounded"))
        return _pools[0]
