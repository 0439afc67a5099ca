"""Who a request comes from: an API key, an OIDC token, a stream ticket, or nobody.

Until the first key exists (and with no identity provider configured) the service is open:
a request without credentials acts as the anonymous admin, as ``oxify serve`` allows on
loopback only (or when told ``--insecure-allow-unauthenticated``). The first key closes it
for good: keys are never deleted, so "a key exists" never turns false again. Replicas learn of
a first key through the ``keys`` notification (and look again whenever notifications may have
been missed); SQLite deployments, which have none, look every second while open.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Protocol

from app.auth.principal import ANONYMOUS, Principal
from app.errors import Unauthenticated
from app.services.keys import KeyService

OPEN_RECHECK_S = 1.0  # seconds: an open service looks for a first key at most this often
BEARER = "bearer"


class TokenVerifier(Protocol):
    """OIDC: the caller a bearer token stands for, or Unauthenticated."""

    async def principal(self, token: str) -> Principal: ...


class Authenticator:
    def __init__(
        self,
        keys: KeyService,
        *,
        tokens: TokenVerifier | None = None,
        poll: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keys = keys
        self._tokens = tokens
        self._poll = poll  # no notifications (SQLite): look for a first key every second
        self._clock = clock
        self._closed = tokens is not None  # credentials required from now on
        self._stale = True  # look for a first key on the next request
        self._checked_at = float("-inf")

    async def principal(self, authorization: str | None) -> Principal:
        """The caller of a request carrying this ``Authorization`` header (None: absent)."""
        if authorization is None:
            if await self.required():
                raise Unauthenticated()
            return ANONYMOUS
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != BEARER or not credential:
            raise Unauthenticated("send `Authorization: Bearer <api key or token>`")
        if credential.startswith("oxify_") or self._tokens is None:
            return await self.keys.principal(credential)
        return await self._tokens.principal(credential)

    async def required(self) -> bool:
        """Whether requests need credentials (a key exists, or tokens are configured)."""
        if self._closed:
            return True
        now = self._clock()
        if self._stale or (self._poll and now - self._checked_at >= OPEN_RECHECK_S):
            self._stale, self._checked_at = False, now
            try:
                self._closed = await self.keys.any_exist()
            except BaseException:
                self._stale = True
                raise
        return self._closed

    def keys_changed(self, key_ids: Iterable[str]) -> None:
        """Another replica (or ``oxify keys``) created, revoked or rotated these keys."""
        self.keys.cache.forget(key_ids)
        self._stale = True  # a first key may exist now

    def resync(self) -> None:
        """Notifications may have been missed: read every key again."""
        self.keys.cache.clear()
        self._stale = True
