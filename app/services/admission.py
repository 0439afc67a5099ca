"""Admission control: how many runs wait to start, known cheaply enough to ask per request."""

from __future__ import annotations

import time

ADMISSION_TTL_S = 1.0  # seconds a queue count is trusted before it is read again


class Admission:
    """The queue depth last read (plus the runs this process queued since), and the bound."""

    def __init__(self, limit: int, *, ttl_s: float = ADMISSION_TTL_S) -> None:
        self.limit = limit
        self.queued = 0
        self._ttl_s = ttl_s
        self._read_at = float("-inf")

    def stale(self) -> bool:
        return time.monotonic() - self._read_at > self._ttl_s

    def update(self, queued: int) -> None:
        self.queued = queued
        self._read_at = time.monotonic()

    def full(self) -> bool:
        return self.queued >= self.limit

    @property
    def retry_after_s(self) -> int:
        """Seconds a refused client should wait: the count is looked at again by then."""
        return max(1, round(self._ttl_s))
