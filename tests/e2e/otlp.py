"""An OTLP/HTTP trace receiver on 127.0.0.1: what a collector gets from the real exporter of
``oxify serve`` replicas (``POST /v1/traces``, an ``ExportTraceServiceRequest`` in protobuf),
decoded into plain spans a test can look through."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.e2e.live import start_uvicorn

PROTOBUF = "application/x-protobuf"
SERVER_KIND = 2  # Span.SpanKind.SPAN_KIND_SERVER
ERROR_STATUS = 2  # Status.StatusCode.STATUS_CODE_ERROR


@dataclass(frozen=True)
class Link:
    trace_id: str
    span_id: str


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as exported; ids in hex, ``parent_id`` empty for a root."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    links: list[Link]
    status_code: int
    resource: dict[str, Any]


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return None if kind is None else getattr(value, kind)


def _attributes(pairs: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    pair: KeyValue
    for pair in pairs:
        found[pair.key] = _value(pair.value)
    return found


def decode(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest.FromString(body)
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        kind=span.kind,
                        attributes=_attributes(span.attributes),
                        events=[(e.name, _attributes(e.attributes)) for e in span.events],
                        links=[Link(k.trace_id.hex(), k.span_id.hex()) for k in span.links],
                        status_code=span.status.code,
                        resource=resource,
                    )
                )
    return spans


class OtlpReceiver:
    """Keeps every span posted to it; ``until`` waits for spans a test expects."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.url = ""
        self._arrived = asyncio.Condition()

    async def export(self, request: Request) -> Response:
        body = await request.body()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        received = decode(body)
        async with self._arrived:
            self.spans += received
            self._arrived.notify_all()
        return Response(ExportTraceServiceResponse().SerializeToString(), media_type=PROTOBUF)

    async def until(
        self, found: Callable[[list[ReceivedSpan]], bool], timeout_s: float = 30.0
    ) -> list[ReceivedSpan]:
        """The spans received so far, once ``found`` says they hold what is awaited."""
        async with asyncio.timeout(timeout_s), self._arrived:
            await self._arrived.wait_for(lambda: found(self.spans))
            return list(self.spans)


@asynccontextmanager
async def otlp_receiver() -> AsyncIterator[OtlpReceiver]:
    """A receiver serving ``POST /v1/traces``; its ``url`` is what OTEL_EXPORTER_OTLP_ENDPOINT
    takes."""
    receiver = OtlpReceiver()
    app = Starlette(routes=[Route("/v1/traces", receiver.export, methods=["POST"])])
    server, serving, sock = await start_uvicorn(app, lifespan="off")
    receiver.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        yield receiver
    finally:
        server.should_exit = True
        await serving
        sock.close()
