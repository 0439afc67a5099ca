"""The settings of OIDC bearer tokens: which issuer Oxify trusts, for which audience, and which
claims carry a caller's scopes and project.

A mixin of :class:`app.settings.Settings` (env prefix ``OXIFY_``). OIDC is on when
``OXIFY_OIDC_ISSUER`` is set; the audience is then required, because a token any client of the
issuer could present is no credential for this service. Only asymmetric algorithms can be
allowed: with a symmetric one (HS*) the public key the identity provider publishes becomes the
HMAC secret anyone can sign with (the key-confusion attack), and ``none`` signs nothing.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import NoDecode

from app.settings_net import split_list

# Asymmetric JWS algorithms (RFC 7518, RFC 8037) a token may be signed with.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
DEFAULT_ALGORITHMS = ("RS256", "ES256", "EdDSA")
LOOPBACK_HOSTS = frozenset({"localhost"})


class OidcSettings(BaseModel):
    """Fields mixed into Settings; OIDC is off unless an issuer is set. Validators are named
    ``_oidc_*``: pydantic keeps one validator per name across the mixins."""

    oidc_issuer: str | None = Field(
        default=None,
        min_length=1,
        description="The identity provider's issuer URL, exactly as tokens carry it in iss "
        "(https://, or http:// to a loopback address); unset: OIDC tokens are not accepted.",
    )
    oidc_audience: str | None = Field(
        default=None,
        min_length=1,
        description="The aud tokens must carry to be accepted here (required with an issuer).",
    )
    oidc_jwks_url: str | None = Field(
        default=None,
        min_length=1,
        description="Where the signing keys are (JWKS); unset: the jwks_uri of the issuer's "
        "{issuer}/.well-known/openid-configuration.",
    )
    oidc_algorithms: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_ALGORITHMS),
        min_length=1,
        description="Signing algorithms accepted, comma-separated or a JSON list, among RS*, "
        "PS*, ES* and EdDSA (HS* and none are refused).",
    )
    oidc_scope_claim: str = Field(
        default="scope",
        min_length=1,
        description="The claim holding the caller's scopes: a space-separated string "
        '("runner viewer") or a list (permissions, roles); a dotted path (realm_access.roles) '
        "reaches into objects. Names other than viewer, runner, reviewer, admin are ignored.",
    )
    oidc_project_claim: str = Field(
        default="oxify_project",
        min_length=1,
        description="The claim naming the caller's project; absent: project default, or every "
        "project for a token with the admin scope.",
    )
    oidc_groups_claim: str = Field(
        default="groups",
        min_length=1,
        description="The claim listing the caller's groups (a list, or a space-separated "
        "string; a dotted path reaches into objects), for approvers named group:<name>.",
    )
    oidc_leeway_s: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="Seconds of clock skew allowed on exp and nbf.",
    )

    @field_validator("oidc_algorithms", mode="before")
    @classmethod
    def _oidc_algorithms_list(cls, value: Any) -> Any:
        return split_list(value)

    @field_validator("oidc_algorithms")
    @classmethod
    def _oidc_asymmetric(cls, algorithms: list[str]) -> list[str]:
        for algorithm in algorithms:
            if algorithm.lower() == "none" or algorithm.upper().startswith("HS"):
                raise ValueError(
                    f"{algorithm!r} is refused: tokens must be signed with the identity "
                    "provider's private key (an asymmetric algorithm)"
                )
            if algorithm not in ASYMMETRIC_ALGORITHMS:
                known = ", ".join(sorted(ASYMMETRIC_ALGORITHMS))
                raise ValueError(f"unknown algorithm {algorithm!r}; accepted are {known}")
        return list(dict.fromkeys(algorithms))

    @field_validator("oidc_issuer", "oidc_jwks_url")
    @classmethod
    def _oidc_https_or_loopback(cls, url: str | None) -> str | None:
        if url is not None:
            check_key_url(url)
        return url

    @model_validator(mode="after")
    def _oidc_complete(self) -> OidcSettings:
        if self.oidc_issuer is None:
            if self.oidc_audience is not None or self.oidc_jwks_url is not None:
                raise ValueError(
                    "OXIFY_OIDC_AUDIENCE and OXIFY_OIDC_JWKS_URL need OXIFY_OIDC_ISSUER"
                )
        elif self.oidc_audience is None:
            raise ValueError("OXIFY_OIDC_ISSUER needs OXIFY_OIDC_AUDIENCE (the aud tokens carry)")
        return self

    @property
    def oidc_enabled(self) -> bool:
        """Whether bearer tokens of an identity provider are accepted."""
        return self.oidc_issuer is not None


def check_key_url(url: str) -> None:
    """Raise ValueError unless keys fetched from ``url`` cannot be swapped on the way: https, or
    http to a loopback address (a provider on the same host, tests)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and _loopback(parts.hostname):
        return
    raise ValueError(f"{url!r} must be an https:// URL (http:// only to a loopback address)")


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower() in LOOPBACK_HOSTS
