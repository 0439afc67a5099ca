"""The request a piece of work was done for: its caller, request id and client address.

The API binds it once authentication succeeded; services read it where they record who did
what (audit rows, a run's ``started_by``) without every signature carrying it. Outside a
request (the runner, housekeeping, the CLI) there is none, and :func:`current` says so.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass

from app.auth.principal import ANONYMOUS, Principal


@dataclass(frozen=True, slots=True)
class RequestContext:
    principal: Principal
    request_id: str | None = None
    client_ip: str | None = None


_current: ContextVar[RequestContext | None] = ContextVar("oxify_request", default=None)


def bind(context: RequestContext) -> Token[RequestContext | None]:
    return _current.set(context)


def reset(token: Token[RequestContext | None]) -> None:
    _current.reset(token)


def current() -> RequestContext | None:
    return _current.get()


def principal() -> Principal:
    """The caller of the current request; outside a request, the service itself (anonymous)."""
    context = _current.get()
    return ANONYMOUS if context is None else context.principal
