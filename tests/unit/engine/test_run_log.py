"""The engine's journal: what it keeps when a write fails, and what a dependent node waits for."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from app.domain.events import Event, EventType
from app.domain.run import Checkpoint, NodeRecord
from app.domain.status import NodeStatus
from app.engine.run.run_log import RunLog
from app.store.memory import MemoryStore
from tests.support import FakeClock


class GatedStore(MemoryStore):
    """Writes wait for ``gate``; with ``fail`` set checkpoints fail once it opens."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.fail = False

    async def save_checkpoint(
        self, checkpoint: Checkpoint, events: Sequence[Event], *, fence: int | None = None
    ) -> None:
        self.entered.set()
        await self.gate.wait()
        if self.fail:
            raise ConnectionResetError("the write was lost")
        await super().save_checkpoint(checkpoint, events, fence=fence)

    async def emit(self, events: Sequence[Event], *, fence: int | None = None) -> None:
        self.entered.set()
        await self.gate.wait()
        await super().emit(events, fence=fence)


def journal(store: MemoryStore) -> RunLog:
    return RunLog("run", sink=store, checkpoints=store, clock=FakeClock(), policy="every_node")


def done(key: str) -> NodeRecord:
    return NodeRecord(key=key, node_id=key, status=NodeStatus.COMPLETED, output=1)


async def test_a_dependent_waits_for_a_checkpoint_being_written() -> None:
    store = GatedStore()
    log = journal(store)
    log.record(done("x"))
    writing = asyncio.create_task(log.checkpoint())
    await store.entered.wait()

    # The record left the buffer, but its commit is not known: a node that needs it waits.
    assert log.must_save(["x"])
    assert not log.must_save(["y"])
    store.gate.set()
    await writing
    assert not log.must_save(["x"])


async def test_a_failed_checkpoint_keeps_its_records_events_and_numbers() -> None:
    store = GatedStore()
    store.fail = True
    store.gate.set()
    log = journal(store)
    log.event(EventType.NODE_COMPLETED, node_id="x")
    log.record(done("x"))

    with pytest.raises(ConnectionResetError):
        await log.checkpoint()

    assert log.must_save(["x"]) and log.checkpoint_due
    store.fail = False
    saved = await log.checkpoint()
    assert saved is not None and [r.key for r in saved.records] == ["x"]
    assert [(e.seq, e.type) for e in store.events["run"]] == [
        (1, EventType.NODE_COMPLETED),
        (2, EventType.CHECKPOINT_CREATED),
    ]


async def test_a_failed_flush_keeps_its_events_under_their_numbers() -> None:
    store = GatedStore()
    log = journal(store)
    log.event(EventType.NODE_STARTED, node_id="x")
    failing = asyncio.create_task(log.flush())
    await store.entered.wait()
    failing.cancel()  # the run's task was cancelled while its write was under way
    with pytest.raises(asyncio.CancelledError):
        await failing
    log.event(EventType.NODE_COMPLETED, node_id="x")
    store.gate.set()

    await log.flush()

    assert [e.seq for e in store.events["run"]] == [1, 2]
