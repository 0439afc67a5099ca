"""The identity provider's signing keys (its JWKS), fetched with async httpx and cached.

Not PyJWT's ``PyJWKClient``: it fetches with urllib, blocking the event loop for the whole
exchange, and drops its cache when a refresh fails (pyjwt#1162), so an identity provider's
blip turns every request into a 401. Here:

- the keys live as long as the answer's ``Cache-Control: max-age`` says, within bounds
  (:func:`app.auth.jwk_set.ttl_s`); past that the first request starts a refresh in the
  background and goes on with the cached keys;
- a failed refresh keeps the cached keys in use and is tried again after a backoff;
- a token whose ``kid`` is unknown (the provider rotated its keys) fetches again, at most once
  every :data:`UNKNOWN_KID_REFETCH_S`, so made-up ``kid``\\ s cannot drive traffic to the provider;
- concurrent requests share one fetch in flight (no thundering herd on a cold start);
- without any key and with the provider unreachable, requests get
  :class:`~app.errors.IdentityProviderUnavailable` with a Retry-After, never a 401; so do
  tokens with an unknown ``kid`` while the last fetch failed (the key may be a new one).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable

import httpx
import jwt

from app.auth import jwk_set
from app.errors import IdentityProviderUnavailable, Unauthenticated

UNKNOWN_KID_REFETCH_S = 30.0  # seconds between fetches an unknown kid may cause
BACKOFF_FIRST_S = 1.0  # seconds before trying again after a failed fetch, doubling ...
BACKOFF_MAX_S = 60.0  # ... up to this
FETCH_TIMEOUT_S = 5.0  # seconds one fetch (discovery and JWKS together) may take
MAX_DOCUMENT_BYTES = 1024 * 1024  # a discovery or JWKS document larger than this is refused

log = logging.getLogger(__name__)


class JwksCache:
    """The signing keys at ``jwks_url``, or at the ``jwks_uri`` of ``issuer``'s discovery
    document. ``client``: the caller's (left open); without one the cache makes its own and
    :meth:`aclose` closes it. ``clock``: monotonic seconds (tests move it). A fetch (discovery
    and key set) taking longer than ``fetch_timeout_s`` failed."""

    def __init__(
        self,
        *,
        issuer: str,
        jwks_url: str | None = None,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        fetch_timeout_s: float = FETCH_TIMEOUT_S,
    ) -> None:
        self._issuer = issuer
        self._jwks_url = jwks_url
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=fetch_timeout_s, follow_redirects=True)
        self._fetch_timeout_s = fetch_timeout_s
        self._clock = clock
        self._keys: jwk_set.KeySet | None = None
        self._expires_at = 0.0  # clock(): refresh from then on
        self._fetched_at = -math.inf  # clock() when the last fetch started
        self._retry_at = 0.0  # clock(): after a failure, no fetch before then
        self._failures = 0  # consecutive
        self._fetching: asyncio.Task[None] | None = None

    async def key(self, kid: str | None, algorithm: str) -> jwt.PyJWK:
        """The key that verifies a token with this header. Unauthenticated when the provider
        has no such key; IdentityProviderUnavailable when no keys could be fetched at all, or
        the ``kid`` is unknown and the last fetch failed."""
        now = self._clock()
        keys = self._keys
        if keys is None:
            keys = await self._first_keys(now)
        elif now >= self._expires_at and now >= self._retry_at:
            self._fetch()  # in the background: this request goes on with the cached keys
        if not keys.has(kid) and (
            self._fetching is not None
            or (now - self._fetched_at >= UNKNOWN_KID_REFETCH_S and now >= self._retry_at)
        ):
            keys = await self._refreshed() or keys
        try:
            return keys.key(kid, algorithm)
        except LookupError:
            if self._failures:  # the provider may have rotated to it: no 401 while in doubt
                retry_after_s = _whole_s(self._retry_at - self._clock())
                raise IdentityProviderUnavailable(retry_after_s=retry_after_s) from None
            raise Unauthenticated(
                "the token's signing key (kid) is not one the identity provider publishes"
            ) from None
        except (ValueError, jwt.PyJWTError):
            raise Unauthenticated(
                "the token's algorithm does not match its signing key at the identity provider"
            ) from None

    async def refresh(self) -> bool:
        """Fetch the keys now (or join the fetch in flight); whether keys are cached after it.
        Failures are logged and backed off, never raised."""
        return await self._refreshed() is not None

    async def aclose(self) -> None:
        if self._fetching is not None:
            self._fetching.cancel()
            await asyncio.gather(self._fetching, return_exceptions=True)
        if self._own_client:
            await self._client.aclose()

    async def _first_keys(self, now: float) -> jwk_set.KeySet:
        if self._fetching is None and now < self._retry_at:
            raise IdentityProviderUnavailable(retry_after_s=_whole_s(self._retry_at - now))
        keys = await self._refreshed()
        if keys is None:
            raise IdentityProviderUnavailable(
                retry_after_s=_whole_s(self._retry_at - self._clock())
            )
        return keys

    async def _refreshed(self) -> jwk_set.KeySet | None:
        # Shielded: a request given up on (its client left) does not cancel the others' fetch.
        await asyncio.shield(self._fetch())
        return self._keys

    def _fetch(self) -> asyncio.Task[None]:
        if self._fetching is None:
            self._fetching = asyncio.create_task(self._fetch_keys(), name="oxify-jwks-fetch")
            self._fetching.add_done_callback(self._fetched)
        return self._fetching

    def _fetched(self, task: asyncio.Task[None]) -> None:
        if self._fetching is task:
            self._fetching = None

    async def _fetch_keys(self) -> None:
        self._fetched_at = self._clock()
        url = self._jwks_url or jwk_set.discovery_url(self._issuer)
        try:
            async with asyncio.timeout(self._fetch_timeout_s):  # a provider dripping bytes too
                if self._jwks_url is None:
                    discovery, _ = await self._get(url)
                    self._jwks_url = url = jwk_set.jwks_uri(discovery, self._issuer)
                document, cache_control = await self._get(url)
            keys = jwk_set.KeySet.parse(document)
        except (httpx.HTTPError, httpx.InvalidURL, ValueError, TimeoutError) as error:
            self._failures += 1
            backoff_s = min(BACKOFF_FIRST_S * 2 ** (self._failures - 1), BACKOFF_MAX_S)
            self._retry_at = self._clock() + backoff_s
            kept = "; the cached keys stay in use" if self._keys is not None else ""
            log.warning(
                "the identity provider's signing keys could not be fetched from %s (%s: %s); "
                "trying again in %.0f s%s",
                url,
                type(error).__name__,
                error,
                backoff_s,
                kept,
            )
            return
        self._keys = keys
        self._failures = 0
        self._retry_at = 0.0
        self._expires_at = self._clock() + jwk_set.ttl_s(cache_control)

    async def _get(self, url: str) -> tuple[object, str | None]:
        """The JSON document at ``url`` and its Cache-Control header."""
        async with self._client.stream("GET", url, headers={"Accept": "application/json"}) as r:
            r.raise_for_status()
            body = bytearray()
            async for chunk in r.aiter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise ValueError(f"the document is larger than {MAX_DOCUMENT_BYTES} bytes")
            return json.loads(body), r.headers.get("cache-control")


def _whole_s(seconds: float) -> int:
    """A Retry-After: whole seconds, at least one."""
    return max(1, math.ceil(seconds))
