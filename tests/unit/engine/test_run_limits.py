"""Runs stay within bounds: heavy expressions fail their node without stalling the event loop,
node outputs are bounded and storable, whatever the node type (the mechanics of evaluation
budgets are in test_bounded, of the payload walk in test_payload)."""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from typing import Any

import pytest

from app.domain.events import EventType
from app.domain.status import ExecutionStatus, NodeStatus
from app.engine.compile.graph import Limits
from tests.support import Harness, edge, node, workflow

HEAVY = "len(jsonpath('$.inputs..*..*..*..*')) > 0"
MIB = 1024 * 1024


def tree(depth: int) -> Any:
    """A binary tree ``depth`` levels deep: at 12, the issue's 61 KB input."""
    return 0 if depth == 0 else {"l": tree(depth - 1), "r": tree(depth - 1)}


def error_of(outcome: Any) -> dict[str, Any]:
    assert outcome.status is ExecutionStatus.FAILED
    error: dict[str, Any] = outcome.error
    return error


# -- expressions -----------------------------------------------------------------------------------


async def test_a_cpu_heavy_condition_fails_its_node_while_the_loop_keeps_running() -> None:
    inputs = tree(12)
    assert len(json.dumps(inputs)) > 60_000
    # 64 MiB: as many JSONPath matches (256 bytes each) as 16 MiB held at 64 bytes a match,
    # so the evaluation lasts long enough to see the loop turn meanwhile.
    h = Harness(limits=Limits(max_node_output_bytes=64 * MIB))
    doc = workflow(
        [node("start", "start"), node("check", "if", condition=HEAVY), node("yes", value=1)],
        [edge("start", "check"), edge("check", "yes", "true")],
    )
    ticks, running = 0, True

    async def ticker() -> None:  # another coroutine on the same loop
        nonlocal ticks
        while running:
            ticks += 1
            await asyncio.sleep(0)

    ticking = asyncio.ensure_future(ticker())
    try:
        outcome = await h.run(doc, inputs)
    finally:
        running = False
        await ticking

    error = error_of(outcome)
    assert outcome.nodes["check"] is NodeStatus.FAILED
    assert error["code"] == "expression_limit_exceeded"
    assert error["node_id"] == "check"
    # The CPU budget (2 s) or the bytes built (64 MiB of matches), whichever comes first.
    assert any(f"limit OXIFY_MAX_{s}" in error["message"] for s in ("EXPRESSION_CPU_S", "NODE_"))
    # Blocking the loop for the evaluation would leave the ticker a handful of turns (one per
    # await of the run); evaluated in a worker, the loop goes on turning all along.
    assert ticks > 1000


async def test_a_100_mb_comprehension_fails_its_node_within_bounded_memory() -> None:
    h = Harness()
    doc = workflow(
        [node("start", "start"), node("big", value="{{ ['x' * 100000 for i in range(1000)] }}")],
        [edge("start", "big")],
    )
    tracemalloc.start()
    try:
        outcome = await h.run(doc)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    error = error_of(outcome)
    assert error["code"] == "expression_limit_exceeded"
    assert f"more than {16 * MIB} bytes" in error["message"]
    assert "limit OXIFY_MAX_NODE_OUTPUT_BYTES" in error["message"]
    assert peak < 40 * MIB  # the limit (16 MiB) and change, not 100 MB


async def test_a_heavy_template_that_finishes_in_a_worker_gives_its_value() -> None:
    items = list(range(-5_000, 5_000))  # 10,000: as many iterations as a comprehension may make
    doc = workflow(
        [
            node("start", "start"),
            node("count", value="{{ len([x for x in inputs.items if x >= 0]) }}"),
        ],
        [edge("start", "count")],
    )
    outcome = await Harness().run(doc, {"items": items})
    assert outcome.status is ExecutionStatus.COMPLETED
    assert outcome.outputs == 5_000


# -- outputs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fragment", "pointer"),
    [
        ("{{ 1 << 100 }}", "the integer 1267650600228229401496703205376 does not fit in 64", ""),
        ("{{ {'a': [1, -(2 ** 70)]} }}", "does not fit in 64 bits", " at /a/1"),
        ("{{ {1, 2} }}", "a set is not a JSON value", ""),
        ("{{ [float('nan')] }}", "nan is not a JSON number", " at /0"),
        ("{{ {'k': {1: 'one'}} }}", "the key 1 is not text", " at /k"),
        ("{{ '\\ud800' }}", "unpaired surrogate", ""),
    ],
)
async def test_an_output_that_cannot_be_stored_fails_the_node_not_the_run(
    value: str, fragment: str, pointer: str
) -> None:
    doc = workflow(
        [node("start", "start"), node("big", value=value, retry={"max_retries": 2})],
        [edge("start", "big")],
    )
    h = Harness()
    outcome = await h.run(doc)

    error = error_of(outcome)
    assert outcome.nodes == {"start": NodeStatus.COMPLETED, "big": NodeStatus.FAILED}
    assert error["code"] == "output_invalid"
    assert error["node_id"] == "big"
    assert error["message"].startswith("the node's output cannot be stored as JSON: ")
    assert fragment in error["message"]
    assert error["message"].endswith(pointer or "")
    assert not h.of_type(EventType.NODE_RETRY)  # the same output would come back


def small() -> Limits:
    return Limits(max_node_output_bytes=2048)


BIG_TEXT = "x" * 3000


@pytest.mark.parametrize(
    ("nodes", "what"),
    [
        ([node("n", value=BIG_TEXT)], "the node's output"),
        ([node("n", "set_var", name="v", value=BIG_TEXT)], "the node's output"),
        ([node("n", "probe", value=BIG_TEXT, retry={"max_retries": 2})], "the node's output"),
        ([node("n", "end", outputs={"a": BIG_TEXT})], "the node's output"),
        (
            [
                node(
                    "n",
                    "foreach",
                    items=[1, 2, 3, 4, 5],
                    body={"nodes": [node("each", value="y" * 600)], "edges": []},
                )
            ],
            "the node's output",
        ),
    ],
)
async def test_every_node_type_s_output_is_bounded_naming_the_limit(
    nodes: list[dict[str, Any]], what: str
) -> None:
    h = Harness(limits=small())
    outcome = await h.run(workflow([node("start", "start"), *nodes], [edge("start", "n")]))

    error = error_of(outcome)
    assert error["code"] == "output_too_large"
    assert error["node_id"] == "n"
    assert error["message"].startswith(f"{what} is larger than 2048 bytes (at least ")
    assert error["message"].endswith("bytes as JSON; limit OXIFY_MAX_NODE_OUTPUT_BYTES)")
    assert not h.of_type(EventType.NODE_RETRY)
    assert h.probe.calls.get("n", 1) == 1


async def test_a_graph_s_outputs_are_bounded_like_a_node_s() -> None:
    outputs = {name: "{{ inputs.s }}" for name in "xyz"}  # each within the limit, not all
    doc = workflow([node("start", "start")], [], outputs=outputs)
    outcome = await Harness(limits=small()).run(doc, {"s": "x" * 1000})

    error = error_of(outcome)
    assert error["code"] == "output_too_large"
    assert error["pointer"] == "/outputs"
    assert "the outputs mapping is larger than 2048 bytes" in error["message"]


@pytest.mark.parametrize(("limit", "status"), [(16 * MIB, "completed"), (100_000, "failed")])
async def test_outputs_of_many_items_are_checked_in_a_worker(limit: int, status: str) -> None:
    doc = workflow(
        [node("start", "start"), node("n", value=list(range(50_000)))], [edge("start", "n")]
    )
    outcome = await Harness(limits=Limits(max_node_output_bytes=limit)).run(doc)
    assert outcome.status.value == status
    if status == "failed":
        assert error_of(outcome)["code"] == "output_too_large"
