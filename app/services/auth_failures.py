"""Refused credentials in the audit log, sampled: at most ``per_minute`` rows a minute per
replica, so a flood of bad keys cannot flood the log (or the database). Each row is written in
the background, after the 401 went out; what was refused is named by the key id it carried
(never the key) and the reason."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth import context
from app.services import audit
from app.services.audit import AuditAction

PER_MINUTE = 10  # refused credentials recorded a minute per replica; the rest are counted
MAX_WRITING = 4  # rows being written at once; more are dropped (and counted)


class AuthFailures:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        per_minute: int = PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._per_minute = per_minute
        self._clock = clock
        self._window = -1
        self._recorded = 0
        self._writing: set[asyncio.Task[None]] = set()
        self.skipped = 0  # refusals not recorded (sampled out), for the metrics

    def note(self, refused: context.RequestContext, target: str, reason: str) -> None:
        """A refused request (``refused`` carries its request id and client address)."""
        window = int(self._clock() // 60)
        if window != self._window:
            self._window, self._recorded = window, 0
        if self._recorded >= self._per_minute or len(self._writing) >= MAX_WRITING:
            self.skipped += 1
            return
        self._recorded += 1
        task = context.detached_task(self._write(refused, target, reason), name="oxify-auth-audit")
        self._writing.add(task)
        task.add_done_callback(self._writing.discard)

    async def _write(self, refused: context.RequestContext, target: str, reason: str) -> None:
        context.bind(refused)  # this task's own context: the row names the refused request
        try:
            await audit.record_alone(
                self._engine,
                action=AuditAction.AUTH_FAILURE,
                target=target,
                outcome="denied",
                detail={"reason": reason, "skipped_before": self.skipped},
            )
        except Exception:  # a lost sample is not worth failing anything for
            self.skipped += 1

    async def close(self) -> None:
        if self._writing:
            await asyncio.wait(set(self._writing))
