"""Runs that ended on this replica, for the metrics.

``oxify_runs_finished_total{workflow,status}`` and ``oxify_run_duration_seconds`` need a run's
workflow name and creation time, which its terminal event does not carry. A bus listener takes
the terminal events this replica committed (each run is counted once, where it ended, whoever
ended it: its driver, a cancel, the deadline sweeper) and a task of its own reads the names and
creation times by primary key, one query per batch, off the commit path. If the read fails the
runs are still counted, under workflow ``other`` and without a duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth import context
from app.domain.events import Event
from app.store import db, gauges

log = logging.getLogger(__name__)

Finished = Callable[[str | None, str, float | None], None]  # workflow name, status, seconds


class FinishedRuns:
    def __init__(self, engine: AsyncEngine, observe: Finished, *, timeout_s: float) -> None:
        self._read = db.autocommit(engine)
        self._observe = observe
        self._timeout_s = timeout_s
        self._pending: list[tuple[str, str, datetime]] = []  # id, status, ended at
        self._task: asyncio.Task[None] | None = None

    def events(self, events: Sequence[Event]) -> None:
        """The bus listener: notes the runs whose terminal event was just committed here."""
        for event in events:
            if event.type.is_terminal:
                status = event.type.value.removeprefix("workflow.")
                self._pending.append((event.execution_id, status, event.ts))
        if self._pending and (self._task is None or self._task.done()):
            self._task = context.detached_task(self._drain(), name="oxify-finished-runs")

    async def settle(self) -> None:
        """Return once every run noted so far is recorded."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def close(self) -> None:
        """Record what is noted (bounded), then stop."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._timeout_s):
                await self.settle()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                async with asyncio.timeout(self._timeout_s), self._read.connect() as conn:
                    found = await gauges.finished_runs(conn, sorted({run[0] for run in batch}))
            except Exception as exc:
                log.warning("finished runs counted without their workflow (%s)", exc)
                found = {}
            for execution_id, status, ended_at in batch:
                known = found.get(execution_id)
                if known is None:
                    self._observe(None, status, None)
                else:
                    name, created_at = known
                    self._observe(name, status, (ended_at - created_at).total_seconds())
