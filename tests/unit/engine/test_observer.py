"""The run observer port: what metrics and traces are told about nodes and checkpoints."""

from __future__ import annotations

from typing import Any

from app.domain.status import ExecutionStatus
from tests.support import Harness, edge, node, workflow


class Recorder:
    """Records every call, in order, as tuples naming what they watch."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def node(self, key: str, node_type: str) -> Watch:
        self.calls.append(("node", key, node_type))
        return Watch(self.calls, key)

    def checkpoint(self, number: int) -> Watch:
        self.calls.append(("checkpoint", number))
        return Watch(self.calls, f"checkpoint {number}")


class Watch:
    def __init__(self, calls: list[tuple[Any, ...]], what: str) -> None:
        self.calls, self.what = calls, what

    def attempt(self, attempt: int) -> Watch:
        self.calls.append(("attempt", self.what, attempt))
        return Watch(self.calls, f"{self.what}#{attempt}")

    def retry(self, attempt: int, delay_s: float, error_code: str) -> None:
        self.calls.append(("retry", self.what, attempt, delay_s, error_code))

    def end(self, outcome: str, error_code: str | None = None) -> None:
        self.calls.append(("end", self.what, outcome, error_code))


async def test_attempts_retries_checkpoints_and_outcomes_reach_the_observer() -> None:
    recorder = Recorder()
    h = Harness(observer=recorder)
    retry = {"max_retries": 2, "initial_delay_ms": 100, "multiplier": 2.0, "jitter": 0}
    doc = workflow(
        [node("p", "probe", fail_times=1, value="ok", retry=retry), node("after", "probe")],
        [edge("p", "after")],
    )
    outcome = await h.run(doc)
    assert outcome.status is ExecutionStatus.COMPLETED
    of_p = [c for c in recorder.calls if c[1] in ("p", "p#1", "p#2")]
    assert of_p == [
        ("node", "p", "probe"),
        ("attempt", "p", 1),
        ("end", "p#1", "failed", "node_failed"),
        ("retry", "p", 1, 0.1, "node_failed"),
        ("attempt", "p", 2),
        ("end", "p#2", "completed", None),
        ("end", "p", "completed", None),
    ]
    assert ("end", "after", "completed", None) in recorder.calls
    assert ("checkpoint", 1) in recorder.calls
    assert ("end", "checkpoint 1", "completed", None) in recorder.calls


async def test_a_node_out_of_retries_ends_failed() -> None:
    recorder = Recorder()
    h = Harness(observer=recorder)
    doc = workflow([node("p", "probe", fail_times=9, retry={"max_retries": 1})], [])
    outcome = await h.run(doc)
    assert outcome.status is ExecutionStatus.FAILED
    ends = [c for c in recorder.calls if c[0] == "end" and c[1].startswith("p")]
    assert ends == [
        ("end", "p#1", "failed", "node_failed"),
        ("end", "p#2", "failed", "node_failed"),
        ("end", "p", "failed", "node_failed"),
    ]


async def test_combined_observers_each_see_everything() -> None:
    from app.observability.observers import combined

    first, second = Recorder(), Recorder()
    h = Harness(observer=combined([first, second]))
    retry = {"max_retries": 1, "initial_delay_ms": 10, "jitter": 0}
    await h.run(workflow([node("p", "probe", fail_times=1, retry=retry)], []))
    assert first.calls == second.calls
    assert ("retry", "p", 1, 0.01, "node_failed") in first.calls
