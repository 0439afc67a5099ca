"""The stores a process holds open, bounded: a node's config may name any server, directory or
database (``"url": "{{ inputs.server }}"``), and each held store keeps connections, a thread or
a directory lock.

At most ``size`` stores are held; past that the least recently used *idle* ones are closed. A
store in use is never closed under its user: it counts against the bound until its last user
is done (so the bound is exceeded only by stores in use at once). A store being closed is not
opened again until its close has finished (a Qdrant directory is locked until then).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Generic, Protocol, TypeVar

from app.nodes.resources import ResourcesClosed


class Closable(Protocol):
    async def aclose(self) -> None: ...


S = TypeVar("S", bound=Closable)


class _Held(Generic[S]):
    __slots__ = ("store", "users")

    def __init__(self, store: S) -> None:
        self.store = store
        self.users = 0


class HeldStores(Generic[S]):
    """Stores by key, made on first use; see the module docstring."""

    def __init__(self, size: int, logger: logging.Logger) -> None:
        self._size = size
        self._logger = logger
        self._held: OrderedDict[str, _Held[S]] = OrderedDict()  # least recently used first
        self._closing: dict[str, asyncio.Task[None]] = {}
        self._closed = False

    @asynccontextmanager
    async def use(self, key: str, make: Callable[[], S]) -> AsyncIterator[S]:
        """The store called ``key`` (made by ``make`` if not held), held open while the block
        runs."""
        while (closing := self._closing.get(key)) is not None:
            await asyncio.shield(closing)  # our cancellation must not cut the close short
        if self._closed:
            raise ResourcesClosed(f"store {key!r} asked for after the node resources closed")
        held = self._held.get(key)
        if held is None:
            held = self._held[key] = _Held(make())
        self._held.move_to_end(key)
        held.users += 1
        try:
            self._evict()
            yield held.store
        finally:
            held.users -= 1
            self._evict()

    def __len__(self) -> int:
        return len(self._held)

    def _evict(self) -> None:
        excess = len(self._held) - self._size
        for key, held in list(self._held.items()):
            if excess <= 0:
                return
            if held.users == 0:
                del self._held[key]
                self._start_closing(key, held.store)
                excess -= 1

    def _start_closing(self, key: str, store: S) -> None:
        task = asyncio.create_task(self._close(key, store))
        self._closing[key] = task
        task.add_done_callback(lambda _: self._closing.pop(key, None))

    async def _close(self, key: str, store: S) -> None:
        try:
            await store.aclose()
        except Exception:
            self._logger.exception("closing the store %r failed", key)

    async def aclose(self) -> None:
        """Close every store (shutdown: no run uses them any more) and wait for closes begun."""
        self._closed = True
        while self._held:
            key, held = self._held.popitem(last=False)
            self._start_closing(key, held.store)
        await asyncio.gather(*self._closing.values())
