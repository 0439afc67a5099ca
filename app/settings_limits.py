"""The settings of rate limits and quotas. A mixin of :class:`app.settings.Settings` (so read
from ``OXIFY_*`` variables). A default left unset is unlimited."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from app.auth import client_ip
from app.domain.limits import Limits


class LimitSettings(BaseModel):
    """Fields mixed into Settings."""

    default_requests_per_s: float | None = Field(
        default=None,
        gt=0,
        description="Requests per second of a project without a limit of its own, shared by "
        "the live replicas (each allows its share).",
    )
    default_concurrent_runs: int | None = Field(
        default=None, ge=0, description="Runs not yet finished, per project without its own."
    )
    default_runs_per_day: int | None = Field(
        default=None, ge=0, description="Runs started per UTC day, per project without its own."
    )
    default_tokens_per_day: int | None = Field(
        default=None,
        ge=0,
        description="LLM tokens (input + output) per UTC day, per project without its own.",
    )
    quota_exhausted: Literal["pause", "fail"] = Field(
        default="pause",
        description="A run whose model call crosses tokens/day: `pause` (reason "
        "`quota_exhausted`, resumed when the UTC day ends) or `fail` (its next model call "
        "fails with `quota_exhausted`).",
    )
    auth_failures_per_min: float = Field(
        default=20.0,
        gt=0,
        description="Failed authentications a client address may make per minute (per "
        "replica) before its requests are answered 429.",
    )
    trusted_proxies: str = Field(
        default="",
        description="Comma-separated addresses or CIDR ranges of reverse proxies whose "
        "`X-Forwarded-For` is believed; from anyone else the socket peer is the client.",
    )
    limits_refresh_s: float = Field(
        default=5.0,
        gt=0,
        description="Seconds between reads of project limits and live replicas (and the "
        "release of finished runs from concurrency counts).",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: str) -> str:
        client_ip.networks(part for part in value.split(",") if part.strip())
        return value

    def default_limits(self) -> Limits:
        return Limits(
            requests_per_s=self.default_requests_per_s,
            concurrent_runs=self.default_concurrent_runs,
            runs_per_day=self.default_runs_per_day,
            tokens_per_day=self.default_tokens_per_day,
        )

    def proxy_networks(self) -> tuple[client_ip.Network, ...]:
        return client_ip.networks(p for p in self.trusted_proxies.split(",") if p.strip())
