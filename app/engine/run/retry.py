"""Backoff schedule for node retries."""

from __future__ import annotations

from collections.abc import Callable

from app.domain.workflow import RetryPolicy

MAX_RETRY_AFTER_S = 3600.0  # seconds; a server asking for longer is not waited for


def backoff_delay(
    policy: RetryPolicy,
    retry: int,
    random: Callable[[], float],
    retry_after_s: float | None = None,
) -> float:
    """Seconds to wait before retry number ``retry`` (1-based).

    Exponential: ``initial * multiplier ** (retry - 1)``, capped at ``max_delay_ms``, then spread
    by ± ``jitter`` so retries of many runs do not stampede together; never negative, never above
    the cap. A server's own ``Retry-After`` wins when it is longer than the schedule.
    """
    base_ms = min(
        policy.initial_delay_ms * policy.multiplier ** (retry - 1), float(policy.max_delay_ms)
    )
    spread = base_ms * policy.jitter * (2.0 * random() - 1.0)
    delay_s = max(0.0, min(base_ms + spread, float(policy.max_delay_ms))) / 1000.0
    if retry_after_s is not None:
        delay_s = max(delay_s, min(retry_after_s, MAX_RETRY_AFTER_S))
    return delay_s
