"""The ``trace_id`` exemplar of a histogram observation: the current span's trace, when a span
is recording (OpenMetrics scrapes show it; a dashboard links from a slow bucket to the trace)."""

from __future__ import annotations

try:  # OpenTelemetry is optional: without it, observations carry no exemplar.
    from opentelemetry import trace as otel_trace
except ImportError:  # pragma: no cover - depends on the environment
    otel_trace = None  # type: ignore[assignment]

Exemplar = dict[str, str]


def current() -> Exemplar | None:
    """``{"trace_id": …}`` of the recording span current here, else None (one context lookup
    when tracing is off)."""
    if otel_trace is None:
        return None
    span = otel_trace.get_current_span()
    if not span.is_recording():
        return None
    context = span.get_span_context()
    return {"trace_id": format(context.trace_id, "032x")} if context.is_valid else None
