"""The HTTP client spans of the shared client (the ``http`` node here) against a local server: the
``traceparent`` the server receives, a URL without its secrets, and failures by status or by
refusal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from app.domain.status import ExecutionStatus
from app.nodes.registry import core_registry
from app.nodes.resources import NodeResources
from app.settings import Settings
from tests.integration.net_server import NetServer, net_server
from tests.spans import SpanTrace, traceparent
from tests.support import Harness, workflow

KEY_CANARY = "query-key-canary-b7c2"


@pytest.fixture
async def web() -> AsyncIterator[NetServer]:
    async with net_server() as served:
        yield served


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with NodeResources(settings=Settings()) as resources:
        yield Harness(registry=core_registry(resources))


def call(**config: Any) -> dict[str, Any]:
    return {"id": "call", "type": "http", "config": config}


async def test_a_request_is_a_client_span_the_server_hears_of(
    harness: Harness, web: NetServer, traced: SpanTrace
) -> None:
    host = web.url.removeprefix("http://")
    spec = call(
        url=f"http://user:pw@{host}/echo/x?page=2",
        auth={"type": "api_key", "in": "query", "name": "key", "value": "{{ inputs.key }}"},
    )
    with traced.root() as root:
        outcome = await harness.run(workflow([spec], []), {"key": KEY_CANARY})
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    (http,) = traced.children(root)
    assert http.name == "GET" and http.kind is SpanKind.CLIENT
    assert dict(http.attributes or {}) == {
        "http.request.method": "GET",
        "url.full": f"{web.url}/echo/x",  # no userinfo, no query: they may hold secrets
        "server.address": "127.0.0.1",
        "server.port": web.port,
        "http.response.status_code": 200,
    }
    (seen,) = web.requests
    assert ["key", KEY_CANARY] in [list(pair) for pair in seen.query]
    assert seen.headers["traceparent"] == traceparent(http)
    assert not any(KEY_CANARY in text for text in traced.values())


async def test_an_error_status_marks_the_span(
    harness: Harness, web: NetServer, traced: SpanTrace
) -> None:
    with traced.root() as root:
        await harness.run(workflow([call(url=f"{web.url}/status/503")], []))
    (http,) = traced.children(root)
    assert http.status.status_code is StatusCode.ERROR
    assert (http.attributes or {})["error.type"] == "503"


async def test_a_refused_connection_has_the_refusal_as_error_type(
    harness: Harness, traced: SpanTrace
) -> None:
    with traced.root() as root:
        outcome = await harness.run(workflow([call(url="http://169.254.169.254/latest")], []))
    assert (outcome.error or {})["code"] == "egress_refused"
    (http,) = traced.children(root)
    assert (http.attributes or {})["error.type"] == "egress_refused"
    assert http.status.status_code is StatusCode.ERROR
