"""Periodic upkeep shared by the replicas: retention of finished runs' history.

Every replica runs the loop; an advisory lock makes one of them do each batch, so the work is
done once whichever replicas are up.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from app.store import retention

log = logging.getLogger(__name__)

PURGE_BATCH = 200  # runs per transaction


class Housekeeping:
    def __init__(
        self, engine: AsyncEngine, *, retention_days: float | None, interval_s: float
    ) -> None:
        self._engine = engine
        self._retention = timedelta(days=retention_days) if retention_days else None
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._retention is not None:
            self._task = asyncio.create_task(self._loop(), name="oxify-housekeeping")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])  # (a cancel of the caller still propagates)

    async def _loop(self) -> None:
        while True:
            try:
                purged = await self.purge()
                if purged:
                    log.info("retention purged the history of %d finished run(s)", purged)
            except Exception as exc:
                log.warning("retention sweep failed (%s); trying again later", exc)
            await asyncio.sleep(self._interval_s)

    async def purge(self) -> int:
        """Purge every run past retention, a batch per transaction; returns how many."""
        if self._retention is None:
            return 0
        before = datetime.now(UTC) - self._retention
        total = 0
        while True:
            async with self._engine.begin() as conn:
                if not await retention.try_sweep_lock(conn):
                    return total  # another replica is sweeping
                purged = await retention.purge_finished(conn, before=before, limit=PURGE_BATCH)
            total += purged
            if purged < PURGE_BATCH:
                return total
