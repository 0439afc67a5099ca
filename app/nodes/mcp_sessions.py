"""Pooled MCP client sessions: one open, initialized session per server, shared by every call
of every run in the process, re-opened when it breaks.

The SDK keeps a session's transport in anyio task groups and context managers, which must be
entered and left by one task; so each session has an *owner task* that opens the HTTP client,
the transport and the session, then waits for the signal to close them. Calls are made from the
nodes' own tasks (MCP allows concurrent requests on one session). When the transport fails (the
server went away), the SDK ends the whole session: every call in flight on it fails, the owner
task ends with the cause, and the pool opens a new session for the next call.

Re-sending rule: a call that failed because its session broke is sent again on a fresh session,
once and within the same node attempt, only when it provably never reached the server:

- the connection could not even be made (``ConnectError``: nothing was sent) while this call was
  the only one in flight on the session (so the failed connection was its own), or
- the server answered that it does not know the session (HTTP 404 ``Session terminated``: a
  restarted server refuses the request before running any tool).

Any other broken call may have run the tool: it fails the attempt as retryable
(``mcp_connection_lost``) and the node's retry policy decides whether to call again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2
import mcp_types
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from opentelemetry import context as otel_context

from app.errors import NodeError
from app.nodes.net import egress

CLOSE_TIMEOUT_S = 5.0  # seconds a session gets to close before its owner task is cancelled
FAILURE_WAIT_S = 1.0  # seconds to wait for a broken session's owner task to report the cause
MAX_TOOL_PAGES = 100  # pages of tools/list read before giving up on a server that never ends
SESSION_UNKNOWN = "Session terminated"  # the SDK's text for a server's 404 on a session id


class McpUnreachable(NodeError):
    """The MCP server could not be reached, or did not open a session in time."""

    code = "mcp_unreachable"


class McpConnectionLost(NodeError):
    """The connection to the MCP server broke during a call; the tool may have run."""

    code = "mcp_connection_lost"


class McpTimeout(NodeError):
    """The tool call did not finish within the node's timeout_s."""

    code = "mcp_timeout"


class McpRequestFailed(NodeError):
    """The MCP server refused or failed the request (a protocol-level error)."""

    code = "mcp_request_failed"


class McpUnknownTool(NodeError):
    """The MCP server has no tool of that name."""

    code = "mcp_unknown_tool"
    retryable = False


@dataclass(frozen=True, slots=True)
class McpServer:
    """Where a session goes: the pool key, the URL, the headers every request carries, and a
    label for messages (a server's name, or its URL without userinfo and query)."""

    key: str
    url: str
    label: str
    headers: Mapping[str, str] = field(default_factory=dict)


MakeHttp = Callable[[McpServer], httpx2.AsyncClient]


class Session:
    """One open session on one server, held by its owner task (see the module docstring)."""

    def __init__(self, server: McpServer, make_http: MakeHttp) -> None:
        self.server = server
        self._make_http = make_http
        self._close = asyncio.Event()
        self._ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        self._owner: asyncio.Task[None] | None = None
        self.failure: Exception | None = None
        self.in_flight = 0  # requests sent on the session and not answered yet
        self.sent = 0  # requests sent on the session so far
        self.tools: dict[str, mcp_types.Tool] | None = None  # by name, as last listed

    @property
    def alive(self) -> bool:
        return self._owner is not None and not self._owner.done() and self._ready.done()

    @property
    def client(self) -> Client:
        return self._ready.result()

    @contextlib.contextmanager
    def request(self) -> Iterator[Callable[[], bool]]:
        """Count one request in flight; yields whether it has been the only request in flight
        from its start until now (then a connection that failed meanwhile was its own)."""
        alone_at_start = self.in_flight == 0
        self.in_flight += 1
        self.sent += 1
        mark = self.sent
        try:
            yield lambda: alone_at_start and self.sent == mark
        finally:
            self.in_flight -= 1

    async def open(self, timeout_s: float) -> None:
        """Start the owner task and wait until the session is initialized; raises
        McpUnreachable (after at most ``timeout_s``) and leaves nothing running."""
        self._owner = asyncio.create_task(self._own(), name=f"mcp session {self.server.label}")
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(self._ready)
        except TimeoutError:
            await self.close()
            raise McpUnreachable(
                f"MCP server {self.server.label} did not open a session within {timeout_s:g} s"
            ) from None
        except BaseException as exc:
            await self.close()
            if (refused := egress.refusal(exc)) is not None:
                raise refused from None  # not "unreachable": another attempt would not help
            if isinstance(exc, Exception):
                raise McpUnreachable(
                    f"MCP server {self.server.label} could not be reached: {describe(exc)}"
                ) from None
            raise

    async def close(self) -> None:
        """Leave the session's contexts in its owner task; cancel it if it does not finish (at
        once while it is still opening, so a server that never answers costs no extra wait)."""
        owner = self._owner
        if owner is None or owner.done():
            return
        if not self._ready.done():  # still opening (a silent server): nothing to leave in order
            owner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await owner
            return
        self._close.set()
        try:
            await asyncio.wait_for(asyncio.shield(owner), CLOSE_TIMEOUT_S)
        except TimeoutError:
            owner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await owner

    async def cause(self) -> Exception | None:
        """Why the session broke: waits (briefly) for its owner task to end with the cause."""
        if self._owner is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._owner), FAILURE_WAIT_S)
        return self.failure

    async def _own(self) -> None:
        # The session outlives the call that opened it: its own requests (initialize, the GET
        # stream, the closing DELETE) belong to no run's trace. Calls carry their caller's.
        otel_context.attach(otel_context.Context())
        try:
            http = self._make_http(self.server)
            transport = streamable_http_client(self.server.url, http_client=http)
            async with http, Client(transport) as client:
                self._ready.set_result(client)
                await self._close.wait()
        except Exception as exc:  # kept for the callers; the task itself ends quietly
            self.failure = exc
            if not self._ready.done():
                self._ready.set_exception(exc)
                self._ready.exception()  # retrieved: a caller gone by now must not be warned


MAX_SESSIONS = 32  # open sessions kept per process; the least recently used idle ones go


class SessionPool:
    """The sessions of a process, one per server key, at most :data:`MAX_SESSIONS` of them
    kept; closed with the node resources."""

    def __init__(self, make_http: MakeHttp, connect_timeout_s: float) -> None:
        self._make_http = make_http
        self._connect_timeout_s = connect_timeout_s
        self._sessions: dict[str, Session] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._closed = False

    async def session(self, server: McpServer) -> Session:
        """The server's open session, opened now if there is none (or it broke)."""
        lock = self._locks.setdefault(server.key, asyncio.Lock())
        async with lock:
            if self._closed:
                raise McpUnreachable("the MCP session pool is closed (shutting down)")
            session = self._sessions.pop(server.key, None)
            if session is not None and session.alive:
                self._sessions[server.key] = session  # the most recently used, last
                return session
            if session is not None:
                await self._drop(session)
            session = Session(server, self._make_http)
            await session.open(self._connect_timeout_s)
            self._sessions[server.key] = session
        await self._evict()
        return session

    async def _evict(self) -> None:
        """Close the least recently used idle sessions past :data:`MAX_SESSIONS`: servers are
        named by URL in documents (and asked during validation), so their number is the
        documents' to choose, not the process's to keep."""
        excess = len(self._sessions) - MAX_SESSIONS
        idle = [s for s in self._sessions.values() if s.in_flight == 0][: max(0, excess)]
        for session in idle:
            lock = self._locks.get(session.server.key)
            if lock is not None and not lock.locked():  # else someone is opening it again
                del self._locks[session.server.key]
            await self._drop(session)

    def __len__(self) -> int:
        """The sessions kept open."""
        return len(self._sessions)

    async def tool_names(self, server: McpServer, *, refresh: bool = False) -> frozenset[str]:
        """The names of the server's tools (see :meth:`tools`)."""
        return frozenset(await self.tools(server, refresh=refresh))

    async def tools(self, server: McpServer, *, refresh: bool = False) -> dict[str, mcp_types.Tool]:
        """The server's tools by name (listed once per session unless ``refresh``); asked
        again on a fresh session when the session broke (listing changes nothing)."""
        for last_try in (False, True):
            session = await self.session(server)
            try:
                if session.tools is None or refresh:
                    session.tools = await _list_tools(session)
                return session.tools
            except MCPError as exc:
                if not await self._broken(session, exc, alone=True) or last_try:
                    raise _request_error(
                        exc, session, f"listing the tools of {server.label}"
                    ) from None
        raise AssertionError("unreachable")  # pragma: no cover: the last try returns or raises

    async def call_tool(
        self,
        server: McpServer,
        tool: str,
        arguments: dict[str, Any],
        *,
        timeout_s: float,
        before_send: Callable[[], None],
        meta: mcp_types.RequestParamsMeta | None = None,
    ) -> mcp_types.CallToolResult:
        """Call ``tool``; ``before_send`` runs before each time the call is sent (the run's
        ``api_calls``); ``meta`` goes in the request's ``_meta``. ``timeout_s`` bounds it all,
        opening a session included. Re-sends once on a fresh session only as the module
        docstring says."""
        try:
            async with asyncio.timeout(timeout_s) as deadline:
                return await self._call(server, tool, arguments, before_send, meta)
        except TimeoutError:
            if not deadline.expired():
                raise
            raise McpTimeout(
                f"MCP tool {tool!r} on {server.label} did not answer within {timeout_s:g} s"
            ) from None

    async def _call(
        self,
        server: McpServer,
        tool: str,
        arguments: dict[str, Any],
        before_send: Callable[[], None],
        meta: mcp_types.RequestParamsMeta | None,
    ) -> mcp_types.CallToolResult:
        for last_try in (False, True):
            session = await self.session(server)
            try:
                await self._check_tool(session, tool)
            except MCPError as exc:  # listing changes nothing: always safe to list again
                if not await self._broken(session, exc, alone=True) or last_try:
                    raise _call_error(exc, session, tool) from None
                continue
            before_send()
            with session.request() as alone:
                try:
                    return await session.client.call_tool(tool, arguments, meta=meta)
                except MCPError as exc:
                    if not await self._broken(session, exc, alone()) or last_try:
                        raise _call_error(exc, session, tool) from None
        raise AssertionError("unreachable")  # pragma: no cover: the last try returns or raises

    async def aclose(self) -> None:
        self._closed = True
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()

    async def _check_tool(self, session: Session, tool: str) -> None:
        if session.tools is None:
            session.tools = await _list_tools(session)
        if tool in session.tools:
            return
        session.tools = await _list_tools(session)  # the server may have added it since
        if tool not in session.tools:
            raise McpUnknownTool(
                unknown_tool_message(session.server, tool, frozenset(session.tools))
            )

    async def _broken(self, session: Session, exc: MCPError, alone: bool) -> bool:
        """Whether the call may be sent again: drops a broken session and tells whether the
        failed call provably never reached the server."""
        if exc.code == mcp_types.INVALID_REQUEST and exc.message == SESSION_UNKNOWN:
            await self._drop(session)
            return True
        if exc.code != mcp_types.CONNECTION_CLOSED:
            return False
        cause = await session.cause()
        await self._drop(session)
        return alone and _caused_by(cause, httpx2.ConnectError)

    async def _drop(self, session: Session) -> None:
        if self._sessions.get(session.server.key) is session:
            del self._sessions[session.server.key]
        await session.close()


def unknown_tool_message(
    server: McpServer, tool: str, tools: frozenset[str], shown: int = 50
) -> str:
    """Names the first ``shown`` tools the server has (sorted), and how many more it has."""
    names = sorted(tools)
    listed = ", ".join(names[:shown]) or "none"
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"MCP server {server.label} has no tool {tool!r} (its tools: {listed}{more})"


def describe(exc: BaseException) -> str:
    """An exception (or the first of an exception group, which the SDK's task groups raise)
    as ``Type: message``."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _list_tools(session: Session) -> dict[str, mcp_types.Tool]:
    tools: dict[str, mcp_types.Tool] = {}
    cursor: str | None = None
    for _ in range(MAX_TOOL_PAGES):
        with session.request():
            page = await session.client.list_tools(cursor=cursor, cache_mode="refresh")
        tools.update((tool.name, tool) for tool in page.tools)
        cursor = page.next_cursor
        if cursor is None:
            break
    return tools


def _caused_by(exc: BaseException | None, kind: type[BaseException]) -> bool:
    if exc is None:
        return False
    if isinstance(exc, BaseExceptionGroup):
        return any(_caused_by(inner, kind) for inner in exc.exceptions)
    return isinstance(exc, kind) or _caused_by(exc.__cause__, kind)


def _call_error(exc: MCPError, session: Session, tool: str) -> NodeError:
    return _request_error(exc, session, f"MCP tool {tool!r} on {session.server.label}")


def _request_error(exc: MCPError, session: Session, where: str) -> NodeError:
    if exc.code == mcp_types.CONNECTION_CLOSED:
        cause = describe(session.failure) if session.failure is not None else exc.message
        return McpConnectionLost(f"{where}: the connection broke during the call ({cause})")
    if exc.code == mcp_types.INVALID_REQUEST and exc.message == SESSION_UNKNOWN:
        return McpConnectionLost(f"{where}: the server no longer knows the session")
    permanent = exc.code in (mcp_types.INVALID_PARAMS, mcp_types.METHOD_NOT_FOUND)
    return McpRequestFailed(
        f"{where}: the server answered error {exc.code}: {exc.message}",
        retryable=not permanent,
        details={"error_code": exc.code},
    )
