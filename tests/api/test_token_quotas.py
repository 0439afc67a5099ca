"""tokens/day on Postgres against the local OpenAI-compatible server: a run whose model call
crosses the quota pauses with reason ``quota_exhausted`` and resumes once its day is over; with
``OXIFY_QUOTA_EXHAUSTED=fail`` its next model call fails with ``quota_exhausted``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from app.domain.events import EventType
from app.store import quotas
from app.store.tables import quota_usage, run_quotas
from tests.api.helpers import (
    create_workflow,
    linear,
    next_event,
    services_of,
    serving,
    start_run,
    wait_run,
)
from tests.providers import ProviderServer, openai_server


@pytest.fixture
async def provider() -> AsyncIterator[ProviderServer]:
    async with openai_server() as srv:
        yield srv


def asks(url: str) -> dict[str, Any]:
    config = {"provider": "openai", "base_url": url, "model": "gpt-4o-mini", "prompt": "go"}
    return linear(
        {"id": "start", "type": "start"},
        {"id": "ask1", "type": "llm", "config": {**config, "cache": False}},
        {"id": "ask2", "type": "llm", "config": {**config, "cache": False}},
        {"id": "end", "type": "end"},
        name="asks",
    )


async def set_tokens(client: httpx.AsyncClient, limit: int) -> None:
    put = await client.put("/v1/admin/projects/default/limits", json={"tokens_per_day": limit})
    assert put.status_code == 200, put.text


async def test_a_run_crossing_tokens_per_day_pauses_and_resumes_after_the_reset(
    pg_database_url: str, provider: ProviderServer
) -> None:
    settings = {"openai_api_key": "sk-test", "shutdown_grace_s": 2.0}
    async with serving(pg_database_url, **settings) as client:
        await set_tokens(client, 1)
        workflow_id = await create_workflow(client, asks(provider.url))
        run = (await start_run(client, workflow_id))["id"]
        paused = await next_event(client, run, EventType.WORKFLOW_PAUSED)
        assert paused.data["reason"] == "quota_exhausted"
        done = await wait_run(client, run)
        assert done["status"] == "paused"
        nodes = {node["node_id"]: node["status"] for node in done["nodes"]}
        assert nodes["ask1"] == "completed" and "ask2" not in nodes  # nothing new started
        assert provider.received.count == 1
        services = services_of(client)
        async with services.engine.connect() as conn:
            used = await quotas.used(conn, "project:default", "tokens", datetime.now(UTC).date())
        assert used == done["usage"]["tokens"] > 1
        assert await services.token_quotas.resume_due() == 0  # the same day: it stays paused
        # The day is over (moved back a day) and today's quota has room.
        yesterday = datetime.now(UTC).date() - timedelta(days=1)
        async with services.engine.begin() as conn:
            await conn.execute(update(quota_usage).values(day=yesterday))
            await conn.execute(update(run_quotas).values(paused_on=yesterday))
        await set_tokens(client, 1000)
        assert await services.token_quotas.resume_due() == 1
        finished = await wait_run(client, run)
        assert finished["status"] == "completed", finished


async def test_with_fail_the_next_model_call_fails_with_quota_exhausted(
    pg_database_url: str, provider: ProviderServer
) -> None:
    settings = {"openai_api_key": "sk-test", "quota_exhausted": "fail", "shutdown_grace_s": 2.0}
    async with serving(pg_database_url, **settings) as client:
        async with services_of(client).engine.begin() as conn:
            await conn.execute(quota_usage.delete())
        await set_tokens(client, 1)
        workflow_id = await create_workflow(client, asks(provider.url))
        done = await wait_run(client, (await start_run(client, workflow_id))["id"])
        assert done["status"] == "failed", done
        failed = {node["node_id"]: node for node in done["nodes"]}["ask2"]
        assert failed["error"]["code"] == "quota_exhausted"
        assert provider.received.count == 1  # the refused call was never sent
