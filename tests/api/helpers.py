"""Helpers of the API tests: a started app over ASGI, problem checks, workflow documents."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from app.domain.events import Event, EventType
from app.main import create_app
from app.observability.tracing import Tracing
from app.services.container import Services
from app.settings import Settings
from tests.e2e.live import start_uvicorn

BASE_URL = "http://oxify.test"
PROBLEM_JSON = "application/problem+json"


@asynccontextmanager
async def serving(
    database_url: str, *, tracing: Tracing | None = None, **settings: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a started app (lifespan entered) on ``database_url``; ``tracing``: the
    app's own tracer provider (tests/spans.py), else as the settings say (off)."""
    app = create_app(Settings(database_url=database_url, **settings), tracing=tracing)
    async with app.router.lifespan_context(app), client_of(app) as client:
        yield client


def client_of(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)


def services_of(client: httpx.AsyncClient) -> Services:
    transport: Any = client._transport
    services: Services = transport.app.state.services
    return services


async def next_event(
    client: httpx.AsyncClient,
    execution_id: str,
    type_: EventType,
    node_id: str | None = None,
) -> Event:
    """The first event of ``type_`` (for ``node_id``) of a run, waiting for it on the bus."""
    stream = services_of(client).bus.stream(execution_id)
    try:
        async for event in stream:
            if event.type is type_ and (node_id is None or event.node_id == node_id):
                return event
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    raise AssertionError(f"the run ended without a {type_.value} event")


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"https://oxify.dev/problems/{code}"
    assert body["title"]
    return body


def pointers(body: dict[str, Any]) -> set[str]:
    return {error["pointer"] for error in body["errors"] if "pointer" in error}


# -- documents --------------------------------------------------------------------------------


def linear(*nodes: dict[str, Any], name: str = "linear", **extra: Any) -> dict[str, Any]:
    """A workflow of ``nodes`` chained in order."""
    edges = [{"from": a["id"], "to": b["id"]} for a, b in itertools.pairwise(nodes)]
    return {"name": name, "nodes": list(nodes), "edges": edges, **extra}


def doubler() -> dict[str, Any]:
    """start → double (inputs.n * 2) → end {result}; ``n`` is a required integer input."""
    return linear(
        {"id": "start", "type": "start"},
        {"id": "double", "type": "transform", "config": {"value": "{{ inputs.n * 2 }}"}},
        {"id": "end", "type": "end", "config": {"outputs": {"result": "{{ double.output }}"}}},
        name="doubler",
        inputs={
            "type": "object",
            "properties": {"n": {"type": "integer"}},
            "required": ["n"],
        },
    )


def delays(count: int, seconds: float) -> dict[str, Any]:
    """start → d1 → … → d<count> (each sleeping ``seconds``) → end {slept}."""
    steps = [
        {"id": f"d{i}", "type": "delay", "config": {"seconds": seconds}}
        for i in range(1, count + 1)
    ]
    return linear(
        {"id": "start", "type": "start"},
        *steps,
        {
            "id": "end",
            "type": "end",
            "config": {"outputs": {"slept": f"{{{{ d{count}.output.slept }}}}"}},
        },
        name="delays",
    )


async def create_workflow(client: httpx.AsyncClient, document: dict[str, Any]) -> str:
    response = await client.post("/v1/workflows", json=document)
    assert response.status_code == 201, response.text
    workflow_id: str = response.json()["id"]
    return workflow_id


async def start_run(
    client: httpx.AsyncClient, workflow_id: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = await client.post(f"/v1/workflows/{workflow_id}/executions", json=body or {})
    assert response.status_code == 202, response.text
    execution: dict[str, Any] = response.json()
    return execution


async def wait_run(client: httpx.AsyncClient, execution_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/executions/{execution_id}/wait", params={"timeout_s": 30})
    assert response.status_code == 200, response.text
    execution: dict[str, Any] = response.json()
    return execution


@asynccontextmanager
async def flaky_endpoint(failures: int) -> AsyncIterator[str]:
    """The URL of a local server whose ``/flaky`` answers 503 (retryable) ``failures`` times,
    then 200 with ``{"calls": n}``."""
    calls = 0

    async def flaky(request: Request) -> Response:
        del request
        nonlocal calls
        calls += 1
        if calls <= failures:
            return PlainTextResponse("busy", status_code=503)
        return JSONResponse({"calls": calls})

    server, serving_task, sock = await start_uvicorn(
        Starlette(routes=[Route("/flaky", flaky)]), lifespan="off"
    )
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/flaky"
    finally:
        server.should_exit = True
        await serving_task
        sock.close()
