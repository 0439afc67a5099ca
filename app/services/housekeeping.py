"""Periodic upkeep shared by the replicas: deadlines (forms, runs whose timeout counts
waiting time, and runs tokens/day paused whose day is over) and retention of finished runs.

Every replica runs both loops; row locks (deadlines) and an advisory lock (retention) make one
replica act on each item, so the work is done once whichever replicas are up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from app.services.executions import ExecutionService
from app.services.forms import FormService
from app.services.token_quotas import TokenQuotas
from app.store import retention

log = logging.getLogger(__name__)

PURGE_BATCH = 200  # runs per transaction


class Housekeeping:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        forms: FormService,
        executions: ExecutionService,
        deadline_sweep_s: float,
        retention_days: float | None,
        retention_interval_s: float,
        quotas: TokenQuotas | None = None,
    ) -> None:
        self._engine = engine
        self._forms = forms
        self._executions = executions
        self._deadline_sweep_s = deadline_sweep_s
        self._retention = timedelta(days=retention_days) if retention_days else None
        self._retention_interval_s = retention_interval_s
        self._quotas = quotas
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        # Deadlines that passed while no replica ran are handled before this one serves; the
        # loop then looks again every period (nothing of it runs in the background at once).
        await _once(self.deadlines, "deadlines")
        self._tasks.append(
            asyncio.create_task(
                _every(self._deadline_sweep_s, self.deadlines, "deadlines", wait_first=True),
                name="oxify-deadlines",
            )
        )
        if self._retention is not None:
            self._tasks.append(
                asyncio.create_task(
                    _every(self._retention_interval_s, self.purge, "retention"),
                    name="oxify-retention",
                )
            )

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)  # (a cancel of the caller still propagates)

    async def deadlines(self) -> int:
        """Forms past their deadline, waiting runs past theirs, runs paused for a quota whose
        window reset; how many were handled."""
        done = await self._forms.expire_due() + await self._executions.expire_waiting()
        if self._quotas is not None:
            done += await self._quotas.resume_due()
        return done

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


async def _every(
    seconds: float, job: Callable[[], Awaitable[int]], what: str, *, wait_first: bool = False
) -> None:
    if wait_first:
        await asyncio.sleep(seconds)
    while True:
        await _once(job, what)
        await asyncio.sleep(seconds)


async def _once(job: Callable[[], Awaitable[int]], what: str) -> None:
    try:
        done = await job()
        if done:
            log.info("%s: %d handled", what, done)
    except Exception as exc:
        log.warning("%s failed (%s); trying again later", what, exc)
