"""The request a piece of work was done for: its caller, request id and client address.

The API binds it once authentication succeeded; services read it where they record who did
what (audit rows, a run's ``started_by``) without every signature carrying it. Outside a
request (the runner, housekeeping, the CLI) there is none, and :func:`current` says so.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any, TypeVar

from app.auth.principal import ANONYMOUS, DEFAULT_PROJECT, Principal


@dataclass(frozen=True, slots=True)
class RequestContext:
    principal: Principal
    request_id: str | None = None
    client_ip: str | None = None


T = TypeVar("T")
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


def project() -> str | None:
    """The one project the current caller sees; None: every project (an admin of all
    projects, or the service itself outside a request)."""
    return principal().project


def home_project() -> str:
    """Where what the current caller creates goes: its project, else the default one."""
    return principal().project or DEFAULT_PROJECT


def detached_task(coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
    """A task of the service itself, whoever's request happened to start it: it acts as no
    caller (a task otherwise inherits the identity of the request that created it)."""
    fresh = contextvars.copy_context()
    fresh.run(_current.set, None)
    return asyncio.create_task(coro, name=name, context=fresh)
