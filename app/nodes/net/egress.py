"""Where outbound calls may go: the egress policy, enforced on the address a connection is made to.

Every connection of the shared HTTP client and of the model providers' SDK clients goes through
:class:`EgressBackend`, a network backend for the connection pool: it resolves the host itself,
checks the name and every address it resolves to, and connects to a checked address, so a name
that answers differently the second time (DNS rebinding) cannot slip past. Redirects open new
connections, so every hop is checked too. TLS still verifies (and sends SNI for) the host name:
httpcore hands the origin's host to ``start_tls``, not the address connected to, and the request
keeps its ``Host`` header.

Refused: link-local and cloud-metadata addresses always; then ``OXIFY_EGRESS_DENY``; and, when
``OXIFY_EGRESS_ALLOW`` is set, everything it does not name. A name resolving to several addresses
is refused when any of them is refused (a resolver that mixes them in is not to be trusted).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpcore
import httpcore2
import httpx
import httpx2

from app.errors import NodeError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

ALWAYS_REFUSED = (
    "169.254.0.0/16",
    "fe80::/10",
    "fd00:ec2::254",
    "metadata.google.internal",
    "0.0.0.0/8",
    "::/128",
)
"""Link-local and cloud-metadata addresses, where a request forged into a workflow would read
the machine's cloud credentials; and the unspecified addresses, never a real destination but
reaching this host's own services past a deny list of 127.0.0.0/8."""
MAX_CHAIN = 8  # exception causes looked through for a refusal
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # the well-known NAT64 prefix (RFC 6052)


class EgressRefused(NodeError):
    """The outbound network policy refused the connection."""

    code = "egress_refused"
    retryable = False


@dataclass(frozen=True, slots=True)
class HostSet:
    """Host names (exact, or every name under ``*.suffix``), addresses and CIDR blocks."""

    names: frozenset[str]
    suffixes: tuple[str, ...]
    networks: tuple[Network, ...]

    @classmethod
    def of(cls, entries: Iterable[str]) -> HostSet:
        names: set[str] = set()
        suffixes: list[str] = []
        networks: list[Network] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            name = _name(entry)
            if name.startswith("*."):
                suffixes.append(name[1:])
            else:
                names.add(name)
        return cls(frozenset(names), tuple(suffixes), tuple(networks))

    def has_name(self, host: str) -> bool:
        name = _name(host)
        return name in self.names or name.endswith(self.suffixes)

    def has_address(self, address: Address) -> bool:
        forms = [address, *_embedded_ipv4(address)]
        return any(form in n for n in self.networks for form in forms)


class EgressPolicy:
    """The rules of one process (from ``OXIFY_EGRESS_DENY`` / ``OXIFY_EGRESS_ALLOW``)."""

    def __init__(self, deny: Iterable[str] = (), allow: Iterable[str] | None = None) -> None:
        self._always = HostSet.of(ALWAYS_REFUSED)
        self._deny = HostSet.of(deny)
        self._allow = None if allow is None else HostSet.of(allow)

    def check(self, host: str, address: Address | None = None) -> None:
        """Raise :class:`EgressRefused` unless a connection to ``host`` at ``address`` may go;
        without an address, whether the name alone is refused (before resolving it)."""
        if self._always.has_name(host) or _has(self._always, address):
            reason = "a link-local, cloud-metadata or unspecified address, refused by default"
        elif self._deny.has_name(host) or _has(self._deny, address):
            reason = "listed in OXIFY_EGRESS_DENY"
        elif (
            address is not None
            and self._allow is not None
            and not (self._allow.has_name(host) or self._allow.has_address(address))
        ):
            reason = "not listed in OXIFY_EGRESS_ALLOW"
        else:
            return
        shown = host if address is None or host == str(address) else f"{host} ({address})"
        raise EgressRefused(
            f"the egress policy refused a connection to {shown}: {reason}",
            details={"policy": "egress", "host": host}
            | ({} if address is None else {"address": str(address)}),
        )

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses of ``host``, each checked; :class:`EgressRefused` if any is refused.

        Raises ``OSError`` (``socket.gaierror``) when the name does not resolve.
        """
        self.check(host)
        loop = asyncio.get_running_loop()
        found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
        for address in addresses:
            self.check(host, ipaddress.ip_address(address))
        return addresses

    async def check_url(self, url: str) -> None:
        """Check the host of ``url`` as a connection to it would be checked: for clients whose
        connections Oxify does not make itself (Qdrant's), so only this first look is checked."""
        parts = urlsplit(url)
        if parts.hostname is None:
            return
        default = 443 if parts.scheme == "https" else 80
        try:
            await self.resolve(parts.hostname, parts.port or default)
        except OSError:
            return  # the client itself reports a name that does not resolve


class _EgressConnect:
    """``connect_tcp`` through the policy, around another backend of the same httpcore flavour
    (``httpcore`` for httpx, ``httpcore2`` for the providers' SDKs on httpx2)."""

    connect_error: ClassVar[type[Exception]]
    connect_timeout: ClassVar[type[Exception]]

    def __init__(self, policy: EgressPolicy, inner: Any) -> None:
        self._policy = policy
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's backend interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> Any:
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._policy.resolve(host, port)
        except TimeoutError:
            raise self.connect_timeout(f"resolving {host} timed out") from None
        except OSError as exc:
            raise self.connect_error(f"{host} does not resolve: {exc}") from None
        last: Exception | None = None
        for address in addresses:  # each was checked: connect to one of them, not to the name
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (self.connect_error, self.connect_timeout) as exc:
                last = exc
        assert last is not None  # getaddrinfo answers at least one address or raises
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's backend interface)
        socket_options: Iterable[Any] | None = None,
    ) -> Any:
        return await self._inner.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options
        )

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class EgressBackend(_EgressConnect, httpcore.AsyncNetworkBackend):
    connect_error = httpcore.ConnectError
    connect_timeout = httpcore.ConnectTimeout


class EgressBackend2(_EgressConnect, httpcore2.AsyncNetworkBackend):
    connect_error = httpcore2.ConnectError
    connect_timeout = httpcore2.ConnectTimeout


def transport(policy: EgressPolicy, limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose every connection passes the policy.

    httpx's transport takes no network backend, so its connection pool is replaced by one built
    the same way with :class:`EgressBackend` (``network_backend`` is httpcore's public API).
    """
    made = httpx.AsyncHTTPTransport()
    made._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=EgressBackend(policy, httpcore.AnyIOBackend()),
    )
    return made


def sdk_transport(policy: EgressPolicy, limits: httpx2.Limits) -> httpx2.AsyncHTTPTransport:
    """The same for the providers' SDKs, which run on httpx2 (and its own httpcore2)."""
    made = httpx2.AsyncHTTPTransport()
    made._pool = httpcore2.AsyncConnectionPool(
        ssl_context=httpx2.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=EgressBackend2(policy, httpcore2.AnyIOBackend()),
    )
    return made


def refusal(exc: BaseException) -> EgressRefused | None:
    """The policy's refusal behind ``exc`` (an SDK wraps it in errors of its own, a task group
    in an exception group), if any."""
    seen: BaseException | None = exc
    for _ in range(MAX_CHAIN):
        if seen is None or isinstance(seen, EgressRefused):
            return seen
        if isinstance(seen, BaseExceptionGroup):
            for inner in seen.exceptions:
                if (found := refusal(inner)) is not None:
                    return found
        seen = seen.__cause__ or seen.__context__
    return None


def _embedded_ipv4(address: Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 address an IPv6 one reaches: IPv4-mapped (``::ffff:a.b.c.d``), through a NAT64
    gateway (``64:ff9b::a.b.c.d``) or a 6to4 relay (``2002:aabb:ccdd::``). A rule about the
    IPv4 address holds for these too."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    if address in NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _has(hosts: HostSet, address: Address | None) -> bool:
    return address is not None and hosts.has_address(address)


def _name(host: str) -> str:
    return host.lower().rstrip(".")
