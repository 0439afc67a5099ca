"""Spans in tests, recorded in memory, two ways.

- An app's own tracing (``recording``): a tracer provider of the test's own, handed to the app
  (``create_app(settings, tracing=...)``) and to the engine's observer; what it records is read
  with the finders below (``named``, ``one``, ``parent_id``, ...).
- The process's global provider (``exporter``, ``SpanTrace``): what the nodes' calls and the MCP
  SDK trace goes to the global provider, which OpenTelemetry lets a process set once; so the first
  test that asks installs an SDK provider (or, when one is installed already, adds a span
  processor to it) with an ``InMemorySpanExporter``. Each such test opens a root span of its own
  and reads the spans of its trace only: spans of other tests (a session closing late) never mix
  in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Sampler
from opentelemetry.trace import Span

from app.observability.tracing import Tracing


def recording(sampler: Sampler = ALWAYS_ON) -> tuple[Tracing, InMemorySpanExporter]:
    """An app's tracing that keeps every ended span in the returned exporter."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider), exporter


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def one(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    found = named(spans, name)
    assert len(found) == 1, [span.name for span in spans]
    return found[0]


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


_EXPORTER: InMemorySpanExporter | None = None


def exporter() -> InMemorySpanExporter:
    """The process's in-memory exporter, installed on first use."""
    global _EXPORTER
    if _EXPORTER is None:
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            provider = TracerProvider()
            trace.set_tracer_provider(provider)
        made = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(made))
        _EXPORTER = made
    return _EXPORTER


@dataclass
class SpanTrace:
    """A test's own trace: open :meth:`root`, then read :meth:`spans`."""

    memory: InMemorySpanExporter
    root_span: Span | None = None

    @contextlib.contextmanager
    def root(self) -> Iterator[Span]:
        """The root span, current while the block runs (a node attempt's span stands in)."""
        tracer = trace.get_tracer("tests")
        with tracer.start_as_current_span("test") as span:
            self.root_span = span
            yield span

    @property
    def trace_id(self) -> int:
        assert self.root_span is not None, "open the root span first"
        return self.root_span.get_span_context().trace_id

    def spans(self) -> list[ReadableSpan]:
        """The trace's finished spans, in the order they ended."""
        return [
            span
            for span in self.memory.get_finished_spans()
            if span.context is not None and span.context.trace_id == self.trace_id
        ]

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.name == name]

    def one(self, name: str) -> ReadableSpan:
        (found,) = self.named(name)
        return found

    def children(self, parent: ReadableSpan | Span) -> list[ReadableSpan]:
        parent_id = parent.get_span_context().span_id
        return [s for s in self.spans() if s.parent is not None and s.parent.span_id == parent_id]

    def values(self) -> Sequence[str]:
        """Every text of every attribute, status and event of the trace (to look for secrets)."""
        texts: list[str] = []
        for span in self.spans():
            texts.append(span.name)
            texts.append(span.status.description or "")
            for attributes in (span.attributes, *(event.attributes for event in span.events)):
                for value in (attributes or {}).values():
                    items = value if isinstance(value, tuple | list) else (value,)
                    texts.extend(str(item) for item in items)
        return texts


def traceparent(span: ReadableSpan) -> str:
    """The W3C ``traceparent`` header naming ``span`` as the parent, with its flags."""
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
