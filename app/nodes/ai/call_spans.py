"""The GenAI spans of model calls (OpenTelemetry's GenAI conventions, ``semconv``'s names).

- ``chat {model}`` (CLIENT) around each call sent to a provider, from the ``llm`` and ``agent``
  nodes alike: the request's parameters, the answer's model, id, finish reason and usage, the
  provider's address. Its time includes the wait for the provider's gate
  (``OXIFY_LLM_LIMITS``); the HTTP span under it is the exchange itself.
- ``chat {model}`` (INTERNAL, ``oxify.llm.cached``) for an answer the process's cache gave: no
  call, no address, no usage.
- ``embeddings {model}`` (CLIENT) around each batch of texts embedded.
- ``invoke_agent {node}`` (INTERNAL) around an agent's loop of turns and tool calls.

Content (messages, system instructions) only as :mod:`app.nodes.span_content` says.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from functools import partial

from opentelemetry.trace import Span, SpanKind

from app.domain.ai_nodes import EmbedderSpec
from app.nodes import span_content, spans
from app.nodes.ai.chat import DEFAULT_MAX_TOKENS, ChatAnswer, ChatRequest
from app.nodes.spans import Attributes
from app.observability import semconv
from app.settings import Settings


def chat(request: ChatRequest, settings: Settings) -> AbstractContextManager[Span]:
    """The span of one call sent; :func:`answered` completes it."""
    return spans.span(
        f"{semconv.OP_CHAT} {request.model}",
        SpanKind.CLIENT,
        partial(_chat_attributes, request, settings),
    )


def answered(span: Span, answer: ChatAnswer, settings: Settings, *, usage: bool = True) -> None:
    """What the answer tells: its model, id, finish reason, and (a paid answer) usage."""
    if not span.is_recording():
        return
    found: Attributes = {semconv.GEN_AI_RESPONSE_MODEL: answer.model}
    if answer.response_id:
        found[semconv.GEN_AI_RESPONSE_ID] = answer.response_id
    if answer.finish_reason:
        found[semconv.GEN_AI_RESPONSE_FINISH_REASONS] = (answer.finish_reason,)
    if usage:
        found[semconv.GEN_AI_USAGE_INPUT_TOKENS] = answer.input_tokens
        found[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] = answer.output_tokens
    if settings.trace_content:
        secrets = span_content.secrets(settings)
        found[semconv.GEN_AI_OUTPUT_MESSAGES] = span_content.answer(
            answer.text, answer.tool_calls, answer.finish_reason, secrets
        )
    span.set_attributes(found)


def cached(request: ChatRequest, answer: ChatAnswer, settings: Settings) -> None:
    """The span of an answer the cache gave (nothing was sent)."""
    with spans.span(
        f"{semconv.OP_CHAT} {request.model}",
        SpanKind.INTERNAL,
        partial(_cached_attributes, request, settings),
    ) as span:
        answered(span, answer, settings, usage=False)


def embeddings(spec: EmbedderSpec, root: str) -> AbstractContextManager[Span]:
    """The span of one batch of texts sent to be embedded."""
    return spans.span(
        f"{semconv.OP_EMBEDDINGS} {spec.model}",
        SpanKind.CLIENT,
        partial(_embeddings_attributes, spec, root),
    )


def embedded(span: Span, dimensions: int | None, input_tokens: int | None) -> None:
    if not span.is_recording():
        return
    if dimensions is not None:
        span.set_attribute(semconv.GEN_AI_EMBEDDINGS_DIMENSION_COUNT, dimensions)
    if input_tokens is not None:
        span.set_attribute(semconv.GEN_AI_USAGE_INPUT_TOKENS, input_tokens)


def agent(name: str, request: ChatRequest) -> AbstractContextManager[Span]:
    """The span of an agent node's loop; ``name`` is the node's key."""
    return spans.span(
        f"{semconv.OP_INVOKE_AGENT} {name}",
        SpanKind.INTERNAL,
        lambda: {
            semconv.GEN_AI_OPERATION_NAME: semconv.OP_INVOKE_AGENT,
            semconv.GEN_AI_AGENT_NAME: name,
            semconv.GEN_AI_PROVIDER_NAME: request.provider,
            semconv.GEN_AI_REQUEST_MODEL: request.model,
        },
    )


def _request_attributes(request: ChatRequest) -> Attributes:
    found: Attributes = {
        semconv.GEN_AI_OPERATION_NAME: semconv.OP_CHAT,
        semconv.GEN_AI_PROVIDER_NAME: request.provider,
        semconv.GEN_AI_REQUEST_MODEL: request.model,
        semconv.GEN_AI_OUTPUT_TYPE: "text" if request.response_format == "text" else "json",
    }
    # What is sent: Anthropic requires a bound and gets the default one.
    max_tokens = request.max_tokens
    if max_tokens is None and request.provider == "anthropic":
        max_tokens = DEFAULT_MAX_TOKENS
    if max_tokens is not None:
        found[semconv.GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
    if request.temperature is not None:
        found[semconv.GEN_AI_REQUEST_TEMPERATURE] = request.temperature
    if request.stop:
        found[semconv.GEN_AI_REQUEST_STOP_SEQUENCES] = request.stop
    return found


def _content(request: ChatRequest, settings: Settings) -> Attributes:
    if not settings.trace_content:
        return {}
    secrets = span_content.secrets(settings)
    found: Attributes = {
        semconv.GEN_AI_INPUT_MESSAGES: span_content.messages(request.messages, secrets)
    }
    if request.system:
        found[semconv.GEN_AI_SYSTEM_INSTRUCTIONS] = span_content.instructions(
            request.system, secrets
        )
    return found


def _chat_attributes(request: ChatRequest, settings: Settings) -> Attributes:
    return _request_attributes(request) | spans.server(request.root) | _content(request, settings)


def _cached_attributes(request: ChatRequest, settings: Settings) -> Attributes:
    return _request_attributes(request) | {semconv.LLM_CACHED: True} | _content(request, settings)


def _embeddings_attributes(spec: EmbedderSpec, root: str) -> Attributes:
    found: Attributes = {
        semconv.GEN_AI_OPERATION_NAME: semconv.OP_EMBEDDINGS,
        semconv.GEN_AI_PROVIDER_NAME: spec.provider,
        semconv.GEN_AI_REQUEST_MODEL: spec.model,
    }
    return found | spans.server(root)
