"""The key cache's timing, on a clock the tests move and a provider behind httpx's
MockTransport: max-age, failed refreshes that keep the keys and back off, the 503 without keys,
and documents that are no key set."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.auth.jwks import MAX_DOCUMENT_BYTES, JwksCache
from app.errors import IdentityProviderUnavailable, Unauthenticated
from tests.oidc_keys import jwks, signer

ISSUER = "https://login.example.com/realms/oxify"
CERTS = ISSUER + "/certs"
RSA = signer("rsa-1")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeProvider:
    """Answers the key set (or fails with ``status``); counts what it was asked."""

    def __init__(self) -> None:
        self.status = 200
        self.cache_control = "max-age=300"
        self.document: Any = jwks(RSA)
        self.requests = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        assert str(request.url) == CERTS
        if self.status != 200:
            return httpx.Response(self.status)
        headers = {"Cache-Control": self.cache_control}
        return httpx.Response(200, json=self.document, headers=headers)


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def cache(provider: FakeProvider, clock: Clock) -> AsyncIterator[JwksCache]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(provider)) as client:
        built = JwksCache(issuer=ISSUER, jwks_url=CERTS, client=client, clock=clock)
        yield built
        await built.aclose()
        assert not client.is_closed  # the caller's client stays the caller's


async def test_keys_are_cached_as_long_as_max_age_says(
    cache: JwksCache, provider: FakeProvider, clock: Clock
) -> None:
    provider.cache_control = "public, max-age=120"
    await cache.key("rsa-1", "RS256")
    clock.now += 119
    await cache.key("rsa-1", "RS256")
    assert provider.requests == 1
    clock.now += 1  # stale: this request is served from the cache and refreshes behind it
    await cache.key("rsa-1", "RS256")
    assert await cache.refresh()  # joins the refresh in flight
    assert provider.requests == 2


async def test_a_failed_refresh_keeps_the_keys_and_backs_off(
    cache: JwksCache, provider: FakeProvider, clock: Clock
) -> None:
    await cache.key("rsa-1", "RS256")
    provider.status = 500
    clock.now += 300
    for backoff_s in (1, 2, 4, 8):
        await cache.key("rsa-1", "RS256")
        await cache.refresh()
        asked = provider.requests
        clock.now += backoff_s - 0.5
        await cache.key("rsa-1", "RS256")  # within the backoff: no request
        assert provider.requests == asked
        clock.now += 0.5
    provider.status = 200
    await cache.key("rsa-1", "RS256")
    await cache.refresh()
    provider.status = 500
    clock.now += 299  # fresh again, for max-age from the last success
    await cache.key("rsa-1", "RS256")
    assert provider.requests == 1 + 4 + 1


async def test_without_keys_a_provider_down_is_503_with_a_growing_retry_after(
    cache: JwksCache, provider: FakeProvider, clock: Clock
) -> None:
    provider.status = 503
    for retry_after_s in (1, 2, 4):
        with pytest.raises(IdentityProviderUnavailable) as caught:
            await cache.key("rsa-1", "RS256")
        assert caught.value.retry_after_s == retry_after_s
        clock.now += retry_after_s
    assert provider.requests == 3
    provider.status = 200
    assert (await cache.key("rsa-1", "RS256")).key_id == "rsa-1"


@pytest.mark.parametrize(
    "document",
    [
        {"keys": []},
        {"keys": [{"kty": "oct", "kid": "rsa-1", "k": "c2VjcmV0"}]},
        {"no": "keys"},
        ["not", "a", "set"],
        {"keys": [RSA.jwk()], "padding": "x" * MAX_DOCUMENT_BYTES},
    ],
    ids=["empty", "symmetric", "no-keys", "list", "too-large"],
)
async def test_a_document_that_is_no_key_set_is_a_failed_fetch(
    cache: JwksCache, provider: FakeProvider, document: Any
) -> None:
    provider.document = document
    with pytest.raises(IdentityProviderUnavailable):
        await cache.key("rsa-1", "RS256")


async def test_concurrent_requests_share_one_fetch_and_unknown_kids_are_refused(
    cache: JwksCache, provider: FakeProvider
) -> None:
    keys = await asyncio.gather(*(cache.key("rsa-1", "RS256") for _ in range(10)))
    assert {key.key_id for key in keys} == {"rsa-1"}
    assert provider.requests == 1
    with pytest.raises(Unauthenticated, match="kid"):
        await cache.key("rsa-2", "RS256")
    with pytest.raises(Unauthenticated, match="does not match"):
        await cache.key("rsa-1", "ES256")
    assert provider.requests == 1  # the set was fetched within the last 30 s


async def test_discovery_finds_the_key_set_once(clock: Clock) -> None:
    asked: list[str] = []

    def idp(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        if request.url.path.endswith("/openid-configuration"):
            return httpx.Response(200, json={"issuer": ISSUER, "jwks_uri": CERTS})
        return httpx.Response(200, json=jwks(RSA), headers={"Cache-Control": "max-age=60"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(idp)) as client:
        cache = JwksCache(issuer=ISSUER, client=client, clock=clock)
        await cache.key("rsa-1", "RS256")
        clock.now += 60
        await cache.key("rsa-1", "RS256")
        await cache.refresh()
    assert asked == [
        "/realms/oxify/.well-known/openid-configuration",
        "/realms/oxify/certs",
        "/realms/oxify/certs",
    ]


async def test_a_cache_closes_the_client_it_made() -> None:
    cache = JwksCache(issuer=ISSUER)
    await cache.aclose()
    with pytest.raises(RuntimeError):  # httpx refuses a closed client
        await cache._client.get(CERTS)


async def test_an_unknown_kid_while_the_provider_fails_is_503_not_401(
    cache: JwksCache, provider: FakeProvider, clock: Clock
) -> None:
    await cache.key("rsa-1", "RS256")
    provider.status = 502
    clock.now += 300
    await cache.key("rsa-1", "RS256")
    await cache.refresh()  # failed: the cached keys stay, the new kid may be the provider's
    with pytest.raises(IdentityProviderUnavailable) as caught:
        await cache.key("rsa-2", "RS256")
    assert caught.value.retry_after_s >= 1
    assert (await cache.key("rsa-1", "RS256")).key_id == "rsa-1"


async def test_a_provider_that_does_not_answer_in_time_is_a_failed_fetch(clock: Clock) -> None:
    never = asyncio.Event()

    async def hanging(request: httpx.Request) -> httpx.Response:
        await never.wait()
        raise AssertionError("unreachable")

    async with httpx.AsyncClient(transport=httpx.MockTransport(hanging)) as client:
        cache = JwksCache(
            issuer=ISSUER, jwks_url=CERTS, client=client, clock=clock, fetch_timeout_s=0.05
        )
        with pytest.raises(IdentityProviderUnavailable):
            await cache.key("rsa-1", "RS256")
