"""The OpenAI API: ``POST /v1/chat/completions`` (plain and SSE streamed, tool calls) and
``POST /v1/embeddings`` (float or base64 vectors), with OpenAI's error bodies."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tests.providers import replies
from tests.providers.embedding import as_base64, embed
from tests.providers.replies import Answer, Failure, Reply
from tests.providers.server import DIMENSIONS, ProviderServer, failure_response, new_id


def openai_server(*, default: Reply | None = None, dimensions: int = DIMENSIONS) -> ProviderServer:
    """An OpenAI-compatible server; give ``srv.url`` (it ends in ``/v1``) as ``base_url``."""
    return ProviderServer(routes, prefix="/v1", default=default, dimensions=dimensions)


def _error_type(status: int) -> tuple[str, str | None]:
    if status == 401:
        return "invalid_request_error", "invalid_api_key"
    if status == 404:
        return "invalid_request_error", "model_not_found"
    if status == 429:
        return "requests", "rate_limit_exceeded"
    if status >= 500:
        return "server_error", None
    return "invalid_request_error", None


def error(failure: Failure) -> JSONResponse:
    kind, code = _error_type(failure.status)
    body = {
        "error": {
            "message": failure.message,
            "type": failure.kind or kind,
            "param": None,
            "code": failure.code or code,
        }
    }
    return failure_response(failure, body, {"x-request-id": new_id("req_")})


def _sse(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _tool_calls(answer: Answer, ids: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "id": call_id,
            "type": "function",
            "function": {"name": call.name, "arguments": orjson.dumps(call.arguments).decode()},
        }
        for call, call_id in zip(answer.tool_calls, ids, strict=True)
    ]


def _usage(answer: Answer) -> dict[str, int]:
    completion = answer.completion_tokens
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": answer.prompt_tokens + completion,
    }


async def _chunks(
    server: ProviderServer, answer: Answer, head: dict[str, Any], include_usage: bool
) -> AsyncGenerator[bytes, None]:
    """``chat.completion.chunk`` events: role, content pieces, tool-call fragments, the finish
    reason, the usage chunk (``choices: []``) when asked for, then ``[DONE]``."""
    head = {**head, "object": "chat.completion.chunk"}
    if include_usage:
        head["usage"] = None  # as OpenAI does: every chunk but the last has a null usage

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse({**head, "choices": [choice]})

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    async for piece in server.paced(answer):
        yield chunk({"content": piece})
    ids = [call.id or new_id("call_") for call in answer.tool_calls]
    for index, call in enumerate(_tool_calls(answer, ids)):
        function = {"name": call["function"]["name"], "arguments": ""}
        yield chunk({"tool_calls": [{**call, "index": index, "function": function}]})
        for part in replies.fragments(call["function"]["arguments"]):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]})
    yield chunk({}, answer.finish)
    if include_usage:
        yield _sse({**head, "choices": [], "usage": _usage(answer)})
    yield b"data: [DONE]\n\n"


def _completion(answer: Answer, head: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": answer.text or (None if answer.tool_calls else ""),
        "refusal": None,
        "annotations": [],
    }
    if answer.tool_calls:
        ids = [call.id or new_id("call_") for call in answer.tool_calls]
        message["tool_calls"] = _tool_calls(answer, ids)
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": answer.finish}
    return {**head, "object": "chat.completion", "choices": [choice], "usage": _usage(answer)}


def _inputs(value: Any) -> list[str]:
    """Embedding inputs: a string, strings, a token array or token arrays (tokens as words)."""
    if isinstance(value, str):
        return [value]
    items = value if isinstance(value, list) else []
    if items and all(isinstance(t, int) for t in items):
        return [" ".join(map(str, items))]
    return [v if isinstance(v, str) else " ".join(map(str, v)) for v in items]


def routes(server: ProviderServer) -> list[BaseRoute]:
    async def chat(request: Request) -> Response:
        body = await server.record(request)
        stream = bool(body.get("stream"))
        last_user, prompt_tokens = replies.prompt(body.get("messages"))
        result = await server.chat_turn(
            request,
            stream=stream,
            last_user=last_user,
            prompt_tokens=prompt_tokens,
            max_tokens=body.get("max_completion_tokens", body.get("max_tokens")),
        )
        if isinstance(result, Failure):
            return error(result)
        head = {"id": new_id("chatcmpl-"), "created": int(time.time()), "model": body.get("model")}
        headers = {"x-request-id": new_id("req_")}
        if stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            frames = _chunks(server, result, head, include_usage)
            return server.stream(frames, "text/event-stream", headers)
        return JSONResponse(_completion(result, head), headers=headers)

    async def embeddings(request: Request) -> Response:
        body = await server.record(request)
        failure = await server.embed_turn(request)
        if failure is not None:
            return error(failure)
        texts = _inputs(body.get("input"))
        dimensions = body.get("dimensions") or server.dimensions
        vectors = [embed(text, dimensions) for text in texts]
        encoded = (
            [as_base64(v) for v in vectors] if body.get("encoding_format") == "base64" else vectors
        )
        data = [
            {"object": "embedding", "index": i, "embedding": vector}
            for i, vector in enumerate(encoded)
        ]
        tokens = sum(replies.count_tokens(text) for text in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        content = {"object": "list", "data": data, "model": body.get("model"), "usage": usage}
        return JSONResponse(content, headers={"x-request-id": new_id("req_")})

    return [
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
    ]
