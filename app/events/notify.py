"""Nudges between replicas: Postgres ``LISTEN/NOTIFY``, coalesced, ids only.

Four channels: ``keys`` (API keys revoked or created, sent by the transaction that
changed them), ``queue`` (something was queued: claim), ``control`` (a pause or cancel for these
runs was stored: their owner applies it) and ``events`` (these runs logged events: replicas
with subscribers read them from the table). A notification is only a nudge: the database row or
the events table is the truth, so a lost notification delays a reaction (until the next
heartbeat or poll) and never loses anything.

Sending is kept off the hot commit path: ids are collected and sent in one transaction at
most every ``interval_s`` (10 ms) from a dedicated connection. A replica ignores its own
notifications (payloads name the sender). After the listening connection is lost and opened
again, every ``on_resync`` callback runs, since notifications sent meanwhile are gone.

SQLite deployments are one process: :class:`LocalNotifier` sends nothing, and the runner's
polling and in-process delivery do the rest.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Any, Protocol

import asyncpg

from app import faults

log = logging.getLogger(__name__)

INTERVAL_S = 0.01  # seconds: at most one notifying transaction per replica per interval
RECONNECT_S = 1.0  # seconds between attempts to reopen the connection
CLOSE_TIMEOUT_S = 2.0  # seconds the last flush and the close may take
KEEPALIVE_S = 10.0  # seconds: an idle connection is checked this often (a dead one hears nothing)
PAYLOAD_BYTES = 7900  # Postgres refuses payloads of 8000 bytes or more

Listener = Callable[[list[str]], None]


class Channel(StrEnum):
    QUEUE = "oxify_queue"
    CONTROL = "oxify_control"
    EVENTS = "oxify_events"
    KEYS = "oxify_keys"  # API keys revoked or created: replicas drop them from their caches


class Notifier(Protocol):
    sent: int  # notifying transactions so far

    def send(self, channel: Channel, ids: Iterable[str]) -> None:
        """Tell the other replicas about ``ids`` on ``channel`` (soon, coalesced)."""
        ...

    def listen(self, channel: Channel, listener: Listener) -> None:
        """Call ``listener`` with the ids other replicas send on ``channel``."""
        ...

    def on_resync(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when notifications may have been missed."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class LocalNotifier:
    """One process: nothing to tell anyone (the arguments are the Notifier protocol's)."""

    sent = 0

    def send(self, channel: Channel, ids: Iterable[str]) -> None:  # noqa: ARG002
        return None

    def listen(self, channel: Channel, listener: Listener) -> None:  # noqa: ARG002
        return None

    def on_resync(self, callback: Callable[[], None]) -> None:  # noqa: ARG002
        return None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class PgNotifier:
    """LISTEN/NOTIFY on one dedicated asyncpg connection per replica."""

    def __init__(
        self, dsn: str, sender: str, *, interval_s: float = INTERVAL_S, timeout_s: float = 5.0
    ) -> None:
        self._dsn = dsn
        self._sender = sender
        self._interval_s = interval_s
        self._timeout_s = timeout_s  # seconds connecting or one statement may take
        self._listeners: dict[Channel, list[Listener]] = {channel: [] for channel in Channel}
        self._resync: list[Callable[[], None]] = []
        self._outbox: dict[Channel, set[str]] = {channel: set() for channel in Channel}
        self._wake = asyncio.Event()
        self._connection: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.sent = 0  # notifying transactions, for benchmarks

    def send(self, channel: Channel, ids: Iterable[str]) -> None:
        self._outbox[channel].update(ids)
        self._wake.set()

    def listen(self, channel: Channel, listener: Listener) -> None:
        self._listeners[channel].append(listener)

    def on_resync(self, callback: Callable[[], None]) -> None:
        self._resync.append(callback)

    async def start(self) -> None:
        """Listen (a database not up yet only delays it: the loop keeps trying)."""
        try:
            await self._connect()
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("cannot listen for other replicas yet (%s); retrying", exc)
            self._wake.set()
        self._task = asyncio.create_task(self._run(), name="oxify-notifier")

    async def close(self) -> None:
        """Send what was asked for before the stop, then close the connection."""
        if self._task is not None:
            self._closing = True
            self._wake.set()
            # The loop flushes and returns; a query is never cut off midway (asyncpg cannot
            # close a connection cleanly then).
            _done, pending = await asyncio.wait([self._task], timeout=CLOSE_TIMEOUT_S)
            for task in pending:
                task.cancel()
                await asyncio.wait([task])
        if self._connection is not None:
            try:
                await self._connection.close(timeout=CLOSE_TIMEOUT_S)
            except Exception:
                self._connection.terminate()

    # -- connection -------------------------------------------------------------------------

    async def _connect(self) -> None:
        connection = await asyncpg.connect(
            self._dsn,
            timeout=self._timeout_s,
            command_timeout=self._timeout_s,
            server_settings={"application_name": "oxify-notify"},
        )
        try:
            for channel in Channel:
                await connection.add_listener(channel.value, self._received)
        except BaseException:
            connection.terminate()
            raise
        connection.add_termination_listener(self._lost)
        self._connection = connection

    def _lost(self, _connection: Any) -> None:
        if not self._closing:
            self._connection = None
            self._wake.set()  # reconnect now, and resync

    def _received(self, _connection: Any, _pid: int, channel: str, payload: str) -> None:
        sender, _, ids = payload.partition("|")
        if sender == self._sender:
            return
        found = ids.split(",") if ids else []
        for listener in self._listeners[Channel(channel)]:
            try:
                listener(found)
            except Exception:
                log.exception("a %s listener failed", channel)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            idle = False
            try:
                await asyncio.wait_for(self._wake.wait(), KEEPALIVE_S)
            except TimeoutError:
                idle = True
            self._wake.clear()
            started = loop.time()
            try:
                if self._connection is None or self._connection.is_closed():
                    if self._closing:
                        return
                    await self._reconnect()
                elif idle:
                    await self._connection.execute("SELECT 1", timeout=KEEPALIVE_S)
                await self._flush()
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("cannot notify other replicas (%s); retrying", exc)
                self._drop_connection()
                if self._closing:
                    return
                self._wake.set()
                await asyncio.sleep(RECONNECT_S)
                continue
            if self._closing:
                return
            await asyncio.sleep(max(0.0, self._interval_s - (loop.time() - started)))

    def _drop_connection(self) -> None:
        if self._connection is not None:
            self._connection.terminate()
            self._connection = None

    async def _reconnect(self) -> None:
        await self._connect()
        for callback in self._resync:
            callback()

    async def _flush(self) -> None:
        channels: list[str] = []
        payloads: list[str] = []
        for channel, ids in self._outbox.items():
            if not ids:
                continue
            self._outbox[channel] = set()
            for payload in _payloads(self._sender, ids):
                channels.append(channel.value)
                payloads.append(payload)
        if not channels or self._connection is None:
            return
        await faults.hit("notify.before_send", *channels)
        await self._connection.execute(
            "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS t(c, p)",
            channels,
            payloads,
        )
        self.sent += 1


def _payloads(sender: str, ids: set[str]) -> list[str]:
    """``sender|id,id,…`` strings under Postgres's payload limit."""
    payloads: list[str] = []
    current: list[str] = []
    size = len(sender) + 1
    for execution_id in sorted(ids):
        if current and size + len(execution_id) + 1 > PAYLOAD_BYTES:
            payloads.append(f"{sender}|{','.join(current)}")
            current, size = [], len(sender) + 1
        current.append(execution_id)
        size += len(execution_id) + 1
    payloads.append(f"{sender}|{','.join(current)}")
    return payloads
