"""Rate limits and quotas: what a key or a project may use, and the windows they count in.

A limit left out (None) is unlimited; limits of a key, of its project and the service's
defaults all apply at once (the tightest one refuses first). Quotas count per UTC day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

DAY_S = 86_400  # seconds: the window of runs/day and tokens/day


class Quota(StrEnum):
    """What a quota counts (the policy name in ``RateLimit-Policy``)."""

    REQUESTS = "requests"  # requests per second, per replica token bucket
    CONCURRENT = "concurrent"  # runs not yet terminal
    RUNS = "runs"  # runs submitted per UTC day
    TOKENS = "tokens"  # LLM input + output tokens per UTC day
    AUTH_FAILURES = "auth_failures"  # failed authentications per client IP per minute


class Limits(BaseModel):
    """Limits of a key or a project; a field left out or null is unlimited."""

    model_config = ConfigDict(extra="forbid")

    requests_per_s: float | None = Field(
        default=None, gt=0, description="Requests per second (token bucket, burst of one second)."
    )
    concurrent_runs: int | None = Field(
        default=None, ge=0, description="Runs queued, running, paused or waiting at once."
    )
    runs_per_day: int | None = Field(default=None, ge=0, description="Runs started per UTC day.")
    tokens_per_day: int | None = Field(
        default=None, ge=0, description="LLM tokens (input + output) per UTC day."
    )

    def over(self, defaults: Limits) -> Limits:
        """These limits, each one left out taken from ``defaults``."""
        mine = self.model_dump(exclude_none=True)
        return Limits.model_validate(defaults.model_dump(exclude_none=True) | mine)


UNLIMITED = Limits()


class ProjectLimits(Limits):
    """A project's limits as stored (`GET /v1/admin/projects/{project}/limits`)."""

    project: str


def window(now: datetime) -> date:
    """The UTC day ``now`` counts in."""
    return now.astimezone(UTC).date()


def reset_in_s(now: datetime) -> int:
    """Whole seconds until the window of ``now`` ends (at least one)."""
    start = datetime.combine(window(now), datetime.min.time(), tzinfo=UTC)
    left = start + timedelta(seconds=DAY_S) - now.astimezone(UTC)
    return max(1, int(-(-left.total_seconds() // 1)))
