"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event
from sqlalchemy.engine import make_url

from app.main import create_app
from app.settings import Settings
from tests.api.helpers import (
    assert_problem,
    client_of,
    create_workflow,
    doubler,
    linear,
    services_of,
    serving,
    start_run,
    wait_run,
)
from tests.providers import openai_server


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_on_a_migrated_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_readyz_probes_run_one_query_and_read_no_migration_scripts(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (await client.get("/readyz")).status_code == 200
    scripts_read: list[object] = []
    read_scripts = ScriptDirectory.from_config

    def counted(config: Config) -> ScriptDirectory:
        scripts_read.append(config)
        return read_scripts(config)

    monkeypatch.setattr(ScriptDirectory, "from_config", counted)
    statements: list[str] = []
    probing = asyncio.current_task()  # the ASGI transport runs the app in the caller's task

    def seen(*args: Any) -> None:
        if asyncio.current_task() is probing:  # not the runner's or housekeeping's
            statements.append(args[2])  # (conn, cursor, statement, parameters, context, many)

    engine = services_of(client).engine.sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        for _ in range(3):
            response = await client.get("/readyz")
            assert response.status_code == 200, response.text
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert scripts_read == []
    assert len(statements) == 3, statements


async def test_readyz_is_503_when_the_database_is_not_at_head(fresh_pg_url: str) -> None:
    async with serving(fresh_pg_url) as client:
        dsn = make_url(fresh_pg_url).set(drivername="postgresql").render_as_string(False)
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("UPDATE alembic_version SET version_num = 'older'")
        finally:
            await conn.close()
        body = assert_problem(await client.get("/readyz"), 503, "not_ready")
        assert "older" in body["detail"]


async def test_readyz_is_503_before_the_services_start() -> None:
    app = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:"))
    async with client_of(app) as client:  # lifespan not entered: no services
        assert_problem(await client.get("/readyz"), 503, "not_ready")
        assert (await client.get("/healthz")).status_code == 200


async def test_readyz_is_503_on_an_empty_database(postgres_url: str) -> None:
    name = f"oxify_empty_{uuid.uuid4().hex[:10]}"
    dsn = make_url(postgres_url).set(drivername="postgresql").render_as_string(False)
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(postgres_url).set(database=name).render_as_string(False)
        async with serving(url) as client:
            assert_problem(await client.get("/readyz"), 503, "not_ready")
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_a_lost_database_connection_answers_503_then_the_pool_reconnects(
    fresh_pg_url: str,
) -> None:
    # Background work rarely touches the pool here, so the next request is the one that
    # finds its connection dead.
    quiet = {
        "lease_s": 3600.0,
        "poll_s": 60.0,
        "deadline_sweep_s": 60.0,
        "cluster_gauges_s": 300.0,
        "limits_refresh_s": 300.0,
    }
    async with serving(fresh_pg_url, **quiet) as client:
        assert (await client.get("/v1/workflows")).status_code == 200
        dsn = make_url(fresh_pg_url).set(drivername="postgresql").render_as_string(False)
        admin = await asyncpg.connect(dsn)
        try:
            killed = await admin.fetch(
                "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert killed
            # pg_terminate_backend only signals: until the backends have exited, a pooled
            # connection still answers. Nothing tells when they are gone but the server itself.
            pids = [row["pid"] for row in killed]
            for _ in range(1000):
                if not await admin.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)", pids
                ):
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError(f"backends {pids} still there after 10 s")
        finally:
            await admin.close()

        response = await client.get("/v1/workflows")
        assert_problem(response, 503, "database_unavailable")
        assert int(response.headers["retry-after"]) >= 1
        assert (await client.get("/v1/workflows")).status_code == 200


async def test_metrics_count_requests_by_route_template_and_runs(
    client: httpx.AsyncClient,
) -> None:
    workflow_id = await create_workflow(client, doubler())
    run = await start_run(client, workflow_id, {"inputs": {"n": 1}})
    await wait_run(client, run["id"])
    await client.get("/v1/workflows/nope")
    await client.get("/no/such/path")

    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'oxify_http_requests_total{method="POST",route="/v1/workflows",status="201"} 1.0' in text
    assert (
        'oxify_http_requests_total{method="GET",route="/v1/workflows/{workflow_id}",status="404"}'
        in text
    )
    assert 'route="<unmatched>",status="404"' in text
    assert "/no/such/path" not in text
    assert 'oxify_http_request_duration_seconds_bucket{le="0.005",method="POST"' in text
    assert "oxify_runs_started_total 1.0" in text
    assert "oxify_runs_running 0.0" in text


async def test_metrics_count_llm_cache_hits_and_misses(client: httpx.AsyncClient) -> None:
    async with openai_server() as srv:
        ask = {"provider": "openai", "base_url": srv.url, "model": "gpt-4o-mini", "prompt": "hi"}
        document = linear(
            {"id": "first", "type": "llm", "config": ask},
            {"id": "again", "type": "llm", "config": ask},  # the same request: from the cache
            name="asked twice",
        )
        before = (await client.get("/metrics")).text
        run = await start_run(client, await create_workflow(client, document))
        done = await wait_run(client, run["id"])

        assert done["status"] == "completed", done
        assert len(srv.requests) == 1
    assert "oxify_llm_cache_requests_total{" not in before  # no cache made before first use
    text = (await client.get("/metrics")).text
    assert 'oxify_llm_cache_requests_total{kind="llm",result="hit"} 1.0' in text
    assert 'oxify_llm_cache_requests_total{kind="llm",result="miss"} 1.0' in text
    assert "# TYPE oxify_llm_cache_requests_total counter" in text


async def test_each_app_has_its_own_metrics(pg_database_url: str) -> None:
    async with serving(pg_database_url) as first, serving(pg_database_url) as second:
        await first.get("/healthz")
        text = (await second.get("/metrics")).text
        assert 'route="/healthz"' not in text


async def test_metrics_show_cluster_gauges_build_and_process(fresh_pg_url: str) -> None:
    waiting = linear(
        {"id": "start", "type": "start"},
        {"id": "vote", "type": "approval", "config": {"prompt": "Ship it?"}},
        name="waits",
    )
    async with serving(fresh_pg_url) as client:
        before = (await client.get("/metrics")).text
        run = await start_run(client, await create_workflow(client, waiting))
        assert (await wait_run(client, run["id"]))["status"] == "waiting"
        await services_of(client).gauges.refresh()  # as its background task does every 5 s
        families = {
            family.name: family
            for family in text_string_to_metric_families((await client.get("/metrics")).text)
        }
    assert "oxify_queue_depth" not in before  # nothing shown before the first read
    runs = {s.labels["status"]: s.value for s in families["oxify_runs"].samples}
    assert runs["waiting"] == 1 and runs["queued"] == 0 and "completed" not in runs
    assert families["oxify_queue_depth"].samples[0].value == 0
    pending = {s.labels["kind"]: s.value for s in families["oxify_forms_pending"].samples}
    assert pending == {"approval": 1, "form": 0}
    assert families["oxify_forms_oldest_pending_age_seconds"].samples[0].value >= 0
    [build] = families["oxify_build_info"].samples
    assert build.labels["version"] == "0.1.0" and build.value == 1
    assert "process_cpu_seconds" in families and "python_gc_objects_collected" in families
