"""Authentication and authorization at the edge, before anything reads the request body.

Every route declares the :class:`~app.auth.scopes.Action` it performs with ``openapi_extra=
guard.needs(...)``; :class:`GuardedRoute` refuses to build a route without one, so a route
cannot be added unguarded (and a test walks ``app.routes`` to prove it). The check runs before
FastAPI parses the body, so a caller without credentials gets 401 and one without the scope
403, never a 422 that reveals what the route expects. Stream routes also take a single-use
``?ticket=`` (browsers' EventSource and WebSocket send no headers); keys in query strings are
refused everywhere, since URLs end up in logs.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends
from fastapi.routing import APIWebSocketRoute
from opentelemetry import trace
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.websockets import WebSocket

from app.api.bodies import JsonRoute
from app.api.errors import ApiProblem, from_oxify_error, problem, problem_response
from app.auth import context
from app.auth import keys as key_format
from app.auth import scopes as scope_table
from app.auth.principal import ANONYMOUS, Principal
from app.auth.scopes import Action
from app.engine.run import log_fields
from app.errors import InsufficientScope, OxifyError, Unauthenticated
from app.observability import semconv
from app.services.container import Services

ACTION = "x-oxify-action"  # the OpenAPI extension naming a route's action
TICKETS = "x-oxify-tickets"  # the route takes ?ticket= (stream routes)
SECURITY_SCHEME = "bearer"
# Query parameters that look like someone put a credential in the URL.
_CREDENTIAL_PARAMS = frozenset({"api_key", "apikey", "key", "token", "access_token"})
_XFF = "x-forwarded-for"  # believed from OXIFY_TRUSTED_PROXIES only
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
WebSocketEndpoint = Callable[..., Coroutine[Any, Any, None]]


def needs(action: Action, *, tickets: bool = False) -> dict[str, Any]:
    """``openapi_extra`` of a route performing ``action`` (documented in the OpenAPI
    operation as ``x-oxify-action``, with its security requirement)."""
    extra: dict[str, Any] = {ACTION: action.value}
    if action is Action.PUBLIC:
        extra["security"] = []
    else:
        extra["security"] = [{SECURITY_SCHEME: []}]
        allowed = ", ".join(sorted(scope_table.ALLOWED[action]))
        extra["x-oxify-scopes"] = allowed
    if tickets:
        extra[TICKETS] = True
    return extra


def declared(route: BaseRoute) -> Action | None:
    """The action a route declared; None if it declared none."""
    extra = getattr(route, "openapi_extra", None)
    if extra is None and isinstance(route, APIWebSocketRoute):
        extra = getattr(route.endpoint, "oxify_guard", None)
    value = (extra or {}).get(ACTION)
    return None if value is None else Action(value)


class GuardedRoute(JsonRoute):
    """A JSON route that authenticates and authorizes its caller first."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        action = declared(self)
        if action is None:
            raise RuntimeError(f"route {self.path} ({self.name}) declares no action: guard.needs")
        tickets = bool((self.openapi_extra or {}).get(TICKETS))
        handler = super().get_route_handler()
        if action is Action.PUBLIC:
            return handler

        async def guarded(request: Request) -> Response:
            principal = await authenticate(request, action, tickets=tickets)
            token = context.bind(_context(request, principal))
            # Logs and the request's span name the caller: its key id or subject, never a key.
            fields = log_fields.bind(actor=principal.actor)
            trace.get_current_span().set_attribute(semconv.ENDUSER_ID, principal.actor)
            try:
                return await handler(request)
            finally:
                log_fields.unbind(fields)
                context.reset(token)

        return guarded


def websocket_route(action: Action) -> Callable[[WebSocketEndpoint], WebSocketEndpoint]:
    """Guard a WebSocket endpoint: the handshake is authenticated (header or ``?ticket=``)
    and refused with 401/403 before it is accepted."""

    def wrap(endpoint: WebSocketEndpoint) -> WebSocketEndpoint:
        @functools.wraps(endpoint)
        async def guarded(websocket: WebSocket, **params: Any) -> None:
            principal = await websocket_principal(websocket, action)
            if principal is None:
                return
            token = context.bind(context.RequestContext(principal, secrets.token_hex(8)))
            try:
                await endpoint(websocket, **params)
            finally:
                context.reset(token)

        guarded.oxify_guard = needs(action, tickets=True)  # type: ignore[attr-defined]
        return guarded

    return wrap


async def authenticate(conn: HTTPConnection, action: Action, *, tickets: bool) -> Principal:
    """The caller of ``conn`` if it may perform ``action``; Unauthenticated (401) or
    InsufficientScope (403) otherwise; RateLimited (429) over a rate limit. Remembered on
    ``conn.state.principal`` (and the client address on ``conn.state.client_ip``)."""
    services: Services | None = getattr(conn.app.state, "services", None)
    if services is None:
        raise ApiProblem(503, "not_ready", "The service is starting or stopping.")
    # Limits: an address that keeps failing to authenticate is refused before it tries again
    # (429), and every authenticated request takes a token from its key's and project's
    # buckets. In memory, per replica (app.services.limits).
    limits = services.limits
    address = limits.client_ip(conn.client.host if conn.client else None, conn.headers.get(_XFF))
    conn.state.client_ip = address
    limits.check_failures(address)
    try:
        principal = await _identify(conn, services, tickets=tickets)
    except Unauthenticated as exc:
        limits.failed(address)
        services.auth_failures.note(_context(conn, ANONYMOUS), _presented(conn), exc.message)
        raise
    if not principal.may(action):
        allowed = " or ".join(sorted(scope_table.ALLOWED[action]))
        raise InsufficientScope(f"this needs scope {allowed}")
    limits.admit_request(principal)
    conn.state.principal = principal
    return principal


async def _identify(conn: HTTPConnection, services: Services, *, tickets: bool) -> Principal:
    query = conn.query_params
    if _CREDENTIAL_PARAMS.intersection(query.keys()):
        raise Unauthenticated("credentials in the URL are refused: send an Authorization header")
    ticket = query.get("ticket")
    if ticket is not None:
        if not tickets:
            raise Unauthenticated("stream tickets open event streams only")
        return await services.tickets.redeem(ticket, conn.path_params.get("execution_id", ""))
    return await services.auth.principal(conn.headers.get("authorization"))


async def websocket_principal(websocket: WebSocket, action: Action) -> Principal | None:
    """Authenticate a WebSocket handshake before accepting it; on failure answer the
    handshake with the problem (401/403) and return None."""
    try:
        return await authenticate(websocket, action, tickets=True)
    except (OxifyError, ApiProblem) as exc:
        details = (
            from_oxify_error(exc)
            if isinstance(exc, OxifyError)
            else problem(exc.status, exc.code, detail=exc.detail)
        )
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(problem_response(details))
    else:  # the server cannot answer a handshake with a body: a close before accept
        await websocket.close(4000 + details.status, (details.detail or "")[:120])
    return None


def _presented(conn: HTTPConnection) -> str:
    """What a refused request presented, for the audit log: a key's id, never the key."""
    header = conn.headers.get("authorization")
    if header is None:
        return "ticket" if "ticket" in conn.query_params else "none"
    parsed = key_format.parse(header.partition(" ")[2].strip())
    return "token" if parsed is None else f"key:{parsed.key_id}"


def _context(request: HTTPConnection, principal: Principal) -> context.RequestContext:
    given = request.headers.get("x-request-id")
    request_id = given if given and _REQUEST_ID.fullmatch(given) else secrets.token_hex(8)
    return context.RequestContext(principal, request_id, request.state.client_ip)


async def caller(request: Request) -> Principal:
    """The authenticated caller (the anonymous admin while the service runs open)."""
    principal: Principal = getattr(request.state, "principal", ANONYMOUS)
    return principal


CallerDep = Annotated[Principal, Depends(caller)]
