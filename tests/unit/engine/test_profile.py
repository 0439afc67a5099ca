"""Run profiles from synthetic event logs: golden DAGs with known critical paths, bottlenecks,
nested keys folded into their containers, and properties over random DAGs and timings."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.events import Event, EventType
from app.domain.status import ExecutionStatus
from app.domain.views import RunProfile
from app.engine.analysis import profile
from app.engine.compile.graph import plan_workflow
from app.engine.compile.plan import Plan
from tests.support import edge, node, workflow

E = EventType
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Log:
    """A run's node events at given seconds after T0."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def add(self, kind: EventType, key: str, at: float, **data: Any) -> Log:
        ts = T0 + timedelta(seconds=at)
        self.events.append(Event("run", len(self.events) + 1, kind, ts, key, None, data))
        return self

    def ran(self, key: str, start: float, end: float, type_: str = "transform") -> Log:
        self.add(E.NODE_STARTED, key, start, type=type_, attempt=1)
        return self.add(E.NODE_COMPLETED, key, end, output=None, attempt=1)


def reads(node_id: str, *sources: str) -> dict[str, Any]:
    """A transform node whose value reads each of ``sources``."""
    value = "{{ [" + ", ".join(f"{s}.output" for s in sources) + "] }}" if sources else node_id
    return node(node_id, value=value)


def run_profile(
    plan: Plan,
    log: Log,
    *,
    end: float | None,
    now: float | None = None,
    limit: int | None = 16,
    status: ExecutionStatus = ExecutionStatus.COMPLETED,
) -> RunProfile:
    base = T0.timestamp()
    run = profile.RunTimes(
        execution_id="run",
        status=status,
        started_at=base,
        finished_at=None if end is None else base + end,
        now=base + (now if now is not None else end or 0.0),
        max_concurrency=limit,
    )
    return profile.profile(plan, run, profile.timelines(log.events))


def diamond() -> Plan:
    """a → b, a → c, b → d, c → d; every target reads its sources."""
    nodes = [reads("a"), reads("b", "a"), reads("c", "a"), reads("d", "b", "c")]
    edges = [edge("a", "b"), edge("a", "c"), edge("b", "d"), edge("c", "d")]
    return plan_workflow(workflow(nodes, edges))


def test_the_critical_path_follows_the_dependency_that_finished_last() -> None:
    log = Log().ran("a", 0, 1).ran("b", 1, 3).ran("c", 1, 5).ran("d", 5, 6)
    found = run_profile(diamond(), log, end=6)
    assert [n.node_id for n in found.critical_path] == ["a", "c", "d"]
    assert [n.gated_by for n in found.critical_path] == [None, "a", "c"]
    assert found.critical_path_ms == 6000
    assert found.makespan_ms == 6000
    assert found.time.running_ms == 1000 + 2000 + 4000 + 1000
    assert found.parallelism.width == 2
    assert found.parallelism.efficiency == 8000 / 6000 / 2
    assert [n.node_id for n in found.slowest[:2]] == ["c", "b"]
    assert not found.partial
    slow = [b for b in found.bottlenecks if b.type == "slow_critical_node"]
    assert [b.nodes for b in slow] == [["c"]]
    assert math.isclose(slow[0].severity, 4 / 6)


def test_a_shorter_gap_is_not_the_total_duration() -> None:
    # The seed called the sum of durations the critical path; here it is 3 of 7 seconds.
    nodes = [reads("a"), reads("b"), reads("c", "a", "b")]
    plan = plan_workflow(workflow(nodes, [edge("a", "c"), edge("b", "c")]))
    log = Log().ran("a", 0, 1).ran("b", 0, 2).ran("c", 2, 3)
    found = run_profile(plan, log, end=3)
    assert [n.node_id for n in found.critical_path] == ["b", "c"]
    assert found.critical_path_ms == 3000


def test_a_node_queued_while_the_slots_were_full_is_starved() -> None:
    log = Log().ran("a", 0, 1).ran("b", 1, 2).ran("c", 2, 4).ran("d", 4, 5)
    found = run_profile(diamond(), log, end=5, limit=1)
    by_id = {n.node_id: n for n in found.critical_path}
    assert list(by_id) == ["a", "c", "d"]
    assert by_id["c"].queued_ms == 1000
    assert found.time.queued_ms == 1000
    starved = [b for b in found.bottlenecks if b.type == "starved_slots"]
    assert len(starved) == 1
    assert starved[0].nodes == ["c"]
    assert math.isclose(starved[0].severity, 1 / 5)
    assert "from 1 to 2" in starved[0].fix
    assert found.parallelism.slots == 1


def test_no_starvation_when_a_slot_was_free() -> None:
    log = Log().ran("a", 0, 1).ran("b", 1, 2).ran("c", 2, 4).ran("d", 4, 5)
    found = run_profile(diamond(), log, end=5, limit=2)
    assert not [b for b in found.bottlenecks if b.type == "starved_slots"]


def test_backoff_and_waiting_split_a_span() -> None:
    fields = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    nodes = [reads("a"), node("ask", "form", prompt="ok?", fields=fields)]
    plan = plan_workflow(workflow(nodes, [edge("a", "ask")]))
    log = Log().add(E.NODE_STARTED, "a", 0, type="transform", attempt=1)
    for retry, at in enumerate((1.0, 2.0, 3.0), start=1):
        log.add(E.NODE_RETRY, "a", at, retry=retry, delay_ms=500, error={"code": "boom"})
    log.add(E.NODE_COMPLETED, "a", 4, attempt=4)
    log.add(E.NODE_STARTED, "ask", 4, type="form", attempt=1)
    log.add(E.NODE_WAITING, "ask", 4.5, reason="form")
    log.add(E.NODE_STARTED, "ask", 14.5, type="form", attempt=1)
    log.add(E.NODE_COMPLETED, "ask", 15, attempt=1)
    found = run_profile(plan, log, end=15)
    assert found.time.backoff_ms == 1500
    assert found.time.waiting_ms == 10_000
    assert found.time.running_ms == 4000 - 1500 + 1000
    a = next(n for n in found.critical_path if n.node_id == "a")
    assert (a.attempts, a.backoff_ms, a.running_ms) == (4, 1500, 2500)
    storm = [b for b in found.bottlenecks if b.type == "retry_storm"]
    assert [b.nodes for b in storm] == [["a"]]
    assert math.isclose(storm[0].severity, 3 / 10)


def test_a_running_run_is_partial_and_ends_now() -> None:
    log = Log().ran("a", 0, 1).add(E.NODE_STARTED, "c", 1, type="transform", attempt=1)
    log.ran("b", 1, 2)
    found = run_profile(diamond(), log, end=None, now=4, status=ExecutionStatus.RUNNING)
    assert found.partial
    assert found.makespan_ms == 4000
    assert [n.node_id for n in found.critical_path] == ["a", "c"]
    assert found.critical_path[-1].status == "running"
    assert found.critical_path[-1].finished_ms == 4000


def test_an_edge_whose_target_reads_nothing_of_its_source() -> None:
    nodes = [reads("a"), reads("slow"), reads("b", "a")]
    plan = plan_workflow(workflow(nodes, [edge("a", "b"), edge("slow", "b")]))
    log = Log().ran("a", 0, 1).ran("slow", 0, 5).ran("b", 5, 6)
    found = run_profile(plan, log, end=6)
    unread = [b for b in found.bottlenecks if b.type == "unread_edge"]
    assert [b.nodes for b in unread] == [["slow", "b"]]
    assert math.isclose(unread[0].severity, 4 / 6)
    assert "Remove the edge slow → b" in unread[0].fix


def test_a_code_node_without_inputs_reads_every_source() -> None:
    code = node("c", "code", language="python", source="def main(inputs):\n    return 1\n")
    plan = plan_workflow(workflow([reads("slow"), code], [edge("slow", "c")]))
    found = run_profile(plan, Log().ran("slow", 0, 5).ran("c", 5, 6, "code"), end=6)
    assert not [b for b in found.bottlenecks if b.type == "unread_edge"]


def test_nested_keys_fold_into_their_container() -> None:
    body = {"nodes": [reads("x")], "edges": []}
    plan = plan_workflow(workflow([node("loop", "repeat", count=2, body=body)], []))
    log = Log().add(E.NODE_STARTED, "loop", 0, type="repeat", attempt=1)
    log.add(E.NODE_STARTED, "loop[0].x", 0, type="transform", attempt=1)
    log.add(E.NODE_RETRY, "loop[0].x", 1, delay_ms=2000, error={"code": "boom"})
    log.add(E.NODE_RETRY, "loop[0].x", 3, delay_ms=2000, error={"code": "boom"})
    log.add(E.NODE_COMPLETED, "loop[0].x", 6)
    log.ran("loop[1].x", 6, 7).add(E.NODE_COMPLETED, "loop", 8)
    found = run_profile(plan, log, end=8)
    assert found.nested_folded == 2
    assert found.nodes_profiled == 1
    (loop,) = found.critical_path
    assert (loop.backoff_ms, loop.running_ms) == (4000, 4000)
    storm = next(b for b in found.bottlenecks if b.type == "retry_storm")
    assert storm.nodes == ["loop[0].x"]


def llm(node_id: str, prompt: str) -> dict[str, Any]:
    return node(node_id, "llm", provider="openai", model="m", prompt=prompt)


def test_repeated_llm_calls_from_configs_and_cached_answers() -> None:
    body = {"nodes": [llm("ask", "{{ inputs.q }}")], "edges": []}
    nodes = [llm("one", "same"), llm("two", "same"), node("loop", "repeat", count=3, body=body)]
    plan = plan_workflow(workflow(nodes, []))
    log = Log().ran("one", 0, 1, "llm").ran("two", 0, 1, "llm")
    log.add(E.NODE_STARTED, "loop", 0, type="repeat", attempt=1)
    for i in range(3):
        log.add(E.NODE_STARTED, f"loop[{i}].ask", i, type="llm", attempt=1)
        log.add(E.NODE_COMPLETED, f"loop[{i}].ask", i + 1, output={"cached": i > 0})
    log.add(E.NODE_COMPLETED, "loop", 3)
    found = run_profile(plan, log, end=3)
    repeated = [b for b in found.bottlenecks if b.type == "repeated_llm_call"]
    assert sorted(b.nodes for b in repeated) == [["loop[1].ask", "loop[2].ask"], ["one", "two"]]
    assert {round(b.severity, 3) for b in repeated} == {0.5, 0.667}
    assert any("2 of 3 calls of loop[*].ask" in b.detail for b in repeated)


def test_a_run_again_node_is_profiled_by_its_last_run() -> None:
    plan = plan_workflow(workflow([reads("a")], []))
    log = Log().add(E.NODE_STARTED, "a", 0, type="transform", attempt=1)
    log.add(E.NODE_FAILED, "a", 1, attempt=1).ran("a", 5, 7)
    (a,) = run_profile(plan, log, end=7).critical_path
    assert (a.started_ms, a.finished_ms, a.status) == (5000, 7000, "completed")


# -- properties --------------------------------------------------------------------------------


@st.composite
def timed_runs(draw: st.DrawFn) -> tuple[Plan, Log, float, int | None]:
    """A random DAG (edges from lower indices) whose nodes ran in topological order at random
    times, some retried or waiting, the last ones maybe unfinished; and the run's end."""
    size = draw(st.integers(1, 30))
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    ends: dict[str, float] = {}
    log = Log()
    for i in range(size):
        sources = sorted(set(draw(st.lists(st.integers(0, i - 1), max_size=3)))) if i else []
        read = [f"n{s}" for s in sources if draw(st.booleans())]
        nodes.append(reads(f"n{i}", *read))
        edges.extend(edge(f"n{s}", f"n{i}") for s in sources)
        start = max([ends[f"n{s}"] for s in sources if f"n{s}" in ends], default=0.0)
        if any(f"n{s}" not in ends for s in sources) or draw(st.integers(0, 9)) == 0:
            continue  # never started
        start += draw(st.floats(0, 2))
        key = f"n{i}"
        log.add(E.NODE_STARTED, key, start, type="transform", attempt=1)
        at = start
        for _ in range(draw(st.integers(0, 2))):
            at += draw(st.floats(0, 1))
            log.add(E.NODE_RETRY, key, at, delay_ms=draw(st.floats(0, 3000)))
        if draw(st.booleans()):
            at += draw(st.floats(0, 1))
            log.add(E.NODE_WAITING, key, at)
            at += draw(st.floats(0, 5))
            log.add(E.NODE_STARTED, key, at, type="transform", attempt=1)
        if draw(st.integers(0, 5)) == 0:
            continue  # still running
        ends[key] = at + draw(st.floats(0, 3))
        log.add(E.NODE_COMPLETED, key, ends[key])
    end = max([*ends.values(), 0.0]) + draw(st.floats(0, 2))
    limit = draw(st.none() | st.integers(1, 5))
    return plan_workflow(workflow(nodes, edges)), log, end, limit


@settings(max_examples=200, deadline=None)
@given(timed_runs(), st.booleans())
def test_profile_properties(case: tuple[Plan, Log, float, int | None], finished: bool) -> None:
    plan, log, end, limit = case
    status = ExecutionStatus.COMPLETED if finished else ExecutionStatus.RUNNING
    # An unfinished run is observed at some instant that may cut nodes short.
    found = run_profile(
        plan, log, end=end if finished else None, now=end / 2, limit=limit, status=status
    )
    assert found.critical_path_ms <= found.makespan_ms + 1e-6
    assert 0.0 <= found.parallelism.efficiency <= 1.0
    assert all(0.0 <= b.severity <= 1.0 for b in found.bottlenecks)
    for n in [*found.critical_path, *found.slowest]:
        assert min(n.running_ms, n.backoff_ms, n.waiting_ms, n.queued_ms) >= 0
        span = n.finished_ms - n.started_ms
        assert math.isclose(n.running_ms + n.backoff_ms + n.waiting_ms, span, abs_tol=0.01)
        assert 0 <= n.started_ms <= n.finished_ms <= found.makespan_ms
    path = found.critical_path
    for before, after in itertools.pairwise(path):
        assert after.gated_by == before.node_id
        assert before.finished_ms <= after.started_ms
    # Every profiled node's span, clipped to the run, is its running + backoff + waiting.
    window = found.makespan_ms / 1000
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for event in log.events:
        at = (event.ts - T0).total_seconds()
        if event.type is E.NODE_STARTED and event.node_id:
            first.setdefault(event.node_id, at)
        elif event.type is E.NODE_COMPLETED and event.node_id:
            last[event.node_id] = at
    spans = 0.0
    for key, started in first.items():
        start = min(started, window)
        spans += max(min(last.get(key, window), window), start) - start
    split = found.time
    total = split.running_ms + split.backoff_ms + split.waiting_ms
    assert math.isclose(total, spans * 1000, abs_tol=0.01 * max(found.nodes_profiled, 1))
