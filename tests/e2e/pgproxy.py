"""A TCP proxy in front of Postgres that can make connections hang or drop, by name.

Servers under test connect to the proxy instead of the database. Every connection is named by
the ``application_name`` of its startup message (Oxify names its connections: ``oxify`` for
the pool, ``oxify-journal``, ``oxify-claims``, ``oxify-notify``), so a test can:

- ``hang(name)``: stop forwarding, both ways, on the open connections of that name without
  closing them: a half-open socket, as after a network partition or a lost firewall state;
- ``cut(name)``: close them (both ends see the connection drop);
- ``down`` = True: new connections hang too (the database is unreachable).

It speaks no protocol beyond finding the name, so what the server and Postgres exchange is
exactly what they would exchange directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy.engine import make_url

_NAME = re.compile(rb"application_name\x00([^\x00]*)\x00")
_STARTUP_BYTES = 4096  # the startup message (and an SSL request before it) fit in this


@dataclass
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    name: str = ""
    hung: asyncio.Event = field(default_factory=asyncio.Event)  # set: forward nothing more
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def close(self) -> None:
        self.closed.set()
        for writer in (self.client, self.server):
            writer.transport.abort()


class PgProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.links: list[_Link] = []
        self.down = False
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        for link in self.links:
            link.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def url(self, database_url: str) -> str:
        """``database_url`` pointed at the proxy."""
        return (
            make_url(database_url)
            .set(host="127.0.0.1", port=self.port)
            .render_as_string(hide_password=False)
        )

    def named(self, name: str) -> list[_Link]:
        return [link for link in self.links if link.name == name]

    def hang(self, name: str | None = None) -> int:
        """Half-open the connections named ``name`` (all when None); how many."""
        links = self.links if name is None else self.named(name)
        for link in links:
            link.hung.set()
        return len(links)

    def cut(self, name: str | None = None) -> int:
        """Drop the connections named ``name`` (all when None); how many."""
        links = self.links if name is None else self.named(name)
        for link in links:
            link.close()
        return len(links)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        if self.down:
            link.hung.set()
        self.links.append(link)
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, link, sniff=True),
                self._pump(up_reader, writer, link, sniff=False),
            )
        finally:
            link.close()
            with contextlib.suppress(ValueError):
                self.links.remove(link)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: _Link,
        *,
        sniff: bool,
    ) -> None:
        seen = b""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    return
                if sniff and not link.name and len(seen) < _STARTUP_BYTES:
                    seen += chunk
                    found = _NAME.search(seen)
                    if found:
                        link.name = found.group(1).decode(errors="replace")
                if link.hung.is_set():
                    await link.closed.wait()  # hold the socket open, say nothing
                    return
                writer.write(chunk)
                await writer.drain()


@asynccontextmanager
async def proxied(database_url: str) -> AsyncIterator[PgProxy]:
    """A started proxy in front of the database of ``database_url``."""
    url = make_url(database_url)
    proxy = PgProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
