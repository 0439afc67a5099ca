"""What executors may use beyond their ``NodeContext``: one object, owned by the composition root.

``NodeResources`` holds the shared HTTP client (every connection through the egress policy),
the settings, the database engine, named provider clients, the clock, a logger, the meter
model calls report to and the stored credentials' resolver (None where there is no store:
``oxify run``, most tests). The
composition root (``app.main``, or ``oxify run``) builds one, hands it to every node factory
(built-in or plug-in) and closes it on shutdown; executors never read settings or open clients
of their own, so a process has one connection pool per outside service and nothing outlives it.
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Awaitable, Callable
from http.cookiejar import CookieJar, DefaultCookiePolicy
from types import TracebackType
from typing import Any, TypeVar, cast

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.credentials import Resolver
from app.engine.ports import Clock
from app.engine.run.clock import SystemClock
from app.nodes.meter import UNMETERED, LlmMeter
from app.nodes.net import egress, traced
from app.nodes.quota import UNLIMITED, TokenQuota
from app.settings import Settings, get_settings

T = TypeVar("T")
Close = Callable[[T], Awaitable[object] | object]

LOGGER_NAME = "oxify.nodes"
HTTP_CLIENT = "http"  # the name the shared HTTP client is kept under among the named clients
HTTP_CLIENT_TIMEOUT_S = 30.0  # seconds; nodes set their own per request
HTTP_CLIENT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


def make_client(policy: egress.EgressPolicy | None = None, **options: Any) -> httpx.AsyncClient:
    """The client to share between runs: it keeps no cookies (runs must not see each other's),
    reads no proxy or netrc settings from the environment (a proxy would resolve names out of
    the policy's sight), and connects only where the egress ``policy`` allows (by default only
    its fixed refusals) unless a test gives a ``transport`` of its own. Every request is a
    client span and carries the trace context (:mod:`app.nodes.net.traced`)."""
    jar = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
    inner = options.pop("transport", None) or egress.transport(
        policy or egress.EgressPolicy(), HTTP_CLIENT_LIMITS
    )
    return httpx.AsyncClient(
        cookies=jar, trust_env=False, transport=traced.Traced(inner), **options
    )


class ResourcesClosed(RuntimeError):
    """A client was asked for after the resources were closed (shutdown has begun)."""


class _Clients:
    """Named clients, each made on first use, closed in reverse order of making."""

    def __init__(self) -> None:
        self.made: dict[str, Any] = {}
        self.closers: list[tuple[str, Callable[[], Awaitable[object] | object]]] = []
        self.closed = False


class NodeResources:
    """The outside world as node executors see it; see the module docstring.

    Plug-in factories receive a view (:meth:`scoped`) with a logger of their own; every view
    shares the one set of clients, which only the owner closes (:meth:`aclose`, or ``async
    with``).
    """

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        database: AsyncEngine | None = None,
        http: httpx.AsyncClient | None = None,
        clock: Clock | None = None,
        logger: logging.Logger | None = None,
        meter: LlmMeter = UNMETERED,
        credentials: Resolver | None = None,
        token_quota: TokenQuota = UNLIMITED,
    ) -> None:
        self.settings = settings if settings is not None else get_settings()
        self.meter = meter  # the metrics' view of model calls
        self.credentials = credentials  # stored credentials, decrypted one use at a time
        self.token_quota = token_quota  # tokens/day of the run's key and project
        self.database = database
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.logger = logger if logger is not None else logging.getLogger(LOGGER_NAME)
        self._clients = _Clients()
        if http is not None:
            self.client(HTTP_CLIENT, lambda: http, close=httpx.AsyncClient.aclose)

    @property
    def http(self) -> httpx.AsyncClient:
        """The shared HTTP client (cookie-less); made on first use unless one was given."""
        return self.client(
            HTTP_CLIENT,
            lambda: make_client(self.egress, timeout=HTTP_CLIENT_TIMEOUT_S),
            close=httpx.AsyncClient.aclose,
        )

    @property
    def egress(self) -> egress.EgressPolicy:
        """The process's egress policy (``OXIFY_EGRESS_DENY`` / ``OXIFY_EGRESS_ALLOW``): every
        client that leaves the process connects through it."""
        settings = self.settings
        return self.client(
            "egress", lambda: egress.EgressPolicy(settings.egress_deny, settings.egress_allow)
        )

    @property
    def closed(self) -> bool:
        return self._clients.closed

    def client(self, name: str, create: Callable[[], T], *, close: Close[T] | None = None) -> T:
        """The client called ``name``: made by ``create`` on first use, the same one after.

        ``close`` (sync or async) is called with it by :meth:`aclose`, clients made later closed
        first. The name alone identifies the client: use one per provider and configuration
        (``"openai"``, ``"qdrant:http://…"``).
        """
        clients = self._clients
        if name in clients.made:
            return cast(T, clients.made[name])
        if clients.closed:
            raise ResourcesClosed(f"client {name!r} asked for after the node resources closed")
        made = create()
        clients.made[name] = made
        if close is not None:
            clients.closers.append((name, lambda: close(made)))
        return made

    def made(self, kind: type[T]) -> dict[str, T]:
        """The clients of type ``kind`` made so far, by name: what reads their state (the
        metrics read the answer caches' counters) sees them without making any."""
        # A copy first: a scrape reads this from a thread while the loop may add a client.
        made = list(self._clients.made.items())
        return {name: client for name, client in made if isinstance(client, kind)}

    def scoped(self, name: str) -> NodeResources:
        """A view with the logger ``oxify.nodes.<name>``, sharing everything else."""
        view = copy.copy(self)
        view.logger = self.logger.getChild(name)
        return view

    async def aclose(self) -> None:
        """Close every client made, newest first; one failing to close does not stop the rest."""
        clients = self._clients
        clients.closed = True
        while clients.closers:
            name, close = clients.closers.pop()
            try:
                result = close()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                self.logger.exception("closing the %r client failed", name)
        clients.made.clear()

    async def __aenter__(self) -> NodeResources:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
