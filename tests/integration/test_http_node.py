"""The ``http`` node through the scheduler, with a real client against a real local server."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from app.domain.events import EventType
from app.domain.status import ExecutionStatus
from app.engine.run.control import RunControl
from app.nodes.net import exchange
from app.nodes.registry import core_registry
from app.nodes.resources import NodeResources, make_client
from tests.support import Harness, node, workflow


@dataclass
class ServerState:
    """What the server saw, and the events a test waits on."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    flaky_calls: int = 0
    hang_started: asyncio.Event = field(default_factory=asyncio.Event)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)


def make_app(state: ServerState) -> Starlette:
    async def record(request: Request) -> dict[str, Any]:
        seen = {
            "method": request.method,
            "path": request.url.path,
            "query": [list(pair) for pair in request.query_params.multi_items()],
            "headers": dict(request.headers),
            "body": (await request.body()).decode(),
        }
        state.requests.append(seen)
        return seen

    async def echo(request: Request) -> Response:
        return JSONResponse(await record(request))

    async def text(request: Request) -> Response:
        await record(request)
        return PlainTextResponse("hello, world")

    async def status(request: Request) -> Response:
        await record(request)
        code = int(request.path_params["code"])
        retry_after = request.query_params.get("retry_after")
        return PlainTextResponse(
            f"error {code}: " + "x" * 2000,
            status_code=code,
            headers=None if retry_after is None else {"Retry-After": retry_after},
        )

    async def flaky(request: Request) -> Response:
        await record(request)
        state.flaky_calls += 1
        if state.flaky_calls == 1:
            return PlainTextResponse("busy", status_code=503, headers={"Retry-After": "1"})
        return JSONResponse({"ok": True, "call": state.flaky_calls})

    async def hang(request: Request) -> Response:
        await record(request)
        state.hang_started.set()
        while (await request.receive())["type"] != "http.disconnect":
            pass
        state.disconnected.set()
        return Response(status_code=204)

    async def big(request: Request) -> Response:
        await record(request)
        return Response(b"x" * 5000, media_type="application/octet-stream")

    async def big_stream(request: Request) -> Response:
        await record(request)

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b"y" * 500

        return StreamingResponse(chunks(), media_type="text/plain")

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return Starlette(
        routes=[
            Route("/echo/{rest:path}", echo, methods=methods),
            Route("/text", text),
            Route("/status/{code:int}", status),
            Route("/flaky", flaky, methods=methods),
            Route("/hang", hang),
            Route("/big", big),
            Route("/big-stream", big_stream),
        ]
    )


class ReadyServer(uvicorn.Server):
    """A uvicorn server that says when it has started (instead of being polled)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


@dataclass
class LocalServer:
    url: str
    state: ServerState


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    state = ServerState()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        make_app(state),
        lifespan="off",
        ws="none",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    instance = ReadyServer(config)
    serving = asyncio.create_task(instance.serve(sockets=[sock]))
    ready = asyncio.create_task(instance.ready.wait())
    await asyncio.wait({serving, ready}, return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    assert instance.started, "the test server did not start"
    try:
        yield LocalServer(f"http://127.0.0.1:{port}", state)
    finally:
        instance.should_exit = True
        await serving
        sock.close()


@pytest.fixture
async def resources() -> AsyncIterator[NodeResources]:
    async with NodeResources() as shared:
        yield shared


@pytest.fixture
def harness(resources: NodeResources) -> Harness:
    return Harness(registry=core_registry(resources))


def call(retry: dict[str, Any] | None = None, **config: Any) -> dict[str, Any]:
    """The ``call`` http node; ``timeout_s`` stays in its config (``node`` would lift it)."""
    spec: dict[str, Any] = {"id": "call", "type": "http", "config": config}
    if retry is not None:
        spec["retry"] = retry
    return spec


async def test_get_with_templated_url_query_and_headers(
    harness: Harness, server: LocalServer
) -> None:
    doc = workflow(
        [
            call(
                url="{{ inputs.base }}/echo/items/{{ inputs.sku }}",
                query={
                    "q": "{{ inputs.q }}",
                    "page": "{{ inputs.page }}",
                    "tag": "{{ inputs.tags }}",
                }
                | {"dry": True, "skip": None},
                headers={
                    "Authorization": "Bearer {{ inputs.token }}",
                    "X-Page": "{{ inputs.page }}",
                },
            )
        ],
        [],
    )
    inputs = {"base": server.url, "sku": "A-1", "q": "red shoes", "page": 2, "tags": ["a", "b"]}
    outcome = await harness.run(doc, {**inputs, "token": "t0k3n"})
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    output = outcome.outputs
    assert set(output) == {"status", "headers", "json"}
    assert output["status"] == 200
    assert output["headers"]["content-type"] == "application/json"
    seen = output["json"]
    assert seen["method"] == "GET"
    assert seen["path"] == "/echo/items/A-1"
    assert seen["query"] == [
        ["q", "red shoes"],
        ["page", "2"],
        ["tag", "a"],
        ["tag", "b"],
        ["dry", "true"],
    ]
    assert seen["headers"]["authorization"] == "Bearer t0k3n"
    assert seen["headers"]["x-page"] == "2"
    assert "idempotency-key" not in seen["headers"]
    assert "cookie" not in seen["headers"]
    assert "authorization" not in output["headers"]


async def test_post_json_keeps_types(harness: Harness, server: LocalServer) -> None:
    body = {
        "n": "{{ inputs.n }}",
        "items": "{{ inputs.items }}",
        "nothing": None,
        "flag": True,
        "label": "n={{ inputs.n }}",
    }
    doc = workflow([call(method="POST", url=f"{server.url}/echo/orders", json=body)], [])
    outcome = await harness.run(doc, {"n": 3, "items": [{"sku": "a", "qty": 1.5}]})
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    seen = outcome.outputs["json"]
    assert seen["method"] == "POST"
    assert seen["headers"]["content-type"] == "application/json"
    assert json.loads(seen["body"]) == {
        "n": 3,
        "items": [{"sku": "a", "qty": 1.5}],
        "nothing": None,
        "flag": True,
        "label": "n=3",
    }


async def test_text_body_and_text_response(harness: Harness, server: LocalServer) -> None:
    doc = workflow(
        [
            call(method="PUT", url=f"{server.url}/echo/note", body="hi {{ inputs.who }}"),
            node("plain", "http", url=f"{server.url}/text"),
        ],
        [{"from": "call", "to": "plain"}],
    )
    outcome = await harness.run(doc, {"who": "ada"})
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert outcome.outputs == {
        "status": 200,
        "headers": outcome.outputs["headers"],
        "text": "hello, world",
    }
    assert outcome.outputs["headers"]["content-type"].startswith("text/plain")
    put = server.state.requests[0]
    assert put["method"] == "PUT"
    assert put["body"] == "hi ada"
    assert put["headers"]["content-type"] == "text/plain; charset=utf-8"


async def test_response_mode_text_keeps_json_unparsed(
    harness: Harness, server: LocalServer
) -> None:
    doc = workflow([call(url=f"{server.url}/echo/x", response="text")], [])
    outcome = await harness.run(doc)
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert json.loads(outcome.outputs["text"])["path"] == "/echo/x"


async def test_unexpected_status_fails_with_status_and_excerpt(
    harness: Harness, server: LocalServer
) -> None:
    doc = workflow(
        [
            call(
                url=f"http://user:pw@127.0.0.1:{server.url.rsplit(':', 1)[1]}/status/418",
                query={"api_key": "{{ inputs.secret }}"},
                headers={"Authorization": "Bearer {{ inputs.secret }}"},
            )
        ],
        [],
    )
    outcome = await harness.run(doc, {"secret": "s3cr3t"})
    assert outcome.status is ExecutionStatus.FAILED
    error = outcome.error or {}
    assert error["code"] == "http_status"
    assert error["message"] == (
        f"GET {server.url}/status/418 answered 418 I'm a Teapot (expected 200-299)"
    )
    assert error["details"]["status"] == 418
    excerpt = error["details"]["body_excerpt"]
    assert excerpt.startswith("error 418: xxx")
    assert len(excerpt) == exchange.EXCERPT_CHARS
    assert server.state.requests[0]["query"] == [["api_key", "s3cr3t"]]
    everything = json.dumps([e.data for e in harness.events()]) + json.dumps(outcome.error)
    assert "s3cr3t" not in everything
    assert "pw@" not in everything


async def test_expect_status_accepts_listed_codes(harness: Harness, server: LocalServer) -> None:
    doc = workflow([call(url=f"{server.url}/status/404", expect_status=[200, "4xx"])], [])
    outcome = await harness.run(doc)
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert outcome.outputs["status"] == 404
    assert outcome.outputs["text"].startswith("error 404")


async def test_503_is_retried_after_retry_after_seconds(
    harness: Harness, server: LocalServer
) -> None:
    retry = {"max_retries": 2, "initial_delay_ms": 10, "max_delay_ms": 50}
    doc = workflow([call(url=f"{server.url}/flaky", retry=retry)], [])
    outcome = await harness.run(doc)
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert outcome.outputs["json"] == {"ok": True, "call": 2}
    (retried,) = harness.of_type(EventType.NODE_RETRY)
    assert retried.data["error"]["details"]["status"] == 503
    assert retried.data["delay_ms"] == 1000.0
    assert harness.clock.sleeps == [1.0]


async def test_retry_after_as_http_date(harness: Harness, server: LocalServer) -> None:
    # FakeClock's now is 2026-01-01T00:00:00Z: the server asks for 5 s.
    when = "Thu, 01 Jan 2026 00:00:05 GMT"
    retry = {"max_retries": 1, "initial_delay_ms": 10, "max_delay_ms": 50}
    doc = workflow(
        [call(url=f"{server.url}/status/429", query={"retry_after": when}, retry=retry)], []
    )
    outcome = await harness.run(doc)
    assert outcome.status is ExecutionStatus.FAILED
    assert (outcome.error or {})["details"]["status"] == 429
    assert harness.clock.sleeps == [5.0]
    assert len(server.state.requests) == 2


async def test_404_is_not_retried(harness: Harness, server: LocalServer) -> None:
    doc = workflow([call(url=f"{server.url}/status/404", retry={"max_retries": 3})], [])
    outcome = await harness.run(doc)
    assert outcome.status is ExecutionStatus.FAILED
    assert (outcome.error or {})["details"]["status"] == 404
    assert harness.of_type(EventType.NODE_RETRY) == []
    assert len(server.state.requests) == 1


async def test_idempotency_key_is_the_same_on_every_attempt(
    harness: Harness, server: LocalServer
) -> None:
    retry = {"max_retries": 1, "initial_delay_ms": 1}
    doc = workflow(
        [
            call(
                method="POST", url=f"{server.url}/flaky", json={}, idempotency_key=True, retry=retry
            )
        ],
        [],
    )
    outcome = await harness.run(doc, execution_id="run-1")
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    keys = [r["headers"].get("idempotency-key") for r in server.state.requests]
    assert keys == ["run-1:call", "run-1:call"]


async def test_cancel_aborts_the_request_in_flight(harness: Harness, server: LocalServer) -> None:
    control = RunControl()
    doc = workflow([call(url=f"{server.url}/hang", timeout_s=60)], [])
    running = asyncio.create_task(harness.run(doc, control=control))
    await asyncio.wait_for(server.state.hang_started.wait(), 10)
    control.cancel()
    outcome = await asyncio.wait_for(running, 10)
    assert outcome.status is ExecutionStatus.CANCELLED
    assert [e.node_id for e in harness.of_type(EventType.NODE_CANCELLED)] == ["call"]
    await asyncio.wait_for(server.state.disconnected.wait(), 10)


async def test_slow_server_times_out_and_is_retried(harness: Harness, server: LocalServer) -> None:
    retry = {"max_retries": 1, "initial_delay_ms": 1}
    doc = workflow([call(url=f"{server.url}/hang", timeout_s="{{ inputs.t }}", retry=retry)], [])
    outcome = await harness.run(doc, {"t": 0.2})
    assert outcome.status is ExecutionStatus.FAILED
    error = outcome.error or {}
    assert error["code"] == "http_transport"
    assert error["message"].startswith(f"GET {server.url}/hang timed out after 0.2 s")
    assert len(harness.of_type(EventType.NODE_RETRY)) == 1
    assert len(server.state.requests) == 2


@pytest.mark.parametrize("path", ["/big", "/big-stream"])
async def test_response_larger_than_max_response_bytes_fails(
    harness: Harness, server: LocalServer, path: str
) -> None:
    retry = {"max_retries": 2}
    doc = workflow([call(url=server.url + path, max_response_bytes=1000, retry=retry)], [])
    outcome = await harness.run(doc)
    assert outcome.status is ExecutionStatus.FAILED
    error = outcome.error or {}
    assert error["code"] == "http_response_invalid"
    assert "exceeds max_response_bytes (1000 bytes)" in error["message"]
    assert harness.of_type(EventType.NODE_RETRY) == []


async def test_unreachable_port_is_a_retryable_network_error(harness: Harness) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    retry = {"max_retries": 1, "initial_delay_ms": 1}
    doc = workflow([call(url=f"http://127.0.0.1:{port}/x?token=s3cr3t", retry=retry)], [])
    outcome = await harness.run(doc)
    assert outcome.status is ExecutionStatus.FAILED
    error = outcome.error or {}
    assert error["code"] == "http_transport"
    assert error["message"].startswith(f"GET http://127.0.0.1:{port}/x: could not connect")
    assert "s3cr3t" not in error["message"]
    assert len(harness.of_type(EventType.NODE_RETRY)) == 1


async def test_rendered_url_must_be_http(harness: Harness) -> None:
    doc = workflow([call(url="{{ inputs.url }}", retry={"max_retries": 3})], [])
    outcome = await harness.run(doc, {"url": "file:///etc/passwd"})
    assert outcome.status is ExecutionStatus.FAILED
    error = outcome.error or {}
    assert error["code"] == "node_config_invalid"
    assert "http:// or https://" in error["message"]
    assert harness.of_type(EventType.NODE_RETRY) == []


async def test_bad_header_value_is_reported_without_values(harness: Harness) -> None:
    doc = workflow([call(url="http://127.0.0.1:9/", headers={"X-Token": "{{ inputs.token }}"})], [])
    outcome = await harness.run(doc, {"token": {"secret": "s3cr3t"}})
    assert outcome.status is ExecutionStatus.FAILED
    error = outcome.error or {}
    assert error["code"] == "node_config_invalid"
    assert "s3cr3t" not in json.dumps(error)


async def test_every_call_goes_through_the_one_client_the_resources_hold(
    server: LocalServer,
) -> None:
    sent: list[httpx.Request] = []

    async def count(request: httpx.Request) -> None:
        sent.append(request)

    shared = make_client(event_hooks={"request": [count]})
    async with NodeResources(http=shared) as resources:
        harness = Harness(registry=core_registry(resources))
        doc = workflow([call(url=f"{server.url}/text")], [])
        for execution_id in ("run-1", "run-2"):
            outcome = await harness.run(doc, execution_id=execution_id)
            assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
            assert outcome.outputs["text"] == "hello, world"
        assert len(sent) == 2
    assert shared.is_closed
