"""The tracing run observer on the engine: node, attempt, retry and checkpoint spans, their
parents, the attempt's span current while the node runs, nothing recorded when sampled out."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import StatusCode

from app.domain.status import ExecutionStatus
from app.engine.run.context import NodeContext
from app.engine.run.observe import UNWATCHED
from app.engine.run.outcomes import NodeOutput, Suspend
from app.observability import semconv
from tests.spans import named, one, parent_id, recording, span_id, trace_id
from tests.support import Harness, ProbeExecutor, edge, node, probe_registry, workflow

RETRY = {"max_retries": 2, "initial_delay_ms": 100, "multiplier": 2.0, "jitter": 0}


class SpanProbe(ProbeExecutor):
    """The probe, noting which span is current while each attempt runs."""

    def __init__(self) -> None:
        super().__init__()
        self.current: dict[tuple[str, int], int] = {}

    async def execute(self, ctx: NodeContext) -> NodeOutput | Suspend:
        self.current[ctx.key, ctx.attempt] = trace.get_current_span().get_span_context().span_id
        return await super().execute(ctx)


async def test_a_node_with_a_retry_is_a_node_span_with_two_attempt_spans() -> None:
    tracing, exporter = recording()
    assert tracing.tracer is not None
    registry, probe = probe_registry(SpanProbe())
    h = Harness(registry=registry, observer=tracing.observer())
    doc = workflow(
        [node("p", "probe", fail_times=1, value="ok", retry=RETRY), node("after", "probe")],
        [edge("p", "after")],
    )
    with tracing.tracer.start_as_current_span("segment") as segment:
        outcome = await h.run(doc)
    assert outcome.status is ExecutionStatus.COMPLETED

    spans = exporter.get_finished_spans()
    node_p, node_after = one(spans, "node p"), one(spans, "node after")
    first, second = sorted(
        (s for s in spans if s.name.startswith("attempt ") and parent_id(s) == span_id(node_p)),
        key=lambda s: s.attributes[semconv.NODE_ATTEMPT] if s.attributes else 0,
    )
    assert (first.name, second.name) == ("attempt 1", "attempt 2")
    assert {s.context.trace_id for s in spans if s.context} == {segment.get_span_context().trace_id}
    assert parent_id(node_p) == parent_id(node_after) == segment.get_span_context().span_id
    assert node_p.kind is trace.SpanKind.INTERNAL
    assert dict(node_p.attributes or {}) == {
        semconv.NODE_ID: "p",
        semconv.NODE_TYPE: "probe",
        semconv.NODE_OUTCOME: "completed",
    }
    assert first.status.status_code is StatusCode.ERROR
    assert (first.attributes or {})[semconv.ERROR_TYPE] == "node_failed"
    assert (first.attributes or {})[semconv.NODE_ID] == "p"
    assert second.status.status_code is StatusCode.UNSET
    assert semconv.ERROR_TYPE not in (second.attributes or {})
    [retry] = node_p.events
    assert retry.name == semconv.RETRY_SCHEDULED
    assert dict(retry.attributes or {}) == {
        semconv.NODE_ATTEMPT: 1,
        semconv.RETRY_DELAY_S: 0.1,
        semconv.ERROR_TYPE: "node_failed",
    }
    # What the node does while it runs nests under its attempt.
    [after_attempt] = [s for s in spans if parent_id(s) == span_id(node_after)]
    assert probe.current == {
        ("p", 1): span_id(first),
        ("p", 2): span_id(second),
        ("after", 1): span_id(after_attempt),
    }
    checkpoints = named(spans, semconv.SPAN_CHECKPOINT)
    assert checkpoints, [s.name for s in spans]
    assert all(parent_id(c) == segment.get_span_context().span_id for c in checkpoints)
    assert (checkpoints[0].attributes or {})[semconv.CHECKPOINT_NUMBER] == 1


async def test_a_node_out_of_retries_ends_in_error() -> None:
    tracing, exporter = recording()
    assert tracing.tracer is not None
    h = Harness(observer=tracing.observer())
    with tracing.tracer.start_as_current_span("segment"):
        outcome = await h.run(workflow([node("p", "probe", fail_times=9)], []))
    assert outcome.status is ExecutionStatus.FAILED
    node_p = one(exporter.get_finished_spans(), "node p")
    assert node_p.status.status_code is StatusCode.ERROR
    assert (node_p.attributes or {})[semconv.ERROR_TYPE] == "node_failed"
    assert (node_p.attributes or {})[semconv.NODE_OUTCOME] == "failed"


async def test_a_sampled_out_run_records_nothing_and_watches_nothing() -> None:
    tracing, exporter = recording(ParentBased(ALWAYS_OFF))
    assert tracing.tracer is not None
    observer = tracing.observer()
    h = Harness(observer=observer)
    doc = workflow([node("p", "probe", fail_times=1, retry=RETRY)], [])
    with tracing.tracer.start_as_current_span("segment") as segment:
        assert not segment.is_recording()
        assert observer.node("p", "probe") is UNWATCHED
        assert observer.checkpoint(1) is UNWATCHED
        outcome = await h.run(doc)
    assert outcome.status is ExecutionStatus.COMPLETED
    assert exporter.get_finished_spans() == ()


async def test_outside_any_trace_nodes_make_no_spans() -> None:
    tracing, exporter = recording()
    outcome = await Harness(observer=tracing.observer()).run(workflow([node("p", "probe")], []))
    assert outcome.status is ExecutionStatus.COMPLETED
    assert exporter.get_finished_spans() == ()


async def test_nested_nodes_nest_under_their_containers_attempt() -> None:
    tracing, exporter = recording()
    assert tracing.tracer is not None
    body = {"nodes": [{"id": "inner", "type": "probe", "config": {}}], "edges": []}
    doc = workflow(
        [node("loop", "foreach", items="{{ [1, 2] }}", body=body)],
        [],
    )
    with tracing.tracer.start_as_current_span("segment"):
        outcome = await Harness(observer=tracing.observer()).run(doc)
    assert outcome.status is ExecutionStatus.COMPLETED, outcome
    spans = exporter.get_finished_spans()
    node_loop = one(spans, "node loop")
    [loop_attempt] = [s for s in spans if parent_id(s) == span_id(node_loop)]
    inner = [s for s in spans if s.name.startswith("node ") and s is not node_loop]
    assert len(inner) == 2, [s.name for s in spans]
    assert all(parent_id(s) == span_id(loop_attempt) for s in inner)
    assert len({trace_id(s) for s in spans}) == 1
