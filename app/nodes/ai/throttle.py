"""How hard one process drives each model provider: calls at once and requests per minute
(``OXIFY_LLM_LIMITS``), shared by every run and node of the process, embeddings included.

A call waits for its turn rather than failing: the provider would answer 429 to the excess,
and each 429 costs a retry and a ``max_api_calls`` unit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiolimiter import AsyncLimiter

from app.domain.ai_nodes import Provider
from app.nodes.resources import NodeResources


class ProviderGate:
    """The concurrency cap and rate cap of one provider."""

    def __init__(self, concurrency: int, rpm: float | None) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        # A minute's worth of requests may burst: the provider's own limit is per minute.
        self._rate = AsyncLimiter(rpm, 60.0) if rpm is not None else None

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        async with self._slots:
            if self._rate is not None:
                await self._rate.acquire()
            yield


def gate(resources: NodeResources, provider: Provider) -> ProviderGate:
    """The process's gate for ``provider`` (made on first use from the settings)."""
    limits = resources.settings.provider_limits(provider)
    return resources.client(
        f"gate:{provider}", lambda: ProviderGate(limits.concurrency, limits.rpm)
    )
