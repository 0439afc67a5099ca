"""A stored credential used by an http node (and as an llm or agent node's provider key), end
to end: stored through the API, resolved by a
run on a real Postgres, sent to a real server on 127.0.0.1, and nowhere else: not in the run's
events, outputs, node errors, checkpoints, stored rows, spans or log records, even when the
server echoes it back."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from opentelemetry.sdk.trace import ReadableSpan
from sqlalchemy import select

from app.store.tables import credentials, metadata
from tests import spans
from tests.api.helpers import linear, services_of, serving
from tests.integration.net_server import net_server
from tests.providers import Failure, Text, openai_server

KEY = Fernet.generate_key().decode()
CANARY = "canary-0b9e55f3-never-shown"


def http(node_id: str, url: str, **extra: Any) -> dict[str, Any]:
    config = {"url": url, "auth": {"type": "credential", "name": "crm"}}
    return {"id": node_id, "type": "http", "config": config, **extra}


async def run_to_the_end(client: httpx.AsyncClient, document: dict[str, Any]) -> dict[str, Any]:
    created = await client.post("/v1/workflows", json=document)
    assert created.status_code == 201, created.text
    started = await client.post(f"/v1/workflows/{created.json()['id']}/executions", json={})
    assert started.status_code == 202, started.text
    waited = await client.get(
        f"/v1/executions/{started.json()['id']}/wait", params={"timeout_s": 30}
    )
    execution: dict[str, Any] = waited.json()
    return execution


async def everything_about(client: httpx.AsyncClient, execution_id: str) -> str:
    """The run as the API shows it (execution, events, checkpoints) and every stored row but
    the credentials' own (which hold ciphertext only), as one text."""
    shown = [
        (await client.get(f"/v1/executions/{execution_id}")).text,
        (await client.get(f"/v1/executions/{execution_id}/events/log")).text,
        (await client.get(f"/v1/executions/{execution_id}/checkpoints")).text,
    ]
    async with services_of(client).engine.connect() as conn:
        for table in metadata.sorted_tables:
            if table is not credentials:
                rows = (await conn.execute(select(table))).all()
                shown.append(repr(rows))
    return "\n".join(shown)


def span_texts(finished: Sequence[ReadableSpan]) -> str:
    texts: list[str] = []
    for span in finished:
        texts += [span.name, span.status.description or ""]
        for attributes in (span.attributes, *(event.attributes for event in span.events)):
            texts += [str(value) for value in (attributes or {}).values()]
    return "\n".join(texts)


async def test_a_stored_credential_reaches_the_server_and_nothing_else(
    pg_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tracing, app_spans = spans.recording()
    process_spans = spans.exporter()
    async with (
        net_server() as web,
        serving(pg_database_url, secret_keys=KEY, tracing=tracing) as client,
    ):
        stored = await client.post(
            "/v1/credentials", json={"name": "crm", "kind": "bearer", "value": CANARY}
        )
        assert stored.status_code == 201, stored.text
        document = {
            "name": "stored-credential",
            "nodes": [
                {"id": "start", "type": "start"},
                http("echo", f"{web.url}/echo/x"),
                http("refused", f"{web.url}/refuse", continue_on_error=True),
                {"id": "end", "type": "end", "config": {"outputs": {"echo": "{{ echo.output }}"}}},
            ],
            "edges": [
                {"from": "start", "to": "echo"},
                {"from": "start", "to": "refused"},
                {"from": "echo", "to": "end"},
            ],
        }
        execution = await run_to_the_end(client, document)
        seen = await everything_about(client, execution["id"])
        events = (await client.get(f"/v1/executions/{execution['id']}/events/log")).json()

    assert execution["status"] == "completed", execution
    sent = [request.headers.get("authorization") for request in web.requests]
    assert sent == [f"Bearer {CANARY}", f"Bearer {CANARY}"]
    echoed = execution["outputs"]["echo"]["json"]["headers"]
    assert echoed["authorization"] == "Bearer [secret]"  # the server's echo, scrubbed
    failed = [e for e in events["items"] if e["type"] == "node.failed"]
    assert [e["node_id"] for e in failed] == ["refused"]
    assert "[secret]" in json.dumps(failed[0]["data"])  # the 401's body quoted the header

    assert CANARY not in seen
    assert CANARY not in span_texts(
        [*app_spans.get_finished_spans(), *process_spans.get_finished_spans()]
    )
    logged = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert CANARY not in logged + caplog.text


async def test_a_missing_credential_fails_the_node_without_calling(
    pg_database_url: str,
) -> None:
    async with net_server() as web, serving(pg_database_url, secret_keys=KEY) as client:
        document = linear(
            {"id": "start", "type": "start"},
            {
                "id": "call",
                "type": "http",
                "config": {
                    "url": f"{web.url}/echo/x",
                    "auth": {"type": "credential", "name": "nope"},
                },
                "retry": {"max_retries": 2, "initial_delay_ms": 1},
            },
            name="missing-credential",
        )
        execution = await run_to_the_end(client, document)
        events = (await client.get(f"/v1/executions/{execution['id']}/events/log")).json()
    assert execution["status"] == "failed"
    assert execution["error"]["code"] == "node_config_invalid"
    assert "credential 'nope' not found in project 'default'" in execution["error"]["message"]
    assert web.requests == []
    assert not [e for e in events["items"] if e["type"] == "node.retry"]  # not retried


@pytest.mark.parametrize("node_type", ["llm", "agent"])
async def test_a_model_call_uses_a_stored_key_that_reaches_only_the_provider(
    pg_database_url: str, caplog: pytest.LogCaptureFixture, node_type: str
) -> None:
    caplog.set_level(logging.DEBUG)
    async with openai_server() as provider, serving(pg_database_url, secret_keys=KEY) as client:
        name = f"openai-{node_type}"
        stored = {"name": name, "kind": "secret", "value": CANARY}
        assert (await client.post("/v1/credentials", json=stored)).status_code == 201
        provider.script(Failure(500, f"overloaded, key {CANARY}"), Text("hi"))
        config = {
            "provider": "openai",
            "base_url": provider.url,
            "model": "gpt-4o-mini",
            "prompt": "go",
            "credential": name,
        }
        ask = {"id": "ask", "type": node_type, "config": config, "retry": {"max_retries": 1}}
        document = {"name": f"stored-key-{node_type}", "nodes": [ask]}
        execution = await run_to_the_end(client, document)
        seen = await everything_about(client, execution["id"])
    assert execution["status"] == "completed", execution
    assert [r.headers["authorization"] for r in provider.requests] == [f"Bearer {CANARY}"] * 2
    assert "node.retry" in seen  # the 500 that echoed the key was retried, scrubbed
    assert CANARY not in seen
    assert CANARY not in caplog.text
