"""Chat completions through the ``openai`` SDK (OpenAI and any OpenAI-compatible server)."""

from __future__ import annotations

from typing import Any

import openai

from app.nodes.ai.chat import ChatAnswer, ChatRequest, OnText
from app.nodes.ai.clients import OPENAI_DEFAULT_URL


async def chat(
    client: openai.AsyncOpenAI, request: ChatRequest, on_text: OnText | None
) -> ChatAnswer:
    kwargs = _arguments(request)
    if on_text is None:
        completion = await client.chat.completions.create(**kwargs)
        choice = completion.choices[0] if completion.choices else None
        usage = completion.usage
        return ChatAnswer(
            text=(choice.message.content or "") if choice else "",
            model=completion.model or request.model,
            input_tokens=usage.prompt_tokens if usage else 0,
            output_tokens=usage.completion_tokens if usage else 0,
            finish_reason=choice.finish_reason if choice else None,
        )
    parts: list[str] = []
    model, finish, input_tokens, output_tokens = request.model, None, 0, 0
    stream = await client.chat.completions.create(
        **kwargs, stream=True, stream_options={"include_usage": True}
    )
    async with stream:  # leaving it (a cancelled run included) closes the connection
        async for chunk in stream:
            model = chunk.model or model
            if chunk.usage is not None:
                input_tokens = chunk.usage.prompt_tokens
                output_tokens = chunk.usage.completion_tokens
            for choice in chunk.choices:
                if choice.delta.content:
                    parts.append(choice.delta.content)
                    on_text(choice.delta.content)
                if choice.finish_reason:
                    finish = choice.finish_reason
    return ChatAnswer("".join(parts), model, input_tokens, output_tokens, finish)


def _arguments(request: ChatRequest) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "model": request.model,
        "messages": request.chat_messages(),
    }
    if request.temperature is not None:
        kwargs["temperature"] = request.temperature
    if request.max_tokens is not None:
        # OpenAI's own API takes max_completion_tokens (its reasoning models refuse max_tokens);
        # OpenAI-compatible servers know max_tokens.
        official = request.root == OPENAI_DEFAULT_URL
        kwargs["max_completion_tokens" if official else "max_tokens"] = request.max_tokens
    if request.stop:
        kwargs["stop"] = list(request.stop)
    if isinstance(request.response_format, dict):
        kwargs["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": request.response_format},
        }
    elif request.response_format == "json":
        kwargs["response_format"] = {"type": "json_object"}
    return kwargs
