"""The Ollama API: ``POST /api/chat`` (NDJSON streamed unless ``"stream": false`` — streaming is
Ollama's default; tool calls) and ``POST /api/embed``, with Ollama's ``{"error": …}`` bodies."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tests.providers import replies
from tests.providers.embedding import embed
from tests.providers.replies import Answer, Failure, Reply
from tests.providers.server import DIMENSIONS, ProviderServer, failure_response, new_id


def ollama_server(*, default: Reply | None = None, dimensions: int = DIMENSIONS) -> ProviderServer:
    """An Ollama server; ``srv.url`` (= ``srv.base``) is the host to send ``/api/…`` to."""
    return ProviderServer(routes, default=default, dimensions=dimensions)


def error(failure: Failure) -> JSONResponse:
    return failure_response(failure, {"error": failure.message})


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _line(payload: dict[str, Any]) -> bytes:
    return orjson.dumps(payload) + b"\n"


def _tool_calls(answer: Answer) -> list[dict[str, Any]]:
    return [
        {
            "id": call.id or new_id("call_"),
            "function": {"index": i, "name": call.name, "arguments": dict(call.arguments)},
        }
        for i, call in enumerate(answer.tool_calls)
    ]


def _done(answer: Answer, started_ns: int) -> dict[str, Any]:
    """The closing fields of a chat: durations in nanoseconds, token counts."""
    elapsed = time.perf_counter_ns() - started_ns
    return {
        "done": True,
        "done_reason": "length" if answer.finish == "length" else "stop",
        "total_duration": elapsed,
        "load_duration": 0,
        "prompt_eval_count": answer.prompt_tokens,
        "prompt_eval_duration": 0,
        "eval_count": answer.completion_tokens,
        "eval_duration": elapsed,
    }


async def _lines(
    server: ProviderServer, answer: Answer, model: Any, started_ns: int
) -> AsyncGenerator[bytes, None]:
    def line(message: dict[str, Any], **fields: Any) -> bytes:
        role = {"role": "assistant"}
        return _line({"model": model, "created_at": _now(), "message": role | message, **fields})

    async for piece in server.paced(answer):
        yield line({"content": piece}, done=False)
    if answer.tool_calls:
        yield line({"content": "", "tool_calls": _tool_calls(answer)}, done=False)
    yield line({"content": ""}, **_done(answer, started_ns))


def routes(server: ProviderServer) -> list[BaseRoute]:
    async def chat(request: Request) -> Response:
        started_ns = time.perf_counter_ns()
        body = await server.record(request)
        if not body.get("model"):
            return error(Failure(400, "model is required"))
        stream = body.get("stream", True) is not False
        last_user, prompt_tokens = replies.prompt(body.get("messages"))
        result = await server.chat_turn(
            request,
            stream=stream,
            last_user=last_user,
            prompt_tokens=prompt_tokens,
            max_tokens=(body.get("options") or {}).get("num_predict"),
        )
        if isinstance(result, Failure):
            return error(result)
        model = body["model"]
        if stream:
            frames = _lines(server, result, model, started_ns)
            return server.stream(frames, "application/x-ndjson", {})
        message: dict[str, Any] = {"role": "assistant", "content": result.text}
        if result.tool_calls:
            message["tool_calls"] = _tool_calls(result)
        fields = {"model": model, "created_at": _now(), "message": message}
        return JSONResponse(fields | _done(result, started_ns))

    async def embed_(request: Request) -> Response:
        started_ns = time.perf_counter_ns()
        body = await server.record(request)
        failure = await server.embed_turn(request)
        if failure is not None:
            return error(failure)
        given = body.get("input", [])
        texts = [given] if isinstance(given, str) else list(given)
        dimensions = body.get("dimensions") or server.dimensions
        return JSONResponse(
            {
                "model": body.get("model"),
                "embeddings": [embed(text, dimensions) for text in texts],
                "total_duration": time.perf_counter_ns() - started_ns,
                "load_duration": 0,
                "prompt_eval_count": sum(replies.count_tokens(text) for text in texts),
            }
        )

    return [
        Route("/api/chat", chat, methods=["POST"]),
        Route("/api/embed", embed_, methods=["POST"]),
    ]
