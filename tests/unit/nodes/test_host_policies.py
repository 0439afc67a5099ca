"""Per-host policies on a fake clock: the token bucket's waits and the circuit breaker's moves."""

from __future__ import annotations

import pytest

from app.nodes.net.egress import EgressRefused
from app.nodes.net.hosts import CircuitOpen, HostPolicies, RateLimited
from app.settings_net import CircuitBreaker, RateLimit
from tests.support import FakeClock


async def test_the_bucket_lets_a_burst_through_then_paces() -> None:
    clock = FakeClock()
    policies = HostPolicies({"api.example": RateLimit(per_s=4, burst=2)}, None, clock)
    for _ in range(4):
        async with policies.call("API.example.", budget_s=10):
            pass
    assert clock.sleeps == [0.25, 0.25]


async def test_a_wait_past_the_budget_fails_without_taking_a_token() -> None:
    clock = FakeClock()
    policies = HostPolicies({"api.example": RateLimit(per_s=1, burst=1)}, None, clock)
    async with policies.call("api.example", budget_s=0.5):
        pass
    with pytest.raises(RateLimited, match="no request free within the call's timeout"):
        async with policies.call("api.example", budget_s=0.5):
            pass
    clock.t += 1
    async with policies.call("api.example", budget_s=0.5):
        pass
    assert clock.sleeps == []


async def test_failures_outside_the_window_do_not_open_the_circuit() -> None:
    clock = FakeClock()
    policies = HostPolicies({}, CircuitBreaker(failures=2, window_s=10, open_s=5), clock)
    for _ in range(2):
        async with policies.call("h", budget_s=1) as call:
            call.answered(500)
        clock.t += 11
    async with policies.call("h", budget_s=1) as call:
        call.answered(200)


async def test_refusals_and_cancellation_leave_the_circuit_as_it_was() -> None:
    clock = FakeClock()
    policies = HostPolicies({}, CircuitBreaker(failures=1, window_s=10, open_s=5), clock)
    with pytest.raises(EgressRefused):
        async with policies.call("h", budget_s=1):
            raise EgressRefused("refused")
    async with policies.call("h", budget_s=1) as call:  # still closed
        call.answered(429)
    with pytest.raises(CircuitOpen):
        async with policies.call("h", budget_s=1):
            pass
    clock.t += 5
    with pytest.raises(EgressRefused):  # the probe ends without a verdict: the next one probes
        async with policies.call("h", budget_s=1):
            raise EgressRefused("refused")
    async with policies.call("h", budget_s=1):
        pass
    async with policies.call("h", budget_s=1):  # closed again
        pass


async def test_only_one_probe_at_a_time() -> None:
    clock = FakeClock()
    policies = HostPolicies({}, CircuitBreaker(failures=1, window_s=10, open_s=5), clock)
    with pytest.raises(ConnectionError):
        async with policies.call("h", budget_s=1):
            raise ConnectionError
    clock.t += 5
    async with policies.call("h", budget_s=1):
        with pytest.raises(CircuitOpen, match="while a probe call is in flight"):
            async with policies.call("h", budget_s=1):
                pass
