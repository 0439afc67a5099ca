"""The scheduler: ordering, branches, failures, retries, timeouts, control, checkpoints."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from app.domain.events import EventType
from app.domain.status import ExecutionStatus, NodeStatus
from app.engine.run.control import RunControl
from tests.support import Harness, edge, node, workflow

E = EventType


def chain(*ids: str) -> list[dict[str, Any]]:
    return [edge(a, b) for a, b in itertools.pairwise(ids)]


async def test_chain_runs_in_order_and_returns_end_output() -> None:
    h = Harness()
    doc = workflow(
        [
            node("start", "start"),
            node("a", value="{{ inputs.x * 2 }}"),
            node("end", "end", outputs={"y": "{{ a.output + 1 }}"}),
        ],
        chain("start", "a", "end"),
    )
    outcome = await h.run(doc, {"x": 20})
    assert outcome.status is ExecutionStatus.COMPLETED
    assert outcome.outputs == {"y": 41}
    types = h.types()
    assert types[0] == "workflow.started" and types[-1] == "workflow.completed"
    started = [e.node_id for e in h.of_type(E.NODE_STARTED)]
    assert started == ["start", "a", "end"]
    assert [e.seq for e in h.events()] == list(range(1, len(types) + 1))
    assert h.of_type(E.WORKFLOW_COMPLETED)[0].data == {"outputs": {"y": 41}}


async def test_document_outputs_mapping_wins_over_end_node() -> None:
    h = Harness()
    doc = workflow([node("a", value=[1, 2])], [], outputs={"n": "{{ len(a.output) }}"})
    assert (await h.run(doc)).outputs == {"n": 2}


async def test_without_end_node_output_is_last_node_in_topological_order() -> None:
    h = Harness()
    doc = workflow([node("a"), node("b")], [edge("a", "b")])
    assert (await h.run(doc)).outputs == "b"


async def test_if_branch_kills_the_other_path_and_join_runs_once() -> None:
    h = Harness()
    doc = workflow(
        [
            node("start", "start"),
            node("check", "if", condition="inputs.n > 3 && !inputs.off"),
            node("yes"),
            node("no"),
            node("no_more"),
            node("join"),
        ],
        [
            edge("start", "check"),
            edge("check", "yes", "true"),
            edge("check", "no", "false"),
            edge("no", "no_more"),
            edge("yes", "join"),
            edge("no_more", "join"),
        ],
    )
    outcome = await h.run(doc, {"n": 5, "off": False})
    assert outcome.status is ExecutionStatus.COMPLETED
    skipped = [e.node_id for e in h.of_type(E.NODE_SKIPPED)]
    assert skipped == ["no", "no_more"] or sorted(skipped) == ["no", "no_more"]
    assert [e.node_id for e in h.of_type(E.NODE_COMPLETED)].count("join") == 1
    completed = {e.node_id: e.data for e in h.of_type(E.NODE_COMPLETED)}
    assert completed["check"]["branch"] == "true" and completed["check"]["output"] is True


async def test_node_with_all_inputs_dead_is_skipped_and_skip_cascades() -> None:
    h = Harness()
    doc = workflow(
        [node("check", "if", condition="false"), node("a"), node("b"), node("c")],
        [edge("check", "a", "true"), edge("a", "b"), edge("b", "c")],
    )
    outcome = await h.run(doc)
    assert outcome.status is ExecutionStatus.COMPLETED
    assert [e.node_id for e in h.of_type(E.NODE_SKIPPED)] == ["a", "b", "c"]
    assert outcome.outputs is False  # the last completed node in topological order


async def test_switch_takes_matching_case_or_default() -> None:
    doc = workflow(
        [
            node("s", "switch", value="inputs.kind", cases=["a", "b"]),
            node("on_a"),
            node("on_b"),
            node("other"),
        ],
        [edge("s", "on_a", "a"), edge("s", "on_b", "b"), edge("s", "other", "default")],
    )
    for kind, expected in (("a", "on_a"), ("b", "on_b"), ("zzz", "other")):
        h = Harness()
        await h.run(doc, {"kind": kind})
        assert {e.node_id for e in h.of_type(E.NODE_COMPLETED)} == {"s", expected}


async def test_ready_node_starts_without_waiting_for_its_level() -> None:
    """b → c must finish while a (same level as b) is still running: no level barrier."""
    h = Harness()
    gate = asyncio.Event()
    h.probe.gate = gate
    doc = workflow(
        [node("a", "probe"), node("b"), node("c"), node("d")],
        [edge("b", "c"), edge("a", "d"), edge("c", "d")],
    )
    task = asyncio.create_task(h.run(doc))
    await h.wait_for_event(E.NODE_COMPLETED, "c")
    assert "a" not in {e.node_id for e in h.of_type(E.NODE_COMPLETED)}  # still held by the gate
    gate.set()
    assert (await task).status is ExecutionStatus.COMPLETED


async def test_max_concurrency_bounds_running_nodes() -> None:
    h = Harness()
    nodes = [node("s", "start")] + [node(f"p{i}", "probe", sleep_s=0.001) for i in range(12)]
    doc = workflow(nodes, [edge("s", f"p{i}") for i in range(12)])
    outcome = await h.run(doc, config={"max_concurrency": 3})
    assert outcome.status is ExecutionStatus.COMPLETED
    assert h.probe.max_running == 3


async def test_retry_with_exponential_backoff_then_success() -> None:
    h = Harness()
    retry = {"max_retries": 3, "initial_delay_ms": 100, "multiplier": 2.0, "jitter": 0}
    doc = workflow([node("p", "probe", fail_times=2, value="ok", retry=retry)], [])
    outcome = await h.run(doc)
    assert outcome.status is ExecutionStatus.COMPLETED and outcome.outputs == "ok"
    retries = h.of_type(E.NODE_RETRY)
    assert [(r.data["attempt"], r.data["next_attempt"], r.data["delay_ms"]) for r in retries] == [
        (1, 2, 100.0),
        (2, 3, 200.0),
    ]
    assert h.clock.sleeps == [0.1, 0.2]
    assert h.of_type(E.NODE_COMPLETED)[0].data["attempt"] == 3


async def test_backoff_is_capped_and_jittered_within_bounds() -> None:
    from random import Random

    from app.domain.workflow import RetryPolicy
    from app.engine.run.retry import backoff_delay

    policy = RetryPolicy(max_retries=10, initial_delay_ms=100, max_delay_ms=1000, jitter=0.5)
    rng = Random(1)
    delays = [backoff_delay(policy, n, rng.random) for n in range(1, 11)]
    assert all(0 <= d <= 1.0 for d in delays)
    assert 0.05 <= delays[0] <= 0.15
    assert backoff_delay(policy, 3, rng.random, retry_after_s=30) == 30


async def test_retries_exhausted_fail_the_run_with_the_error() -> None:
    h = Harness()
    doc = workflow(
        [node("p", "probe", fail_times=9, retry={"max_retries": 1}), node("after")],
        [edge("p", "after")],
    )
    outcome = await h.run(doc)
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and outcome.error["node_id"] == "p"
    failed = h.of_type(E.NODE_FAILED)[0]
    assert failed.data["attempt"] == 2 and failed.data["error"]["message"] == "probe failure 2"
    assert h.of_type(E.WORKFLOW_FAILED)[0].data["error"]["code"] == "node_failed"
    assert "after" not in {e.node_id for e in h.of_type(E.NODE_STARTED)}


async def test_node_timeout_fails_the_node() -> None:
    h = Harness()
    doc = workflow([node("p", "probe", sleep_s=30, timeout_s=0.02)], [])
    outcome = await h.run(doc)
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and outcome.error["code"] == "node_timeout"
    assert h.probe.cancelled == ["p"]


async def test_run_timeout_ends_as_timed_out_and_cancels_running_nodes() -> None:
    h = Harness()
    doc = workflow([node("p", "probe", sleep_s=30), node("q")], [edge("p", "q")])
    outcome = await h.run(doc, config={"timeout_s": 0.02})
    assert outcome.status is ExecutionStatus.TIMED_OUT
    assert h.types()[-1] == "workflow.timed_out"
    assert [e.node_id for e in h.of_type(E.NODE_CANCELLED)] == ["p"]


@pytest.mark.parametrize(
    ("strategy", "status", "dependant"),
    [
        ("skip", ExecutionStatus.COMPLETED, "skipped"),
        ("defaults", ExecutionStatus.COMPLETED, "completed"),
        ("fail", ExecutionStatus.FAILED, "failed"),
    ],
)
async def test_continue_on_error_and_dependency_strategies(
    strategy: str, status: ExecutionStatus, dependant: str
) -> None:
    h = Harness()
    doc = workflow(
        [
            node("bad", "fail", message="boom", continue_on_error=True),
            node("next", value="{{ bad.output }}"),
            node("other"),
        ],
        [edge("bad", "next")],
    )
    outcome = await h.run(doc, config={"dependency_strategy": strategy})
    assert outcome.status is status
    by_node = {e.node_id: e.type.value for e in h.events() if e.node_id == "next"}
    assert by_node["next"] == f"node.{dependant}"
    if strategy == "defaults":
        assert [e.data["output"] for e in h.of_type(E.NODE_COMPLETED) if e.node_id == "next"] == [
            None
        ]
    assert h.of_type(E.NODE_FAILED)[0].data["tolerated"] is True


async def test_non_critical_failure_tolerated_only_under_run_continue_on_error() -> None:
    doc = workflow([node("bad", "fail", message="x", critical=False), node("ok")], [])
    h = Harness()
    assert (await h.run(doc)).status is ExecutionStatus.FAILED
    h = Harness()
    outcome = await h.run(doc, config={"continue_on_error": True})
    assert outcome.status is ExecutionStatus.COMPLETED


async def test_cancel_stops_running_nodes_promptly() -> None:
    h = Harness()
    control = RunControl()
    doc = workflow([node("p", "probe", sleep_s=30), node("q", "probe", sleep_s=30)], [])
    task = asyncio.create_task(h.run(doc, control=control))
    await h.probe.wait_running(2)
    control.cancel()
    outcome = await asyncio.wait_for(task, 5)
    assert outcome.status is ExecutionStatus.CANCELLED
    assert sorted(h.probe.cancelled) == ["p", "q"]
    assert h.types()[-1] == "workflow.cancelled"


async def test_pause_lets_running_finish_then_resume_skips_completed() -> None:
    h = Harness()
    gate = asyncio.Event()
    h.probe.gate = gate
    control = RunControl()
    doc = workflow(
        [node("a", "probe", value=1), node("b", value="{{ a.output + 1 }}")], [edge("a", "b")]
    )
    task = asyncio.create_task(h.run(doc, control=control))
    await h.probe.wait_running(1)
    control.pause()
    gate.set()
    outcome = await task
    assert outcome.status is ExecutionStatus.PAUSED
    assert h.types()[-1] == "workflow.paused"
    assert {e.node_id for e in h.of_type(E.NODE_COMPLETED)} == {"a"}
    assert h.store.checkpoints["run-1"], "pausing saves a checkpoint"
    resumed = await h.run(doc, resume=True)
    assert resumed.status is ExecutionStatus.COMPLETED and resumed.outputs == 2
    assert h.probe.calls == {"a": 1}
    assert E.WORKFLOW_RESUMED in [e.type for e in h.events()]
    assert [e.seq for e in h.events()] == list(range(1, len(h.events()) + 1))


async def test_resume_after_failure_reruns_only_failed_node_with_next_attempt() -> None:
    h = Harness()
    doc = workflow(
        [
            node("a", "probe", value="A"),
            node("b", "probe", fail_times=1, value="B"),
            node("c", value="{{ a.output + b.output }}"),
        ],
        [edge("a", "b"), edge("b", "c")],
    )
    assert (await h.run(doc)).status is ExecutionStatus.FAILED
    outcome = await h.run(doc, resume=True)
    assert outcome.status is ExecutionStatus.COMPLETED and outcome.outputs == "AB"
    assert h.probe.calls == {"a": 1, "b": 2}
    started_b = [e.data["attempt"] for e in h.of_type(E.NODE_STARTED) if e.node_id == "b"]
    assert started_b == [1, 2]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("every_node", 3),
        ("every_level", 3),
        ({"every_n_nodes": 2}, 2),
        ({"every_n_levels": 2}, 2),
        ("never", 0),
    ],
)
async def test_checkpoint_policies(policy: Any, expected: int) -> None:
    h = Harness()
    doc = workflow(
        [node("a"), node("b"), node("c"), node("d")],
        [edge("a", "b"), edge("a", "c"), edge("b", "d"), edge("c", "d")],
    )
    await h.run(doc, config={"checkpoint": policy})
    assert len(h.store.checkpoints["run-1"]) == expected
    assert len(h.of_type(E.CHECKPOINT_CREATED)) == expected
    if expected:
        saved = [r.key for c in h.store.checkpoints["run-1"] for r in c.records]
        assert sorted(saved) == ["a", "b", "c", "d"]
    if policy == "every_node":
        # Each result is saved before anything that depends on it starts; b and c are
        # independent, so they share a checkpoint.
        started = {e.node_id: e.seq for e in h.of_type(E.NODE_STARTED)}
        successors = {"a": "bc", "b": "d", "c": "d", "d": ""}
        for checkpoint in h.of_type(E.CHECKPOINT_CREATED):
            for key in checkpoint.data["nodes"]:
                assert all(checkpoint.seq < started[s] for s in successors[key])


async def test_suspended_node_makes_run_wait_and_resume_value_completes_it() -> None:
    h = Harness()
    doc = workflow(
        [node("ask", "probe", suspend=True), node("free"), node("after", value="{{ ask.output }}")],
        [edge("ask", "after")],
    )
    outcome = await h.run(doc)
    assert outcome.status is ExecutionStatus.WAITING and outcome.waiting_on == ["ask"]
    assert h.types()[-1] == "workflow.waiting"
    assert h.of_type(E.NODE_WAITING)[0].data["prompt"] == "answer me"
    outcome = await h.run(doc, resume=True, resume_values={"ask": {"ok": True}})
    assert outcome.status is ExecutionStatus.COMPLETED and outcome.outputs == {"ok": True}


async def test_set_var_is_visible_to_later_nodes() -> None:
    h = Harness()
    doc = workflow(
        [node("v", "set_var", name="total", value=5), node("use", value="{{ vars.total * 10 }}")],
        [edge("v", "use")],
    )
    assert (await h.run(doc)).outputs == 50


async def test_delay_sleeps_on_the_clock_and_scalar_templates_are_type_checked() -> None:
    h = Harness()
    doc = workflow([node("d", "delay", seconds="{{ inputs.wait }}")], [])
    assert (await h.run(doc, {"wait": 2.5})).outputs == {"slept": 2.5}
    assert h.clock.sleeps == [2.5]
    h = Harness()
    outcome = await h.run(doc, {"wait": "soon"})
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and outcome.error["code"] == "node_config_invalid"
    assert "seconds" in outcome.error["message"]


async def test_fail_node_fails_with_its_message() -> None:
    h = Harness()
    outcome = await h.run(workflow([node("f", "fail", message="bad {{ inputs.x }}")], []), {"x": 1})
    assert outcome.error is not None
    assert (outcome.error["code"], outcome.error["message"]) == ("fail_node", "bad 1")


async def test_progress_updates_reach_one_hundred_percent() -> None:
    h = Harness()
    await h.run(workflow([node("a"), node("b"), node("c")], chain("a", "b", "c")))
    updates = [e.data for e in h.of_type(E.PROGRESS_UPDATE)]
    assert updates[-1] == {"completed": 3, "total": 3, "percent": 100.0}
    assert [u["completed"] for u in updates] == sorted(u["completed"] for u in updates)


async def test_level_events_bracket_their_nodes() -> None:
    h = Harness()
    await h.run(workflow([node("a"), node("b"), node("c")], [edge("a", "b"), edge("a", "c")]))
    levels = [
        (e.type.value, e.data["level"]) for e in h.events() if e.type.value.startswith("level")
    ]
    assert levels == [
        ("level.started", 0),
        ("level.completed", 0),
        ("level.started", 1),
        ("level.completed", 1),
    ]
    assert h.of_type(E.LEVEL_STARTED)[1].data["nodes"] == ["b", "c"]


async def test_max_nodes_limit_fails_the_run() -> None:
    h = Harness()
    doc = workflow([node(f"n{i}") for i in range(5)], [])
    outcome = await h.run(doc, config={"limits": {"max_nodes": 3}})
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and outcome.error["code"] == "run_limit_exceeded"


async def test_failed_run_marks_unstarted_nodes_cancelled() -> None:
    h = Harness()
    doc = workflow(
        [node("p", "probe", sleep_s=30), node("f", "fail", message="x"), node("after")],
        [edge("f", "after")],
    )
    outcome = await h.run(doc)
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.nodes == {
        "f": NodeStatus.FAILED,
        "after": NodeStatus.CANCELLED,
        "p": NodeStatus.CANCELLED,
    }
    assert [e.node_id for e in h.of_type(E.NODE_CANCELLED)] == ["p"]


async def test_executors_can_emit_their_own_events_with_a_stable_idempotency_key() -> None:
    from app.domain.node_types import NodeConfig, NodeType
    from app.engine.run.context import NodeContext
    from app.engine.run.outcomes import NodeOutput

    keys: list[str] = []

    class Streamer:
        async def execute(self, ctx: NodeContext) -> NodeOutput:
            keys.append(ctx.idempotency_key)
            for token in ("he", "llo"):
                await ctx.emit(E.NODE_TOKEN, {"token": token})
            return NodeOutput("hello")

    h = Harness()
    h.registry = h.registry.with_type(NodeType("streamer", NodeConfig), Streamer())
    loop = node("loop", "foreach", items=[1, 2], body={"nodes": [node("s", "streamer")]})
    outcome = await h.run(workflow([loop], []))
    assert outcome.outputs == ["hello", "hello"]
    tokens = [(e.node_id, e.data["token"]) for e in h.of_type(E.NODE_TOKEN)]
    assert tokens == [
        ("loop[0].s", "he"),
        ("loop[0].s", "llo"),
        ("loop[1].s", "he"),
        ("loop[1].s", "llo"),
    ]
    assert keys == ["run-1:loop[0].s", "run-1:loop[1].s"]


async def test_document_outputs_that_fail_to_render_fail_the_run() -> None:
    h = Harness()
    doc = workflow([node("a", value=0)], [], outputs={"x": "{{ 1 / a.output }}"})
    outcome = await h.run(doc)
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and outcome.error["pointer"] == "/outputs"
    assert "division by zero" in outcome.error["message"]
    assert h.types()[-1] == "workflow.failed"
