"""The settings of outbound calls: where they may go (egress) and how hard each host is driven.

A mixin of :class:`app.settings.Settings`. ``OXIFY_EGRESS_DENY`` / ``OXIFY_EGRESS_ALLOW`` take
host names (``metadata.internal``, ``*.corp.example``), addresses and CIDR blocks, comma-separated
or as a JSON list; the per-host policies take JSON.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import NoDecode

LABEL = r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?"
HOST_PATTERN = re.compile(rf"^(\*\.)?{LABEL}(\.{LABEL})*$")  # a host name, or *.suffix


class RateLimit(BaseModel):
    """A token bucket: ``per_s`` tokens a second, at most ``burst`` saved up."""

    model_config = ConfigDict(extra="forbid")

    per_s: float = Field(gt=0, le=1_000_000, description="Requests a second, sustained.")
    burst: int = Field(default=1, ge=1, le=1_000_000, description="Requests at once.")


class CircuitBreaker(BaseModel):
    """Open after ``failures`` failures within ``window_s``; fail fast for ``open_s``; then let
    one probe through."""

    model_config = ConfigDict(extra="forbid")

    failures: int = Field(default=5, ge=1, le=1_000_000)
    window_s: float = Field(default=30.0, gt=0, le=86_400)
    open_s: float = Field(default=30.0, gt=0, le=86_400)


HostList = Annotated[list[str], NoDecode]


class NetSettings(BaseModel):
    """Fields mixed into Settings (env prefix ``OXIFY_``)."""

    egress_deny: HostList = Field(
        default_factory=list,
        description="Hosts (*.suffix allowed), addresses and CIDRs outbound calls may not reach, "
        "on top of link-local and cloud-metadata addresses (always refused).",
    )
    egress_allow: HostList | None = Field(
        default=None,
        description="When set, the only hosts, addresses and CIDRs outbound calls may reach "
        "(the deny list and the default refusals still apply).",
    )
    http_rate_limits: dict[str, RateLimit] = Field(
        default_factory=dict,
        description='Per host, JSON: {"api.example.com": {"per_s": 5, "burst": 5}}; calls wait '
        "for a token (and fail at once when the wait would outlast the node's timeout).",
    )
    http_circuit_breaker: CircuitBreaker | None = Field(
        default=None,
        description='JSON {"failures": 5, "window_s": 30, "open_s": 30}: per host, fail fast '
        "after that many failures (connection errors, timeouts, 5xx, 429) within the window; "
        "unset: no circuit breaker.",
    )

    @field_validator("egress_deny", "egress_allow", mode="before")
    @classmethod
    def _a_list(cls, value: Any) -> Any:
        return split_list(value)

    @field_validator("egress_deny", "egress_allow")
    @classmethod
    def _hosts_or_networks(cls, value: list[str] | None) -> list[str] | None:
        for entry in value or []:
            check_host_entry(entry)
        return value

    @field_validator("http_rate_limits")
    @classmethod
    def _lowercase_hosts(cls, value: dict[str, RateLimit]) -> dict[str, RateLimit]:
        return {host.lower().rstrip("."): limit for host, limit in value.items()}


def split_list(value: Any) -> Any:
    """A setting's list as written in the environment: a JSON list, or comma-separated."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def check_host_entry(entry: str) -> None:
    """Raise ValueError unless ``entry`` is a host name pattern, an address or a CIDR block."""
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        if HOST_PATTERN.match(entry.lower().rstrip(".")) is None:
            raise ValueError(
                f"{entry!r} is neither a host name (or *.suffix), an address nor a CIDR block"
            ) from None
