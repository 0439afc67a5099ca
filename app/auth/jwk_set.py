"""The identity provider's documents, read: its discovery document's ``jwks_uri``, its key set
(JWKS) and how long that may be cached. Pure; :mod:`app.auth.jwks` fetches."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jwt

from app.settings_oidc import check_key_url

MIN_TTL_S = 60.0  # seconds: a provider saying max-age=0 is not fetched on every request
MAX_TTL_S = 86_400.0  # seconds: a removed (compromised) key stops verifying within a day
DEFAULT_TTL_S = 300.0  # seconds, when the answer carries no max-age
DISCOVERY_PATH = "/.well-known/openid-configuration"
# Key types of asymmetric signatures. Never "oct": a symmetric key in a public document is
# a secret anyone can sign with.
SIGNING_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})


def discovery_url(issuer: str) -> str:
    """Where ``issuer`` publishes its configuration (OpenID Connect Discovery 1.0, 4)."""
    return issuer.rstrip("/") + DISCOVERY_PATH


def jwks_uri(discovery: object, issuer: str) -> str:
    """The key set's URL from a discovery document, which must be ``issuer``'s own (the spec
    requires the identical string: a document naming another issuer is a mix-up)."""
    if not isinstance(discovery, dict):
        raise ValueError("the discovery document is not a JSON object")
    if discovery.get("issuer") != issuer:
        raise ValueError(f"the discovery document is not that of the issuer {issuer!r}")
    uri = discovery.get("jwks_uri")
    if not isinstance(uri, str):
        raise ValueError("the discovery document has no jwks_uri")
    check_key_url(uri)
    return uri


def ttl_s(cache_control: str | None) -> float:
    """Seconds a key set may be cached, from its answer's Cache-Control: max-age within
    [MIN_TTL_S, MAX_TTL_S]; no-cache or no-store: MIN_TTL_S; nothing usable: DEFAULT_TTL_S."""
    for directive in (cache_control or "").split(","):
        name, _, value = directive.strip().partition("=")
        name = name.lower()
        if name in ("no-cache", "no-store"):
            return MIN_TTL_S
        if name == "max-age":
            try:
                seconds = float(value.strip().strip('"'))
            except ValueError:
                return DEFAULT_TTL_S
            return min(max(seconds, MIN_TTL_S), MAX_TTL_S)
    return DEFAULT_TTL_S


@dataclass
class KeySet:
    """The provider's signature keys by ``kid`` (keys for encryption and symmetric keys left
    out), each turned into a verifying key once per algorithm it is used with."""

    jwks: dict[str | None, dict[str, Any]]
    _verifiers: dict[tuple[str | None, str], jwt.PyJWK] = field(default_factory=dict)

    @classmethod
    def parse(cls, document: object) -> KeySet:
        """ValueError unless ``document`` is a JWKS with at least one signature key."""
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError("the key set is not a JWKS document (no keys list)")
        jwks: dict[str | None, dict[str, Any]] = {}
        for jwk in document["keys"]:
            if (
                isinstance(jwk, dict)
                and jwk.get("kty") in SIGNING_KEY_TYPES
                and jwk.get("use", "sig") == "sig"
                and isinstance(jwk.get("kid"), str | None)
            ):
                jwks[jwk.get("kid")] = jwk
        if not jwks:
            raise ValueError("the key set holds no signature key")
        return cls(jwks)

    def has(self, kid: str | None) -> bool:
        return self._jwk(kid) is not None

    def key(self, kid: str | None, algorithm: str) -> jwt.PyJWK:
        """The key ``kid`` verifying ``algorithm``. A token without a kid: the one key of a
        set of one. LookupError: no such key; ValueError or PyJWTError: the key is not one
        for ``algorithm`` (another type or curve, or its own ``alg`` says otherwise)."""
        verifier = self._verifiers.get((kid, algorithm))
        if verifier is not None:
            return verifier
        jwk = self._jwk(kid)
        if jwk is None:
            raise LookupError(kid)
        if jwk.get("alg", algorithm) != algorithm:
            raise ValueError(f"key {kid!r} is for {jwk.get('alg')!r}, not {algorithm!r}")
        verifier = self._verifiers[kid, algorithm] = jwt.PyJWK(jwk, algorithm)
        return verifier

    def _jwk(self, kid: str | None) -> dict[str, Any] | None:
        if kid is None and len(self.jwks) == 1:
            return next(iter(self.jwks.values()))
        return self.jwks.get(kid)
