"""Answers (and embeddings) of identical requests, reused for a while.

Keyed by a digest of everything that shapes the answer (provider, API root, model, parameters,
messages, response format) and of whose it is: the run's project and the provider key the call
would be paid with. A project never gets another's answer (no cross-project timing signal of
what another asked, no answer that its own credential would not have bought). Bounded in
entries (least recently used go first) and in age (``OXIFY_LLM_CACHE_TTL_S``). One cache per
kind per process, shared by all runs. A completed node never asks again anyway: its result is
journaled, and a resumed run replays it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import orjson
from cachetools import TTLCache

from app.nodes.credentials import run_project
from app.nodes.resources import NodeResources

_PREFIX = "cache:"  # the caches' names among the resources' clients: cache:<kind>


class AnswerCache:
    """A TTL + LRU map from request digests to answers, counting hits and misses."""

    def __init__(
        self, size: int, ttl_s: float, timer: Callable[[], float] = time.monotonic
    ) -> None:
        self._entries: TTLCache[str, Any] | None = (
            TTLCache(maxsize=size, ttl=ttl_s, timer=timer) if size > 0 and ttl_s > 0 else None
        )
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(request: dict[str, Any], *, provider_key: str | None = None) -> str:
        """A digest of ``request`` in the run's project, paid with ``provider_key`` (a stored
        credential's; None: the deployment's). JSON with sorted keys: equal requests of one
        owner, equal keys. The provider key enters the digest only, never the map."""
        owner = {"project": run_project(), "provider_key": provider_key}
        material = orjson.dumps({"owner": owner, "request": request}, option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(material).hexdigest()

    def get(self, key: str) -> Any | None:
        if self._entries is None:
            return None
        found = self._entries.get(key)
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def put(self, key: str, value: Any) -> None:
        if self._entries is not None:
            self._entries[key] = value


def answer_cache(resources: NodeResources, kind: str) -> AnswerCache:
    """The process's cache of ``kind`` (``"llm"``, ``"embeddings"``), sized by the settings."""
    settings = resources.settings
    return resources.client(
        _PREFIX + kind, lambda: AnswerCache(settings.llm_cache_size, settings.llm_cache_ttl_s)
    )


def answer_caches(resources: NodeResources) -> dict[str, AnswerCache]:
    """The caches the process has made so far, by kind (none is made by asking)."""
    return {
        name.removeprefix(_PREFIX): cache
        for name, cache in resources.made(AnswerCache).items()
        if name.startswith(_PREFIX)
    }
