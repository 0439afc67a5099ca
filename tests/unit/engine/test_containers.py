"""Container nodes: foreach, while, repeat, try, subworkflow — and resuming inside them."""

from __future__ import annotations

import asyncio
from typing import Any

from app.domain.events import EventType
from app.domain.status import ExecutionStatus
from app.engine.run.control import RunControl
from tests.support import Harness, edge, node, workflow

E = EventType


def body(*nodes: dict[str, Any], edges: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"nodes": list(nodes), "edges": edges or []}


async def test_foreach_outputs_in_item_order_with_item_and_index() -> None:
    h = Harness()
    loop = node(
        "loop",
        "foreach",
        items="{{ inputs.xs }}",
        concurrency=3,
        body=body(node("d", value="{{ item * 10 + index }}")),
    )
    outcome = await h.run(workflow([loop], []), {"xs": [1, 2, 3, 4]})
    assert outcome.outputs == [10, 21, 32, 43]
    keys = [e.node_id for e in h.of_type(E.NODE_COMPLETED)]
    assert {"loop[0].d", "loop[3].d", "loop"} <= set(keys)


async def test_foreach_runs_iterations_concurrently_up_to_its_limit() -> None:
    h = Harness()
    loop = node(
        "loop",
        "foreach",
        items=list(range(8)),
        concurrency=3,
        body=body(node("p", "probe", sleep_s=0.002)),
    )
    assert (await h.run(workflow([loop], []))).status is ExecutionStatus.COMPLETED
    assert h.probe.max_running == 3


async def test_foreach_rejects_non_list_and_too_many_items() -> None:
    h = Harness()
    loop = node("loop", "foreach", items="{{ inputs.xs }}", max_iterations=2, body=body(node("d")))
    outcome = await h.run(workflow([loop], []), {"xs": {"a": 1}})
    assert outcome.error is not None and outcome.error["code"] == "node_config_invalid"
    h = Harness()
    outcome = await h.run(workflow([loop], []), {"xs": [1, 2, 3]})
    assert outcome.error is not None and outcome.error["code"] == "loop_limit_exceeded"


async def test_failing_iteration_fails_the_loop_with_the_cause() -> None:
    h = Harness()
    loop = node(
        "loop", "foreach", items=[1, 2, 3], body=body(node("f", "fail", message="bad {{ item }}"))
    )
    outcome = await h.run(workflow([loop], []))
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None
    assert outcome.error["message"] == "iteration 0 failed at loop[0].f: bad 1"


async def test_while_loop_counts_with_vars_and_stops() -> None:
    h = Harness()
    doc = workflow(
        [
            node("init", "set_var", name="n", value=0),
            node(
                "loop",
                "while",
                condition="vars.n < 3",
                body=body(node("inc", "set_var", name="n", value="{{ vars.n + 1 }}")),
            ),
        ],
        [edge("init", "loop")],
    )
    outcome = await h.run(doc)
    assert outcome.outputs == [1, 2, 3]


async def test_while_sees_index_and_last_and_hits_max_iterations() -> None:
    h = Harness()
    doc = workflow(
        [node("w", "while", condition="last != 2", body=body(node("x", value="{{ index }}")))], []
    )
    assert (await h.run(doc)).outputs == [0, 1, 2]
    h = Harness()
    doc = workflow(
        [node("w", "while", condition="true", max_iterations=5, body=body(node("x")))], []
    )
    outcome = await h.run(doc)
    assert outcome.error is not None and outcome.error["code"] == "loop_limit_exceeded"
    assert "max_iterations (5)" in outcome.error["message"]


async def test_repeat_runs_count_times() -> None:
    h = Harness()
    doc = workflow(
        [
            node(
                "r",
                "repeat",
                count="{{ inputs.n }}",
                body=body(node("x", value="{{ index * index }}")),
            )
        ],
        [],
    )
    assert (await h.run(doc, {"n": 4})).outputs == [0, 1, 4, 9]


async def test_try_catch_finally_binds_error_and_outputs_catch() -> None:
    h = Harness()
    doc = workflow(
        [
            node(
                "t",
                "try",
                **{
                    "try": body(node("boom", "fail", message="kaput")),
                    "catch": body(
                        node("c", value="caught {{ error.message }} at {{ error.node_id }}")
                    ),
                    "finally": body(node("f", "set_var", name="cleaned", value=True)),
                },
            ),
            node("after", value="{{ vars.cleaned }}"),
        ],
        [edge("t", "after")],
    )
    outcome = await h.run(doc)
    assert outcome.status is ExecutionStatus.COMPLETED
    completed = {e.node_id: e.data["output"] for e in h.of_type(E.NODE_COMPLETED)}
    assert completed["t"] == "caught kaput at t.try.boom"
    assert completed["after"] is True


async def test_try_without_error_outputs_try_and_without_catch_swallows() -> None:
    h = Harness()
    doc = workflow([node("t", "try", **{"try": body(node("ok", value=5))})], [])
    assert (await h.run(doc)).outputs == 5
    h = Harness()
    doc = workflow(
        [
            node("t", "try", **{"try": body(node("b", "fail", message="x"))}),
            node("next", value="{{ t.error.message }}"),
        ],
        [edge("t", "next")],
    )
    outcome = await h.run(doc)
    assert outcome.status is ExecutionStatus.COMPLETED and outcome.outputs == "x"


async def test_try_rethrow_fails_after_catch_and_finally() -> None:
    h = Harness()
    doc = workflow(
        [
            node(
                "t",
                "try",
                rethrow=True,
                **{
                    "try": body(node("b", "fail", message="deep")),
                    "catch": body(node("c", value=1)),
                    "finally": body(node("f", value=2)),
                },
            )
        ],
        [],
    )
    outcome = await h.run(doc)
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and outcome.error["message"] == "deep"
    assert {"t.catch.c", "t.finally.f"} <= {e.node_id for e in h.of_type(E.NODE_COMPLETED)}


async def test_subworkflow_inline_graph_maps_inputs_and_outputs() -> None:
    h = Harness()
    child = {
        "nodes": [node("s", "start"), node("sq", value="{{ inputs.v * inputs.v }}")],
        "edges": [edge("s", "sq")],
    }
    doc = workflow(
        [
            node(
                "sub",
                "subworkflow",
                graph=child,
                inputs={"v": "{{ inputs.x }}"},
                outputs={"square": "{{ outputs }}"},
            )
        ],
        [],
    )
    assert (await h.run(doc, {"x": 7})).outputs == {"square": 49}


async def test_subworkflow_by_id_uses_the_loader_and_validates_inputs() -> None:
    h = Harness()
    child = workflow(
        [node("s", "start"), node("e", "end", outputs={"y": "{{ inputs.v + 1 }}"})],
        [edge("s", "e")],
        inputs={"type": "object", "required": ["v"], "properties": {"v": {"type": "integer"}}},
    )
    child_id = h.store.save_workflow(child)
    doc = workflow(
        [node("sub", "subworkflow", workflow_id=child_id, inputs={"v": "{{ inputs.v }}"})], []
    )
    assert (await h.run(doc, {"v": 1})).outputs == {"y": 2}
    h2 = Harness(store=h.store)
    outcome = await h2.run(doc, {"v": "one"}, execution_id="run-2")
    assert outcome.error is not None and "inputs are invalid" in outcome.error["message"]
    missing = workflow([node("sub", "subworkflow", workflow_id="nope")], [])
    outcome = await Harness().run(missing)
    assert outcome.error is not None and "no workflow 'nope'" in outcome.error["message"]


async def test_recursive_subworkflow_is_stopped_by_the_depth_guard() -> None:
    h = Harness()
    h.store.workflows["self"] = [workflow([node("again", "subworkflow", workflow_id="self")], [])]
    outcome = await h.run(h.store.workflows["self"][0])
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and "nested over" in str(outcome.error)


async def test_pause_inside_loop_then_resume_skips_finished_iterations() -> None:
    h = Harness()
    control = RunControl()
    gate = asyncio.Event()
    h.probe.gate = gate
    loop = node(
        "loop",
        "foreach",
        items=[1, 2, 3, 4],
        concurrency=2,
        body=body(node("p", "probe", value="{{ item }}")),
    )
    task = asyncio.create_task(h.run(workflow([loop], []), control=control))
    await h.probe.wait_running(2)
    control.pause()
    gate.set()
    outcome = await task
    assert outcome.status is ExecutionStatus.PAUSED
    assert h.probe.calls == {"loop[0].p": 1, "loop[1].p": 1}
    resumed = await h.run(workflow([loop], []), resume=True)
    assert resumed.status is ExecutionStatus.COMPLETED and resumed.outputs == [1, 2, 3, 4]
    assert all(count == 1 for count in h.probe.calls.values())
    assert len(h.probe.calls) == 4


async def test_cancel_reaches_nodes_inside_loops() -> None:
    h = Harness()
    control = RunControl()
    loop = node(
        "loop", "foreach", items=[1, 2], concurrency=2, body=body(node("p", "probe", sleep_s=30))
    )
    task = asyncio.create_task(h.run(workflow([loop], []), control=control))
    await h.probe.wait_running(2)
    control.cancel()
    outcome = await asyncio.wait_for(task, 5)
    assert outcome.status is ExecutionStatus.CANCELLED
    assert sorted(h.probe.cancelled) == ["loop[0].p", "loop[1].p"]


async def test_waiting_node_inside_loop_makes_the_run_wait() -> None:
    h = Harness()
    loop = node(
        "loop",
        "foreach",
        items=[1, 2],
        concurrency=2,
        body=body(node("ask", "probe", suspend=True)),
    )
    outcome = await h.run(workflow([loop], []))
    assert outcome.status is ExecutionStatus.WAITING
    assert sorted(outcome.waiting_on) == ["loop[0].ask", "loop[1].ask"]
    outcome = await h.run(
        workflow([loop], []), resume=True, resume_values={"loop[0].ask": "a", "loop[1].ask": "b"}
    )
    assert outcome.status is ExecutionStatus.COMPLETED and outcome.outputs == ["a", "b"]
