"""Token buckets on an injected clock, and the client address behind trusted proxies."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.auth import client_ip
from app.auth.ratelimit import Limiter, retry_after_s
from app.domain import limits


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_refills_at_its_rate() -> None:
    clock = Clock()
    limiter = Limiter(clock=clock)
    assert [limiter.take("k", 3.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("k", 3.0) == pytest.approx(1 / 3)
    clock.now += 1 / 3
    assert limiter.take("k", 3.0) == 0.0
    assert limiter.take("k", 3.0) > 0
    clock.now += 10  # never more than the burst
    assert [limiter.take("k", 3.0) for _ in range(4)][-1] > 0


def test_buckets_are_separate_by_key() -> None:
    limiter = Limiter(clock=Clock())
    assert limiter.take("a", 1.0) == 0.0
    assert limiter.take("a", 1.0) > 0
    assert limiter.take("b", 1.0) == 0.0


def test_a_slow_rate_holds_at_least_one_token_and_waits_whole_seconds() -> None:
    clock = Clock()
    limiter = Limiter(clock=clock)
    assert limiter.take("k", 0.25) == 0.0
    wait = limiter.take("k", 0.25)
    assert wait == pytest.approx(4.0)
    assert retry_after_s(wait) == 4
    assert retry_after_s(0.01) == 1


def test_a_changed_rate_shrinks_the_bucket() -> None:
    """Another replica joined: each one's share halves at once."""
    limiter = Limiter(clock=Clock())
    limiter.take("k", 10.0)
    assert sum(limiter.take("k", 2.0) == 0.0 for _ in range(10)) == 2


def test_empty_takes_nothing() -> None:
    clock = Clock()
    limiter = Limiter(burst_s=60, clock=clock)
    assert limiter.empty("ip") == 0.0  # never seen
    for _ in range(3):
        limiter.take("ip", 3 / 60)
    assert limiter.empty("ip") == pytest.approx(20.0)
    assert limiter.empty("ip") == pytest.approx(20.0)
    clock.now += 20
    assert limiter.empty("ip") == 0.0


TRUSTED = client_ip.networks(["10.0.0.0/8", "::1"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.9", "1.2.3.4", "203.0.113.9"),  # not a proxy: its header is ignored
        ("10.0.0.5", "198.51.100.7", "198.51.100.7"),
        ("10.0.0.5", "6.6.6.6, 198.51.100.7, 10.0.0.4", "198.51.100.7"),  # spoofed hop unseen
        ("10.0.0.5", None, "10.0.0.5"),
        ("10.0.0.5", "10.0.0.3, 10.0.0.4", "10.0.0.3"),  # only proxies: the farthest
        ("::1", "2001:db8::1", "2001:db8::1"),
        (None, "1.2.3.4", "unknown"),
    ],
)
def test_client_ip_believes_trusted_proxies_only(
    peer: str | None, forwarded: str | None, expected: str
) -> None:
    assert client_ip.client_ip(peer, forwarded, TRUSTED) == expected


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert client_ip.client_ip("10.0.0.5", "1.2.3.4", ()) == "10.0.0.5"


def test_a_bad_cidr_is_refused() -> None:
    with pytest.raises(ValueError, match="does not appear"):
        client_ip.networks(["10.0.0.0/33"])


def test_the_day_window_resets_at_utc_midnight() -> None:
    now = datetime(2026, 12, 7, 23, 0, 0, tzinfo=UTC)
    assert limits.reset_in_s(now) == 3600
    assert limits.reset_in_s(datetime(2026, 12, 7, 23, 59, 59, 500_000, tzinfo=UTC)) == 1
    assert limits.window(now).isoformat() == "2026-12-07"


def test_limits_fill_in_from_defaults() -> None:
    own = limits.Limits(runs_per_day=5)
    merged = own.over(limits.Limits(runs_per_day=100, concurrent_runs=3))
    assert (merged.runs_per_day, merged.concurrent_runs, merged.tokens_per_day) == (5, 3, None)
