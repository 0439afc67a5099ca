"""In-process fan-out of persisted events to stream subscribers (SSE, WebSocket, waiters).

A waiter (``GET /wait``) only watches (:meth:`EventBus.watch`): it reads the run's status once
subscribed and again after a settling event, and nothing while it waits.

Publishing happens after the events are stored and never blocks the run: each subscriber has a
bounded queue, and one that falls behind is marked overflowed and re-reads what it missed from
the events table. A stream replays stored events after the client's position first, then goes
live, with no gap and no duplicate (live events at or below the replayed position are dropped).

Runs driven by another replica reach local subscribers through :meth:`EventBus.refresh`: a
notification names the run, and one read from the table serves all its subscribers here; a read
that fails is tried again, backing off, for as long as the run has subscribers.

Both paths are timed for the metrics (:class:`LagWatch`): a published batch from its commit to
the moment a subscriber takes it, and a batch read after a notification from its newest event's
timestamp (taken on the writing replica just before its commit) to the end of the read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from app import faults
from app.auth import context
from app.domain.events import Event, EventType

log = logging.getLogger(__name__)

READ_PAGE = 500  # events per re-read from the table
RETRY_FIRST_S = 0.1  # seconds before reading again for subscribers after a failed read
RETRY_MAX_S = 5.0  # seconds: the longest wait between such reads


class EventReader(Protocol):
    async def read_events(self, execution_id: str, after_seq: int, limit: int) -> list[Event]:
        """Stored events with seq > ``after_seq``, in seq order, at most ``limit``."""
        ...


class LagWatch(Protocol):
    """Where the bus reports how late events reach subscribers (metrics); never raises."""

    def published(self, seconds: float) -> None:
        """A batch committed here reached a local subscriber ``seconds`` after its commit."""
        ...

    def notified(self, seconds: float) -> None:
        """A batch another replica committed was read here ``seconds`` after it."""
        ...


class Subscription:
    """A bounded mailbox of event batches for one subscriber, each with the monotonic time it
    was published at (None: read from the table for another replica's run)."""

    __slots__ = ("_capacity", "_queue", "_size", "overflowed", "position", "wake")

    def __init__(self, capacity: int, position: int) -> None:
        self._queue: list[tuple[float | None, Sequence[Event]]] = []
        self._size = 0
        self._capacity = capacity
        self.overflowed = False
        self.position = position  # seq of the last event handed to the reader
        self.wake = asyncio.Event()

    def offer(self, events: Sequence[Event], published_at: float | None) -> None:
        if self.overflowed:
            return
        if self._size + len(events) > self._capacity:
            # Dropping here keeps the publisher (the run) at full speed; the reader catches up
            # from the table.
            self._queue.clear()
            self._size = 0
            self.overflowed = True
        else:
            self._queue.append((published_at, events))
            self._size += len(events)
        self.wake.set()

    def take(self) -> list[tuple[float | None, Sequence[Event]]]:
        batches, self._queue, self._size = self._queue, [], 0
        self.wake.clear()
        return batches


class Watch:
    """A waiter's subscription: it learns that an event of some types came, not the events."""

    __slots__ = ("_subscription",)

    def __init__(self, subscription: Subscription) -> None:
        self._subscription = subscription

    def seen(self, seq: int) -> None:
        """The waiter knows the run up to ``seq``: a read for another replica's run starts
        after it (not at the waiter's start, again for every notification)."""
        self._subscription.position = max(self._subscription.position, seq)

    async def until(self, types: Collection[EventType]) -> None:
        """Return once an event of ``types`` came, or once batches were missed (the mailbox
        overflowed): either way the waiter reads the run again."""
        subscription = self._subscription
        while True:
            await subscription.wake.wait()
            batches = subscription.take()
            if subscription.overflowed:
                subscription.overflowed = False
                return
            for _, batch in batches:
                self.seen(batch[-1].seq)
            if any(event.type in types for _, batch in batches for event in batch):
                return


class EventBus:
    """Subscribers per execution; ``publish`` is called by the store after each commit."""

    def __init__(
        self,
        reader: EventReader,
        *,
        queue_size: int = 1024,
        retry_s: float = RETRY_FIRST_S,
        lags: LagWatch | None = None,
    ) -> None:
        self._reader = reader
        self._lags = lags
        self._queue_size = queue_size
        self._retry_s = retry_s  # after a failed read; doubling up to RETRY_MAX_S
        self._subscribers: dict[str, set[Subscription]] = defaultdict(set)
        self._listeners: list[Callable[[Sequence[Event]], None]] = []
        self._fetching: dict[str, asyncio.Task[None]] = {}
        self._stale: set[str] = set()

    def listen(self, listener: Callable[[Sequence[Event]], None]) -> None:
        """Also hand every published batch to ``listener`` (metrics); it must not block."""
        self._listeners.append(listener)

    def publish(self, events: Sequence[Event]) -> None:
        """Hand stored events to the subscribers of their executions (never blocks)."""
        if not events:
            return
        for listener in self._listeners:
            try:  # a listener (metrics) that fails must not keep events from subscribers
                faults.hit_now("bus.listener")
                listener(events)
            except Exception:
                log.exception("an event listener failed")
        by_execution: dict[str, list[Event]] = {}
        for event in events:
            by_execution.setdefault(event.execution_id, []).append(event)
        now = time.monotonic()  # just after the commit: the journal publishes right after it
        for execution_id, batch in by_execution.items():
            for subscription in self._subscribers.get(execution_id, ()):
                subscription.offer(batch, now)

    def refresh(self, execution_ids: Iterable[str]) -> None:
        """Another replica logged events for these runs: read them from the table, once per
        run however many local subscribers follow it, and hand them out like local ones."""
        for execution_id in execution_ids:
            if execution_id not in self._subscribers:
                continue
            if execution_id in self._fetching:
                self._stale.add(execution_id)  # read again when the current read is done
                continue
            task = context.detached_task(
                self._fetch(execution_id), name=f"oxify-bus-{execution_id}"
            )
            self._fetching[execution_id] = task

    def refresh_all(self) -> None:
        """Notifications may have been missed: look at every followed run."""
        self.refresh(list(self._subscribers))

    async def _fetch(self, execution_id: str) -> None:
        failures = 0
        try:
            while subscribers := self._subscribers.get(execution_id):
                # From the most advanced subscriber: one that is behind sees the gap and
                # catches up from the table itself.
                after = max(subscription.position for subscription in subscribers)
                try:
                    page = await self._reader.read_events(execution_id, after, READ_PAGE)
                except Exception as exc:
                    # The notification is spent: give up and a subscriber could wait forever
                    # for the run's last event. Try again while anyone still follows the run.
                    delay = min(self._retry_s * 2**failures, RETRY_MAX_S)
                    failures += 1
                    log.warning(
                        "reading the events of run %s failed (%s); retry %d in %.2fs",
                        execution_id,
                        exc,
                        failures,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    continue
                failures = 0
                if page and self._lags is not None:
                    self._lags.notified((datetime.now(UTC) - page[-1].ts).total_seconds())
                for subscription in self._subscribers.get(execution_id, ()):
                    if page:
                        subscription.offer(page, None)
                if len(page) == READ_PAGE:
                    continue
                if execution_id not in self._stale:
                    return
                self._stale.discard(execution_id)
        finally:
            self._fetching.pop(execution_id, None)

    async def close(self) -> None:
        """Stop reads still under way for subscribers."""
        tasks = list(self._fetching.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def read(self, execution_id: str, after_seq: int, limit: int) -> list[Event]:
        """Stored events after ``after_seq`` (a page of the log, no live part)."""
        return await self._reader.read_events(execution_id, after_seq, limit)

    @contextlib.contextmanager
    def watch(self, execution_id: str) -> Iterator[Watch]:
        """The run's events from now on, with nothing read from the table: for a waiter that
        reads the run's status itself once subscribed (so nothing committed before it
        subscribed goes unseen) and tells the watch the seq that read gave."""
        subscription = Subscription(self._queue_size, 0)
        self._subscribers[execution_id].add(subscription)
        try:
            yield Watch(subscription)
        finally:
            self._leave(execution_id, subscription)

    def subscriber_count(self, execution_id: str) -> int:
        return len(self._subscribers.get(execution_id, ()))

    async def stream(self, execution_id: str, after_seq: int = 0) -> AsyncIterator[Event]:
        """Every event after ``after_seq`` exactly once, in order; ends after the run's newest
        event when that is a terminal one (see :meth:`stream_batches`)."""
        batches = self.stream_batches(execution_id, after_seq)
        async with contextlib.aclosing(cast(Any, batches)):
            async for batch in batches:
                for event in batch:
                    yield event

    async def stream_batches(
        self, execution_id: str, after_seq: int = 0
    ) -> AsyncIterator[list[Event]]:
        """Like :meth:`stream`, in the batches the events were stored in (consecutive, never
        empty): a stream writer sends one chunk per batch instead of one per event.

        Paused and waiting runs keep the stream open: they may continue. The caller stops
        iterating (or cancels) to leave earlier.
        """
        subscription = Subscription(self._queue_size, after_seq)
        self._subscribers[execution_id].add(subscription)
        last = after_seq
        try:
            while True:
                # Catch up from the table: at the start, and whenever the mailbox overflowed.
                subscription.overflowed = False
                subscription.take()
                ended = False
                while True:
                    page = await self._reader.read_events(execution_id, last, READ_PAGE)
                    if page:
                        yield page
                        last = subscription.position = page[-1].seq
                        # A terminal event ends the stream only when it is the newest one: a
                        # retried run logs more after its first ending.
                        ended = page[-1].type.is_terminal
                    if len(page) < READ_PAGE:
                        break
                if ended:
                    return
                while not subscription.overflowed:
                    await subscription.wake.wait()
                    for published_at, batch in subscription.take():
                        if published_at is not None and self._lags is not None:
                            self._lags.published(time.monotonic() - published_at)
                        fresh, gap = _after(batch, last)
                        if fresh:
                            yield fresh
                            last = subscription.position = fresh[-1].seq
                            if fresh[-1].type.is_terminal:
                                return
                        if gap:
                            # A batch was missed: re-read from the table.
                            subscription.overflowed = True
                            break
        finally:
            self._leave(execution_id, subscription)

    def _leave(self, execution_id: str, subscription: Subscription) -> None:
        subscribers = self._subscribers.get(execution_id)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[execution_id]


def _after(batch: Sequence[Event], last: int) -> tuple[list[Event], bool]:
    """The events of ``batch`` that follow ``last`` without a gap, and whether a gap follows
    them. Events at or below ``last`` were already sent (replayed from the table)."""
    fresh: list[Event] = []
    for event in batch:
        if event.seq <= last:
            continue
        if event.seq != last + 1:
            return fresh, True
        fresh.append(event)
        last = event.seq
        if event.type.is_terminal:
            break
    return fresh, False
