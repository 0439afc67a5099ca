"""The event bus: replay-then-live without gaps or duplicates, overflow, retried runs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from app.domain.events import Event, EventType
from app.events.bus import EventBus
from app.store.memory import MemoryStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def ev(seq: int, type_: EventType = EventType.NODE_COMPLETED) -> Event:
    return Event("run", seq, type_, T0, "n")


async def publish(store: MemoryStore, bus: EventBus, *events: Event) -> None:
    await store.emit(list(events))  # stored first …
    bus.publish(list(events))  # … then published, as the journal does


async def collect(bus: EventBus, after: int = 0) -> list[int]:
    return [e.seq async for e in bus.stream("run", after)]


async def test_replay_then_live_gives_each_event_once_in_order() -> None:
    store = MemoryStore()
    bus = EventBus(store)
    await publish(store, bus, ev(1), ev(2))
    task = asyncio.create_task(collect(bus, after=1))
    await asyncio.sleep(0)  # let the stream subscribe and replay
    await publish(store, bus, ev(3), ev(4, EventType.WORKFLOW_COMPLETED))
    assert await task == [2, 3, 4]
    assert bus.subscriber_count("run") == 0


async def test_a_subscriber_that_falls_behind_re_reads_from_the_table() -> None:
    store = MemoryStore()
    bus = EventBus(store, queue_size=2)
    seen: list[int] = []
    started = asyncio.Event()

    async def slow() -> None:
        async for event in bus.stream("run"):
            seen.append(event.seq)
            started.set()
            if event.seq == 1:
                # While this subscriber is busy, more than its queue holds is published.
                for seq in range(2, 8):
                    await publish(store, bus, ev(seq))
                await publish(store, bus, ev(8, EventType.WORKFLOW_FAILED))

    task = asyncio.create_task(slow())
    await asyncio.sleep(0)
    await publish(store, bus, ev(1))
    await task
    assert seen == list(range(1, 9))


async def test_a_retried_run_streams_past_its_first_ending() -> None:
    store = MemoryStore()
    bus = EventBus(store)
    await publish(
        store,
        bus,
        ev(1, EventType.WORKFLOW_STARTED),
        ev(2, EventType.WORKFLOW_FAILED),
        ev(3, EventType.WORKFLOW_RESUMED),
        ev(4, EventType.WORKFLOW_COMPLETED),
    )
    assert await collect(bus) == [1, 2, 3, 4]


class FlakyReader:
    """The store's events, except that the next ``failures`` reads fail (a database away)."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.failures = 0
        self.failed = 0
        self.retried = asyncio.Event()  # a read failed again after a failure

    async def read_events(self, execution_id: str, after_seq: int, limit: int) -> list[Event]:
        if self.failures:
            self.failures -= 1
            self.failed += 1
            if self.failed > 1:
                self.retried.set()
            raise ConnectionError("the database went away")
        return await self.store.read_events(execution_id, after_seq, limit)


async def test_a_failed_read_for_another_replicas_run_is_tried_again() -> None:
    store = MemoryStore()
    reader = FlakyReader(store)
    bus = EventBus(reader, retry_s=0.001)
    await publish(store, bus, ev(1))
    seen: list[int] = []
    first = asyncio.Event()

    async def follow() -> None:
        async for event in bus.stream("run"):
            seen.append(event.seq)
            first.set()

    task = asyncio.create_task(follow())
    await first.wait()
    # Another replica stores the run's end; its notification reaches this one while the
    # database does not answer.
    await store.emit([ev(2), ev(3, EventType.WORKFLOW_COMPLETED)])
    reader.failures = 3
    bus.refresh(["run"])
    async with asyncio.timeout(10):  # a hang is the failure; it never takes this long
        await task
    assert seen == [1, 2, 3]
    assert reader.failed == 3
    assert bus.subscriber_count("run") == 0


async def test_reads_stop_being_retried_once_nobody_follows_the_run() -> None:
    store = MemoryStore()
    reader = FlakyReader(store)
    bus = EventBus(reader, retry_s=0.001)
    await publish(store, bus, ev(1))
    stream = bus.stream("run")
    assert (await anext(stream)).seq == 1
    reader.failures = 10**9  # the database never comes back
    bus.refresh(["run"])
    fetching = bus._fetching["run"]  # the read (and its retries) for the run's subscribers
    await reader.retried.wait()
    await stream.aclose()  # type: ignore[attr-defined]
    async with asyncio.timeout(10):  # a hang is the failure; it never takes this long
        await fetching  # ends by itself: no subscriber is left to read for
    failed = reader.failed
    bus.refresh(["run"])  # a late notification for a run nobody follows reads nothing
    assert reader.failed == failed and not bus._fetching


class CountingReader:
    """The table, recording where each read started."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.reads: list[int] = []

    async def read_events(self, execution_id: str, after_seq: int, limit: int) -> list[Event]:
        self.reads.append(after_seq)
        return await self.store.read_events(execution_id, after_seq, limit)


async def test_a_watch_reads_nothing_and_wakes_only_for_the_types_it_waits_for() -> None:
    store = MemoryStore()
    reader = CountingReader(store)
    bus = EventBus(reader)
    settling = {EventType.WORKFLOW_COMPLETED}
    await store.emit([ev(1), ev(2)])
    with bus.watch("run") as watch:
        watch.seen(2)  # the waiter read the run: two events logged so far
        waiting = asyncio.create_task(watch.until(settling))
        await publish(store, bus, ev(3), ev(4))
        await asyncio.sleep(0)
        assert not waiting.done()
        # Another replica's batch, heard of through a notification: read after what the
        # watch has seen, not from where the waiter started.
        await store.emit([ev(5, EventType.WORKFLOW_COMPLETED)])
        bus.refresh(["run"])
        await waiting
    assert reader.reads == [4]
    assert bus.subscriber_count("run") == 0


async def test_a_watch_that_missed_batches_wakes_to_read_the_run_again() -> None:
    store = MemoryStore()
    bus = EventBus(store, queue_size=2)
    with bus.watch("run") as watch:
        waiting = asyncio.create_task(watch.until({EventType.WORKFLOW_COMPLETED}))
        await asyncio.sleep(0)
        await publish(store, bus, ev(1), ev(2), ev(3))  # more than its mailbox holds
        await waiting
