"""A real MCP server (the ``mcp`` package's MCPServer) over streamable HTTP on 127.0.0.1.

It can be stopped and started again on the same port, as a restarted server would be. Its
tools: ``add`` (structured content), ``shout`` (text only), ``lines`` (two text blocks),
``refuse`` (a tool error), ``lookup_order`` (an order's status, for the agent examples),
``wait`` (answers once ``release`` is set: timeouts and cancel; it records each request's
``_meta``, where a client's idempotency key travels). It records the ``traceparent`` header of
every HTTP request that has one.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.e2e.live import ReadyServer, start_uvicorn

MCP_PATH = "/mcp"
STARTUP_TIMEOUT_S = 15.0  # seconds


class Sum(BaseModel):
    total: int
    terms: list[int]


class Order(BaseModel):
    order_id: str
    status: str
    total_cents: int


@dataclass
class ToolLog:
    """What the server's tools saw, and the events a test waits on."""

    calls: list[tuple[str, dict[str, object]]] = field(default_factory=list)
    waiting: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    wait_meta: list[dict[str, object]] = field(default_factory=list)  # each wait call's _meta
    traceparents: list[str] = field(default_factory=list)  # of the HTTP requests that had one


def make_server(log: ToolLog) -> MCPServer:
    server = MCPServer("oxify-test", log_level="WARNING")

    @server.tool(description="Adds two integers.")
    def add(a: int, b: int) -> Sum:
        log.calls.append(("add", {"a": a, "b": b}))
        return Sum(total=a + b, terms=[a, b])

    @server.tool(description="Upper-cases a text.", structured_output=False)
    def shout(text: str) -> str:
        log.calls.append(("shout", {"text": text}))
        return text.upper() + "!"

    @server.tool(description="Two text blocks.", structured_output=False)
    def lines() -> list[str]:
        log.calls.append(("lines", {}))
        return ["first", "second"]

    @server.tool(description="Always fails.")
    def refuse(reason: str) -> str:
        log.calls.append(("refuse", {"reason": reason}))
        raise ToolError(f"refused: {reason}")

    @server.tool(description="Looks an order up by id: its status, items and total in cents.")
    def lookup_order(order_id: str) -> Order:
        log.calls.append(("lookup_order", {"order_id": order_id}))
        return Order(order_id=order_id, status="delivered, reported broken", total_cents=4999)

    @server.tool(description="Answers once the test releases it.")
    async def wait(ctx: Context) -> str:
        log.calls.append(("wait", {}))
        log.wait_meta.append(dict(ctx.request_context.meta or {}))
        log.waiting.set()
        await log.release.wait()
        return "released"

    return server


@dataclass
class McpTestServer:
    """The server on a fixed loopback port: ``start`` and ``stop`` as often as a test likes."""

    log: ToolLog = field(default_factory=ToolLog)
    port: int = 0
    _server: ReadyServer | None = None
    _serving: asyncio.Task[None] | None = None
    _sock: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{MCP_PATH}"

    async def start(self) -> None:
        app = make_server(self.log).streamable_http_app(streamable_http_path=MCP_PATH)
        self._server, self._serving, self._sock = await start_uvicorn(
            _recording_traceparents(app, self.log),
            lifespan="on",
            timeout_graceful_shutdown=1,
            port=self.port,
        )
        self.port = self._sock.getsockname()[1]

    async def stop(self) -> None:
        if self._server is None or self._serving is None or self._sock is None:
            return
        self.log.release.set()  # a waiting tool answers, so the server can stop
        self._server.should_exit = True
        await self._serving
        self._sock.close()
        self._server = self._serving = self._sock = None

    async def __aenter__(self) -> McpTestServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def _recording_traceparents(app: ASGIApp, log: ToolLog) -> ASGIApp:
    async def recording(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = dict(scope["headers"]).get(b"traceparent")
            if found is not None:
                log.traceparents.append(found.decode())
        await app(scope, receive, send)

    return recording


@contextmanager
def mcp_server_thread() -> Iterator[McpTestServer]:
    """The server on an event loop of its own thread (``oxify run`` runs its own loop)."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    served: list[McpTestServer] = []

    def serve() -> None:
        server = McpTestServer()
        loop.run_until_complete(server.start())
        served.append(server)
        started.set()
        loop.run_forever()
        loop.run_until_complete(server.stop())
        loop.close()

    thread = threading.Thread(target=serve, name="mcp test server", daemon=True)
    thread.start()
    assert started.wait(STARTUP_TIMEOUT_S), "the MCP test server did not start"
    try:
        yield served[0]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(STARTUP_TIMEOUT_S)
