"""A local HTTP (and GraphQL-speaking) server for the outbound-call tests: it records what
arrives (headers, query, body, when) and answers by path."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.e2e.live import start_uvicorn


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    query: list[tuple[str, str]]
    body: str
    at: float  # time.monotonic() on arrival


@dataclass
class NetServer:
    url: str  # http://127.0.0.1:<port>
    port: int
    requests: list[Seen] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [seen.path for seen in self.requests]


def make_app(server: NetServer) -> Starlette:
    async def record(request: Request) -> Seen:
        seen = Seen(
            request.method,
            request.url.path,
            dict(request.headers),
            list(request.query_params.multi_items()),
            (await request.body()).decode(),
            time.monotonic(),
        )
        server.requests.append(seen)
        return seen

    async def echo(request: Request) -> Response:
        seen = await record(request)
        return JSONResponse({"headers": seen.headers, "query": seen.query, "path": seen.path})

    async def refuse(request: Request) -> Response:
        """A 401 that quotes the request's headers back (as some servers' errors do)."""
        seen = await record(request)
        return PlainTextResponse(f"refused: {seen.headers}", status_code=401)

    async def answer(request: Request) -> Response:
        """Like echo, without the request's headers (a tool's answer a test shows the model)."""
        seen = await record(request)
        return JSONResponse({"query": seen.query, "path": seen.path})

    async def status(request: Request) -> Response:
        await record(request)
        return PlainTextResponse("no", status_code=int(request.path_params["code"]))

    async def redirect(request: Request) -> Response:
        await record(request)
        target = request.query_params["to"]
        return RedirectResponse(target, status_code=int(request.query_params.get("code", "302")))

    async def loop(request: Request) -> Response:
        await record(request)
        return RedirectResponse("/loop", status_code=302)

    async def graphql(request: Request) -> Response:
        seen = await record(request)
        sent: dict[str, Any] = json.loads(seen.body)
        query = sent["query"]
        if "broken" in query:
            errors = [{"message": "Cannot query field 'broken' on type 'Query'."}]
            return JSONResponse({"errors": errors})
        if "busy" in query:
            errors = [{"message": "overloaded"}]
            return JSONResponse({"errors": errors}, status_code=503, headers={"Retry-After": "2"})
        if "crash" in query:
            return PlainTextResponse("internal error", status_code=500)
        return JSONResponse(
            {
                "data": {
                    "query": query,
                    "variables": sent.get("variables"),
                    "operationName": sent.get("operationName"),
                    "authorization": seen.headers.get("authorization"),
                }
            }
        )

    return Starlette(
        routes=[
            Route("/echo/{rest:path}", echo, methods=["GET", "POST"]),
            Route("/answer/{rest:path}", answer, methods=["GET", "POST"]),
            Route("/refuse", refuse, methods=["GET", "POST"]),
            Route("/status/{code:int}", status),
            Route("/redirect", redirect),
            Route("/loop", loop),
            Route("/graphql", graphql, methods=["POST"]),
        ]
    )


@asynccontextmanager
async def net_server() -> AsyncIterator[NetServer]:
    """The server on a free loopback port, for the block."""
    server = NetServer("", 0)
    instance, serving, sock = await start_uvicorn(make_app(server), lifespan="off", ws="none")
    server.port = sock.getsockname()[1]
    server.url = f"http://127.0.0.1:{server.port}"
    try:
        yield server
    finally:
        instance.should_exit = True
        await serving
        sock.close()
