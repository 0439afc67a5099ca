"""Rate limits and quotas on Postgres: exact under concurrent submits to two replicas, the 429
answers and their headers, the daily window, requests per second shared by live replicas,
failed authentications per client address, and the admin routes."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from app.auth.audit import OK, AuditEntry
from app.auth.principal import Principal
from app.auth.scopes import Scope
from app.domain.limits import Limits
from app.errors import QuotaExceeded
from app.store import quotas, submissions
from app.store.db import migrate, one_statement
from app.store.tables import run_quotas
from tests.api.helpers import assert_problem, doubler, linear, services_of, serving

PEPPER = "pepper-" + "x" * 40
SUBMITS = 50


@asynccontextmanager
async def replicas(url: str, **settings: Any) -> AsyncIterator[tuple[httpx.AsyncClient, ...]]:
    """Two apps serving the same database, as two replicas would."""
    common = {"shutdown_grace_s": 2.0, "key_pepper": PEPPER, **settings}
    async with (
        serving(url, replica_id="a", **common) as a,
        serving(url, replica_id="b", **common) as b,
    ):
        yield a, b


async def key(
    client: httpx.AsyncClient, project: str, limits: Limits | None = None, *scopes: str
) -> dict[str, str]:
    created = await services_of(client).keys.create(
        name="t", scopes=list(scopes or ("runner",)), project=project, limits=limits
    )
    return {"Authorization": f"Bearer {created.key}"}


def waiting() -> dict[str, Any]:
    """A run that waits for an approval: unfinished until someone answers or cancels it."""
    return linear(
        {"id": "start", "type": "start"},
        {"id": "vote", "type": "approval", "config": {"prompt": "Ship it?"}},
        {"id": "end", "type": "end"},
        name="waiting",
    )


async def submit_all(
    clients: tuple[httpx.AsyncClient, ...], workflow_id: str, headers: dict[str, str], body: Any
) -> list[httpx.Response]:
    async def one(i: int) -> httpx.Response:
        client = clients[i % len(clients)]
        return await client.post(
            f"/v1/workflows/{workflow_id}/executions", json=body, headers=headers
        )

    return list(await asyncio.gather(*(one(i) for i in range(SUBMITS))))


async def test_runs_per_day_exact_under_concurrent_submits_to_two_replicas(
    pg_database_url: str,
) -> None:
    async with replicas(pg_database_url) as (a, b):
        admin = await key(a, "daily", None, "admin")
        put = await a.put(
            "/v1/admin/projects/daily/limits", json={"runs_per_day": 20}, headers=admin
        )
        assert put.status_code == 200, put.text
        assert put.json()["runs_per_day"] == 20
        await services_of(b).limits.refresh()
        workflow_id = await create_workflow_as(a, doubler(), admin)
        answers = await submit_all((a, b), workflow_id, await key(a, "daily"), {"inputs": {"n": 1}})
        assert Counter(r.status_code for r in answers) == {202: 20, 429: 30}
        refused = next(r for r in answers if r.status_code == 429)
        assert_problem(refused, 429, "quota_exceeded")
        reset = int(refused.headers["retry-after"])
        assert 1 <= reset <= 86_400
        assert refused.headers["ratelimit-policy"] == '"runs";q=20;w=86400'
        assert refused.headers["ratelimit"] == f'"runs";r=0;t={reset}'
        engine = services_of(a).engine
        async with engine.connect() as conn:
            held = await conn.scalar(
                select(func.count()).select_from(run_quotas).where(run_quotas.c.project == "daily")
            )
            used = await quotas.used(conn, "project:daily", "runs", datetime.now(UTC).date())
        assert (held, used) == (20, 20)  # the refused ones left nothing behind


async def create_workflow_as(
    client: httpx.AsyncClient, document: dict[str, Any], headers: dict[str, str]
) -> str:
    response = await client.post("/v1/workflows", json=document, headers=headers)
    assert response.status_code == 201, response.text
    workflow_id: str = response.json()["id"]
    return workflow_id


async def test_concurrent_runs_exact_and_freed_when_a_run_ends(pg_database_url: str) -> None:
    async with replicas(pg_database_url) as (a, b):
        admin = await key(a, "busy", None, "admin")
        workflow_id = await create_workflow_as(a, waiting(), admin)
        runner = await key(a, "busy", Limits(concurrent_runs=7))
        answers = await submit_all((a, b), workflow_id, runner, {})
        assert Counter(r.status_code for r in answers) == {202: 7, 429: 43}
        refused = next(r for r in answers if r.status_code == 429)
        assert_problem(refused, 429, "quota_exceeded")
        assert refused.headers["ratelimit-policy"] == '"concurrent";q=7;w=5'
        accepted = next(r for r in answers if r.status_code == 202).json()["id"]
        cancel = await b.post(
            f"/v1/executions/{accepted}/cancel", params={"wait": "true"}, headers=admin
        )
        assert cancel.json()["status"] == "cancelled", cancel.text
        again = await a.post(f"/v1/workflows/{workflow_id}/executions", json={}, headers=runner)
        assert again.status_code == 202, again.text  # the cancelled run no longer counts
        full = await b.post(f"/v1/workflows/{workflow_id}/executions", json={}, headers=runner)
        assert_problem(full, 429, "quota_exceeded")
        # Housekeeping releases ended runs; a retried run counts again.
        limits = services_of(a).limits
        await limits.upkeep()
        retried = await a.post(f"/v1/executions/{accepted}/retry", headers=admin)
        assert retried.status_code == 202, retried.text
        engine = services_of(a).engine
        async with engine.connect() as conn:
            assert await quotas.active_counts(conn, [("project", "busy")]) == [8]


async def test_requests_per_second_are_shared_by_live_replicas(pg_database_url: str) -> None:
    async with replicas(pg_database_url) as (a, b):
        headers = await key(a, "chatty", Limits(requests_per_s=2), "viewer")
        for client in (a, b):
            await services_of(client).limits.refresh()
            assert services_of(client).limits.replicas == 2
        assert (await a.get("/v1/workflows", headers=headers)).status_code == 200
        refused = await a.get("/v1/workflows", headers=headers)  # this replica's share: 1/s
        assert_problem(refused, 429, "rate_limited")
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["ratelimit-policy"] == '"requests";q=2;w=1'
        assert (await b.get("/v1/workflows", headers=headers)).status_code == 200


async def test_the_daily_window_resets(pg_database_url: str) -> None:
    async with serving(pg_database_url, key_pepper=PEPPER) as client:
        limits = services_of(client).limits
        engine = services_of(client).engine
        caller = Principal(
            scopes=frozenset({Scope.RUNNER}),
            project="windowed",
            key_id="abcdefabcdef",
            limits=Limits(runs_per_day=2),
        )
        evening = datetime(2026, 12, 7, 23, 30, tzinfo=UTC)
        workflow = await services_of(client).workflows.create(doubler())

        async def charge(now: datetime) -> None:
            daily, concurrent = limits.run_limits(caller, "windowed")
            run_id = str(uuid.uuid4())
            new = submissions.NewRun(
                id=run_id,
                project="windowed",
                workflow_id=workflow.id,
                workflow_version=workflow.version,
                inputs={},
                config={},
                created_at=now,
                audit=AuditEntry(now, caller.actor, "run.start", run_id, "windowed", OK),
                key_id=caller.key_id,
                runs_per_day=daily,
                concurrent=concurrent,
            )
            try:
                async with one_statement(engine) as conn:
                    await submissions.submit(conn, new)
            except submissions.QuotaReached as reached:
                raise limits.exceeded(reached, now) from None

        await charge(evening)
        await charge(evening)
        with pytest.raises(QuotaExceeded) as refused:
            await charge(evening + timedelta(minutes=29))
        assert (refused.value.policy, refused.value.retry_after_s) == ("runs", 60)
        await charge(evening + timedelta(minutes=31))  # a new UTC day


@pytest.mark.parametrize("trusted", ["", "127.0.0.0/8"])
async def test_failed_authentications_are_limited_per_client_address(
    pg_database_url: str, trusted: str
) -> None:
    settings = {"key_pepper": PEPPER, "auth_failures_per_min": 3, "trusted_proxies": trusted}
    async with serving(pg_database_url, **settings) as client:
        good = await key(client, "default", None, "viewer")
        bad = {"Authorization": "Bearer oxify_not_a_key"}
        for _ in range(3):
            forwarded = {"X-Forwarded-For": "198.51.100.7", **bad}
            assert_problem(
                await client.get("/v1/workflows", headers=forwarded), 401, "unauthenticated"
            )
        # The same address is refused now, with the right key too.
        refused = await client.get(
            "/v1/workflows", headers={"X-Forwarded-For": "198.51.100.7", **good}
        )
        assert_problem(refused, 429, "rate_limited")
        assert refused.headers["retry-after"] == "20"  # a minute holds 3: one back every 20 s
        assert refused.headers["ratelimit-policy"] == '"auth_failures";q=3;w=60'
        # Behind a trusted proxy each forwarded address counts alone; else the peer is the client.
        other = await client.get(
            "/v1/workflows", headers={"X-Forwarded-For": "203.0.113.1", **good}
        )
        assert other.status_code == (200 if trusted else 429)


async def test_project_limits_admin_routes_and_key_limits(pg_database_url: str) -> None:
    async with serving(pg_database_url, key_pepper=PEPPER, default_runs_per_day=1000) as client:
        admin = await key(client, "team", None, "admin")
        got = await client.get("/v1/admin/projects/team/limits", headers=admin)
        assert got.json() == {
            "project": "team",
            "requests_per_s": None,
            "concurrent_runs": None,
            "runs_per_day": 1000,
            "tokens_per_day": None,
        }
        put = await client.put(
            "/v1/admin/projects/team/limits", json={"concurrent_runs": 3}, headers=admin
        )
        assert put.json()["concurrent_runs"] == 3 and put.json()["runs_per_day"] == 1000
        other = await client.get("/v1/admin/projects/elsewhere/limits", headers=admin)
        assert_problem(other, 404, "project_not_found")
        bad = await client.put(
            "/v1/admin/projects/team/limits", json={"runs_per_day": -1}, headers=admin
        )
        assert_problem(bad, 422, "request_invalid")
        runner = await key(client, "team")
        assert_problem(
            await client.get("/v1/admin/projects/team/limits", headers=runner),
            403,
            "insufficient_scope",
        )
        created = await client.post(
            "/v1/admin/keys",
            json={"name": "capped", "scopes": ["runner"], "limits": {"runs_per_day": 5}},
            headers=admin,
        )
        assert created.status_code == 201, created.text
        assert created.json()["limits"]["runs_per_day"] == 5


async def test_quotas_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'oxify.db'}"
    await migrate(url)
    async with serving(url, default_runs_per_day=3, default_concurrent_runs=2) as client:
        workflow_id = await create_workflow_as(client, waiting(), {})
        codes = [
            (await client.post(f"/v1/workflows/{workflow_id}/executions", json={})).status_code
            for _ in range(3)
        ]
        assert codes == [202, 202, 429]  # two unfinished at most
        first = (await client.get("/v1/executions")).json()["items"][-1]["id"]
        # Settled first: the quota is the point here, not a cancel racing the run to its form.
        assert (await client.get(f"/v1/executions/{first}/wait")).json()["status"] == "waiting"
        cancelled = await client.post(f"/v1/executions/{first}/cancel", params={"wait": "true"})
        assert cancelled.json()["status"] == "cancelled", cancelled.text
        third = await client.post(f"/v1/workflows/{workflow_id}/executions", json={})
        assert third.status_code == 202, third.text
        await client.get(f"/v1/executions/{third.json()['id']}/wait")
        await client.post(f"/v1/executions/{third.json()['id']}/cancel", params={"wait": "true"})
        refused = await client.post(f"/v1/workflows/{workflow_id}/executions", json={})
        assert_problem(refused, 429, "quota_exceeded")  # three a day
        assert refused.headers["ratelimit-policy"] == '"runs";q=3;w=86400'
