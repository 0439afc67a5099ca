"""Rate limits and quotas per key and per project: what applies to a caller, requests per
second (token buckets on this replica), failed authentications per client address, and the
exact quotas a run submission takes in its own transaction.

Nothing here reads the database on a request: project limits and the number of live replicas
are read every ``OXIFY_LIMITS_REFRESH_S`` seconds (5) by a task of their own (a key's limits
come with the key, from the key cache). Requests per second are a token bucket per replica
sized ``limit ÷ live replicas``, so the cluster allows about the limit whichever replica a
balancer picks. Quotas (concurrent runs, runs per day) are exact: charged in the transaction
that inserts the run (:mod:`app.store.submissions`, with the limits :meth:`run_limits` gives),
by statements that cannot over-count under concurrency, and rolled back with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth import client_ip
from app.auth.principal import DEFAULT_PROJECT, Principal
from app.auth.ratelimit import Limiter, retry_after_s
from app.domain import limits as windows
from app.domain.limits import DAY_S, UNLIMITED, Limits, ProjectLimits, Quota
from app.errors import QuotaExceeded, RateLimited
from app.store import quotas, submissions

log = logging.getLogger(__name__)

CONCURRENT_RETRY_S = 5  # seconds: Retry-After when too many runs are unfinished
FAILURES_WINDOW_S = 60  # seconds: failed authentications are counted per minute


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _Scope:
    """A key or a project a run counts against, with its limits."""

    name: str  # quota_usage.scope: "key:<id>" or "project:<name>"
    column: str  # run_quotas column holding it
    value: str
    limits: Limits


class LimitService:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        defaults: Limits,
        auth_failures_per_min: float,
        trusted_proxies: tuple[client_ip.Network, ...],
        refresh_s: float,
        replica_ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._engine = engine
        self.defaults = defaults
        self._failures_per_s = auth_failures_per_min / FAILURES_WINDOW_S
        self._auth_failures_per_min = auth_failures_per_min
        self._trusted = trusted_proxies
        self._refresh_s = refresh_s
        self._replica_ttl_s = replica_ttl_s
        self._now = now
        self._requests = Limiter(clock=clock)
        self._failures = Limiter(burst_s=FAILURES_WINDOW_S, clock=clock)
        self._projects: dict[str, Limits] = {}
        self._changes = 0  # limits set through this replica so far
        self.replicas = 1  # live replicas sharing requests/s (read in the background)
        self._task: asyncio.Task[None] | None = None

    # -- configuration --------------------------------------------------------------------

    def for_project(self, project: str) -> Limits:
        """The project's limits; the defaults fill what it leaves out."""
        return self._projects.get(project, UNLIMITED).over(self.defaults)

    async def project_limits(self, project: str) -> ProjectLimits:
        """The limits that apply to ``project`` now (its own, the defaults filling in)."""
        await self.refresh()
        return ProjectLimits(project=project, **self.for_project(project).model_dump())

    async def set_project_limits(self, project: str, limits: Limits) -> ProjectLimits:
        """Store a project's limits (replacing them); other replicas apply them within
        ``OXIFY_LIMITS_REFRESH_S``, this one at once."""
        async with self._engine.begin() as conn:
            await quotas.put_project_limits(
                conn, project, limits.model_dump(exclude_none=True), self._now()
            )
        self._projects[project] = limits
        self._changes += 1
        return ProjectLimits(project=project, **self.for_project(project).model_dump())

    async def refresh(self) -> None:
        """Read project limits and count live replicas."""
        since = self._now() - timedelta(seconds=self._replica_ttl_s)
        changes = self._changes
        async with self._engine.connect() as conn:
            stored = await quotas.all_project_limits(conn)
            self.replicas = await quotas.live_replicas(conn, since)
        if changes == self._changes:  # else limits set meanwhile: this read may predate them
            self._projects = {name: Limits.model_validate(v) for name, v in stored.items()}

    async def upkeep(self) -> None:
        """Release finished runs from concurrency counts and drop old daily counters
        (idempotent: every replica may do it)."""
        async with self._engine.begin() as conn:
            await quotas.release_finished(conn)
            await quotas.forget_before(conn, windows.window(self._now()) - timedelta(days=1))

    async def start(self) -> None:
        """Read the limits before the first request is served (else a project's own limits
        would not apply for a moment after every start), then keep them fresh."""
        await self._refresh_and_upkeep()
        self._task = asyncio.create_task(self._loop(), name="oxify-limits")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            await self._refresh_and_upkeep()

    async def _refresh_and_upkeep(self) -> None:
        try:
            await self.refresh()
            await self.upkeep()
        except Exception as exc:  # the database is down: the last limits stand
            log.warning("limits not refreshed (%s)", type(exc).__name__)

    # -- requests -------------------------------------------------------------------------

    def admit_request(self, principal: Principal) -> None:
        """Take this request from its key's and its project's buckets; RateLimited when
        either is empty. A dict lookup or two: no database."""
        if principal.key_id is not None and principal.limits is not None:
            self._take(("key", principal.key_id), principal.limits.requests_per_s)
        project = principal.project or DEFAULT_PROJECT
        self._take(("project", project), self.for_project(project).requests_per_s)

    def _take(self, bucket: tuple[str, str], per_s: float | None) -> None:
        if per_s is None:
            return
        wait_s = self._requests.take(bucket, per_s / self.replicas)
        if wait_s:
            raise RateLimited(
                f"more than {per_s:g} requests per second for this {bucket[0]}",
                policy=Quota.REQUESTS.value,
                quota=per_s,
                window_s=1,
                retry_after_s=retry_after_s(wait_s),
            )

    def client_ip(self, peer: str | None, forwarded_for: str | None) -> str:
        return client_ip.client_ip(peer, forwarded_for, self._trusted)

    def check_failures(self, address: str) -> None:
        """Refuse an address that failed to authenticate too often lately."""
        wait_s = self._failures.empty(address)
        if wait_s:
            raise RateLimited(
                "too many failed authentications from this address",
                policy=Quota.AUTH_FAILURES.value,
                quota=self._auth_failures_per_min,
                window_s=FAILURES_WINDOW_S,
                retry_after_s=retry_after_s(wait_s),
            )

    def failed(self, address: str) -> None:
        """An authentication from ``address`` failed: it counts against its allowance."""
        self._failures.take(address, self._failures_per_s)

    # -- runs -----------------------------------------------------------------------------

    def run_limits(
        self, principal: Principal, project: str
    ) -> tuple[list[submissions.Limit], list[submissions.Limit]]:
        """The runs/day and concurrent-runs limits a new run of ``project`` (its workflow's)
        submitted by ``principal`` is charged against, key before project (the order their
        locks are taken in). No database: the limits are in memory."""
        scopes = [_Scope(f"project:{project}", "project", project, self.for_project(project))]
        if principal.key_id is not None and principal.limits is not None:
            key = principal.key_id
            scopes.insert(0, _Scope(f"key:{key}", "key_id", key, principal.limits))
        daily = [
            submissions.Limit(s.name, s.column, s.value, s.limits.runs_per_day)
            for s in scopes
            if s.limits.runs_per_day is not None
        ]
        concurrent = [
            submissions.Limit(s.name, s.column, s.value, s.limits.concurrent_runs)
            for s in scopes
            if s.limits.concurrent_runs is not None
        ]
        return daily, concurrent

    @staticmethod
    def exceeded(reached: submissions.QuotaReached, now: datetime) -> QuotaExceeded:
        """The answer to a submission its quotas refused."""
        limit = reached.limit
        holder = limit.column.removesuffix("_id")
        if reached.quota == Quota.RUNS.value:
            return QuotaExceeded(
                f"{limit.limit} runs a day for this {holder}: used up",
                policy=Quota.RUNS.value,
                quota=limit.limit,
                window_s=DAY_S,
                retry_after_s=windows.reset_in_s(now),
            )
        return QuotaExceeded(
            f"{limit.limit} runs of this {holder} are unfinished",
            policy=Quota.CONCURRENT.value,
            quota=limit.limit,
            window_s=CONCURRENT_RETRY_S,
            retry_after_s=CONCURRENT_RETRY_S,
        )
