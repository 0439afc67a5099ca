"""Provider failures as node errors: which are worth another attempt, how long the provider
asks to wait, and messages that never carry a key.

429, 408, 409, 5xx (and Anthropic's 529 "overloaded"), lost connections, timeouts and errors
sent inside a started stream are retryable through the node's retry policy, with
``Retry-After`` / ``retry-after-ms`` as the delay when the provider sends one; other statuses
(bad request, bad key, unknown model) are not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

import anthropic
import httpx
import openai
import orjson

from app.errors import NodeError
from app.nodes.net import egress
from app.nodes.net.exchange import retry_after_s
from app.redaction import scrub

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
# Error types a provider may send inside a started stream that another attempt will not fix.
NOT_RETRYABLE_TYPES = frozenset(
    {"invalid_request_error", "authentication_error", "permission_error", "not_found_error"}
)
MESSAGE_CHARS = 500  # of a provider's error message kept in the node's error
ERROR_BODY_BYTES = 8 * 1024  # read of an error answer, for its message


class LlmProviderError(NodeError):
    """The provider answered with an error status."""

    code = "llm_provider_error"


class LlmTransportError(NodeError):
    """The call did not complete: no connection, a timeout, a stream cut short."""

    code = "llm_transport"


class LlmAnswerInvalid(NodeError):
    """The answer is not what the node asked for (not JSON, or not matching the schema)."""

    code = "llm_answer_invalid"


def provider_error(
    provider: str,
    exc: Exception,
    *,
    secrets: Iterable[str],
    now: Callable[[], datetime],
) -> NodeError | None:
    """``exc`` as a node error, or None when it is not a provider or transport failure (an
    egress refusal the SDK wrapped is handed back as it was raised: not retried)."""
    if (refused := egress.refusal(exc)) is not None:
        return refused
    if isinstance(exc, openai.APITimeoutError | anthropic.APITimeoutError | httpx.TimeoutException):
        return LlmTransportError(
            f"{provider} did not answer in time", details={"provider": provider}
        )
    if isinstance(exc, openai.APIConnectionError | anthropic.APIConnectionError | httpx.HTTPError):
        cause = exc.__cause__ or exc
        return LlmTransportError(
            scrub(f"{provider} could not be reached: {type(cause).__name__}: {cause}", secrets),
            details={"provider": provider},
        )
    if isinstance(exc, openai.APIStatusError | anthropic.APIStatusError) and exc.status_code >= 400:
        return status_error(
            provider,
            exc.status_code,
            _said(exc.body) or exc.message,
            exc.response.headers,
            secrets=secrets,
            now=now,
        )
    if isinstance(exc, openai.APIError | anthropic.APIError):
        # An error the provider sent inside a stream that had begun (status 200): Anthropic's
        # `overloaded_error` and OpenAI-compatible servers' error frames. Transient as a rule.
        kind = _error_type(exc.body)
        return LlmProviderError(
            scrub(
                f"{provider} failed mid-answer: {_message(_said(exc.body) or exc.message)}", secrets
            ),
            retryable=kind not in NOT_RETRYABLE_TYPES,
            details={"provider": provider, "type": kind} if kind else {"provider": provider},
        )
    return None


def status_error(
    provider: str,
    status: int,
    message: str,
    headers: Mapping[str, str],
    *,
    secrets: Iterable[str],
    now: Callable[[], datetime],
) -> LlmProviderError:
    """An error status, read by an SDK or off the wire (Ollama through httpx)."""
    if status in (401, 403):
        # Providers echo the key they refused, at times masked (sk-abc1****xyz9), which no
        # scrubbing of the whole key would catch: their words are left out.
        text = f"{provider} refused the request ({status}): check the key and its permissions"
    else:
        text = scrub(f"{provider} answered {status}: {_message(message)}", secrets)
    return LlmProviderError(
        text,
        retryable=status in RETRYABLE_STATUS,
        details={"provider": provider, "status": status},
        retry_after_s=_retry_after(headers, now),
    )


async def read_error_text(response: httpx.Response) -> str:
    """At most :data:`ERROR_BODY_BYTES` of an error answer (streamed or not), as text; Ollama's
    ``{"error": "…"}`` gives its message."""
    raw = b""
    async for chunk in response.aiter_bytes():
        raw += chunk
        if len(raw) >= ERROR_BODY_BYTES:
            break
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw[:ERROR_BODY_BYTES].decode(errors="replace")
    return str(parsed.get("error", parsed)) if isinstance(parsed, dict) else str(parsed)


def _said(body: object) -> str | None:
    """The message in a provider's error body (``{"error": {"message": …}}`` or
    ``{"message": …}``), without the SDK's own wrapping."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
    return None


def _error_type(body: object) -> str | None:
    """The error's type in a provider's error body (``{"error": {"type": …}}`` or
    ``{"type": …}``), when it says."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("type"), str):
            return str(inner["type"])
    return None


def _message(message: str) -> str:
    message = " ".join(message.split())
    return message if len(message) <= MESSAGE_CHARS else message[:MESSAGE_CHARS] + "…"


def _retry_after(headers: Mapping[str, str], now: Callable[[], datetime]) -> float | None:
    """``retry-after-ms`` (OpenAI's and Anthropic's precise form) else ``Retry-After``."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis)
        except ValueError:
            value = -1.0
        if value >= 0:
            return value / 1000
    return retry_after_s(headers.get("retry-after"), now())
