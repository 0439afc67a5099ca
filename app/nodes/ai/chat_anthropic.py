"""The Messages API through the ``anthropic`` SDK, with ``tool_use`` / ``tool_result`` blocks."""

from __future__ import annotations

from typing import Any

import anthropic

from app.nodes.ai.chat import (
    DEFAULT_MAX_TOKENS,
    ChatAnswer,
    ChatRequest,
    Message,
    OnText,
    arguments_object,
    tool_call,
)

# Anthropic's stop reasons in the words the other providers use.
FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
}


async def chat(
    client: anthropic.AsyncAnthropic, request: ChatRequest, on_text: OnText | None
) -> ChatAnswer:
    kwargs = _arguments(request)
    if on_text is None:
        message = await client.messages.create(**kwargs)
    else:
        async with client.messages.stream(**kwargs) as stream:  # closed on leaving
            async for text in stream.text_stream:
                on_text(text)
            message = await stream.get_final_message()
    text = "".join(block.text for block in message.content if block.type == "text")
    reason = message.stop_reason
    return ChatAnswer(
        text=text,
        model=message.model or request.model,
        input_tokens=message.usage.input_tokens,
        output_tokens=message.usage.output_tokens,
        finish_reason=FINISH.get(reason, reason) if reason else None,
        tool_calls=[
            tool_call(block.id, block.name, block.input)
            for block in message.content
            if block.type == "tool_use"
        ],
        response_id=message.id or None,
    )


def _arguments(request: ChatRequest) -> dict[str, Any]:
    # System messages go into the system prompt: the Messages API takes only user and assistant.
    system_parts = [m["content"] for m in request.messages if m["role"] == "system"]
    base = request.system_text(with_schema=True)
    system = "\n\n".join([base, *system_parts] if base else system_parts)
    kwargs: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": _messages(request.messages),
    }
    if request.tools:
        kwargs["tools"] = [
            {"name": t.name, "description": t.description, "input_schema": t.parameters}
            for t in request.tools
        ]
        if not request.parallel_tool_calls:
            kwargs["tool_choice"] = {"type": "auto", "disable_parallel_tool_use": True}
    if system:
        kwargs["system"] = system
    if request.temperature is not None:
        kwargs["temperature"] = request.temperature
    if request.stop:
        kwargs["stop_sequences"] = list(request.stop)
    return kwargs


def _messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    """Neutral messages as the Messages API takes them: tool calls as ``tool_use`` blocks, their
    results as ``tool_result`` blocks of a user message, and turns of one role merged (the API
    wants user and assistant to alternate)."""
    merged: list[dict[str, Any]] = []
    for message in messages:
        role = message["role"]
        if role == "system":
            continue
        blocks: list[dict[str, Any]]
        if role == "tool":
            role = "user"
            blocks = [
                {
                    "type": "tool_result",
                    "tool_use_id": message["tool_call_id"],
                    "content": message["content"],
                    "is_error": bool(message.get("is_error")),
                }
            ]
        else:
            text = message["content"]
            blocks = [{"type": "text", "text": text}] if text else []
            blocks += [
                {
                    "type": "tool_use",
                    "id": call["id"],
                    "name": call["name"],
                    "input": arguments_object(call["arguments"]),
                }
                for call in message.get("tool_calls") or ()
            ]
        if merged and merged[-1]["role"] == role:
            merged[-1]["content"] += blocks
        else:
            merged.append({"role": role, "content": blocks})
    return [_plain(m) for m in merged]


def _plain(message: dict[str, Any]) -> dict[str, Any]:
    """A message of one text block as a plain string (the common form)."""
    blocks = message["content"]
    if len(blocks) == 1 and blocks[0]["type"] == "text":
        return {"role": message["role"], "content": blocks[0]["text"]}
    if not blocks:  # an empty turn: the API refuses empty content
        return {"role": message["role"], "content": ""}
    return message
