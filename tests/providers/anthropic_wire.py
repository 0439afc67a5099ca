"""The Anthropic Messages API: ``POST /v1/messages``, plain or streamed as named SSE events
(text and ``tool_use`` blocks), with Anthropic's error bodies."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tests.providers import replies
from tests.providers.replies import Answer, Failure, Reply
from tests.providers.server import ProviderServer, failure_response, new_id


def anthropic_server(*, default: Reply | None = None) -> ProviderServer:
    """An Anthropic Messages server; give ``srv.base`` as ``base_url`` (the SDK adds ``/v1``)."""
    return ProviderServer(routes, default=default)


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def error(failure: Failure) -> JSONResponse:
    fallback = "api_error" if failure.status >= 500 else "invalid_request_error"
    kind = failure.kind or _ERROR_TYPES.get(failure.status, fallback)
    request_id = new_id("req_")
    body = {
        "type": "error",
        "error": {"type": kind, "message": failure.message},
        "request_id": request_id,
    }
    return failure_response(failure, body, {"request-id": request_id})


def _blocks(answer: Answer) -> list[dict[str, Any]]:
    """The content blocks: the text (if any, or if there is nothing else), then tool uses."""
    text = [{"type": "text", "text": answer.text}] if answer.text or not answer.tool_calls else []
    tools = [
        {
            "type": "tool_use",
            "id": call.id or new_id("toolu_"),
            "name": call.name,
            "input": dict(call.arguments),
        }
        for call in answer.tool_calls
    ]
    return text + tools


def _message(answer: Answer, model: Any, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": answer.prompt_tokens,
            "output_tokens": answer.completion_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def _event(name: str, payload: dict[str, Any]) -> bytes:
    data = orjson.dumps({"type": name, **payload})
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


async def _events(
    server: ProviderServer, answer: Answer, model: Any
) -> AsyncGenerator[bytes, None]:
    """message_start, then per block content_block_start (a ping after the first), its deltas
    and content_block_stop, then message_delta (stop reason, output tokens) and message_stop."""
    start = _message(answer, model, [])
    start["usage"] = {**start["usage"], "output_tokens": 1}
    yield _event("message_start", {"message": start})
    for index, block in enumerate(_blocks(answer)):
        is_text = block["type"] == "text"
        opening = {**block, "text": ""} if is_text else {**block, "input": {}}
        yield _event("content_block_start", {"index": index, "content_block": opening})
        if index == 0:
            yield _event("ping", {})
        if is_text:
            async for piece in server.paced(answer):
                delta = {"type": "text_delta", "text": piece}
                yield _event("content_block_delta", {"index": index, "delta": delta})
        else:
            for part in replies.fragments(orjson.dumps(block["input"]).decode()):
                delta = {"type": "input_json_delta", "partial_json": part}
                yield _event("content_block_delta", {"index": index, "delta": delta})
        yield _event("content_block_stop", {"index": index})
    ending = {"stop_reason": _STOP_REASONS[answer.finish], "stop_sequence": None}
    usage = {"output_tokens": answer.completion_tokens}
    yield _event("message_delta", {"delta": ending, "usage": usage})
    yield _event("message_stop", {})


def routes(server: ProviderServer) -> list[BaseRoute]:
    async def messages(request: Request) -> Response:
        body = await server.record(request)
        if not isinstance(body.get("max_tokens"), int):
            return error(Failure(400, "max_tokens: Field required"))
        stream = bool(body.get("stream"))
        last_user, prompt_tokens = replies.prompt(body.get("messages"), body.get("system", ""))
        result = await server.chat_turn(
            request,
            stream=stream,
            last_user=last_user,
            prompt_tokens=prompt_tokens,
            max_tokens=body["max_tokens"],
        )
        if isinstance(result, Failure):
            return error(result)
        headers = {"request-id": new_id("req_")}
        if stream:
            frames = _events(server, result, body.get("model"))
            return server.stream(frames, "text/event-stream", headers)
        message = _message(result, body.get("model"), _blocks(result))
        message["stop_reason"] = _STOP_REASONS[result.finish]
        return JSONResponse(message, headers=headers)

    return [Route("/v1/messages", messages, methods=["POST"])]
