"""One run, one trace, through the API on Postgres: the submitting request's ``traceparent``
becomes the run's trace, every segment (start, and the resume after a form's answer) parents on
it and links to the one before, and ``GET /v1/executions/{id}`` shows it."""

from __future__ import annotations

import httpx
from opentelemetry.trace import SpanKind

from app.observability import semconv
from tests.api.helpers import create_workflow, services_of, serving, wait_run
from tests.api.test_forms import finished, submit, waiting_forms, with_form
from tests.spans import named, one, parent_id, recording, span_id, trace_id

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
TEMPLATE = "http://jaeger:16686/trace/{trace_id}"


async def start(
    client: httpx.AsyncClient, workflow_id: str, headers: dict[str, str] | None = None
) -> dict[str, object]:
    response = await client.post(
        f"/v1/workflows/{workflow_id}/executions", json={}, headers=headers or {}
    )
    assert response.status_code == 202, response.text
    execution: dict[str, object] = response.json()
    return execution


async def test_a_run_with_a_form_is_one_trace_continuing_the_clients(fresh_pg_url: str) -> None:
    tracing, exporter = recording()
    async with serving(fresh_pg_url, tracing=tracing, trace_url_template=TEMPLATE) as client:
        workflow_id = await create_workflow(client, with_form())
        run = await start(client, workflow_id, {"traceparent": TRACEPARENT})
        run_id = str(run["id"])
        assert run["trace_id"] == CLIENT_TRACE
        [form] = await waiting_forms(client, run_id)
        answer = await submit(client, form["id"], {"email": "ada@example.com", "seats": 3})
        assert answer.status_code == 200, answer.text
        done = await finished(client, run_id)
        await services_of(client).runner.wait_stopped(run_id)
        events = await client.get(f"/v1/executions/{run_id}/events")  # SSE, ends at the end
        assert events.status_code == 200

    assert done["status"] == "completed", done
    assert done["trace_id"] == CLIENT_TRACE
    assert done["trace_url"] == f"http://jaeger:16686/trace/{CLIENT_TRACE}"
    spans = exporter.get_finished_spans()
    post = one(spans, "POST /v1/workflows/{workflow_id}/executions")
    assert post.kind is SpanKind.SERVER
    assert f"{trace_id(post):032x}" == CLIENT_TRACE
    assert parent_id(post) == int(CLIENT_SPAN, 16)
    first, second = named(spans, "invoke_workflow form")
    for segment in (first, second):
        assert trace_id(segment) == trace_id(post)
        assert parent_id(segment) == span_id(post)
        assert (segment.attributes or {})[semconv.EXECUTION_ID] == run_id
    assert (first.attributes or {})[semconv.SEGMENT_REASON] == "start"
    assert (first.attributes or {})[semconv.EXECUTION_STATUS] == "waiting"
    assert (second.attributes or {})[semconv.SEGMENT_REASON] == "form_answered"
    assert (second.attributes or {})[semconv.EXECUTION_STATUS] == "completed"
    assert [link.context.span_id for link in second.links] == [span_id(first)]
    ask_nodes = named(spans, "node ask")
    assert [parent_id(n) for n in ask_nodes] == [span_id(first), span_id(second)]
    assert parent_id(one(spans, "node end")) == span_id(second)
    # Request spans only: the event stream's frames are not spans of their own.
    assert not [s for s in spans if s.name.endswith((" http send", " http receive"))]


async def test_with_tracing_off_a_clients_trace_is_kept_and_none_is_made_up(
    fresh_pg_url: str,
) -> None:
    async with serving(fresh_pg_url, trace_url_template=TEMPLATE) as client:
        workflow_id = await create_workflow(client, with_form())
        traced = await start(client, workflow_id, {"traceparent": TRACEPARENT})
        untraced = await start(client, workflow_id)
        malformed = await start(client, workflow_id, {"traceparent": "00-nonsense"})
        for run in (traced, untraced, malformed):
            await wait_run(client, str(run["id"]))
        shown = (await client.get(f"/v1/executions/{traced['id']}")).json()
        plain = (await client.get(f"/v1/executions/{untraced['id']}")).json()
    assert traced["trace_id"] == shown["trace_id"] == CLIENT_TRACE
    assert shown["trace_url"] == f"http://jaeger:16686/trace/{CLIENT_TRACE}"
    assert plain["trace_id"] is None and plain["trace_url"] is None
    assert malformed["trace_id"] is None


async def test_a_request_span_is_named_by_route_and_its_latency_carries_its_trace(
    fresh_pg_url: str,
) -> None:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    tracing, exporter = recording()
    async with serving(fresh_pg_url, tracing=tracing) as client:
        missing = await client.get("/v1/executions/no-such-run")
        assert missing.status_code == 404
        scrape = await client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
    [server] = named(exporter.get_finished_spans(), "GET /v1/executions/{execution_id}")
    assert server.kind is SpanKind.SERVER
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/v1/executions/{execution_id}"
    [latency] = [
        family
        for family in text_string_to_metric_families(scrape.text)
        if family.name == "oxify_http_request_duration_seconds"
    ]
    traced = {
        sample.exemplar.labels["trace_id"]
        for sample in latency.samples
        if sample.labels.get("route") == "/v1/executions/{execution_id}" and sample.exemplar
    }
    assert traced == {format(trace_id(server), "032x")}
