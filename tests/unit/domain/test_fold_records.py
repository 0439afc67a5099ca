"""Folding checkpoints into the node records a resumed run starts from: later records win, a
node's steps add up (each step's record holds that step only)."""

from __future__ import annotations

from datetime import UTC, datetime

from app.domain.run import Checkpoint, NodeRecord, fold_records
from app.domain.status import NodeStatus

AT = datetime(2026, 12, 7, tzinfo=UTC)


def checkpoint(number: int, *records: NodeRecord) -> Checkpoint:
    return Checkpoint("run-1", number, number * 10, AT, list(records))


def running(key: str, **steps: object) -> NodeRecord:
    return NodeRecord(key=key, node_id=key, status=NodeStatus.RUNNING, steps=dict(steps))


def test_steps_add_up_across_and_within_checkpoints_and_later_records_win() -> None:
    folded = fold_records(
        [
            checkpoint(2, running("a", s3=3), running("a", s4=4), running("b", x=1)),
            checkpoint(1, running("a", s1=1), running("a", s2=2)),
            checkpoint(
                3,
                NodeRecord(key="a", node_id="a", status=NodeStatus.WAITING, data={"w": 1}),
                running("b", x=2),
            ),
        ]
    )
    assert folded["a"].status is NodeStatus.WAITING and folded["a"].data == {"w": 1}
    assert folded["a"].steps == {"s1": 1, "s2": 2, "s3": 3, "s4": 4}
    assert folded["b"].steps == {"x": 2}


def test_the_checkpoints_records_are_left_as_they_were() -> None:
    first, second = running("a", s1=1), running("a", s2=2)
    fold_records([checkpoint(1, first), checkpoint(2, second)])
    assert first.steps == {"s1": 1} and second.steps == {"s2": 2}
