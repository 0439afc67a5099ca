"""Chat completions through the ``openai`` SDK (OpenAI and any OpenAI-compatible server),
with function tools."""

from __future__ import annotations

from typing import Any

import openai

from app.nodes.ai.chat import (
    ChatAnswer,
    ChatRequest,
    Message,
    OnText,
    arguments_text,
    tool_call,
)
from app.nodes.ai.clients import OPENAI_DEFAULT_URL


async def chat(
    client: openai.AsyncOpenAI, request: ChatRequest, on_text: OnText | None
) -> ChatAnswer:
    kwargs = _arguments(request)
    if on_text is None:
        completion = await client.chat.completions.create(**kwargs)
        choice = completion.choices[0] if completion.choices else None
        usage = completion.usage
        calls = (choice.message.tool_calls or []) if choice else []
        return ChatAnswer(
            text=(choice.message.content or "") if choice else "",
            model=completion.model or request.model,
            input_tokens=usage.prompt_tokens if usage else 0,
            output_tokens=usage.completion_tokens if usage else 0,
            finish_reason=choice.finish_reason if choice else None,
            tool_calls=[
                tool_call(c.id, c.function.name, c.function.arguments)
                for c in calls
                if c.type == "function"
            ],
            response_id=completion.id or None,
        )
    parts: list[str] = []
    model, finish, input_tokens, output_tokens = request.model, None, 0, 0
    response_id: str | None = None
    calls_by_index: dict[int, dict[str, Any]] = {}  # a streamed call comes in fragments
    stream = await client.chat.completions.create(
        **kwargs, stream=True, stream_options={"include_usage": True}
    )
    async with stream:  # leaving it (a cancelled run included) closes the connection
        async for chunk in stream:
            model = chunk.model or model
            response_id = chunk.id or response_id
            if chunk.usage is not None:
                input_tokens = chunk.usage.prompt_tokens
                output_tokens = chunk.usage.completion_tokens
            for choice in chunk.choices:
                if choice.delta.content:
                    parts.append(choice.delta.content)
                    on_text(choice.delta.content)
                for fragment in choice.delta.tool_calls or []:
                    call = calls_by_index.setdefault(
                        fragment.index, {"id": "", "name": "", "arguments": ""}
                    )
                    call["id"] = fragment.id or call["id"]
                    if fragment.function is not None:
                        call["name"] += fragment.function.name or ""
                        call["arguments"] += fragment.function.arguments or ""
                if choice.finish_reason:
                    finish = choice.finish_reason
    calls = [
        tool_call(c["id"], c["name"], c["arguments"]) for _, c in sorted(calls_by_index.items())
    ]
    return ChatAnswer(
        "".join(parts), model, input_tokens, output_tokens, finish, calls, response_id
    )


def _arguments(request: ChatRequest) -> dict[str, Any]:
    # The messages and tools go as ``extra_body``, which the SDK sends as written (over the typed
    # parameters): its typed path walks every message against its annotations first, CPU that
    # blocks the event loop and grows with the transcript (37 ms for an agent's 100 turns, 2 ms
    # this way). ``messages`` itself is required, so it is given empty.
    body: dict[str, Any] = {
        "messages": request.system_head() + [_message(m) for m in request.messages]
    }
    kwargs: dict[str, Any] = {"model": request.model, "messages": [], "extra_body": body}
    if request.tools:
        body["tools"] = [tool.as_function() for tool in request.tools]
        kwargs["parallel_tool_calls"] = request.parallel_tool_calls
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


def _message(message: Message) -> dict[str, Any]:
    """A neutral message as the chat completions API takes it."""
    role = message["role"]
    if role == "tool":
        return {
            "role": "tool",
            "tool_call_id": message["tool_call_id"],
            "content": message["content"],
        }
    if role == "assistant" and message.get("tool_calls"):
        return {
            "role": "assistant",
            "content": message["content"] or None,
            "tool_calls": [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {
                        "name": call["name"],
                        "arguments": arguments_text(call["arguments"]),
                    },
                }
                for call in message["tool_calls"]
            ],
        }
    return {"role": role, "content": message["content"]}
