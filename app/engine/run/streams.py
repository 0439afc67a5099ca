"""Coalescing a node's streamed text (LLM tokens, progress of a long call) into few events.

A model can produce hundreds of tokens a second; one event each would be one journal row each
and would flood every dashboard. A :class:`TokenStream` gathers what arrives within a short
window (or until a size cap) into one ``node.token`` event, numbers it in the run log at once
(so events of other nodes keep their order around it) and asks the log to write it soon,
without waiting for that write: a streaming node never pays a durable commit per item. The
stream is closed when its node's attempt ends, so the last text is logged before the node's
completion or failure.
"""

from __future__ import annotations

import asyncio
from typing import Final

from app.domain.events import EventType
from app.engine.run.run_log import RunLog

WINDOW_S: Final = 0.05  # what arrives within this long becomes one event (≤ 20 events/s)
MAX_ITEMS: Final = 1000  # ... or this many writes, whichever comes first
MAX_CHARS: Final = 64 * 1024  # ... or this much text: one event stays a small row


class TokenStream:
    """Text one attempt of one node streams, as ``node.token`` events
    (``{"node_id", "attempt", "index", "text"}``; ``index`` counts the attempt's events, and
    the texts in index order concatenate to everything written)."""

    __slots__ = ("_attempt", "_chars", "_key", "_level", "_log", "_parts", "_timer", "index")

    def __init__(self, log: RunLog, key: str, level: int, attempt: int) -> None:
        self._log = log
        self._key = key
        self._level = level
        self._attempt = attempt
        self._parts: list[str] = []
        self._chars = 0
        self._timer: asyncio.TimerHandle | None = None
        self.index = 0  # the index of the next event

    def write(self, text: str) -> None:
        """Add ``text``; it is logged within :data:`WINDOW_S` (sooner past the size caps)."""
        if not text:
            return
        self._parts.append(text)
        self._chars += len(text)
        if len(self._parts) >= MAX_ITEMS or self._chars >= MAX_CHARS:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(WINDOW_S, self.flush)

    def flush(self) -> None:
        """Log what was written since the last event as one event (nothing when nothing was)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._parts:
            return
        text = self._parts[0] if len(self._parts) == 1 else "".join(self._parts)
        self._parts.clear()
        self._chars = 0
        self._log.event(
            EventType.NODE_TOKEN,
            node_id=self._key,
            level=self._level,
            data={
                "node_id": self._key,
                "attempt": self._attempt,
                "index": self.index,
                "text": text,
            },
        )
        self.index += 1
        self._log.write_soon()

    close = flush  # the attempt ended: what is left goes out before the node's own event
