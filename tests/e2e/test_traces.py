"""One run, one trace, across two ``oxify serve`` replicas and a kill -9: the real OTLP/HTTP
exporter posts to a local receiver, and the run's segments (its start, the resume after its
form's answer, the takeover after its owner died) are all in the trace the client started,
with the right parents and links."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.observability import semconv
from tests.api.helpers import flaky_endpoint
from tests.e2e.cluster import client, cluster, create_workflow, settled
from tests.e2e.live import start_uvicorn
from tests.e2e.otlp import ERROR_STATUS, SERVER_KIND, Link, ReceivedSpan, otlp_receiver
from tests.providers import ProviderServer, Text, openai_server

SETTLE_S = 60.0  # seconds a run or a takeover may take here (they take a few)
CLIENT_TRACE = "5b8aa5a2d2c872e8321cf37308d69df2"
CLIENT_SPAN = "051581bf3cb55c13"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
TEMPLATE = "http://jaeger:16686/trace/{trace_id}"
SEGMENT = "invoke_workflow traced"
INSTANCE = "service.instance.id"
# Spans leave a replica within 50 ms of ending, so a test can wait for them before a kill.
OTEL_ENV = {"OTEL_BSP_SCHEDULE_DELAY": "50"}


class Gate:
    """``/hold`` answers once released; ``waiting`` is set when a request arrived."""

    def __init__(self) -> None:
        self.waiting = asyncio.Event()
        self.release = asyncio.Event()

    async def hold(self, request: Request) -> Response:
        del request
        self.waiting.set()
        await self.release.wait()
        return JSONResponse({"held": True})


@asynccontextmanager
async def gate_server() -> AsyncIterator[tuple[Gate, str]]:
    gate = Gate()
    server, serving, sock = await start_uvicorn(
        Starlette(routes=[Route("/hold", gate.hold)]), lifespan="off"
    )
    try:
        yield gate, f"http://127.0.0.1:{sock.getsockname()[1]}/hold"
    finally:
        gate.release.set()
        server.should_exit = True
        await serving
        sock.close()


def traced_workflow(flaky_url: str, model: ProviderServer, hold_url: str) -> dict[str, Any]:
    """start → fetch (fails once, retried) → draft (a model call) → ask (a form) → hold (held
    until released) → end."""
    retry = {"max_retries": 2, "initial_delay_ms": 50, "jitter": 0}
    llm = {"provider": "openai", "base_url": model.url, "model": "m1", "prompt": "draft it"}
    nodes = [
        {"id": "start", "type": "start"},
        {"id": "fetch", "type": "http", "config": {"url": flaky_url}, "retry": retry},
        {"id": "draft", "type": "llm", "config": llm},
        {
            "id": "ask",
            "type": "form",
            "config": {
                "prompt": "Go on?",
                "fields": {"type": "object", "properties": {"go": {"type": "boolean"}}},
            },
        },
        {"id": "hold", "type": "http", "config": {"url": hold_url, "timeout_s": 60}},
        {"id": "end", "type": "end"},
    ]
    order = [n["id"] for n in nodes]
    edges = [{"from": a, "to": b} for a, b in itertools.pairwise(order)]
    return {"name": "traced", "nodes": nodes, "edges": edges}


def segments(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return [s for s in spans if s.name == SEGMENT and s.trace_id == CLIENT_TRACE]


def reason(span: ReceivedSpan) -> str:
    found: str = span.attributes[semconv.SEGMENT_REASON]
    return found


def cut_off(spans: list[ReceivedSpan], owner_id: str) -> set[str]:
    """Spans of ``owner_id``'s nodes whose segment was never exported: it was still running."""
    ended = {s.span_id for s in segments(spans)}
    return {
        s.parent_id
        for s in spans
        if s.name.startswith("node ")
        and s.resource[INSTANCE] == owner_id
        and s.parent_id not in ended
    }


def named(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.name == name and s.trace_id == CLIENT_TRACE]


def children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    return [s for s in spans if s.parent_id == parent.span_id]


async def test_a_run_is_one_trace_across_a_retry_a_form_and_a_kill_9_takeover(
    fresh_pg_url: str,
) -> None:
    async with (
        flaky_endpoint(failures=1) as flaky_url,
        gate_server() as (gate, hold_url),
        openai_server() as model,
        otlp_receiver() as receiver,
        cluster(
            fresh_pg_url,
            size=2,
            env={**OTEL_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url},
            trace_url_template=TEMPLATE,
            lease_s="3",  # a takeover within ~3 s of the kill; fewer spurious ones under load
        ) as replicas,
    ):
        model.script(Text("a draft"))
        entry = replicas.replicas[0]
        workflow_id = await create_workflow(entry, traced_workflow(flaky_url, model, hold_url))
        async with client(entry) as http:
            started = await http.post(
                f"/v1/workflows/{workflow_id}/executions",
                json={},
                headers={"traceparent": TRACEPARENT},
            )
            assert started.status_code == 202, started.text
            run_id = started.json()["id"]
            assert started.json()["trace_id"] == CLIENT_TRACE
            async with asyncio.timeout(SETTLE_S):
                assert (await settled(entry, run_id))["status"] == "waiting"
            forms = await http.get("/v1/forms", params={"execution_id": run_id})
            [form] = forms.json()["items"]
            await receiver.until(lambda spans: any(reason(s) == "start" for s in segments(spans)))
            answered = await http.post(f"/v1/forms/{form['id']}/submit", json={"values": {}})
            assert answered.status_code == 200, answered.text
            async with asyncio.timeout(SETTLE_S):
                await gate.waiting.wait()  # the resumed run holds in `hold`
            owner_id = (await http.get(f"/v1/executions/{run_id}")).json()["owner"]
        # The resumed segment's finished nodes were exported; the segment itself never ends.
        await receiver.until(lambda spans: bool(cut_off(spans, owner_id)))
        owner = replicas.replica(owner_id)
        await owner.kill()
        gate.release.set()
        survivor = replicas.other_than(owner)
        async with asyncio.timeout(SETTLE_S):
            done = await settled(survivor, run_id)
        # The segment that took the run over ended (its run completed).
        completed = {semconv.EXECUTION_STATUS: "completed"}
        spans = await receiver.until(
            lambda spans: any(completed.items() <= s.attributes.items() for s in segments(spans))
        )

    assert done["status"] == "completed", done
    assert done["trace_id"] == CLIENT_TRACE
    assert done["trace_url"] == f"http://jaeger:16686/trace/{CLIENT_TRACE}"
    mine = [s for s in spans if s.trace_id == CLIENT_TRACE]
    assert {s.resource[INSTANCE] for s in mine} == {"r0", "r1"}

    # The request that submitted the run continues the client's trace; every segment parents
    # on it, whichever replica drove it. (A loaded machine may add takeovers of its own: the
    # checks below hold whatever their number.)
    [post] = named(spans, "POST /v1/workflows/{workflow_id}/executions")
    assert post.kind == SERVER_KIND and post.parent_id == CLIENT_SPAN
    found = segments(spans)
    for segment in found:
        assert segment.parent_id == post.span_id
        assert segment.attributes[semconv.GEN_AI_OPERATION_NAME] == "invoke_workflow"
        assert segment.attributes[semconv.GEN_AI_WORKFLOW_NAME] == "traced"
        assert segment.attributes[semconv.EXECUTION_ID] == run_id
    [start] = [s for s in found if reason(s) == "start"]
    assert not start.links
    assert start.attributes[semconv.EXECUTION_STATUS] == "waiting"

    # The segment cut short by the kill is the one span missing from the trace: its nodes'
    # parent, and what the takeover links to. Each later segment links to the one before.
    [killed] = cut_off(spans, owner_id)
    ids = {s.span_id for s in mine} | {CLIENT_SPAN}
    assert {s.parent_id for s in mine if s.parent_id not in ids} == {killed}
    [takeover] = [s for s in found if s.links == [Link(CLIENT_TRACE, killed)]]
    assert reason(takeover) == "takeover"
    assert takeover.attributes[semconv.EXECUTION_STATUS] == "completed"
    assert takeover.resource[INSTANCE] == survivor.env["OXIFY_REPLICA_ID"] != owner_id
    assert takeover.resource["service.name"] == "oxify"
    for segment in found:
        if segment is not start:
            [link] = segment.links
            assert link.trace_id == CLIENT_TRACE
            assert link.span_id in {s.span_id for s in found} | {killed}
    asks = named(spans, "node ask")
    assert {a.parent_id for a in asks} >= {start.span_id, killed}

    # The retry: one node span, two attempts under it, the first failed, a retry event.
    [fetch] = [s for s in named(spans, "node fetch") if s.parent_id == start.span_id]
    attempts = sorted(children(spans, fetch), key=lambda s: s.attributes[semconv.NODE_ATTEMPT])
    assert [a.name for a in attempts] == ["attempt 1", "attempt 2"]
    assert attempts[0].status_code == ERROR_STATUS
    assert attempts[0].attributes[semconv.ERROR_TYPE]
    assert attempts[0].attributes[semconv.NODE_TYPE] == "http"
    [(event, attributes)] = fetch.events
    assert event == semconv.RETRY_SCHEDULED
    assert attributes[semconv.NODE_ATTEMPT] == 1 and attributes[semconv.RETRY_DELAY_S] > 0

    # The model call runs inside its attempt's span (where the model client's spans go).
    [draft] = [s for s in named(spans, "node draft") if s.parent_id == start.span_id]
    assert [a.name for a in children(spans, draft)] == ["attempt 1"]
    assert model.counts == {"/v1/chat/completions": 1}

    # The node cut off by the kill ran again after the takeover, as its next attempt.
    [hold] = [s for s in named(spans, "node hold") if s.parent_id == takeover.span_id]
    [again] = children(spans, hold)
    assert again.attributes[semconv.NODE_ATTEMPT] >= 2
    checkpoints = named(spans, semconv.SPAN_CHECKPOINT)
    assert {c.parent_id for c in checkpoints} >= {start.span_id, takeover.span_id}
