"""OIDC bearer tokens: a JWT an identity provider signed, turned into the caller it stands for.

A token is accepted when its signature verifies with one of the provider's published keys under
an allowed asymmetric algorithm, its ``iss`` is the configured issuer, its ``aud`` holds the
configured audience, it has a ``sub``, and it has not expired (``exp`` is required; ``exp`` and
``nbf`` get ``leeway_s`` of clock skew). Anything else is :class:`~app.errors.Unauthenticated`
with a reason that never repeats the token.

The caller's scopes are the known scope names (viewer, runner, reviewer, admin) in the scope
claim, a space-separated string or a list; other names are ignored, and a token with none is a
caller who may do nothing (403 on every route, not 401: the token is fine, the grant is not).
The project is the project claim's; without one a token is confined to ``default``, except an
admin token, which sees every project (``project=None``), as an admin API key without a project
does.

Verifying costs one signature check (RS256 ~50 µs, ES256 ~100 µs), done inline: cheaper than a
hop to a thread. Keys come from :class:`~app.auth.jwks.JwksCache`.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx
import jwt

from app.auth.jwks import JwksCache
from app.auth.principal import DEFAULT_PROJECT, Principal
from app.auth.scopes import Scope
from app.errors import Unauthenticated
from app.settings_oidc import ASYMMETRIC_ALGORITHMS, DEFAULT_ALGORITHMS, OidcSettings

MAX_TOKEN_CHARS = 16 * 1024  # longer is no token an identity provider issues: refused unread
REQUIRED_CLAIMS = ["exp", "iss", "aud", "sub"]
MALFORMED = "the bearer token is not a well-formed JWT"
NAME_CLAIMS = ("preferred_username", "email", "name")  # what people reading audit rows know
_SCOPE_NAMES = frozenset(scope.value for scope in Scope)
# Why a token was refused, most specific first (PyJWT's own texts may quote claim values).
_REASONS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not valid yet (nbf or iat is in the future)"),
    (jwt.InvalidAudienceError, "the token is not meant for this service (aud)"),
    (jwt.InvalidIssuerError, "the token was issued by another issuer (iss)"),
    (jwt.InvalidSignatureError, "the token's signature does not verify"),
    (jwt.InvalidAlgorithmError, "the token's algorithm is not accepted"),
    (jwt.InvalidKeyError, "the token's signing key cannot verify it"),
    (jwt.DecodeError, MALFORMED),
)


class OidcVerifier:
    """Verifies the tokens of one issuer for one audience; holds the provider's keys."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        keys: JwksCache,
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
        scope_claim: str = "scope",
        project_claim: str = "oxify_project",
        groups_claim: str = "groups",
        leeway_s: float = 60.0,
    ) -> None:
        self._algorithms = tuple(algorithms)
        refused = [a for a in self._algorithms if a not in ASYMMETRIC_ALGORITHMS]
        if refused or not self._algorithms:
            raise ValueError(f"only asymmetric algorithms can verify tokens, not {refused}")
        self._issuer = issuer
        self._audience = audience
        self._keys = keys
        self._scope_claim = scope_claim
        self._project_claim = project_claim
        self._groups_claim = groups_claim
        self._leeway_s = leeway_s
        self._jwt = jwt.PyJWT({"require": REQUIRED_CLAIMS, "enforce_minimum_key_length": True})

    @classmethod
    def from_settings(
        cls,
        settings: OidcSettings,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> OidcVerifier:
        """The verifier ``settings`` describe (``settings.oidc_enabled`` must be true); its
        keys are fetched with ``client`` (left open) or a client of its own."""
        if settings.oidc_issuer is None or settings.oidc_audience is None:
            raise ValueError("OIDC is off: OXIFY_OIDC_ISSUER is not set")
        keys = JwksCache(
            issuer=settings.oidc_issuer,
            jwks_url=settings.oidc_jwks_url,
            client=client,
            clock=clock,
        )
        return cls(
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            keys=keys,
            algorithms=settings.oidc_algorithms,
            scope_claim=settings.oidc_scope_claim,
            project_claim=settings.oidc_project_claim,
            groups_claim=settings.oidc_groups_claim,
            leeway_s=settings.oidc_leeway_s,
        )

    @property
    def keys(self) -> JwksCache:
        return self._keys

    async def principal(self, token: str) -> Principal:
        """The caller ``token`` stands for. Unauthenticated when it is not a valid token of
        the issuer for this audience; IdentityProviderUnavailable when the provider's keys
        cannot be had (none cached and the provider unreachable)."""
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthenticated("the bearer token is longer than any token this service takes")
        header = _header(token)
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._algorithms:
            accepted = ", ".join(self._algorithms)
            raise Unauthenticated(f"the token's algorithm is not accepted (accepted: {accepted})")
        kid = header.get("kid")
        if not isinstance(kid, str | None):
            raise Unauthenticated(MALFORMED)
        key = await self._keys.key(kid, algorithm)
        try:
            claims = self._jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway_s,
            )
        except jwt.PyJWTError as error:
            raise Unauthenticated(_reason(error)) from None
        return self._caller(claims)

    async def aclose(self) -> None:
        await self._keys.aclose()

    def _caller(self, claims: Mapping[str, Any]) -> Principal:
        scopes = _scopes(claim(claims, self._scope_claim))
        project = claim(claims, self._project_claim)
        if project is None:
            project = None if Scope.ADMIN in scopes else DEFAULT_PROJECT
        elif not isinstance(project, str) or not project:
            raise Unauthenticated(
                f"the token's {self._project_claim} claim must be a project name (a string)"
            )
        name = next((v for c in NAME_CLAIMS if isinstance(v := claims.get(c), str)), None)
        groups = frozenset(_names(claim(claims, self._groups_claim)))
        return Principal(
            scopes=scopes, project=project, subject=claims["sub"], name=name, groups=groups
        )


def _header(token: str) -> dict[str, Any]:
    """The token's header, read only to choose the key: ``decode`` reads and checks it again
    (an alg read differently there is refused). Not ``jwt.get_unverified_header``: it checks
    every character of all three parts, as ``decode`` does again, ~20 µs a token."""
    segment, dot, _ = token.partition(".")
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, RecursionError):  # not base64, UTF-8 or JSON; JSON nested too deep
        header = None
    if not dot or not isinstance(header, dict):
        raise Unauthenticated(MALFORMED)
    return header


def claim(claims: Mapping[str, Any], name: str) -> Any:
    """The claim ``name``; a dotted name not itself a claim is a path into objects
    (``realm_access.roles``). None when absent."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _names(value: Any) -> list[str]:
    """A claim's names: a space-separated string or a list (anything else: none)."""
    names = value.split() if isinstance(value, str) else value if isinstance(value, list) else []
    return [name for name in names if isinstance(name, str) and name]


def _scopes(value: Any) -> frozenset[Scope]:
    return frozenset(Scope(n) for n in _names(value) if n in _SCOPE_NAMES)


def _reason(error: jwt.PyJWTError) -> str:
    if isinstance(error, jwt.MissingRequiredClaimError):
        return f"the token has no {error.claim} claim"
    for kind, reason in _REASONS:
        if isinstance(error, kind):
            return reason
    return "the bearer token is not valid"
