"""Provider failures as node errors: which are worth another attempt, how long the provider
asks to wait, and messages that never carry a key.

429, 408, 409, 5xx (and Anthropic's 529 "overloaded"), lost connections and timeouts are
retryable through the node's retry policy, with ``Retry-After`` / ``retry-after-ms`` as the
delay when the provider sends one; other statuses (bad request, bad key, unknown model) are not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

import anthropic
import httpx
import openai

from app.errors import NodeError
from app.nodes.net import egress
from app.nodes.net.exchange import retry_after_s

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
MESSAGE_CHARS = 500  # of a provider's error message kept in the node's error


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
    if isinstance(exc, openai.APIStatusError | anthropic.APIStatusError):
        status = exc.status_code
        return LlmProviderError(
            scrub(f"{provider} answered {status}: {_message(exc.message)}", secrets),
            retryable=status in RETRYABLE_STATUS,
            details={"provider": provider, "status": status},
            retry_after_s=_retry_after(exc.response.headers, now),
        )
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
    """An error status read without an SDK (Ollama through httpx)."""
    return LlmProviderError(
        scrub(f"{provider} answered {status}: {_message(message)}", secrets),
        retryable=status in RETRYABLE_STATUS,
        details={"provider": provider, "status": status},
        retry_after_s=_retry_after(headers, now),
    )


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced (a provider may echo the key it refused)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[secret]")
    return text


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
