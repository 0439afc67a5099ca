"""A client span and the trace context on every outbound HTTP request.

Every client that leaves the process sends through a transport of this module around its egress
transport: the shared httpx client (http, graphql and Ollama calls), and on httpx2 the providers'
SDK clients and the MCP sessions' clients. Each request (each redirect hop too) is a CLIENT span
``{method}`` after the HTTP semantic conventions, current while the request is sent, and carries
``traceparent`` naming that span, so the server's own spans join the run's trace. The span ends
when the response's head arrives (a streamed body goes on under the span of the call).

Not opentelemetry-instrumentation-httpx's transports, though they know both libraries: they put
the whole URL on the span (an http node's API key may ride in the query string) and record an
exception's text (h11 quotes the header value it refuses). Here ``url.full`` keeps scheme, host,
port and path, and a failure only its type (see :mod:`app.nodes.spans`).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import httpx
import httpx2
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, StatusCode

from app.nodes import spans
from app.observability import semconv

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"})


class _Traced:
    """``handle_async_request`` in a span, ``traceparent`` added; the rest is the inner
    transport's (httpx and httpx2 share this interface)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    async def handle_async_request(self, request: Any) -> Any:
        if not spans.tracing():
            return await self._inner.handle_async_request(request)
        method = request.method if request.method in KNOWN_METHODS else "HTTP"
        with spans.span(method, SpanKind.CLIENT, partial(_attributes, request)) as current:
            propagate.inject(request.headers)
            response = await self._inner.handle_async_request(request)
            if current.is_recording():
                status = response.status_code
                current.set_attribute(semconv.HTTP_RESPONSE_STATUS_CODE, status)
                if status >= 400:
                    current.set_attribute(semconv.ERROR_TYPE, str(status))
                    current.set_status(StatusCode.ERROR)
            return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class Traced(_Traced, httpx.AsyncBaseTransport):
    """Around an httpx transport."""


class Traced2(_Traced, httpx2.AsyncBaseTransport):
    """Around an httpx2 transport (the providers' SDKs, MCP)."""


def _attributes(request: Any) -> spans.Attributes:
    url = request.url
    return {
        semconv.HTTP_REQUEST_METHOD: request.method,
        semconv.URL_FULL: f"{url.scheme}://{url.netloc.decode('ascii')}{url.path}",
        semconv.SERVER_ADDRESS: url.host,
        semconv.SERVER_PORT: url.port or (443 if url.scheme == "https" else 80),
    }
