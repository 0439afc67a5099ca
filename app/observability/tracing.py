"""Tracing for one app: a tracer provider exporting over OTLP/HTTP, or nothing at all.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``…_TRACES_ENDPOINT``) is set: then no provider
exists, no span is made, the engine's observer is the no-op one and requests are not
instrumented. On, spans are batched (``BatchSpanProcessor``) to the collector and flushed when
the app stops (and at process exit).

The app is handed its :class:`Tracing` (``create_app(settings, tracing=...)``) and passes the
tracer down: nothing here reads or sets OpenTelemetry's global provider, which a process can
set once only. ``oxify serve`` makes its provider the global one too, for libraries that ask
for it; tests hand each app a provider of their own with an ``InMemorySpanExporter``.
"""

from __future__ import annotations

import asyncio
from importlib import metadata
from typing import Literal

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import Tracer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.engine.ports import RunObserver
from app.engine.run.observe import UNWATCHED
from app.observability import semconv
from app.observability.node_spans import SpanObserver
from app.settings_tracing import TracingSettings

HTTP_ROUTE = "http.route"
# Request spans only: without this every ASGI message (each SSE frame) would be a span.
EXCLUDED_ASGI_SPANS: list[Literal["receive", "send"]] = ["send", "receive"]
# Probes and scrapes come every few seconds and tell a trace nothing (regexes, searched in the
# request's URL).
EXCLUDED_URLS = "/healthz$,/readyz$,/metrics$"


def sampler(name: str, ratio: float) -> Sampler:
    """The sampler ``OTEL_TRACES_SAMPLER`` names, with ``ratio`` for the traceidratio ones."""
    roots: dict[str, Sampler] = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "traceidratio": TraceIdRatioBased(ratio),
    }
    base = name.removeprefix("parentbased_")
    return ParentBased(roots[base]) if base != name else roots[name]


def version() -> str:
    try:
        return metadata.version("oxify")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def provider_from(settings: TracingSettings, replica_id: str) -> TracerProvider | None:
    """A provider exporting to the configured collector; None when no endpoint is set."""
    endpoint = settings.traces_endpoint
    if endpoint is None:
        return None
    resource = Resource.create(
        {
            SERVICE_NAME: settings.otel_service_name,
            SERVICE_VERSION: version(),
            SERVICE_INSTANCE_ID: replica_id,
            semconv.REPLICA_ID: replica_id,
        }
    )
    provider = TracerProvider(
        resource=resource,
        sampler=sampler(settings.otel_traces_sampler, settings.otel_traces_sampler_arg),
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


class Tracing:
    """Tracing as one app has it: ``provider`` (on) or None (off). ``owned``: the app shuts
    the provider down when it stops (one it built from settings); a provider handed in by a
    caller is only flushed."""

    __slots__ = ("_owned", "provider", "tracer")

    def __init__(self, provider: TracerProvider | None = None, *, owned: bool = False) -> None:
        self.provider = provider
        self._owned = owned
        self.tracer: Tracer | None = (
            None if provider is None else provider.get_tracer(semconv.TRACER_NAME, version())
        )

    @classmethod
    def from_settings(cls, settings: TracingSettings, replica_id: str) -> Tracing:
        return cls(provider_from(settings, replica_id), owned=True)

    @property
    def on(self) -> bool:
        return self.provider is not None

    def observer(self) -> RunObserver:
        """The engine's observer: node, attempt and checkpoint spans, or nothing when off."""
        return UNWATCHED if self.tracer is None else SpanObserver(self.tracer)

    def instrument(self, app: FastAPI) -> None:
        """A server span per request (continuing the caller's ``traceparent``), when on.

        The ASGI instrumentation, not opentelemetry-instrumentation-fastapi's wrapper of it:
        that one names the span by matching the request against every route before the app
        does (about 0.4 ms a request here, growing with the routes); the route the app matched
        names it here once the app has answered (:class:`_NamedByRoute`).
        """
        if self.provider is None:
            return
        app.add_middleware(_NamedByRoute)
        app.add_middleware(
            OpenTelemetryMiddleware,
            tracer_provider=self.provider,
            meter_provider=NoOpMeterProvider(),  # metrics are Prometheus's (app/api/metrics)
            exclude_spans=EXCLUDED_ASGI_SPANS,
            excluded_urls=EXCLUDED_URLS,
            default_span_details=_by_method,
        )

    async def close(self) -> None:
        """Export what is still batched (and stop, for a provider this app built)."""
        provider = self.provider
        if provider is None:
            return
        # Both block until the exporter answered: off the event loop.
        await asyncio.to_thread(provider.shutdown if self._owned else provider.force_flush)


def _by_method(scope: Scope) -> tuple[str, dict[str, str]]:
    """The span's name until the route is known: the method (a WebSocket's: its path)."""
    return scope.get("method") or "websocket", {}


class _NamedByRoute:
    """Inside the request's server span: once the app has routed the request (when its answer
    starts; the span ends with the answer), the span is named ``{method} {route template}`` and
    carries ``http.route``, as the HTTP conventions ask (never the raw path: ids would make
    every name unique)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def naming_send(message: Message) -> None:
            if message["type"] in _ANSWER_STARTS:
                _name_by_route(scope)
            await send(message)

        await self.app(scope, receive, naming_send)


_ANSWER_STARTS = frozenset({"http.response.start", "websocket.accept", "websocket.close"})


def _name_by_route(scope: Scope) -> None:
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    span = trace.get_current_span()
    if template and span.is_recording():
        method = scope.get("method")
        span.update_name(f"{method} {template}" if method else template)
        span.set_attribute(HTTP_ROUTE, template)
