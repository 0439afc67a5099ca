"""A count a server raises as things happen (requests, disconnects), which a test awaits.

The servers run either in the test's event loop or in a thread with a loop of its own, so the
count is guarded by a lock and wakes async waiters through their own loop
(``call_soon_threadsafe``) and sync waiters through a condition variable.
"""

from __future__ import annotations

import asyncio
import threading

WAIT_S = 5.0  # seconds a test waits for a count by default


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Tally:
    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def count(self) -> int:
        return self._count

    def add(self) -> None:
        with self._changed:
            self._count += 1
            self._changed.notify_all()
            due = [w for w in self._waiters if w[0] <= self._count]
            self._waiters = [w for w in self._waiters if w[0] > self._count]
        for _, loop, future in due:
            loop.call_soon_threadsafe(_settle, future)

    async def reach(self, count: int = 1, timeout_s: float = WAIT_S) -> None:
        """Return once the count is at least ``count``; TimeoutError after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        waiter = (count, loop, future)
        with self._changed:
            if self._count >= count:
                return
            self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout_s):
                await future
        finally:
            with self._changed:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def wait(self, count: int = 1, timeout_s: float = WAIT_S) -> None:
        """Block this thread until the count is at least ``count``; TimeoutError after
        ``timeout_s``. For code that is not async (the server runs in its own thread)."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._count >= count, timeout_s):
                raise TimeoutError(f"count {self._count} did not reach {count}")
