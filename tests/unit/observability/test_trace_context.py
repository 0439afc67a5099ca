"""A run's trace context and its segments: which context a new run keeps, how segments parent
on it and link to each other, and how tracing is configured from the OTEL_* settings."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import SpanKind, StatusCode

from app.engine.run.observe import UNWATCHED
from app.observability import segments, semconv, trace_context, tracing
from app.settings import Settings
from tests.spans import one, recording, span_id

CLIENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
UNSAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


def test_a_traceparent_round_trips_and_a_bad_one_is_ignored() -> None:
    parsed = trace_context.parse(CLIENT)
    assert parsed is not None and parsed.trace_flags.sampled
    assert trace_context.header(parsed) == CLIENT
    assert trace_context.trace_id(CLIENT) == "0af7651916cd43dd8448eb211c80319c"
    for bad in (None, "", "00-xyz", "00-" + "0" * 32 + "-b7ad6b7169203331-01", "garbage"):
        assert trace_context.parse(bad) is None
        assert trace_context.parent(bad) is None


def test_a_new_run_keeps_the_current_span_else_the_clients_else_none_when_off() -> None:
    assert trace_context.for_new_run(None, None) is None
    assert trace_context.for_new_run("nonsense", None) is None
    assert trace_context.for_new_run(CLIENT, None) == CLIENT
    assert trace_context.for_new_run(UNSAMPLED, None) == UNSAMPLED  # the flag is kept
    traced, exporter = recording()
    assert traced.tracer is not None
    with traced.tracer.start_as_current_span("POST") as request:
        kept = trace_context.for_new_run(CLIENT, traced.tracer)
    assert kept == trace_context.header(request.get_span_context())
    assert exporter.get_finished_spans()[-1].name == "POST"


def test_with_tracing_on_and_no_context_a_run_gets_a_trace_of_its_own() -> None:
    traced, exporter = recording()
    made = trace_context.for_new_run(None, traced.tracer)
    root = one(exporter.get_finished_spans(), semconv.SPAN_SUBMIT)
    assert root.context is not None and root.parent is None
    assert made == trace_context.header(root.context)


def test_segments_parent_on_the_run_and_link_to_the_previous_one() -> None:
    traced, exporter = recording()
    first_kwargs = {"workflow": "triage", "execution_id": "e1", "trace": CLIENT}
    with segments.segment(
        traced.tracer, resume_reason=None, previous=None, **first_kwargs
    ) as first:
        assert first.traceparent is not None
        first.ended("waiting")
    with segments.segment(
        traced.tracer, resume_reason="answered", previous=first.traceparent, **first_kwargs
    ) as second:
        second.ended("failed")
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["invoke_workflow triage"] * 2
    one_, two = spans
    root = trace_context.parse(CLIENT)
    assert root is not None
    for span in spans:
        assert span.kind is SpanKind.INTERNAL
        assert span.parent is not None and span.parent.span_id == root.span_id
        assert span.context is not None and span.context.trace_id == root.trace_id
    assert dict(one_.attributes or {}) == {
        semconv.GEN_AI_OPERATION_NAME: "invoke_workflow",
        semconv.GEN_AI_WORKFLOW_NAME: "triage",
        semconv.EXECUTION_ID: "e1",
        semconv.SEGMENT_REASON: "start",
        semconv.EXECUTION_STATUS: "waiting",
    }
    assert not one_.links
    assert (two.attributes or {})[semconv.SEGMENT_REASON] == "form_answered"
    assert [link.context.span_id for link in two.links] == [span_id(one_)]
    assert two.status.status_code is StatusCode.ERROR


def test_an_unsampled_run_records_no_segment() -> None:
    traced, exporter = recording(ParentBased(ALWAYS_OFF))
    with segments.segment(
        traced.tracer,
        workflow="w",
        execution_id="e1",
        resume_reason="recovered",
        trace=UNSAMPLED,
        previous=None,
    ) as segment:
        assert segment.traceparent is None
        segment.ended("completed")
    assert exporter.get_finished_spans() == ()


def test_untraced_segments_cost_nothing() -> None:
    with segments.segment(
        None, workflow="w", execution_id="e", resume_reason=None, trace=CLIENT, previous=None
    ) as segment:
        assert segment.traceparent is None
        segment.ended("failed")


@pytest.mark.parametrize(
    ("resume_reason", "reason"),
    [
        (None, "start"),
        ("recovered", "takeover"),
        ("shutdown", "handed_back"),
        ("answered", "form_answered"),
        ("resumed", "resume"),
        ("retry", "retry"),
    ],
)
def test_segment_reasons(resume_reason: str | None, reason: str) -> None:
    assert segments.reason(resume_reason) == reason


def test_tracing_is_off_without_an_endpoint() -> None:
    off = tracing.Tracing.from_settings(Settings(), "r1")
    assert not off.on and off.tracer is None and off.observer() is UNWATCHED


def test_the_otel_settings() -> None:
    settings = Settings(
        otel_exporter_otlp_endpoint="http://collector:4318/",
        otel_service_name="oxify-eu",
        otel_traces_sampler="parentbased_traceidratio",
        otel_traces_sampler_arg=0.25,
    )
    assert settings.traces_endpoint == "http://collector:4318/v1/traces"
    explicit = settings.model_copy(
        update={"otel_exporter_otlp_traces_endpoint": "http://other:4318/spans"}
    )
    assert explicit.traces_endpoint == "http://other:4318/spans"
    on = tracing.Tracing.from_settings(settings, "r7")
    try:
        assert on.provider is not None
        attributes = on.provider.resource.attributes
        assert attributes["service.name"] == "oxify-eu"
        assert attributes["service.instance.id"] == attributes[semconv.REPLICA_ID] == "r7"
        assert attributes["service.version"] == tracing.version()
        description = on.provider.sampler.get_description()
        assert description.startswith("ParentBased{root:TraceIdRatioBased{0.25}")
    finally:
        assert on.provider is not None
        on.provider.shutdown()
    assert tracing.sampler("always_off", 1.0).get_description() == "AlwaysOffSampler"
    with pytest.raises(ValueError, match="trace_id"):
        Settings(trace_url_template="http://jaeger/trace/")
