"""OXIFY_OIDC_* as people write them: OIDC on with an issuer (and then an audience), only
asymmetric algorithms, keys only over https (or to a loopback address)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.settings import Settings
from app.settings_oidc import DEFAULT_ALGORITHMS, OidcSettings

ISSUER = "https://login.example.com/realms/oxify"


def test_oidc_is_off_without_an_issuer_and_on_with_one(monkeypatch: pytest.MonkeyPatch) -> None:
    off = Settings()
    assert not off.oidc_enabled
    assert off.oidc_algorithms == list(DEFAULT_ALGORITHMS)
    assert (off.oidc_scope_claim, off.oidc_project_claim, off.oidc_leeway_s) == (
        "scope",
        "oxify_project",
        60.0,
    )
    monkeypatch.setenv("OXIFY_OIDC_ISSUER", ISSUER)
    monkeypatch.setenv("OXIFY_OIDC_AUDIENCE", "oxify-api")
    monkeypatch.setenv("OXIFY_OIDC_JWKS_URL", ISSUER + "/certs")
    monkeypatch.setenv("OXIFY_OIDC_ALGORITHMS", "ES256, EdDSA")
    monkeypatch.setenv("OXIFY_OIDC_SCOPE_CLAIM", "permissions")
    monkeypatch.setenv("OXIFY_OIDC_PROJECT_CLAIM", "tenant")
    monkeypatch.setenv("OXIFY_OIDC_LEEWAY_S", "5")
    on = Settings()
    assert on.oidc_enabled
    assert (on.oidc_issuer, on.oidc_audience, on.oidc_jwks_url) == (
        ISSUER,
        "oxify-api",
        ISSUER + "/certs",
    )
    assert on.oidc_algorithms == ["ES256", "EdDSA"]
    assert (on.oidc_scope_claim, on.oidc_project_claim, on.oidc_leeway_s) == (
        "permissions",
        "tenant",
        5.0,
    )
    monkeypatch.setenv("OXIFY_OIDC_ALGORITHMS", '["RS256", "PS256", "RS256"]')
    assert Settings().oidc_algorithms == ["RS256", "PS256"]


@pytest.mark.parametrize("algorithm", ["HS256", "hs512", "none", "None"])
def test_symmetric_and_unsigned_algorithms_are_refused(algorithm: str) -> None:
    with pytest.raises(ValidationError, match="is refused"):
        OidcSettings(oidc_issuer=ISSUER, oidc_audience="a", oidc_algorithms=f"RS256,{algorithm}")


def test_an_unknown_algorithm_or_none_at_all_is_refused() -> None:
    with pytest.raises(ValidationError, match="unknown algorithm 'RS1'"):
        OidcSettings(oidc_algorithms=["RS1"])
    with pytest.raises(ValidationError, match="at least 1"):
        OidcSettings(oidc_algorithms=[])


def test_an_issuer_needs_an_audience_and_the_rest_needs_an_issuer() -> None:
    with pytest.raises(ValidationError, match="needs OXIFY_OIDC_AUDIENCE"):
        OidcSettings(oidc_issuer=ISSUER)
    with pytest.raises(ValidationError, match="need OXIFY_OIDC_ISSUER"):
        OidcSettings(oidc_audience="oxify-api")
    with pytest.raises(ValidationError, match="need OXIFY_OIDC_ISSUER"):
        OidcSettings(oidc_jwks_url=ISSUER + "/certs")


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("https://login.example.com", True),
        ("http://127.0.0.1:8080/realms/x", True),
        ("http://[::1]:8080", True),
        ("http://localhost:8080", True),
        ("http://login.example.com", False),
        ("http://10.0.0.1", False),
        ("ftp://login.example.com", False),
        ("login.example.com", False),
    ],
)
def test_keys_come_over_https_or_from_a_loopback_address(url: str, accepted: bool) -> None:
    if accepted:
        OidcSettings(oidc_issuer=url, oidc_audience="a", oidc_jwks_url=url)
        return
    with pytest.raises(ValidationError, match="must be an https:// URL"):
        OidcSettings(oidc_issuer=url, oidc_audience="a")
    with pytest.raises(ValidationError, match="must be an https:// URL"):
        OidcSettings(oidc_issuer=ISSUER, oidc_audience="a", oidc_jwks_url=url)
