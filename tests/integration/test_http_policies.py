"""The http node's auth, redirects, egress policy and per-host policies, against a real local
server through the real client (and its egress network backend)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from app.domain.events import EventType
from app.domain.status import ExecutionStatus
from app.engine.ports import Clock
from app.nodes.registry import core_registry
from app.nodes.resources import NodeResources
from app.settings import Settings
from tests.integration.net_server import NetServer, net_server
from tests.support import FakeClock, Harness, workflow

SECRET = "s3cr3t-value"


@pytest.fixture
async def server() -> AsyncIterator[NetServer]:
    async with net_server() as served:
        yield served


@asynccontextmanager
async def harness_with(clock: Clock | None = None, **settings: Any) -> AsyncIterator[Harness]:
    """A harness whose nodes get fresh resources with these settings (and resources clock)."""
    async with NodeResources(settings=Settings(**settings), clock=clock) as resources:
        yield Harness(registry=core_registry(resources))


def call(retry: dict[str, Any] | None = None, **config: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"id": "call", "type": "http", "config": config}
    if retry is not None:
        spec["retry"] = retry
    return spec


def leaked(harness: Harness, outcome: Any) -> bool:
    everything = json.dumps([e.data for e in harness.events()], default=str)
    return SECRET in everything + json.dumps(outcome.error) + json.dumps(outcome.outputs)


# -- auth --------------------------------------------------------------------------------------

AUTHS = [
    ({"type": "bearer", "token": "{{ inputs.secret }}"}, "authorization", f"Bearer {SECRET}"),
    (
        {"type": "basic", "username": "ada", "password": "{{ inputs.secret }}"},
        "authorization",
        "Basic " + base64.b64encode(f"ada:{SECRET}".encode()).decode(),
    ),
    (
        {"type": "api_key", "in": "header", "name": "X-Api-Key", "value": "{{ inputs.secret }}"},
        "x-api-key",
        SECRET,
    ),
]


@pytest.mark.parametrize(("auth", "header", "expected"), AUTHS, ids=lambda a: str(a)[:20])
async def test_auth_arrives_in_its_header(
    server: NetServer, auth: dict[str, Any], header: str, expected: str
) -> None:
    async with harness_with() as harness:
        doc = workflow([call(url=f"{server.url}/echo/x", auth=auth)], [])
        outcome = await harness.run(doc, {"secret": SECRET})
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert server.requests[0].headers[header] == expected
    outcome.outputs["json"] = None  # the echo repeats the headers: the node's own output does not
    assert not leaked(harness, outcome)


async def test_api_key_in_the_query(server: NetServer) -> None:
    auth = {"type": "api_key", "in": "query", "name": "key", "value": "{{ inputs.secret }}"}
    async with harness_with() as harness:
        doc = workflow([call(url=f"{server.url}/status/401", query={"q": "1"}, auth=auth)], [])
        outcome = await harness.run(doc, {"secret": SECRET})
    assert outcome.status is ExecutionStatus.FAILED
    assert server.requests[0].query == [("q", "1"), ("key", SECRET)]
    assert (outcome.error or {})["code"] == "http_status"
    assert not leaked(harness, outcome)


async def test_a_stored_credential_without_a_store_fails_without_calling(
    server: NetServer,
) -> None:
    async with harness_with() as harness:  # no resolver: `oxify run` has no credentials
        auth = {"type": "credential", "name": "crm"}
        doc = workflow([call(url=f"{server.url}/echo/x", auth=auth, retry={"max_retries": 2})], [])
        outcome = await harness.run(doc)
    assert outcome.status is ExecutionStatus.FAILED
    error = outcome.error or {}
    assert error["code"] == "node_config_invalid"
    assert "stored credentials need the service's database" in error["message"]
    assert server.requests == []
    assert harness.of_type(EventType.NODE_RETRY) == []


# -- redirects ---------------------------------------------------------------------------------


async def test_redirects_are_followed_and_auth_stays_with_its_origin(server: NetServer) -> None:
    auth = {"type": "api_key", "in": "header", "name": "X-Api-Key", "value": "{{ inputs.secret }}"}
    other_origin = f"http://localhost:{server.port}/echo/there"  # same server, another origin
    async with harness_with() as harness:
        doc = workflow(
            [
                call(url=f"{server.url}/redirect", query={"to": "/echo/here"}, auth=auth),
                {
                    "id": "away",
                    "type": "http",
                    "config": {
                        "url": f"{server.url}/redirect",
                        "query": {"to": other_origin, "code": 307},
                        "auth": auth,
                        "headers": {"Authorization": "Bearer {{ inputs.secret }}"},
                    },
                },
            ],
            [{"from": "call", "to": "away"}],
        )
        outcome = await harness.run(doc, {"secret": SECRET})
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert server.paths() == ["/redirect", "/echo/here", "/redirect", "/echo/there"]
    same, away = server.requests[1], server.requests[3]
    assert same.headers["x-api-key"] == SECRET
    assert "x-api-key" not in away.headers
    assert "authorization" not in away.headers


async def test_redirects_stop_after_five(server: NetServer) -> None:
    async with harness_with() as harness:
        outcome = await harness.run(workflow([call(url=f"{server.url}/loop")], []))
    assert outcome.status is ExecutionStatus.FAILED
    error = outcome.error or {}
    assert error["code"] == "http_response_invalid"
    assert "redirected more than 5 times" in error["message"]
    assert len(server.requests) == 6


async def test_follow_redirects_false_keeps_the_redirect(server: NetServer) -> None:
    async with harness_with() as harness:
        doc = workflow(
            [
                call(
                    url=f"{server.url}/redirect",
                    query={"to": "/echo/x"},
                    follow_redirects=False,
                    expect_status=["3xx"],
                )
            ],
            [],
        )
        outcome = await harness.run(doc)
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert outcome.outputs["status"] == 302
    assert outcome.outputs["headers"]["location"] == "/echo/x"
    assert server.paths() == ["/redirect"]


# -- egress ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://169.254.169.254/latest/meta-data/?token=x", "169.254.169.254"),
        ("http://[fd00:ec2::254]/latest/", "fd00:ec2::254"),
        ("http://metadata.google.internal/computeMetadata/v1/", "metadata.google.internal"),
    ],
)
async def test_metadata_addresses_are_refused_by_default(url: str, host: str) -> None:
    async with harness_with() as harness:
        outcome = await harness.run(workflow([call(url=url, retry={"max_retries": 3})], []))
    assert outcome.status is ExecutionStatus.FAILED
    error = outcome.error or {}
    assert error["code"] == "egress_refused"
    assert error["message"].startswith(f"the egress policy refused a connection to {host}")
    assert "refused by default" in error["message"]
    assert "token" not in error["message"]
    assert error["details"]["policy"] == "egress"
    assert harness.of_type(EventType.NODE_RETRY) == []


@pytest.mark.parametrize("host", ["0.0.0.0", "0", "[::]"])
async def test_the_unspecified_addresses_are_refused(server: NetServer, host: str) -> None:
    # They reach this host's own services (a server on 127.0.0.1 answers 0.0.0.0), past a deny
    # list of 127.0.0.0/8.
    url = server.url.replace("127.0.0.1", host)
    async with harness_with() as harness:
        outcome = await harness.run(workflow([call(url=url)], []))
    assert (outcome.error or {}).get("code") == "egress_refused", outcome.error
    assert server.paths() == []


async def test_a_redirect_to_a_refused_address_is_refused(server: NetServer) -> None:
    async with harness_with() as harness:
        target = "http://169.254.169.254/latest/meta-data/"
        doc = workflow([call(url=f"{server.url}/redirect", query={"to": target})], [])
        outcome = await harness.run(doc)
    assert outcome.status is ExecutionStatus.FAILED
    assert (outcome.error or {})["code"] == "egress_refused"
    assert server.paths() == ["/redirect"]


async def test_the_resolved_address_is_checked_not_the_name(server: NetServer) -> None:
    # "localhost" is on no list; the address it resolves to is.
    messages = []
    async with harness_with(egress_deny=["127.0.0.0/8"]) as harness:
        for url in (f"http://localhost:{server.port}/echo/x", f"{server.url}/echo/x"):
            outcome = await harness.run(workflow([call(url=url)], []))
            error = outcome.error or {}
            assert error["code"] == "egress_refused"
            messages.append(error["message"])
    assert messages == [
        "the egress policy refused a connection to localhost (127.0.0.1): listed in "
        "OXIFY_EGRESS_DENY",
        "the egress policy refused a connection to 127.0.0.1: listed in OXIFY_EGRESS_DENY",
    ]
    assert server.requests == []


async def test_a_denied_host_name_and_the_allow_list(server: NetServer) -> None:
    async with harness_with(egress_deny=["*.localhost", "LocalHost"]) as harness:
        outcome = await harness.run(workflow([call(url=f"http://localhost:{server.port}/")], []))
        assert (outcome.error or {})["code"] == "egress_refused"
    async with harness_with(egress_allow=["10.0.0.0/8"]) as harness:
        outcome = await harness.run(workflow([call(url=f"{server.url}/echo/x")], []))
        error = outcome.error or {}
        assert error["code"] == "egress_refused"
        assert error["message"].endswith("not listed in OXIFY_EGRESS_ALLOW")
    async with harness_with(egress_allow=["127.0.0.1/32"]) as harness:
        outcome = await harness.run(workflow([call(url=f"{server.url}/echo/x")], []))
        assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert server.paths() == ["/echo/x"]


# -- per-host policies -------------------------------------------------------------------------


async def test_the_rate_limit_spaces_requests(server: NetServer) -> None:
    limits = {"127.0.0.1": {"per_s": 20, "burst": 2}}
    body = {
        "nodes": [{"id": "get", "type": "http", "config": {"url": f"{server.url}/echo/x"}}],
        "edges": [],
    }
    config = {"items": [1, 2, 3, 4, 5, 6], "concurrency": 6, "body": body}
    loop = {"id": "call", "type": "foreach", "config": config}
    async with harness_with(http_rate_limits=limits) as harness:
        started = time.monotonic()
        outcome = await harness.run(workflow([loop], []))
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    arrivals = sorted(seen.at - started for seen in server.requests)
    assert len(arrivals) == 6
    # Two at once (the burst), then one every 50 ms: the k-th cannot arrive before its token.
    # (Arrival times, not gaps: a slow first connection may bunch the early ones up.)
    for k in range(2, 6):
        assert arrivals[k] >= (k - 1) * 0.05, arrivals


async def test_a_rate_limit_wait_longer_than_the_timeout_fails_at_once(server: NetServer) -> None:
    clock = FakeClock()
    limits = {"127.0.0.1": {"per_s": 0.1, "burst": 1}}
    async with harness_with(clock, http_rate_limits=limits) as harness:
        doc = workflow([call(url=f"{server.url}/echo/x", timeout_s=5)], [])
        first = await harness.run(doc, execution_id="run-1")
        second = await harness.run(doc, execution_id="run-2")
    assert first.status is ExecutionStatus.COMPLETED, first.error
    error = second.error or {}
    assert error["code"] == "rate_limited"
    assert error["message"].startswith("the rate limit for 127.0.0.1 (0.1/s, burst 1)")
    assert clock.sleeps == []
    assert len(server.requests) == 1


async def test_the_circuit_opens_fails_fast_and_closes_after_a_good_probe(
    server: NetServer,
) -> None:
    clock = FakeClock()
    breaker = {"failures": 2, "window_s": 60, "open_s": 30}
    failing = workflow([call(url=f"{server.url}/status/503")], [])
    good = workflow([call(url=f"{server.url}/echo/x")], [])
    async with harness_with(clock, http_circuit_breaker=breaker) as harness:
        for _ in range(2):
            outcome = await harness.run(failing)
            assert (outcome.error or {})["code"] == "http_status"
        fast = await harness.run(good)
        error = fast.error or {}
        assert error["code"] == "circuit_open"
        assert error["message"].startswith("the circuit breaker for 127.0.0.1 is open")
        assert error["details"] == {"policy": "circuit_breaker", "host": "127.0.0.1"}
        assert len(server.requests) == 2  # nothing sent while open

        clock.t += 30  # open_s later: one probe goes through; it fails, so open again
        assert (await harness.run(failing)).error["code"] == "http_status"  # type: ignore[index]
        assert (await harness.run(good)).error["code"] == "circuit_open"  # type: ignore[index]

        clock.t += 30  # a good probe closes it
        probe = await harness.run(good)
        assert probe.status is ExecutionStatus.COMPLETED, probe.error
        after = await harness.run(good)
        assert after.status is ExecutionStatus.COMPLETED, after.error
    assert server.paths() == ["/status/503"] * 3 + ["/echo/x"] * 2


@pytest.mark.parametrize("provider", ["openai", "anthropic", "ollama"])
async def test_a_model_base_url_goes_through_the_egress_policy(provider: str) -> None:
    llm = {
        "id": "ask",
        "type": "llm",
        "config": {
            "provider": provider,
            "model": "m",
            "prompt": "hi",
            "base_url": "http://169.254.169.254/v1",
            "cache": False,
            "stream": False,
        },
        "retry": {"max_retries": 2},
    }
    async with harness_with() as harness:
        outcome = await harness.run(workflow([llm], []))
    error = outcome.error or {}
    assert error["code"] == "egress_refused", error
    assert harness.of_type(EventType.NODE_RETRY) == []
