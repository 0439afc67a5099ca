"""``execute_tool {tool}`` spans (INTERNAL, the GenAI conventions): an ``mcp`` node's call, and
each tool call an ``agent`` runs (MCP, HTTP, Python, workflow).

They carry ``gen_ai.tool.name``, ``gen_ai.tool.type`` (an MCP server's tool is an
``extension``, the rest are ``function``s), the model's ``gen_ai.tool.call.id`` when a model
asked for the call, and the MCP server's address. The MCP SDK's own ``MCP send tools/call`` span
and the HTTP span go under it. Arguments and result only as :mod:`app.nodes.span_content` says.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.trace import Span, SpanKind

from app.nodes import span_content, spans
from app.observability import semconv
from app.settings import Settings


@contextmanager
def execute_tool(
    tool: str,
    tool_type: str,
    settings: Settings,
    *,
    arguments: Any,
    call_id: str | None = None,
    server_url: str | None = None,
) -> Iterator[Span]:
    """The span of one tool call; :func:`returned` adds the result when content is shown."""

    def attributes() -> spans.Attributes:
        found: spans.Attributes = {
            semconv.GEN_AI_OPERATION_NAME: semconv.OP_EXECUTE_TOOL,
            semconv.GEN_AI_TOOL_NAME: tool,
            semconv.GEN_AI_TOOL_TYPE: tool_type,
        }
        if call_id:
            found[semconv.GEN_AI_TOOL_CALL_ID] = call_id
        if server_url is not None:
            found |= spans.server(server_url)
        if settings.trace_content:
            secrets = span_content.secrets(settings)
            found[semconv.GEN_AI_TOOL_CALL_ARGUMENTS] = span_content.as_json(arguments, secrets)
        return found

    with spans.span(f"{semconv.OP_EXECUTE_TOOL} {tool}", SpanKind.INTERNAL, attributes) as span:
        yield span


def returned(span: Span, result: Any, settings: Settings) -> None:
    """The tool's result on its span, when content is shown."""
    if settings.trace_content and span.is_recording():
        shown = span_content.as_json(result, span_content.secrets(settings))
        span.set_attribute(semconv.GEN_AI_TOOL_CALL_RESULT, shown)
