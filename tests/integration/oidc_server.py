"""A local identity provider for the OIDC tests: its discovery document and its key set (JWKS)
over real HTTP on a loopback port, keys a test can rotate, and a server a test can stop and
start again on the same port."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.e2e.live import ReadyServer, start_uvicorn
from tests.oidc_keys import ISSUER_PATH, Signer, jwks

JWKS_PATH = ISSUER_PATH + "/protocol/openid-connect/certs"
DISCOVERY_PATH = ISSUER_PATH + "/.well-known/openid-configuration"


@dataclass
class Provider:
    port: int = 0
    signers: list[Signer] = field(default_factory=list)  # what the JWKS publishes
    cache_control: str | None = "public, max-age=300"
    paths: list[str] = field(default_factory=list)  # every request, in order
    _server: ReadyServer | None = None
    _serving: asyncio.Task[None] | None = None
    _socket: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        return self.url + ISSUER_PATH

    @property
    def jwks_url(self) -> str:
        return self.url + JWKS_PATH

    def fetches(self) -> int:
        """Key set requests so far."""
        return self.paths.count(JWKS_PATH)

    async def start(self) -> None:
        """Serve (again, on the same port once it had one)."""
        server, serving, sock = await start_uvicorn(_app(self), port=self.port, lifespan="off")
        self._server, self._serving, self._socket = server, serving, sock
        self.port = sock.getsockname()[1]

    async def stop(self) -> None:
        """Take the provider down: connections are refused until :meth:`start`."""
        assert self._server is not None and self._serving is not None and self._socket
        self._server.should_exit = True
        await self._serving
        self._socket.close()
        self._server = self._serving = self._socket = None


def _app(provider: Provider) -> Starlette:
    async def discovery(request: Request) -> Response:
        provider.paths.append(request.url.path)
        return JSONResponse({"issuer": provider.issuer, "jwks_uri": provider.jwks_url})

    async def certs(request: Request) -> Response:
        provider.paths.append(request.url.path)
        headers = {"Cache-Control": provider.cache_control} if provider.cache_control else None
        return JSONResponse(jwks(*provider.signers), headers=headers)

    return Starlette(
        routes=[
            Route(DISCOVERY_PATH, discovery),
            Route(JWKS_PATH, certs),
        ]
    )


@asynccontextmanager
async def provider(*signers: Signer) -> AsyncIterator[Provider]:
    """A provider publishing ``signers``, serving for the block."""
    running = Provider(signers=list(signers))
    await running.start()
    try:
        yield running
    finally:
        if running._server is not None:
            await running.stop()
