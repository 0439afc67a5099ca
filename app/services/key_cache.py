"""What a replica remembers about API keys: each key read at most once per ``ttl_s``.

A request's key is checked against this cache, never the database, once the key was read: a
hit costs a dict lookup and one HMAC. Unknown key ids are remembered too (a caller sending
well-formed made-up keys costs one read per id and TTL, not one per request), within a size
bound. Revocations drop entries at once (the ``keys`` notification); the TTL is the backstop
when a notification is lost or the database is SQLite with a second process (the CLI).
Concurrent misses for one key share a single read.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable

from app.store.keys import KeyRow

MAX_ENTRIES = 10_000  # keys remembered per replica (known and unknown)

Loader = Callable[[str], Awaitable[KeyRow | None]]


class KeyCache:
    def __init__(
        self, load: Loader, *, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._load = load
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, KeyRow | None]] = OrderedDict()
        self._loading: dict[str, asyncio.Future[KeyRow | None]] = {}
        self.reads = 0  # database reads so far, for tests and benchmarks

    async def get(self, key_id: str) -> KeyRow | None:
        while True:
            entry = self._entries.get(key_id)
            if entry is not None and self._clock() - entry[0] < self._ttl_s:
                return entry[1]
            pending = self._loading.get(key_id)
            if pending is None:
                return await self._read(key_id)
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise  # this request was cancelled
                # the request reading it was: read it ourselves

    async def _read(self, key_id: str) -> KeyRow | None:
        future: asyncio.Future[KeyRow | None] = asyncio.get_running_loop().create_future()
        self._loading[key_id] = future
        try:
            self.reads += 1
            row = await self._load(key_id)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            del self._loading[key_id]
        future.set_result(row)
        self._remember(key_id, row)
        return row

    def _remember(self, key_id: str, row: KeyRow | None) -> None:
        self._entries[key_id] = (self._clock(), row)
        self._entries.move_to_end(key_id)
        while len(self._entries) > MAX_ENTRIES:
            self._entries.popitem(last=False)

    def forget(self, key_ids: Iterable[str]) -> None:
        """Read these keys again on their next use (they were revoked, rotated or created)."""
        for key_id in key_ids:
            self._entries.pop(key_id, None)

    def clear(self) -> None:
        """Read every key again (notifications may have been missed)."""
        self._entries.clear()
