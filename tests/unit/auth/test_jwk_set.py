"""Reading the identity provider's documents: the discovery document's jwks_uri, the key set's
signature keys, and how long the set may be cached."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from app.auth import jwk_set
from app.auth.jwk_set import MAX_TTL_S, MIN_TTL_S, KeySet
from tests.oidc_keys import jwks, signer

ISSUER = "https://login.example.com/realms/oxify"
RSA = signer("rsa-1")
EC = signer("ec-1", "ES256")


@pytest.mark.parametrize(
    ("cache_control", "seconds"),
    [
        (None, 300.0),
        ("", 300.0),
        ("public", 300.0),
        ("public, max-age=600", 600.0),
        ('max-age="900"', 900.0),
        ("Max-Age=120, must-revalidate", 120.0),
        ("max-age=0", MIN_TTL_S),
        ("max-age=5", MIN_TTL_S),
        ("no-cache", MIN_TTL_S),
        ("no-store, max-age=600", MIN_TTL_S),
        ("max-age=31536000", MAX_TTL_S),
        ("max-age=soon", 300.0),
    ],
)
def test_the_cache_lifetime_follows_max_age_within_bounds(
    cache_control: str | None, seconds: float
) -> None:
    assert jwk_set.ttl_s(cache_control) == seconds


def test_discovery_names_the_key_set_of_the_same_issuer_only() -> None:
    assert jwk_set.discovery_url(ISSUER + "/") == ISSUER + "/.well-known/openid-configuration"
    certs = ISSUER + "/certs"
    assert jwk_set.jwks_uri({"issuer": ISSUER, "jwks_uri": certs}, ISSUER) == certs
    bad: list[tuple[Any, str]] = [
        ([], "not a JSON object"),
        ({"issuer": "https://evil.example", "jwks_uri": certs}, "not that of the issuer"),
        ({"issuer": ISSUER}, "no jwks_uri"),
        ({"issuer": ISSUER, "jwks_uri": "http://keys.example/certs"}, "https"),
    ]
    for document, complaint in bad:
        with pytest.raises(ValueError, match=complaint):
            jwk_set.jwks_uri(document, ISSUER)


def test_a_key_set_keeps_signature_keys_only() -> None:
    secret = {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}
    encryption = {**EC.jwk(), "kid": "enc", "use": "enc"}
    keys = KeySet.parse({"keys": [RSA.jwk(), EC.jwk(), secret, encryption, "junk", {"x": 1}]})
    assert set(keys.jwks) == {"rsa-1", "ec-1"}
    assert not keys.has("hmac") and not keys.has("enc") and not keys.has(None)
    documents: list[object] = [None, [], {"keys": "x"}, {"keys": [secret]}, {}]
    for document in documents:
        with pytest.raises(ValueError):
            KeySet.parse(document)


def test_a_key_verifies_its_own_algorithm_only() -> None:
    keys = KeySet.parse(jwks(RSA, EC))
    rsa = keys.key("rsa-1", "RS256")
    assert rsa is keys.key("rsa-1", "RS256")  # made once
    with pytest.raises(LookupError):
        keys.key("unknown", "RS256")
    with pytest.raises(LookupError):  # no kid, several keys: which one?
        keys.key(None, "RS256")
    with pytest.raises(ValueError, match="is for 'RS256'"):  # the key's own alg says RS256
        keys.key("rsa-1", "PS256")
    unlabelled = KeySet.parse({"keys": [{k: v for k, v in RSA.jwk().items() if k != "alg"}]})
    assert unlabelled.key("rsa-1", "PS256").algorithm_name == "PS256"
    with pytest.raises(jwt.PyJWTError):  # an RSA key cannot verify ES256
        unlabelled.key("rsa-1", "ES256")
    assert unlabelled.key(None, "RS256").key_id == "rsa-1"  # no kid: the one key
