"""Ollama's native chat API (``POST /api/chat``; streamed as NDJSON, with ``tools``) through the
process's shared httpx client."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import orjson

from app.nodes.ai.chat import (
    ChatAnswer,
    ChatRequest,
    Message,
    OnText,
    arguments_object,
    tool_call,
)
from app.nodes.ai.failures import read_error_text

# An error status read off the wire: (status, message, headers) -> the node error to raise.
StatusError = Callable[[int, str, Mapping[str, str]], Exception]


async def chat(
    http: httpx.AsyncClient,
    request: ChatRequest,
    on_text: OnText | None,
    *,
    timeout_s: float,
    status_error: StatusError,
) -> ChatAnswer:
    body = _body(request, stream=on_text is not None)
    parts: list[str] = []
    calls: list[dict[str, Any]] = []
    last: dict[str, Any] = {}
    async with http.stream(
        "POST", f"{request.root}/api/chat", json=body, timeout=timeout_s
    ) as response:  # leaving it (a cancelled run included) closes the connection
        if response.status_code != 200:
            raise status_error(
                response.status_code, await read_error_text(response), response.headers
            )
        async for line in response.aiter_lines():
            if not line.strip():
                continue
            last = orjson.loads(line)
            if "error" in last:
                raise status_error(502, str(last["error"]), {})
            message = last.get("message") or {}
            for call in message.get("tool_calls") or ():
                function = call.get("function") or {}
                call_id = call.get("id") or f"call_{uuid.uuid4().hex[:16]}"  # Ollama gives none
                name, arguments = function.get("name", ""), function.get("arguments")
                calls.append(tool_call(call_id, name, arguments))
            piece = message.get("content") or ""
            if piece:
                parts.append(piece)
                if on_text is not None:
                    on_text(piece)
    return ChatAnswer(
        text="".join(parts),
        model=str(last.get("model") or request.model),
        input_tokens=int(last.get("prompt_eval_count") or 0),
        output_tokens=int(last.get("eval_count") or 0),
        finish_reason="tool_calls" if calls else last.get("done_reason"),
        tool_calls=calls,
    )


def _body(request: ChatRequest, *, stream: bool) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if request.temperature is not None:
        options["temperature"] = request.temperature
    if request.max_tokens is not None:
        options["num_predict"] = request.max_tokens
    if request.stop:
        options["stop"] = list(request.stop)
    body: dict[str, Any] = {
        "model": request.model,
        "messages": request.system_head() + [_message(m) for m in request.messages],
        "stream": stream,
    }
    if request.tools:
        body["tools"] = [tool.as_function() for tool in request.tools]
    if options:
        body["options"] = options
    if isinstance(request.response_format, dict) or request.response_format == "json":
        body["format"] = request.response_format  # "json", or the schema itself
    return body


def _message(message: Message) -> dict[str, Any]:
    """A neutral message as ``/api/chat`` takes it (arguments as objects, results by name)."""
    role = message["role"]
    if role == "tool":
        return {"role": "tool", "content": message["content"], "tool_name": message["name"]}
    if role == "assistant" and message.get("tool_calls"):
        return {
            "role": "assistant",
            "content": message["content"],
            "tool_calls": [
                {
                    "function": {
                        "name": call["name"],
                        "arguments": arguments_object(call["arguments"]),
                    }
                }
                for call in message["tool_calls"]
            ],
        }
    return {"role": role, "content": message["content"]}
