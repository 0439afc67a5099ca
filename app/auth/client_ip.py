"""The address a request comes from: the socket peer, or what ``X-Forwarded-For`` says when
the peer is a proxy we were told to trust (``OXIFY_TRUSTED_PROXIES``).

The header is read right to left: each trusted proxy appended the address it got the request
from, so the first address that is not a trusted proxy is the client. Anything a client wrote
into the header itself lies further left and is never reached (a client cannot pick its own
address to dodge the failed-authentication limit).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """Parse a CIDR list (a bare address is a /32 or /128); ValueError on a bad entry."""
    return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs)


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_ip(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The client's address (``"unknown"`` without a peer, as in-process test clients)."""
    if peer is None:
        return "unknown"
    if not trusted or forwarded_for is None or not _trusted(peer, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer
