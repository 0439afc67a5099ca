"""The metrics' recording rules without a server: node attempts through the engine's observer
port, capped labels, claims (queue waits and takeovers), model calls, and OpenMetrics with
``trace_id`` exemplars."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import generate_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from app.domain.status import ExecutionStatus
from app.observability import exemplars
from app.observability.labels import OTHER, CappedValues
from app.observability.metrics import Metrics
from app.store.claims import ClaimedRun
from tests.support import Harness, edge, node, workflow

CLAIMED_AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def metrics(**caps: int) -> Metrics:
    return Metrics(
        version="test",
        max_workflows=caps.get("max_workflows", 50),
        max_models=caps.get("max_models", 50),
    )


def samples(m: Metrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples called ``name`` (a full sample name), by their sorted labels."""
    body = generate_latest(
        m.registry
    )  # what render writes (tests/unit/observability/test_exposition.py)
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name == name
    }


def claimed(**fields: Any) -> ClaimedRun:
    base: dict[str, Any] = {
        "id": "r",
        "status": ExecutionStatus.RUNNING,
        "workflow_id": "w",
        "workflow_version": 1,
        "inputs": {},
        "config": {},
        "last_seq": 0,
        "resume_reason": None,
        "generation": 1,
        "cancel_requested": False,
        "started_at": None,
        "active_s": 0.0,
        "trace_context": None,
        "trace_segment": None,
        "claimed_at": CLAIMED_AT,
    }
    return ClaimedRun(**(base | fields))


def test_capped_values_keep_the_first_ones_and_call_the_rest_other() -> None:
    cap = CappedValues(2)
    assert [cap(v) for v in ("a", "b", "c", "a", "d", "b")] == ["a", "b", OTHER, "a", OTHER, "b"]


async def test_node_attempts_are_timed_by_type_and_outcome_and_retries_counted() -> None:
    m = metrics()
    retry = {"max_retries": 2, "initial_delay_ms": 1, "jitter": 0}
    doc = workflow(
        [node("p", "probe", fail_times=1, retry=retry), node("after", "probe")],
        [edge("p", "after")],
    )
    outcome = await Harness(observer=m.nodes).run(doc)

    assert outcome.status is ExecutionStatus.COMPLETED
    counts = samples(m, "oxify_node_duration_seconds_count")
    assert counts[(("node_type", "probe"), ("outcome", "failed"))] == 1
    assert counts[(("node_type", "probe"), ("outcome", "completed"))] == 2
    assert samples(m, "oxify_node_retries_total") == {(("node_type", "probe"),): 1}


def test_claims_give_queue_waits_and_takeovers_by_reason() -> None:
    m = metrics()
    queued = claimed(queued_at=CLAIMED_AT - timedelta(milliseconds=4))
    m.claimed("queued", [queued], replica_id="me", lease_s=2.0)
    lapsed = claimed(lease_expired_at=CLAIMED_AT - timedelta(seconds=0.5), previous_owner="gone")
    mine = claimed(lease_expired_at=CLAIMED_AT - timedelta(seconds=30), previous_owner="me")
    released = claimed(previous_owner="stopping")  # its lease was ended, not lapsed
    m.claimed("expired", [lapsed, mine, released], replica_id="me", lease_s=2.0)

    assert samples(m, "oxify_queue_wait_seconds_count") == {(): 1}
    assert samples(m, "oxify_queue_wait_seconds_bucket")[(("le", "0.005"),)] == 1
    assert samples(m, "oxify_queue_wait_seconds_bucket")[(("le", "0.0025"),)] == 0
    assert samples(m, "oxify_lease_takeovers_total") == {
        (("reason", "expired"),): 1,
        (("reason", "own"),): 1,
        (("reason", "released"),): 1,
    }
    # Undriven since the last renewal: lease_s before the lease expired.
    delays = samples(m, "oxify_takeover_delay_seconds_bucket")
    assert delays[(("le", "3.0"),)] == 1  # 2.5 s: within the 3 s target
    assert delays[(("le", "30.0"),)] == 1 and delays[(("le", "60.0"),)] == 2
    assert samples(m, "oxify_takeover_delay_seconds_sum") == {(): 2.5 + 32.0}


def test_model_calls_count_tokens_and_dollars_by_capped_model() -> None:
    m = metrics(max_models=1)
    m.llm_call("openai", "gpt-4o-mini", input_tokens=10, output_tokens=3, cost_usd=0.25)
    m.llm_call("openai", "gpt-5", input_tokens=7, output_tokens=1, cost_usd=None)
    m.first_token("openai", "gpt-5", 0.2)

    tokens = samples(m, "oxify_llm_tokens_total")
    assert tokens[(("model", "gpt-4o-mini"), ("provider", "openai"), ("type", "input"))] == 10
    assert tokens[(("model", "gpt-4o-mini"), ("provider", "openai"), ("type", "output"))] == 3
    assert tokens[(("model", OTHER), ("provider", "openai"), ("type", "input"))] == 7
    assert samples(m, "oxify_llm_cost_dollars_total") == {
        (("model", "gpt-4o-mini"), ("provider", "openai")): 0.25
    }
    first = samples(m, "oxify_llm_time_to_first_token_seconds_count")
    assert first == {(("model", OTHER), ("provider", "openai")): 1}


def test_runs_are_counted_by_capped_workflow_name() -> None:
    m = metrics(max_workflows=1)
    m.run_finished("triage", "completed", 1.5)
    m.run_finished("billing", "failed", 0.2)
    m.run_finished(None, "cancelled", None)  # its name could not be read

    assert samples(m, "oxify_runs_finished_total") == {
        (("status", "completed"), ("workflow", "triage")): 1,
        (("status", "failed"), ("workflow", OTHER)): 1,
        (("status", "cancelled"), ("workflow", OTHER)): 1,
    }
    assert samples(m, "oxify_run_duration_seconds_count") == {(): 2}


def test_openmetrics_scrapes_show_the_trace_of_observations_made_in_a_span() -> None:
    m = metrics()
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("request") as span:
        m.observe_request("GET", "/traced", 200, 0.003, exemplars.current())
        trace_id = format(span.get_span_context().trace_id, "032x")
    m.observe_request("GET", "/untraced", 200, 0.003)

    body, content_type = asyncio.run(m.render("application/openmetrics-text; version=1.0.0"))
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    [family] = [
        f
        for f in openmetrics_families(body.decode())
        if f.name == "oxify_http_request_duration_seconds"
    ]
    found = {
        (s.labels["route"], s.labels["le"]): s.exemplar
        for s in family.samples
        if s.name.endswith("_bucket") and s.exemplar is not None
    }
    assert list(found) == [("/traced", "0.005")]  # the bucket the observation fell in
    assert found["/traced", "0.005"].labels == {"trace_id": trace_id}

    text, text_type = asyncio.run(m.render("text/plain"))
    assert text_type.startswith("text/plain") and b"trace_id" not in text
