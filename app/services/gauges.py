"""Cluster-wide gauges for the metrics: read from the database every ``OXIFY_CLUSTER_GAUGES_S``
seconds (5) by a task of their own, so a scrape only reads the last answer (it never waits for a
query) and every replica reports the same numbers, at most that old."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from app.store import gauges
from app.store.gauges import ClusterCounts

log = logging.getLogger(__name__)


class ClusterGauges:
    def __init__(self, engine: AsyncEngine, refresh_s: float) -> None:
        self._engine = engine
        self._refresh_s = refresh_s
        self._task: asyncio.Task[None] | None = None
        self.counts: ClusterCounts | None = None  # None until the first read answered
        self.read_at: datetime | None = None

    async def refresh(self) -> None:
        async with self._engine.connect() as conn:
            self.counts = await gauges.read(conn)
        self.read_at = datetime.now(UTC)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="oxify-cluster-gauges")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            # The first read waits one period too: a process starting up has enough to do, and
            # the database sees no burst of reads when many replicas start at once.
            await asyncio.sleep(self._refresh_s)
            try:
                await self.refresh()
            except Exception as exc:  # the database is down: the gauges keep their last values
                log.warning("cluster gauges not refreshed (%s)", type(exc).__name__)
