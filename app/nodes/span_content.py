"""Content on the spans of model and tool calls, only when the deployment opts in
(``OXIFY_TRACE_CONTENT``, or ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``).

Messages take the GenAI conventions' JSON form (``[{"role", "parts": [{"type": "text",
"content"}, {"type": "tool_call", …}, {"type": "tool_call_response", …}]}]``). Every value is
redacted first (the process's secrets scrubbed, fields named like secrets hidden: see
:mod:`app.redaction`), then every text is cut at :data:`CONTENT_CHARS`; a chat span keeps the
latest :data:`CONTENT_MESSAGES` input messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from app import redaction
from app.observability import logs
from app.settings import Settings

CONTENT_CHARS = 4096  # characters of one text on a span (a message part, a tool's arguments)
CONTENT_MESSAGES = 50  # input messages on a chat span: the latest ones
CUT = "…[cut]"
# The neutral finish reasons in the conventions' words (an OpenAI-style "tool_calls").
FINISH = {"tool_calls": "tool_call"}

Message = dict[str, Any]  # a chat message in app.nodes.ai.chat's neutral form


def secrets(settings: Settings) -> list[str]:
    """The values content must not show: every secret of the settings."""
    return logs.secret_values(settings)


def messages(items: Sequence[Message], secret_values: Sequence[str]) -> str:
    """Input messages (the latest :data:`CONTENT_MESSAGES`) as the conventions' JSON."""
    return as_json([_message(m) for m in items[-CONTENT_MESSAGES:]], secret_values)


def answer(
    text: str,
    tool_calls: Sequence[dict[str, Any]],
    finish_reason: str | None,
    secret_values: Sequence[str],
) -> str:
    """One output message (the model's answer) as the conventions' JSON."""
    message = _message({"role": "assistant", "content": text, "tool_calls": tool_calls})
    if finish_reason is not None:
        message["finish_reason"] = FINISH.get(finish_reason, finish_reason)
    return as_json([message], secret_values)


def instructions(system: str, secret_values: Sequence[str]) -> str:
    """System instructions as the conventions' JSON."""
    return as_json([{"type": "text", "content": system}], secret_values)


def as_json(value: Any, secret_values: Sequence[str]) -> str:
    """``value`` redacted, then cut (a secret cut in two would escape the scrubbing), as
    JSON text; a text stays text."""
    shown = _cut(redaction.redact(value, secret_values))
    if isinstance(shown, str):
        return shown
    return orjson.dumps(shown, default=str).decode()


def _message(message: Message) -> dict[str, Any]:
    if message["role"] == "tool":
        part = {
            "type": "tool_call_response",
            "id": message.get("tool_call_id"),
            "response": message.get("content"),
        }
        return {"role": "tool", "parts": [part]}
    parts: list[dict[str, Any]] = []
    if message.get("content"):
        parts.append({"type": "text", "content": message["content"]})
    parts += [
        {"type": "tool_call", "id": c["id"], "name": c["name"], "arguments": c["arguments"]}
        for c in message.get("tool_calls") or ()
    ]
    return {"role": message["role"], "parts": parts}


def _cut(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= CONTENT_CHARS else value[:CONTENT_CHARS] + CUT
    if isinstance(value, dict):
        return {key: _cut(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_cut(item) for item in value]
    return value
