"""``GET /metrics`` after scripted runs on Postgres, parsed as Prometheus does: runs by workflow
(capped), run and node durations, retries, queue waits, form answers, model tokens, cost and
time to first token, event lags, stream subscribers, takeovers, and OpenMetrics negotiation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, update
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from websockets.asyncio.client import connect

from app.api.metrics import MetricsMiddleware
from app.domain.events import Event, EventType
from app.observability.metrics import Metrics
from app.settings import Settings
from app.store import tables
from tests.api.helpers import (
    create_workflow,
    doubler,
    flaky_endpoint,
    linear,
    next_event,
    services_of,
    serving,
    start_run,
    wait_run,
)
from tests.e2e.live import serve, sse
from tests.providers import openai_server

Samples = dict[str, list[tuple[dict[str, str], float]]]


async def scrape(client: httpx.AsyncClient) -> Samples:
    """Every sample of a scrape, by sample name, once the runs that ended are recorded."""
    services = getattr(client._transport, "app", None)
    if services is not None:
        await services_of(client).finished_runs.settle()
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    found: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples ``name`` whose labels include ``labels`` (0 when none)."""
    return sum(v for found, v in samples.get(name, []) if labels.items() <= found.items())


def approval(name: str) -> dict[str, Any]:
    return linear(
        {"id": "start", "type": "start"},
        {"id": "vote", "type": "approval", "config": {"prompt": "Ship it?"}},
        {"id": "end", "type": "end"},
        name=name,
    )


async def approve(client: httpx.AsyncClient, execution_id: str) -> None:
    pending = await client.get("/v1/forms", params={"execution_id": execution_id})
    [form] = pending.json()["items"]
    answer = {"values": {"decision": "approved"}, "by": "ada"}
    response = await client.post(f"/v1/forms/{form['id']}/submit", json=answer)
    assert response.status_code == 200, response.text


async def test_runs_nodes_retries_and_queue_waits(client: httpx.AsyncClient) -> None:
    async with flaky_endpoint(2) as url:
        retry = {"max_retries": 3, "initial_delay_ms": 1, "max_delay_ms": 1}
        flaky = linear(
            {"id": "start", "type": "start"},
            {"id": "fetch", "type": "http", "config": {"url": url}, "retry": retry},
            name="flaky fetch",
        )
        runs = [
            await start_run(client, await create_workflow(client, doubler()), {"inputs": {"n": 1}}),
            await start_run(client, await create_workflow(client, flaky)),
        ]
        for run in runs:
            assert (await wait_run(client, run["id"]))["status"] == "completed"

    samples = await scrape(client)
    finished = "oxify_runs_finished_total"
    assert value(samples, finished, workflow="doubler", status="completed") == 1
    assert value(samples, finished, workflow="flaky fetch", status="completed") == 1
    assert value(samples, "oxify_run_duration_seconds_count") == 2
    assert value(samples, "oxify_run_duration_seconds_bucket", le="+Inf") == 2
    durations = "oxify_node_duration_seconds_count"
    assert value(samples, durations, node_type="http", outcome="failed") == 2
    assert value(samples, durations, node_type="http", outcome="completed") == 1
    assert value(samples, durations, node_type="transform", outcome="completed") == 1
    assert value(samples, "oxify_node_retries_total", node_type="http") == 2
    assert value(samples, "oxify_queue_wait_seconds_count") == 2
    assert value(samples, "oxify_fenced_writes_total") == 0
    assert not any("execution_id" in labels for found in samples.values() for labels, _ in found)


async def test_workflows_past_the_cap_count_as_other(pg_database_url: str) -> None:
    async with serving(pg_database_url, metrics_max_workflows=1) as client:
        for name in ("first", "second", "third"):
            document = linear({"id": "start", "type": "start"}, name=name)
            run = await start_run(client, await create_workflow(client, document))
            await wait_run(client, run["id"])
        samples = await scrape(client)

    finished = "oxify_runs_finished_total"
    assert value(samples, finished, workflow="first", status="completed") == 1
    assert value(samples, finished, workflow="other", status="completed") == 2
    assert {labels["workflow"] for labels, _ in samples[finished]} == {"first", "other"}


async def test_form_answers_are_timed_by_kind(client: httpx.AsyncClient) -> None:
    run = await start_run(client, await create_workflow(client, approval("vote")))
    assert (await wait_run(client, run["id"]))["status"] == "waiting"
    await approve(client, run["id"])
    assert (await wait_run(client, run["id"]))["status"] == "completed"

    samples = await scrape(client)
    assert value(samples, "oxify_form_response_seconds_count", kind="approval") == 1
    assert value(samples, "oxify_form_response_seconds_count", kind="form") == 0


async def test_model_calls_count_tokens_cost_and_time_to_first_token(
    client: httpx.AsyncClient,
) -> None:
    async with openai_server() as srv:
        llm = {"provider": "openai", "base_url": srv.url, "model": "gpt-4o-mini"}
        document = linear(
            {"id": "start", "type": "start"},
            {"id": "streamed", "type": "llm", "config": {**llm, "prompt": "hi", "stream": True}},
            {"id": "whole", "type": "llm", "config": {**llm, "prompt": "ho", "stream": False}},
            name="asks",
        )
        done = await wait_run(
            client, (await start_run(client, await create_workflow(client, document)))["id"]
        )
    assert done["status"] == "completed", done
    outputs = [n["output"] for n in done["nodes"] if n["node_id"] in ("streamed", "whole")]
    input_tokens = sum(o["usage"]["input_tokens"] for o in outputs)
    output_tokens = sum(o["usage"]["output_tokens"] for o in outputs)

    samples = await scrape(client)
    model = {"provider": "openai", "model": "gpt-4o-mini"}
    assert value(samples, "oxify_llm_tokens_total", type="input", **model) == input_tokens
    assert value(samples, "oxify_llm_tokens_total", type="output", **model) == output_tokens
    cost = value(samples, "oxify_llm_cost_dollars_total", **model)
    assert cost > 0 and abs(cost - sum(o["cost_usd"] for o in outputs)) < 1e-12
    assert value(samples, "oxify_llm_time_to_first_token_seconds_count", **model) == 1


async def test_openmetrics_scrapes_carry_trace_exemplars(client: httpx.AsyncClient) -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("client") as span:  # the ASGI app runs in this context
        assert (await client.get("/healthz")).status_code == 200
    trace_id = format(span.get_span_context().trace_id, "032x")

    response = await client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    [latency] = [
        family
        for family in openmetrics_families(response.text)
        if family.name == "oxify_http_request_duration_seconds"
    ]
    traced = [
        sample.exemplar.labels
        for sample in latency.samples
        if sample.labels.get("route") == "/healthz" and sample.exemplar is not None
    ]
    assert traced == [{"trace_id": trace_id}]
    plain = await client.get("/metrics", headers={"Accept": "text/plain"})
    assert plain.headers["content-type"].startswith("text/plain")
    assert "trace_id" not in plain.text


def streaming_app(*messages: Message) -> ASGIApp:
    """An app that routes to ``/stream`` and sends ``messages``."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        del receive
        scope["route"] = SimpleNamespace(path_format="/stream")
        for message in messages:
            await send(message)

    return app


async def test_streams_are_counted_but_not_timed() -> None:
    metrics = Metrics(version="test", max_workflows=1, max_models=1)
    event_stream = [(b"content-type", b"text/event-stream; charset=utf-8")]
    apps = {
        "http": streaming_app(
            {"type": "http.response.start", "status": 200, "headers": event_stream},
            {"type": "http.response.body", "body": b": ping\n\n"},
        ),
        "websocket": streaming_app(
            {"type": "websocket.accept"}, {"type": "websocket.close", "code": 1000}
        ),
    }
    for kind, app in apps.items():
        scope = {"type": kind, "method": "GET", "path": "/stream"}
        await MetricsMiddleware(app, metrics=metrics)(scope, _nothing, _drop)
    refused = streaming_app({"type": "websocket.close", "code": 1008})
    await MetricsMiddleware(refused, metrics=metrics)({"type": "websocket"}, _nothing, _drop)

    body, _type = await metrics.render(None)
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }
    route = (("method", "GET"), ("route", "/stream"))
    assert samples["oxify_http_requests_total", (*route, ("status", "200"))] == 1
    assert samples["oxify_http_requests_total", (*route, ("status", "101"))] == 1
    assert samples["oxify_http_requests_total", (*route, ("status", "403"))] == 1
    assert not any(name.startswith("oxify_http_request_duration") for name, _ in samples)


async def _nothing() -> Message:
    return {"type": "http.disconnect"}


async def _drop(message: Message) -> None:
    del message


async def test_stream_subscribers_are_counted_and_their_lag_observed(fresh_pg_url: str) -> None:
    async with (
        serve(Settings(database_url=fresh_pg_url)) as live,
        httpx.AsyncClient(base_url=live.url, timeout=15) as client,
    ):
        run = await start_run(client, await create_workflow(client, approval("followed")))
        assert (await wait_run(client, run["id"]))["status"] == "waiting"
        async with (
            sse(client, f"/v1/executions/{run['id']}/events") as events,
            connect(f"{live.ws_url}/v1/executions/{run['id']}/ws") as ws,
        ):
            await events.until(EventType.WORKFLOW_WAITING.value)  # replayed from the table
            while json.loads(await ws.recv())["type"] != EventType.WORKFLOW_WAITING.value:
                pass
            following = await scrape(client)
            await approve(client, run["id"])  # the rest is published live
            await events.until(EventType.WORKFLOW_COMPLETED.value)
            assert await events.rest() == []  # the server ended the stream
            frames = [json.loads(message) async for message in ws]  # until the server closes
            assert frames[-1]["type"] == EventType.WORKFLOW_COMPLETED.value
        after = await scrape(client)

    assert value(following, "oxify_stream_subscribers", kind="sse") == 1
    assert value(following, "oxify_stream_subscribers", kind="websocket") == 1
    assert value(after, "oxify_stream_subscribers") == 0
    lags = "oxify_event_publish_lag_seconds_count"  # the /wait above was a subscriber too
    assert value(after, lags) >= value(following, lags) + 2  # one batch at least, each stream
    ws_route = "/v1/executions/{execution_id}/ws"
    assert value(after, "oxify_http_requests_total", route=ws_route, status="101") == 1
    assert value(after, "oxify_http_request_duration_seconds_count", route=ws_route) == 0


async def until(events: AsyncIterator[Event], type_: EventType) -> None:
    async for event in events:
        if event.type is type_:
            return
    raise AssertionError(f"the run ended without a {type_.value} event")


async def test_another_replica_reads_what_it_is_notified_of(fresh_pg_url: str) -> None:
    async with serving(fresh_pg_url) as first, serving(fresh_pg_url) as second:
        run = await start_run(first, await create_workflow(first, approval("shared")))
        assert (await wait_run(first, run["id"]))["status"] == "waiting"
        # Both replicas follow the run: whichever does not drive it reads after a NOTIFY.
        followed = [services_of(r).bus.stream(run["id"]) for r in (first, second)]
        for events in followed:
            await until(events, EventType.WORKFLOW_WAITING)
        await approve(first, run["id"])
        for events in followed:
            await until(events, EventType.WORKFLOW_COMPLETED)
            await events.aclose()  # type: ignore[attr-defined]
        lagged = [await scrape(replica) for replica in (first, second)]
    assert sum(value(s, "oxify_event_notify_lag_seconds_count") for s in lagged) >= 1


async def test_a_run_whose_owner_stopped_renewing_is_taken_over(fresh_pg_url: str) -> None:
    long = linear(
        {"id": "start", "type": "start"},
        {"id": "nap", "type": "delay", "config": {"seconds": 60}},
        name="long",
    )
    async with serving(fresh_pg_url, poll_s=0.05) as client:
        run = await start_run(client, await create_workflow(client, long))
        await next_event(client, run["id"], EventType.NODE_STARTED, "nap")
        async with services_of(client).engine.begin() as conn:
            # As if another replica had driven it and died: nobody renews its lease now.
            await conn.execute(
                update(tables.executions)
                .where(tables.executions.c.id == run["id"])
                .values(owner="a-dead-replica", lease_expires_at=func.now())
            )
        await next_event(client, run["id"], EventType.WORKFLOW_RESUMED)
        await client.post(f"/v1/executions/{run['id']}/cancel")
        samples = await scrape(client)

    assert value(samples, "oxify_lease_takeovers_total", reason="expired") == 1
    assert value(samples, "oxify_lease_takeovers_total", reason="own") == 0
    # Undriven since its last renewal, a lease (10 s) before it expired.
    assert value(samples, "oxify_takeover_delay_seconds_count") == 1
    assert value(samples, "oxify_takeover_delay_seconds_bucket", le="5.0") == 0
