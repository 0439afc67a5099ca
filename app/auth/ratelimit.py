"""Token buckets, per replica: requests per second per key and per project, and failed
authentications per client address.

Pure and clock-injected: a bucket holds at most ``capacity`` tokens and gains ``rate`` a
second; taking one either succeeds or says how long until one is there. Nothing here touches
the database, so a request pays a dict lookup and a few float operations.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

MAX_BUCKETS = 100_000  # buckets remembered per limiter (oldest forgotten: a full bucket)
_WHOLE = 1.0 - 1e-9  # a token: refills are float sums, a third plus two thirds is not quite 1


@dataclass(slots=True)
class Bucket:
    capacity: float
    rate: float  # tokens per second
    tokens: float
    at: float  # clock reading of ``tokens``

    def take(self, now: float) -> float:
        """Take a token: 0.0 if one was there, else the seconds until one will be."""
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= _WHOLE:
            self.tokens = max(0.0, self.tokens - 1.0)
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def empty(self, now: float) -> float:
        """Like :meth:`take` without taking: 0.0 while a token is there."""
        tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        return 0.0 if tokens >= _WHOLE else (1.0 - tokens) / self.rate


class Limiter:
    """Buckets by key (a key id, a project, an address), each ``per_s`` tokens a second with a
    burst of ``burst_s`` seconds' worth (at least one token)."""

    def __init__(
        self, *, burst_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._burst_s = burst_s
        self._clock = clock
        self._buckets: OrderedDict[Hashable, Bucket] = OrderedDict()

    def take(self, key: Hashable, per_s: float) -> float:
        """Take a token from ``key``'s bucket: 0.0 if allowed, else seconds to wait."""
        return self._bucket(key, per_s).take(self._clock())

    def empty(self, key: Hashable) -> float:
        """Seconds until ``key``'s bucket holds a token (0.0: it does); takes nothing."""
        bucket = self._buckets.get(key)
        return 0.0 if bucket is None else bucket.empty(self._clock())

    def _bucket(self, key: Hashable, per_s: float) -> Bucket:
        capacity = max(1.0, per_s * self._burst_s)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = Bucket(capacity, per_s, capacity, self._clock())
            self._buckets[key] = bucket
            if len(self._buckets) > MAX_BUCKETS:
                self._buckets.popitem(last=False)
        elif bucket.rate != per_s:  # the limit or the number of replicas changed
            bucket.rate, bucket.capacity = per_s, capacity
            bucket.tokens = min(bucket.tokens, capacity)
        self._buckets.move_to_end(key)
        return bucket


def retry_after_s(wait_s: float) -> int:
    """``Retry-After`` for a wait of ``wait_s`` seconds: whole seconds, at least one."""
    return max(1, math.ceil(wait_s))
