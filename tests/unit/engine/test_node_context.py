"""The executor surface (``NodeContext``): token streams, durable sub-steps and run limits, on
the in-memory store (the SQL stores and a SIGKILL takeover are in tests/e2e)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from app.domain.events import EventType
from app.domain.node_types import NodeConfig, NodeType
from app.domain.status import ExecutionStatus, NodeStatus
from app.engine.run.context import NodeContext
from app.engine.run.control import RunControl
from app.engine.run.outcomes import NodeOutput
from app.engine.run.streams import WINDOW_S
from app.errors import NodeError
from tests.support import Harness, edge, node, probe_registry, workflow


class ScriptConfig(NodeConfig):
    calls: int = 0
    tokens: int = 0


class Script:
    """A test node type whose behaviour the test sets as a coroutine of the context."""

    def __init__(self) -> None:
        self.body: Callable[[NodeContext], Awaitable[Any]] = lambda ctx: asyncio.sleep(0)

    async def execute(self, ctx: NodeContext) -> NodeOutput:
        return NodeOutput(await self.body(ctx))


def harness() -> tuple[Harness, Script]:
    script = Script()
    registry, _ = probe_registry()
    return Harness(registry=registry.with_type(NodeType("script", ScriptConfig), script)), script


# -- node.token ------------------------------------------------------------------------------


async def test_a_thousand_tokens_in_100_ms_become_a_handful_of_events_in_order() -> None:
    h, script = harness()
    written: list[str] = []

    async def stream(ctx: NodeContext) -> str:
        tokens = ctx.stream()
        for i in range(1000):
            text = f"t{i} "
            written.append(text)
            tokens.write(text)
            if i % 100 == 99:  # 1,000 items over ~100 ms of real time
                await asyncio.sleep(0.01)
        return "".join(written)

    script.body = stream
    outcome = await h.run(workflow([node("s", "script"), node("after")], [edge("s", "after")]))

    assert outcome.status is ExecutionStatus.COMPLETED
    tokens = h.of_type(EventType.NODE_TOKEN)
    assert 1 <= len(tokens) <= 6
    assert [t.data["index"] for t in tokens] == list(range(len(tokens)))
    assert all(t.data["node_id"] == "s" and t.data["attempt"] == 1 for t in tokens)
    assert "".join(t.data["text"] for t in tokens) == "".join(written)
    # Every token event precedes the node's completion, and other nodes' events follow it.
    types = h.types()
    last_token = max(i for i, t in enumerate(types) if t == "node.token")
    assert last_token < types.index("node.completed")
    seqs = [e.seq for e in h.events()]
    assert seqs == list(range(1, len(seqs) + 1))


async def test_tokens_are_written_while_the_node_still_runs() -> None:
    h, script = harness()
    release = asyncio.Event()

    async def stream(ctx: NodeContext) -> None:
        ctx.stream().write("hello")
        await release.wait()

    script.body = stream
    running = asyncio.ensure_future(h.run(workflow([node("s", "script")], [])))
    token = await h.wait_for_event(EventType.NODE_TOKEN, "s")  # stored before the node ends
    assert token.data == {"node_id": "s", "attempt": 1, "index": 0, "text": "hello"}
    release.set()
    assert (await running).status is ExecutionStatus.COMPLETED


async def test_a_size_cap_splits_the_text_without_losing_any() -> None:
    h, script = harness()
    chunk = "x" * 40_000

    async def stream(ctx: NodeContext) -> None:
        tokens = ctx.stream()
        for _ in range(5):
            tokens.write(chunk)

    script.body = stream
    await h.run(workflow([node("s", "script")], []))
    texts = [e.data["text"] for e in h.of_type(EventType.NODE_TOKEN)]
    assert len(texts) == 3  # 64 KiB per event at most: 80k, 80k, 40k
    assert "".join(texts) == chunk * 5


async def test_each_attempt_streams_under_its_own_number_and_tokens_before_a_failure_stay() -> None:
    h, script = harness()

    async def flaky(ctx: NodeContext) -> str:
        ctx.stream().write(f"try {ctx.attempt}")
        if ctx.attempt == 1:
            raise NodeError("transient")
        return "ok"

    script.body = flaky
    doc = workflow([node("s", "script", retry={"max_retries": 1, "initial_delay_ms": 0})], [])
    assert (await h.run(doc)).status is ExecutionStatus.COMPLETED
    tokens = [
        (e.data["attempt"], e.data["index"], e.data["text"])
        for e in h.of_type(EventType.NODE_TOKEN)
    ]
    assert tokens == [(1, 0, "try 1"), (2, 0, "try 2")]
    assert h.types().index("node.token") < h.types().index("node.retry")


def test_the_window_keeps_a_stream_under_twenty_events_a_second() -> None:
    assert WINDOW_S >= 0.05


# -- ctx.step --------------------------------------------------------------------------------


async def test_finished_steps_are_not_run_again_when_a_cut_off_run_continues() -> None:
    h, script = harness()
    effects: dict[str, int] = {}
    control = RunControl()
    gate = asyncio.Event()

    def effect(name: str) -> Callable[[], Awaitable[str]]:
        async def run() -> str:
            effects[name] = effects.get(name, 0) + 1
            return f"{name} done"

        return run

    async def steps(ctx: NodeContext) -> list[Any]:
        first = await ctx.step("one", effect("one"))
        if ctx.attempt == 1:
            gate.set()
            await asyncio.Event().wait()  # cut off here, as a crash or a cancel would
        second = await ctx.step("two", effect("two"))
        return [first, second]

    script.body = steps
    doc = workflow([node("s", "script")], [])
    first = asyncio.ensure_future(h.run(doc, control=control))
    await gate.wait()
    control.cancel()
    assert (await first).status is ExecutionStatus.CANCELLED

    outcome = await h.run(doc, resume=True)
    assert outcome.status is ExecutionStatus.COMPLETED
    assert outcome.outputs == ["one done", "two done"]
    assert effects == {"one": 1, "two": 1}
    steps_logged = [(e.data["name"], e.data["ok"]) for e in h.of_type(EventType.NODE_STEP)]
    assert steps_logged == [("one", True), ("two", True)]


async def test_a_step_result_is_durable_before_step_returns() -> None:
    h, script = harness()
    seen: list[Any] = []

    async def steps(ctx: NodeContext) -> None:
        await ctx.step("fetch", lambda: asyncio.sleep(0, result={"page": 1}))
        checkpoints = await h.store.load_checkpoints("run-1")
        seen.extend(r for c in checkpoints for r in c.records)

    script.body = steps
    await h.run(
        workflow(
            [node("s", "script")],
            [],
        ),
        config={"checkpoint": "never"},
    )
    record = seen[-1]
    assert record.key == "s" and record.status is NodeStatus.RUNNING
    assert record.steps == {"fetch": {"page": 1}}


async def test_each_steps_checkpoint_holds_that_step_only() -> None:
    """A node with many steps writes each result once (a long agent transcript is not
    rewritten with every turn), and resume folds them together."""
    h, script = harness()

    async def steps(ctx: NodeContext) -> None:
        for i in range(5):
            await ctx.step(f"s{i}", lambda i=i: asyncio.sleep(0, result=i))

    script.body = steps
    await h.run(workflow([node("s", "script")], []), config={"checkpoint": "never"})
    checkpoints = await h.store.load_checkpoints("run-1")
    running = [r.steps for c in checkpoints for r in c.records if r.status is NodeStatus.RUNNING]
    assert running == [{f"s{i}": i} for i in range(5)]


async def test_a_failed_step_is_logged_and_runs_again_on_the_next_attempt() -> None:
    h, script = harness()
    calls: list[int] = []

    async def steps(ctx: NodeContext) -> str:
        async def call() -> str:
            calls.append(ctx.attempt)
            if ctx.attempt == 1:
                raise NodeError("flaky upstream")
            return "fine"

        result: str = await ctx.step("call", call)
        return result

    script.body = steps
    doc = workflow([node("s", "script", retry={"max_retries": 1, "initial_delay_ms": 0})], [])
    outcome = await h.run(doc)
    assert outcome.outputs == "fine"
    assert calls == [1, 2]
    logged = [e.data for e in h.of_type(EventType.NODE_STEP)]
    assert [d["ok"] for d in logged] == [False, True]
    assert logged[0]["error"]["message"] == "flaky upstream"


async def test_a_retried_node_reuses_the_steps_its_failed_attempt_finished() -> None:
    h, script = harness()
    calls: dict[str, int] = {}

    async def count(name: str) -> str:
        calls[name] = calls.get(name, 0) + 1
        return name

    async def steps(ctx: NodeContext) -> str:
        await ctx.step("paid", lambda: count("paid"))
        if ctx.attempt == 1:
            raise NodeError("after the paid call")
        result: str = await ctx.step("next", lambda: count("next"))
        return result

    script.body = steps
    doc = workflow([node("s", "script", retry={"max_retries": 2, "initial_delay_ms": 0})], [])
    assert (await h.run(doc)).status is ExecutionStatus.COMPLETED
    assert calls == {"paid": 1, "next": 1}


async def test_a_step_result_that_is_not_json_fails_the_node() -> None:
    h, script = harness()

    async def steps(ctx: NodeContext) -> None:
        await ctx.step("bad", lambda: asyncio.sleep(0, result={1, 2}))

    script.body = steps
    outcome = await h.run(workflow([node("s", "script")], []))
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and "step 'bad'" in outcome.error["message"]


# -- run limits ------------------------------------------------------------------------------


async def spend_config(ctx: NodeContext) -> None:
    config: Any = ctx.config
    for _ in range(config.calls):
        ctx.spend(api_calls=1)
    if config.tokens:
        ctx.spend(tokens=config.tokens)


@pytest.mark.parametrize(
    ("limits", "nodes", "limit", "used"),
    [
        ({"max_api_calls": 4}, [{"calls": 2}, {"calls": 2}, {"calls": 1}], "max_api_calls", 5),
        ({"max_tokens": 100}, [{"tokens": 60}, {"tokens": 60}], "max_tokens", 120),
    ],
)
async def test_crossing_a_limit_fails_the_run_naming_the_limit_and_the_counts(
    limits: dict[str, int], nodes: list[dict[str, int]], limit: str, used: int
) -> None:
    h, script = harness()
    script.body = spend_config
    ids = [f"s{i}" for i in range(len(nodes))]
    doc = workflow(
        [node(i, "script", **config) for i, config in zip(ids, nodes, strict=True)],
        [edge(a, b) for a, b in itertools.pairwise(ids)],
    )
    outcome = await h.run(doc, config={"limits": limits})
    assert outcome.status is ExecutionStatus.FAILED
    error = outcome.error
    assert error is not None and error["code"] == "run_limit_exceeded"
    assert f"limits.{limit}" in error["message"] and str(used) in error["message"]
    counter = limit.removeprefix("max_")
    assert error["details"]["limit"] == limit
    assert error["details"]["used"][counter] == used
    assert outcome.nodes[ids[-1]] is NodeStatus.FAILED


async def test_a_limit_crossed_inside_a_loop_body_fails_the_run_with_the_limit_error() -> None:
    h, script = harness()
    script.body = spend_config
    body = {"nodes": [node("call", "script", calls=1)], "edges": []}
    doc = workflow([node("loop", "foreach", items=list(range(10)), body=body)], [])
    outcome = await h.run(doc, config={"limits": {"max_api_calls": 3}})
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and outcome.error["code"] == "run_limit_exceeded"
    assert outcome.error["details"]["used"]["api_calls"] == 4


async def test_a_try_block_cannot_catch_a_crossed_limit() -> None:
    h, script = harness()
    script.body = spend_config
    doc = workflow(
        [
            node(
                "guard",
                "try",
                **{
                    "try": {"nodes": [node("call", "script", tokens=50)], "edges": []},
                    "catch": {"nodes": [node("handled")], "edges": []},
                },
            ),
            node("after"),
        ],
        [edge("guard", "after")],
    )
    outcome = await h.run(doc, config={"limits": {"max_tokens": 10}})
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and outcome.error["code"] == "run_limit_exceeded"
    assert "after" not in {e.node_id for e in h.of_type(EventType.NODE_STARTED)}


async def test_max_nodes_counts_loop_iterations() -> None:
    h, _ = harness()
    body = {"nodes": [node("x")], "edges": []}
    doc = workflow([node("loop", "foreach", items=list(range(5)), body=body)], [])
    outcome = await h.run(doc, config={"limits": {"max_nodes": 4}})
    assert outcome.error is not None and outcome.error["code"] == "run_limit_exceeded"
    assert outcome.error["details"]["limit"] == "max_nodes"


async def test_counters_survive_a_resume_because_records_carry_them() -> None:
    h, script = harness()
    script.body = spend_config
    doc = workflow(
        [
            node("first", "script", calls=3),
            node("ask", "probe", suspend=True),
            node("second", "script", calls=3),
        ],
        [edge("first", "ask"), edge("ask", "second")],
    )
    config = {"limits": {"max_api_calls": 5}}
    assert (await h.run(doc, config=config)).status is ExecutionStatus.WAITING
    outcome = await h.run(doc, config=config, resume=True, resume_values={"ask": "yes"})
    # 3 before the wait + 3 after: the resumed stretch starts from the recorded 3.
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and outcome.error["details"]["used"]["api_calls"] == 6
    # Node executions come back from the records' attempts: first, ask twice (asked, answered),
    # second.
    assert outcome.error["details"]["used"]["nodes"] == 4


async def test_max_nodes_counts_the_executions_of_earlier_stretches() -> None:
    h, _ = harness()
    doc = workflow(
        [node("first", "probe"), node("ask", "probe", suspend=True), node("second", "probe")],
        [edge("first", "ask"), edge("ask", "second")],
    )
    config = {"limits": {"max_nodes": 3}}
    assert (await h.run(doc, config=config)).status is ExecutionStatus.WAITING
    outcome = await h.run(doc, config=config, resume=True, resume_values={"ask": "yes"})
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and outcome.error["details"]["limit"] == "max_nodes"
    assert outcome.error["details"]["used"]["nodes"] == 4
