"""Event timestamps: the events one node transition causes carry that transition's instant.

A node's start and its level's start share one instant; its completion, its record's
``finished_at``, the level completion and the progress it causes share another; a checkpoint's
``created_at`` is its event's. Taking the time once per transition instead of once per event is
part of what keeps the scheduler's per-node overhead low.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from app.domain.events import EventType
from app.domain.status import ExecutionStatus
from tests.support import Harness, edge, node, workflow

E = EventType


class TickingClock:
    """Every reading is one millisecond after the previous one."""

    def __init__(self) -> None:
        self._ticks = itertools.count()

    def now(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(milliseconds=next(self._ticks))

    def monotonic(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        return None


async def test_events_of_one_transition_share_its_instant() -> None:
    h = Harness(clock=TickingClock())
    document = workflow([node("a"), node("b")], [edge("a", "b")])
    outcome = await h.run(document)
    assert outcome.status is ExecutionStatus.COMPLETED
    events = h.events()
    by_seq = {e.seq: e for e in events}
    for started in h.of_type(E.NODE_STARTED):
        level_started = by_seq[started.seq - 1]
        assert level_started.type is E.LEVEL_STARTED and level_started.ts == started.ts
    records = {r.key: r for c in h.store.checkpoints["run-1"] for r in c.records}
    for completed in h.of_type(E.NODE_COMPLETED):
        assert completed.node_id is not None
        assert records[completed.node_id].finished_at == completed.ts
        caused = [by_seq[completed.seq + 1], by_seq[completed.seq + 2]]
        assert [e.type for e in caused] == [E.LEVEL_COMPLETED, E.PROGRESS_UPDATE]
        assert all(e.ts == completed.ts for e in caused)
    created = {e.data["checkpoint"]: e.ts for e in h.of_type(E.CHECKPOINT_CREATED)}
    assert created == {c.number: c.created_at for c in h.store.checkpoints["run-1"]}
    assert len({e.ts for e in h.of_type(E.NODE_STARTED)}) == 2  # the clock did move
