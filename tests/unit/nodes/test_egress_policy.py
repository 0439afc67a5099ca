"""The egress policy's decisions on addresses (the network backend that applies them on every
connection is tested against real servers in tests/integration/test_http_policies.py)."""

from __future__ import annotations

import ipaddress

import pytest

from app.nodes.net.egress import EgressPolicy, EgressRefused


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",
        "::ffff:169.254.169.254",  # IPv4-mapped
        "64:ff9b::a9fe:a9fe",  # through a NAT64 gateway
        "2002:a9fe:a9fe::1",  # through a 6to4 relay
        "0.0.0.0",
        "::",
    ],
)
def test_metadata_and_unspecified_addresses_are_refused_in_every_form(address: str) -> None:
    with pytest.raises(EgressRefused, match="refused by default"):
        EgressPolicy().check("example.test", ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "10.0.0.5", "64:ff9b::a00:5"])
def test_loopback_and_private_addresses_go_unless_a_list_says_otherwise(address: str) -> None:
    EgressPolicy().check("example.test", ipaddress.ip_address(address))


def test_a_denied_network_is_denied_behind_nat64_too() -> None:
    policy = EgressPolicy(deny=["10.0.0.0/8"])
    with pytest.raises(EgressRefused, match="OXIFY_EGRESS_DENY"):
        policy.check("example.test", ipaddress.ip_address("64:ff9b::a00:5"))
