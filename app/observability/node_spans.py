"""The tracing run observer: a ``node {id}`` span per node, an ``attempt {n}`` span per attempt
under it, a ``checkpoint`` span per checkpoint written.

The attempt's span is the current span while the node executes (the engine begins and ends a
watch on the task that runs it), so what the node does (model and tool calls, outgoing HTTP
requests with their ``traceparent``) nests under it. A node nested in a container (a loop body,
a ``try``, a sub-workflow) nests under the container's attempt the same way.

Spans are made only under a recording span: in a segment that was sampled out, or outside any
trace, a node costs one look at the current span.
"""

from __future__ import annotations

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from app.engine.ports import AttemptWatch, NodeWatch
from app.engine.run.observe import UNWATCHED
from app.observability import semconv

_INTERNAL = SpanKind.INTERNAL
_current_span = trace.get_current_span
_in_context = trace.set_span_in_context


class SpanObserver:
    """A :class:`app.engine.ports.RunObserver` that records spans with ``tracer``."""

    __slots__ = ("_tracer",)

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer

    def node(self, key: str, node_type: str) -> NodeWatch:
        if not _current_span().is_recording():
            return UNWATCHED
        span = self._tracer.start_span(
            f"{semconv.SPAN_NODE} {key}",
            kind=_INTERNAL,
            attributes={semconv.NODE_ID: key, semconv.NODE_TYPE: node_type},
        )
        return _NodeSpan(self._tracer, span, key, node_type)

    def checkpoint(self, number: int) -> AttemptWatch:
        if not _current_span().is_recording():
            return UNWATCHED
        span = self._tracer.start_span(
            semconv.SPAN_CHECKPOINT,
            kind=_INTERNAL,
            attributes={semconv.CHECKPOINT_NUMBER: number},
        )
        return _Ending(span)


class _Ending:
    """A span that ends with the watch: its outcome, and on failure ``error.type`` and ERROR."""

    __slots__ = ("_span",)

    def __init__(self, span: Span) -> None:
        self._span = span

    def end(self, outcome: str, error_code: str | None = None) -> None:
        span = self._span
        span.set_attribute(semconv.NODE_OUTCOME, outcome)
        if error_code is not None:
            span.set_attribute(semconv.ERROR_TYPE, error_code)
            span.set_status(Status(StatusCode.ERROR, error_code))
        span.end()


class _Attempt(_Ending):
    """An attempt's span, current from its start to its end."""

    __slots__ = ("_token",)

    def __init__(self, span: Span) -> None:
        super().__init__(span)
        self._token = otel_context.attach(_in_context(span))

    def end(self, outcome: str, error_code: str | None = None) -> None:
        otel_context.detach(self._token)
        super().end(outcome, error_code)


class _NodeSpan(_Ending):
    __slots__ = ("_key", "_tracer", "_type")

    def __init__(self, tracer: Tracer, span: Span, key: str, node_type: str) -> None:
        super().__init__(span)
        self._tracer = tracer
        self._key = key
        self._type = node_type

    def attempt(self, attempt: int) -> AttemptWatch:
        span = self._tracer.start_span(
            f"{semconv.SPAN_ATTEMPT} {attempt}",
            context=_in_context(self._span),
            kind=_INTERNAL,
            attributes={
                semconv.NODE_ID: self._key,
                semconv.NODE_TYPE: self._type,
                semconv.NODE_ATTEMPT: attempt,
            },
        )
        return _Attempt(span)

    def retry(self, attempt: int, delay_s: float, error_code: str) -> None:
        self._span.add_event(
            semconv.RETRY_SCHEDULED,
            {
                semconv.NODE_ATTEMPT: attempt,
                semconv.RETRY_DELAY_S: delay_s,
                semconv.ERROR_TYPE: error_code,
            },
        )
