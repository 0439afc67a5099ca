"""OIDC bearer tokens against a real identity provider on a loopback port: discovery, the key
set over HTTP, rotation, the provider going down, and every way a token can be wrong."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.auth.jwks import UNKNOWN_KID_REFETCH_S
from app.auth.oidc import OidcVerifier
from app.auth.principal import DEFAULT_PROJECT
from app.auth.scopes import Scope
from app.errors import IdentityProviderUnavailable, Unauthenticated
from app.settings_oidc import OidcSettings
from tests.integration.oidc_server import DISCOVERY_PATH, JWKS_PATH, Provider, provider
from tests.oidc_keys import AUDIENCE, claims, hmac_with_public_key, signer, unsigned

RSA = signer("rsa-1")
EC = signer("ec-1", "ES256")
ED = signer("ed-1", "EdDSA")


class Clock:
    """Monotonic seconds the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def idp() -> AsyncIterator[Provider]:
    async with provider(RSA, EC, ED) as running:
        yield running


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def verifier(idp: Provider, clock: Clock) -> AsyncIterator[OidcVerifier]:
    settings = OidcSettings(oidc_issuer=idp.issuer, oidc_audience=AUDIENCE)
    built = OidcVerifier.from_settings(settings, clock=clock)
    yield built
    await built.aclose()


async def refused(verifier: OidcVerifier, token: str) -> str:
    """The reason ``token`` is refused, checked not to repeat the token."""
    with pytest.raises(Unauthenticated) as caught:
        await verifier.principal(token)
    if len(token) > 8:
        assert not set(token.split(".")) & set(caught.value.message.split())
        assert token not in caught.value.message
    return caught.value.message


@pytest.mark.parametrize("key", [RSA, EC, ED], ids=["RS256", "ES256", "EdDSA"])
async def test_a_token_of_each_algorithm_is_the_caller_it_names(
    idp: Provider, verifier: OidcVerifier, key: Any
) -> None:
    caller = await verifier.principal(key.sign(claims(idp.issuer)))
    assert caller.scopes == {Scope.RUNNER, Scope.VIEWER}
    assert caller.project == DEFAULT_PROJECT
    assert (caller.subject, caller.key_id, caller.anonymous) == ("user-1", None, False)
    assert caller.actor == "sub:user-1"
    # discovery once, then the key set, which is cached
    await verifier.principal(key.sign(claims(idp.issuer, sub="user-2")))
    assert idp.paths == [DISCOVERY_PATH, JWKS_PATH]


async def test_a_configured_jwks_url_skips_discovery(idp: Provider) -> None:
    settings = OidcSettings(
        oidc_issuer=idp.issuer, oidc_audience=AUDIENCE, oidc_jwks_url=idp.jwks_url
    )
    verifier = OidcVerifier.from_settings(settings)
    try:
        assert (await verifier.principal(RSA.sign(claims(idp.issuer)))).subject == "user-1"
    finally:
        await verifier.aclose()
    assert idp.paths == [JWKS_PATH]


async def test_concurrent_first_requests_share_one_fetch(
    idp: Provider, verifier: OidcVerifier
) -> None:
    tokens = [RSA.sign(claims(idp.issuer, sub=f"user-{n}")) for n in range(20)]
    callers = await asyncio.gather(*(verifier.principal(token) for token in tokens))
    assert {caller.subject for caller in callers} == {f"user-{n}" for n in range(20)}
    assert idp.fetches() == 1 and len(idp.paths) == 2


async def test_a_rotated_key_is_fetched_and_unknown_kids_fetch_at_most_every_30_s(
    idp: Provider, verifier: OidcVerifier, clock: Clock
) -> None:
    await verifier.principal(RSA.sign(claims(idp.issuer)))
    rotated = signer("rsa-2")
    idp.signers = [rotated]
    clock.now += UNKNOWN_KID_REFETCH_S  # the cache is fresh (max-age 300), the kid unknown
    assert (await verifier.principal(rotated.sign(claims(idp.issuer)))).subject == "user-1"
    assert idp.fetches() == 2
    # the old key is gone from the set: its tokens stop verifying
    assert "kid" in await refused(verifier, RSA.sign(claims(idp.issuer)))
    # made-up kids: no fetch within 30 s of the last, however many there are
    for n in range(5):
        await refused(verifier, rotated.sign(claims(idp.issuer), kid=f"made-up-{n}"))
    clock.now += UNKNOWN_KID_REFETCH_S - 1
    await refused(verifier, rotated.sign(claims(idp.issuer), kid="made-up"))
    assert idp.fetches() == 2
    clock.now += 1
    await refused(verifier, rotated.sign(claims(idp.issuer), kid="made-up"))
    assert idp.fetches() == 3


async def test_the_provider_down_with_keys_cached_still_verifies(
    idp: Provider, verifier: OidcVerifier, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    token = EC.sign(claims(idp.issuer))
    await verifier.principal(token)
    await idp.stop()
    clock.now += 301  # past max-age: the request refreshes in the background
    with caplog.at_level(logging.WARNING, "app.auth.jwks"):
        assert (await verifier.principal(token)).subject == "user-1"
        assert await verifier.keys.refresh()  # the failed refresh kept the keys
    assert "the cached keys stay in use" in caplog.text
    assert (await verifier.principal(token)).subject == "user-1"
    # a kid never seen may be the provider's new key: 503 while it cannot be asked
    with pytest.raises(IdentityProviderUnavailable):
        await verifier.principal(signer("rsa-new").sign(claims(idp.issuer)))
    await idp.start()
    clock.now += 2  # past the backoff: the next request refreshes again, and succeeds
    await verifier.principal(token)
    await verifier.keys.refresh()
    assert idp.fetches() == 2


async def test_the_provider_down_without_keys_is_503_with_retry_after(
    idp: Provider, verifier: OidcVerifier, clock: Clock
) -> None:
    token = RSA.sign(claims(idp.issuer))
    await idp.stop()
    with pytest.raises(IdentityProviderUnavailable) as first:
        await verifier.principal(token)
    assert first.value.retry_after_s == 1
    await idp.start()
    with pytest.raises(IdentityProviderUnavailable):  # within the backoff: not even tried
        await verifier.principal(token)
    assert idp.paths == []
    clock.now += 1
    assert (await verifier.principal(token)).subject == "user-1"


async def test_wrong_audience_or_issuer_is_refused(idp: Provider, verifier: OidcVerifier) -> None:
    assert "aud" in await refused(verifier, RSA.sign(claims(idp.issuer, aud="another-api")))
    assert "aud" in await refused(verifier, RSA.sign(claims(idp.issuer, aud=None)))
    other = "https://evil.example/realms/oxify"
    assert "iss" in await refused(verifier, RSA.sign(claims(idp.issuer, iss=other)))
    # a list audience holding ours is fine
    aud = ["account", AUDIENCE]
    assert (await verifier.principal(RSA.sign(claims(idp.issuer, aud=aud)))).subject == "user-1"


async def test_expiry_and_not_before_allow_60_s_of_skew(
    idp: Provider, verifier: OidcVerifier
) -> None:
    now = int(time.time())
    late = RSA.sign(claims(idp.issuer, exp=now - 30))
    assert (await verifier.principal(late)).subject == "user-1"
    assert "expired" in await refused(verifier, RSA.sign(claims(idp.issuer, exp=now - 120)))
    assert "exp" in await refused(verifier, RSA.sign(claims(idp.issuer, exp=None)))
    early = RSA.sign(claims(idp.issuer, nbf=now + 30))
    assert (await verifier.principal(early)).subject == "user-1"
    assert "not valid yet" in await refused(verifier, RSA.sign(claims(idp.issuer, nbf=now + 120)))


async def test_forged_and_malformed_tokens_are_refused(
    idp: Provider, verifier: OidcVerifier
) -> None:
    payload = claims(idp.issuer)
    assert "algorithm" in await refused(verifier, hmac_with_public_key(RSA, payload))
    assert "algorithm" in await refused(verifier, unsigned(payload))
    # a valid header and payload under another key's signature
    header, body, _ = RSA.sign(payload).split(".")
    forged = f"{header}.{body}.{signer('rsa-other').sign(payload).split('.')[2]}"
    assert "signature" in await refused(verifier, forged)
    # an EC token claiming to be signed by the RSA key
    assert "algorithm" in await refused(verifier, EC.sign(payload, kid=RSA.kid))
    for garbage in ("", "abc", "a.b.c", "Bearer x.y.z"):
        assert "JWT" in await refused(verifier, garbage)
    assert "algorithm" in await refused(verifier, "e30.e30.e30")  # {} as header: no alg
    nested = base64.urlsafe_b64encode(b"[" * 10_000).decode().rstrip("=")
    assert "JWT" in await refused(verifier, f"{nested}.e30.e30")
    assert "longer" in await refused(verifier, "x" * 20_000)
    assert "sub" in await refused(verifier, RSA.sign(claims(idp.issuer, sub=None)))
