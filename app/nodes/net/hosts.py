"""Per-host policies shared by every run of a process: a token bucket per host
(``OXIFY_HTTP_RATE_LIMITS``) and a circuit breaker per host (``OXIFY_HTTP_CIRCUIT_BREAKER``).

A call waits for its token, unless the wait would outlast the call's own timeout: then it fails
at once (retryable, after the wait) instead of sleeping towards a timeout it cannot meet.

The breaker is closed until ``failures`` calls failed within ``window_s`` (a connection error, a
timeout, a 5xx or 429 answer); then it is open for ``open_s``: calls fail fast, naming the host.
After that one call goes through as a probe (the others still fail fast): its success closes the
breaker, its failure opens it again. A call that ends without a verdict (cancelled, refused by
the egress policy) frees the probe for the next call without counting.

Nodes use :func:`policies` and wrap each request in :meth:`HostPolicies.call`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from app.engine.ports import Clock
from app.errors import NodeError
from app.nodes.net.egress import EgressRefused
from app.nodes.resources import NodeResources
from app.settings_net import CircuitBreaker, RateLimit


class RateLimited(NodeError):
    """The host's rate limit leaves no token within the call's timeout."""

    code = "rate_limited"


class CircuitOpen(NodeError):
    """The host's circuit breaker is open: recent calls to it failed."""

    code = "circuit_open"


def policies(resources: NodeResources) -> HostPolicies:
    """The process's per-host policies (made on first use from the settings)."""
    settings = resources.settings
    return resources.client(
        "host-policies",
        lambda: HostPolicies(
            settings.http_rate_limits, settings.http_circuit_breaker, resources.clock
        ),
    )


def is_failure(status: int) -> bool:
    """Whether an answer with ``status`` counts against the host's circuit breaker."""
    return status >= 500 or status == 429


class TokenBucket:
    """``per_s`` tokens a second, ``burst`` at most; a taken token may leave the bucket below
    zero: that is the queue of callers waiting for theirs, each told how long to wait."""

    def __init__(self, limit: RateLimit, now: float) -> None:
        self._rate = limit.per_s
        self._burst = float(limit.burst)
        self._tokens = self._burst
        self._stamp = now

    def take(self, now: float, budget_s: float) -> float | None:
        """Seconds until the caller's token is due (taking it), or None past ``budget_s``."""
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        wait = max(0.0, (1.0 - self._tokens) / self._rate)
        if wait > budget_s:
            return None
        self._tokens -= 1.0
        return wait


@dataclass
class Circuit:
    """One host's breaker state."""

    settings: CircuitBreaker
    failures: deque[float] = field(default_factory=deque)
    open_until: float | None = None
    probing: bool = False

    def admit(self, host: str, now: float) -> bool:
        """Whether the call is the half-open probe; raises :class:`CircuitOpen` while open."""
        if self.open_until is None:
            return False
        if now < self.open_until or self.probing:
            wait = max(self.open_until - now, 0.0)
            raise CircuitOpen(
                f"the circuit breaker for {host} is open after {self.settings.failures} failed "
                f"calls within {self.settings.window_s:g} s; calls to it fail fast"
                + (f" for {wait:.1f} s more" if wait else " while a probe call is in flight"),
                details={"policy": "circuit_breaker", "host": host},
                retry_after_s=wait or None,
            )
        self.probing = True
        return True

    def settle(self, now: float, *, probe: bool, failed: bool | None) -> None:
        if probe:
            self.probing = False
        if failed is None:
            return
        if not failed:
            if probe:
                self.open_until = None
                self.failures.clear()
            return
        if probe:
            self.open_until = now + self.settings.open_s
            return
        self.failures.append(now)
        while self.failures and self.failures[0] <= now - self.settings.window_s:
            self.failures.popleft()
        if len(self.failures) >= self.settings.failures and self.open_until is None:
            self.open_until = now + self.settings.open_s


class Call:
    """One guarded call: the time it waited for its token, and its verdict once known."""

    def __init__(self, waited_s: float) -> None:
        self.waited_s = waited_s
        self.failed: bool | None = None

    def answered(self, status: int) -> None:
        """The host answered ``status``: the verdict (whatever happens after)."""
        self.failed = is_failure(status)


class HostPolicies:
    """The token buckets and circuit breakers of every host, by lower-case host name."""

    def __init__(
        self, limits: Mapping[str, RateLimit], breaker: CircuitBreaker | None, clock: Clock
    ) -> None:
        self._limits = dict(limits)
        self._breaker = breaker
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._circuits: dict[str, Circuit] = {}

    @asynccontextmanager
    async def call(self, host: str, budget_s: float) -> AsyncIterator[Call]:
        """Admit one call to ``host`` (waiting for its token), then record how it went.

        Without an explicit verdict (:meth:`Call.answered`), an exception leaving the block is a
        failure (an egress refusal is not the host's fault and counts as nothing) and a normal
        exit a success.
        """
        host = host.lower().rstrip(".")
        clock = self._clock
        circuit = self._circuit(host)
        probe = circuit.admit(host, clock.monotonic()) if circuit is not None else False
        try:
            call = Call(await self._wait_for_token(host, budget_s))
        except BaseException:  # not admitted: nothing to record, the probe is free again
            if circuit is not None:
                circuit.settle(clock.monotonic(), probe=probe, failed=None)
            raise
        try:
            yield call
        except EgressRefused:
            raise
        except Exception:
            if call.failed is None:
                call.failed = True
            raise
        else:
            if call.failed is None:
                call.failed = False
        finally:
            if circuit is not None:
                circuit.settle(clock.monotonic(), probe=probe, failed=call.failed)

    async def _wait_for_token(self, host: str, budget_s: float) -> float:
        limit = self._limits.get(host)
        if limit is None:
            return 0.0
        now = self._clock.monotonic()
        bucket = self._buckets.get(host)
        if bucket is None:
            bucket = self._buckets[host] = TokenBucket(limit, now)
        wait = bucket.take(now, budget_s)
        if wait is None:
            raise RateLimited(
                f"the rate limit for {host} ({limit.per_s:g}/s, burst {limit.burst}) has no "
                f"request free within the call's timeout ({budget_s:g} s)",
                details={"policy": "rate_limit", "host": host},
                retry_after_s=1.0 / limit.per_s,
            )
        if wait > 0:
            await self._clock.sleep(wait)
        return wait

    def _circuit(self, host: str) -> Circuit | None:
        if self._breaker is None:
            return None
        circuit = self._circuits.get(host)
        if circuit is None:
            circuit = self._circuits[host] = Circuit(self._breaker)
        return circuit
