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
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
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

from app.engine.ports import RunObserver
from app.engine.run.observe import UNWATCHED
from app.observability import semconv
from app.observability.node_spans import SpanObserver
from app.settings_tracing import TracingSettings

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
        """A server span per request (continuing the caller's ``traceparent``), when on."""
        if self.provider is None:
            return
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=self.provider,
            meter_provider=NoOpMeterProvider(),  # metrics are Prometheus's (app/api/metrics)
            exclude_spans=EXCLUDED_ASGI_SPANS,
            excluded_urls=EXCLUDED_URLS,
        )

    async def close(self) -> None:
        """Export what is still batched (and stop, for a provider this app built)."""
        provider = self.provider
        if provider is None:
            return
        # Both block until the exporter answered: off the event loop.
        await asyncio.to_thread(provider.shutdown if self._owned else provider.force_flush)
