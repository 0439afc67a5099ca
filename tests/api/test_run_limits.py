"""Run limits (``config.limits``) crossed on real runs: the app on Postgres, the real ``http``
node against a local server, and a plug-in node type that reports tokens."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.api.helpers import create_workflow, serving, start_run, wait_run
from tests.e2e.live import start_uvicorn
from tests.plugin_dists import write_plugin

TOKENS = """
from app.nodes.plugin import NodeConfig, NodeDefinition, NodeOutput, NodeType


class SpendConfig(NodeConfig):
    tokens: int


class Spend:
    async def execute(self, ctx):
        ctx.spend(api_calls=1)
        ctx.spend(tokens=ctx.config.tokens)
        return NodeOutput(ctx.config.tokens)


def definitions(resources):
    return NodeDefinition(NodeType("test.tokens", SpendConfig, "Reports tokens."), Spend())
"""


@pytest.fixture
async def busy_server() -> AsyncIterator[tuple[str, list[str]]]:
    """A local server that always answers 503 (retryable), and the paths it was asked for."""
    seen: list[str] = []

    async def busy(request: Request) -> Response:
        seen.append(request.url.path)
        return PlainTextResponse("busy", status_code=503)

    server, serving_task, sock = await start_uvicorn(
        Starlette(routes=[Route("/busy", busy)]), lifespan="off"
    )
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/busy", seen
    finally:
        server.should_exit = True
        await serving_task
        sock.close()


@pytest.fixture
async def client(
    pg_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.syspath_prepend(str(tmp_path))
    write_plugin(tmp_path, "oxify-tokens", {"tokens": "definitions"}, source=TOKENS)
    async with serving(pg_database_url, shutdown_grace_s=2.0) as client:
        yield client


async def run(
    client: httpx.AsyncClient, nodes: list[dict[str, Any]], limits: dict[str, int]
) -> dict[str, Any]:
    edges = [{"from": a["id"], "to": b["id"]} for a, b in itertools.pairwise(nodes)]
    workflow_id = await create_workflow(client, {"name": "limits", "nodes": nodes, "edges": edges})
    execution = await start_run(client, workflow_id, {"config": {"limits": limits}})
    done = await wait_run(client, execution["id"])
    assert done["status"] == "failed", done
    events = (await client.get(f"/v1/executions/{execution['id']}/events/log")).json()["items"]
    assert events[-1]["type"] == "workflow.failed"
    assert events[-1]["data"]["error"] == done["error"]
    return done


async def test_retries_of_an_http_call_count_against_max_api_calls(
    client: httpx.AsyncClient, busy_server: tuple[str, list[str]]
) -> None:
    url, seen = busy_server
    retry = {"max_retries": 10, "initial_delay_ms": 1, "max_delay_ms": 1}
    call = {"id": "call", "type": "http", "config": {"url": url}, "retry": retry}
    done = await run(client, [call], {"max_api_calls": 3})
    error = done["error"]
    assert error["code"] == "run_limit_exceeded"
    assert error["details"]["limit"] == "max_api_calls"
    assert error["details"]["used"]["api_calls"] == 4
    assert "limits.max_api_calls (3)" in error["message"]
    assert len(seen) == 3  # the fourth call was refused before it was made


async def test_tokens_reported_by_nodes_count_against_max_tokens(
    client: httpx.AsyncClient,
) -> None:
    nodes = [{"id": f"t{i}", "type": "test.tokens", "config": {"tokens": 400}} for i in range(3)]
    done = await run(client, nodes, {"max_tokens": 1000})
    error = done["error"]
    assert (error["code"], error["node_id"]) == ("run_limit_exceeded", "t2")
    assert error["details"]["used"]["tokens"] == 1200
    states = {n["node_id"]: n["status"] for n in done["nodes"]}
    assert states == {"t0": "completed", "t1": "completed", "t2": "failed"}


async def test_loop_iterations_count_against_max_nodes(client: httpx.AsyncClient) -> None:
    body = {"nodes": [{"id": "x", "type": "transform", "config": {"value": "{{ item }}"}}]}
    loop = {"id": "loop", "type": "foreach", "config": {"items": [1, 2, 3, 4, 5], "body": body}}
    done = await run(client, [loop], {"max_nodes": 4})
    error = done["error"]
    assert error["code"] == "run_limit_exceeded"
    assert error["details"] == {
        "limit": "max_nodes",
        "max": 4,
        "used": {"nodes": 5, "api_calls": 0, "tokens": 0, "cost_usd": 0.0, "unpriced_calls": 0},
    }
