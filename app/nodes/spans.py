"""Spans of the calls nodes make (model calls, embeddings, searches, tool calls), through the
OpenTelemetry API only.

They go to the process's tracer provider, the global one: until one is set a call makes no
span at all (a look at the global provider), and attributes are computed only for a span that
records (a sampled-out call computes none). A span is a child of the span current where the call
is made: the node attempt's while a node executes.

A failed call records ``error.type``, the error's ``code`` for Oxify's own errors, else the
exception's type, and the error status with the message of Oxify's errors only: they are
written to carry no secret, while another exception's text may quote one (an HTTP library's
complaint about a header value). Exceptions are not recorded as events for the same reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode
from opentelemetry.util.types import AttributeValue

from app.errors import OxifyError
from app.observability import semconv

Attributes = dict[str, AttributeValue]
TRACER_NAME = "oxify"
# A proxy until a provider is set (then the provider's tracer): one made at import still reaches
# a provider set later, at start-up or by a test.
_TRACER = trace.get_tracer(TRACER_NAME)
_NO_SPAN = nullcontext(trace.INVALID_SPAN)  # reusable: it holds nothing


def tracing() -> bool:
    """Whether the process has a tracer provider: until one is set nothing is traced, and
    there is no trace context to propagate."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def span(
    name: str, kind: SpanKind, attributes: Callable[[], Attributes] | None = None
) -> AbstractContextManager[Span]:
    """A span current while the block runs, with ``attributes()`` when it records; an
    exception leaving the block marks it failed (see the module docstring). Without a tracer
    provider, a span that is not (the API's no-op tracer still costs microseconds)."""
    return _span(name, kind, attributes) if tracing() else _NO_SPAN


@contextmanager
def _span(name: str, kind: SpanKind, attributes: Callable[[], Attributes] | None) -> Iterator[Span]:
    with _TRACER.start_as_current_span(
        name, kind=kind, record_exception=False, set_status_on_exception=False
    ) as current:
        if attributes is not None and current.is_recording():
            current.set_attributes(attributes())
        try:
            yield current
        except Exception as exc:
            failed(current, exc)
            raise


def failed(current: Span, exc: BaseException) -> None:
    """Mark ``current`` failed by ``exc``: ``error.type`` and the error status."""
    if not current.is_recording():
        return
    if isinstance(exc, OxifyError):
        current.set_attribute(semconv.ERROR_TYPE, exc.code)
        current.set_status(StatusCode.ERROR, exc.message)
    else:
        current.set_attribute(semconv.ERROR_TYPE, type(exc).__qualname__)
        current.set_status(StatusCode.ERROR)


def server(url: str) -> Attributes:
    """``server.address`` and ``server.port`` of ``url`` (the scheme's port when it names
    none); nothing for a URL without a host."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # not a port number: the call itself will say so
        return {}
    if not parts.hostname:
        return {}
    default = 443 if parts.scheme == "https" else 80
    return {semconv.SERVER_ADDRESS: parts.hostname, semconv.SERVER_PORT: port or default}
