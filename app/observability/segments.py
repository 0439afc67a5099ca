"""Run segments as spans: one ``invoke_workflow {name}`` span each time a replica drives a run
(its start, and every resume: a client's resume, an answered form, a retry, a hand-back at
shutdown, a takeover after the owner's lease lapsed).

Each segment parents on the run's stored trace context (see :mod:`trace_context`), so the run
is one trace however many replicas drove it, and links to the segment before it (stored on the
row by the driver of that segment).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer

from app.observability import semconv, trace_context

# The run's resume_reason as its claim returned it (the move that made it claimable) →
# oxify.segment.reason; no reason: the run's first start.
REASONS = {
    None: "start",
    "recovered": "takeover",  # claimed after the previous owner's lease lapsed
    "shutdown": "handed_back",  # its previous owner stopped gracefully and queued it again
    "answered": "form_answered",
    "resumed": "resume",
    "retry": "retry",
}
_FAILED = frozenset({"failed", "timed_out"})


def reason(resume_reason: str | None) -> str:
    """Why a segment starts, from the claimed run's ``resume_reason``."""
    return REASONS.get(resume_reason, resume_reason or "start")


class Segment:
    """The span of one segment (possibly not recording)."""

    __slots__ = ("_span", "traceparent")

    def __init__(self, span: Span | None) -> None:
        self._span = span
        # This segment as the next one's link target; None when it is not recorded.
        self.traceparent: str | None = None
        if span is not None and span.is_recording():
            self.traceparent = trace_context.header(span.get_span_context())

    def ended(self, status: str) -> None:
        """The segment left the run ``status`` (completed, waiting, paused, failed, …)."""
        span = self._span
        if span is None or not span.is_recording():
            return
        span.set_attribute(semconv.EXECUTION_STATUS, status)
        if status in _FAILED:
            span.set_status(Status(StatusCode.ERROR, status))


_UNTRACED = Segment(None)


@contextmanager
def segment(
    tracer: Tracer | None,
    *,
    workflow: str,
    execution_id: str,
    resume_reason: str | None,
    trace: str | None,
    previous: str | None,
) -> Iterator[Segment]:
    """The segment's span, current inside the block (its nodes nest under it); with no tracer,
    nothing. ``trace`` is the run's stored context, ``previous`` the last segment's."""
    if tracer is None:
        yield _UNTRACED
        return
    last = trace_context.parse(previous)
    with tracer.start_as_current_span(
        f"{semconv.OP_INVOKE_WORKFLOW} {workflow}",
        context=trace_context.parent(trace),
        kind=SpanKind.INTERNAL,
        attributes={
            semconv.GEN_AI_OPERATION_NAME: semconv.OP_INVOKE_WORKFLOW,
            semconv.GEN_AI_WORKFLOW_NAME: workflow,
            semconv.EXECUTION_ID: execution_id,
            semconv.SEGMENT_REASON: reason(resume_reason),
        },
        links=[] if last is None else [Link(last)],
    ) as span:
        yield Segment(span)
