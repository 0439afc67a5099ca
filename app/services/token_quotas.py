"""Tokens per day per key and per project, on the path of every model call
(:class:`app.nodes.quota.TokenQuota`).

Before a call: one indexed read of today's counters of the run's key and project (a call
costs far more); a quota used up refuses the call, the node failing with
``quota_exhausted``. After it: the call's tokens are added to both counters by one atomic
upsert each, in one transaction. A call that crosses a quota (its tokens cannot be known before
it answers, so the last call may overshoot) has the run paused with reason
``quota_exhausted`` (``OXIFY_QUOTA_EXHAUSTED=pause``, the default: running nodes finish,
nothing new starts) or leaves it to fail at its next model call (``fail``). Paused runs are
resumed by :meth:`resume_due` once their UTC day is over.

Which key and project a run counts against is written with the run (``run_quotas``), read
once per run and remembered.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain import limits as windows
from app.domain.limits import Quota
from app.engine.run.control import RunControl
from app.errors import OxifyError, QuotaExhausted
from app.services.keys import KeyService
from app.services.limits import LimitService
from app.store import db, quotas

log = logging.getLogger(__name__)

PAUSE_REASON = "quota_exhausted"  # the reason of workflow.paused
MAX_RUNS_REMEMBERED = 10_000  # runs whose key and project this replica remembers

Mode = Literal["pause", "fail"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class TokenQuotas:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        limits: LimitService,
        keys: KeyService,
        mode: Mode,
        control: Callable[[str], RunControl | None],
        resume: Callable[[str], Awaitable[object]],
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._engine = engine
        self._read = db.autocommit(engine)
        self._limits = limits
        self._keys = keys
        self._mode = mode
        self._control = control  # the run's control, when this replica drives it
        self._resume = resume
        self._now = now
        self._runs: OrderedDict[str, tuple[str, str | None] | None] = OrderedDict()

    async def admit(self, execution_id: str) -> None:
        bounded = await self._bounded(execution_id)
        if not bounded:
            return
        now = self._now()
        async with self._read.connect() as conn:
            day = windows.window(now)
            used = await quotas.used_many(conn, list(bounded), Quota.TOKENS.value, day)
        for scope, limit in bounded.items():
            if used.get(scope, 0) >= limit:
                raise QuotaExhausted(
                    f"the {limit} tokens a day of {scope} are used up; they reset in "
                    f"{windows.reset_in_s(now)} s",
                    details={"scope": scope, "limit": limit, "used": used.get(scope, 0)},
                )

    async def charge(self, execution_id: str, tokens: int) -> None:
        bounded = await self._bounded(execution_id)
        if not bounded or tokens <= 0:
            return
        day = windows.window(self._now())
        crossed = False
        async with self._engine.begin() as conn:
            for scope, limit in bounded.items():
                total = await quotas.charge(conn, scope, Quota.TOKENS.value, day, tokens, None)
                crossed |= total is not None and total >= limit
            pausing = crossed and self._mode == "pause"
            if pausing:
                await quotas.mark_paused(conn, execution_id, day)
        control = self._control(execution_id) if pausing else None
        if control is not None:
            control.pause(reason=PAUSE_REASON)

    async def resume_due(self) -> int:
        """Resume runs tokens/day paused on a day that is over; how many."""
        day = windows.window(self._now())
        async with self._read.connect() as conn:
            due = await quotas.paused_before(conn, day)
        for execution_id in due:
            try:
                await self._resume(execution_id)
            except OxifyError as exc:  # deleted, or someone cancelled it meanwhile
                log.info("run %s not resumed after its quota reset (%s)", execution_id, exc.code)
            async with self._engine.begin() as conn:
                await quotas.unmark_paused(conn, execution_id)
        return len(due)

    async def _bounded(self, execution_id: str) -> dict[str, int]:
        """The run's scopes with a tokens/day limit: ``scope -> limit`` (only those are
        counted: a limit set during a day counts from then on)."""
        scopes = await self._scopes(execution_id)
        if scopes is None:
            return {}
        project, key_id = scopes
        found = {f"project:{project}": self._limits.for_project(project).tokens_per_day}
        if key_id is not None:
            row = await self._keys.cache.get(key_id)
            own = None if row is None or not row.limits else row.limits.get("tokens_per_day")
            found[f"key:{key_id}"] = own
        return {scope: int(limit) for scope, limit in found.items() if limit is not None}

    async def _scopes(self, execution_id: str) -> tuple[str, str | None] | None:
        if execution_id in self._runs:
            self._runs.move_to_end(execution_id)
            return self._runs[execution_id]
        async with self._read.connect() as conn:
            found = await quotas.run_scopes(conn, execution_id)
        self._runs[execution_id] = found
        if len(self._runs) > MAX_RUNS_REMEMBERED:
            self._runs.popitem(last=False)
        return found
