"""A run's trace context as the execution row stores it: a W3C ``traceparent`` string.

One run, one trace: the context is chosen once, when the run is submitted, and every segment
of the run (on any replica, after any pause, wait or crash) parents on it. The sampled flag
travels with it, so a run is recorded whole or not at all.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from app.observability import semconv

_W3C = TraceContextTextMapPropagator()
TRACEPARENT_LENGTH = 55  # characters of a version-00 traceparent


def header(span: SpanContext) -> str:
    """``span`` as a version-00 ``traceparent``."""
    return f"00-{span.trace_id:032x}-{span.span_id:016x}-{span.trace_flags:02x}"


def parse(traceparent: str | None) -> SpanContext | None:
    """The span context a ``traceparent`` names; None when absent or malformed (W3C: a bad
    header is ignored, never an error)."""
    if not traceparent:
        return None
    context = _W3C.extract({"traceparent": traceparent})
    span = trace.get_current_span(context).get_span_context()
    return span if span.is_valid else None


def parent(traceparent: str | None) -> Context | None:
    """A context whose span is the stored one, to parent a segment on; None: none stored."""
    span = parse(traceparent)
    return None if span is None else trace.set_span_in_context(NonRecordingSpan(span))


def trace_id(traceparent: str | None) -> str | None:
    """The trace id (32 hex digits) of a stored ``traceparent``."""
    span = parse(traceparent)
    return None if span is None else f"{span.trace_id:032x}"


def for_new_run(client_traceparent: str | None, tracer: Tracer | None) -> str | None:
    """The trace context a new run keeps: the current span's (the submitting request's server
    span, when requests are traced), else the client's ``traceparent``, else, with tracing on,
    a new trace rooted in a ``submit_workflow`` span; with tracing off and no client context,
    none (no trace id is made up for a trace nobody records)."""
    current = trace.get_current_span().get_span_context()
    if current.is_valid:
        return header(current)
    client = parse(client_traceparent)
    if client is not None:
        return header(client)
    if tracer is None:
        return None
    root = tracer.start_span(semconv.SPAN_SUBMIT, kind=SpanKind.INTERNAL)
    root.end()
    return header(root.get_span_context())
