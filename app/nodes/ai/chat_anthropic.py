"""The Messages API through the ``anthropic`` SDK."""

from __future__ import annotations

from typing import Any

import anthropic

from app.nodes.ai.chat import DEFAULT_MAX_TOKENS, ChatAnswer, ChatRequest, OnText

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
    )


def _arguments(request: ChatRequest) -> dict[str, Any]:
    # System messages go into the system prompt: the Messages API takes only user and assistant.
    system_parts = [content for role, content in request.messages if role == "system"]
    base = request.system_text(with_schema=True)
    system = "\n\n".join([base, *system_parts] if base else system_parts)
    kwargs: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": [
            {"role": role, "content": content}
            for role, content in request.messages
            if role != "system"
        ],
    }
    if system:
        kwargs["system"] = system
    if request.temperature is not None:
        kwargs["temperature"] = request.temperature
    if request.stop:
        kwargs["stop_sequences"] = list(request.stop)
    return kwargs
