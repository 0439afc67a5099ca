"""Stored credentials on http and graphql requests (by kind, against a real local server) and in
model calls (refused where they cannot serve); the resolver is a fake behind the NodeResources
port (the API tests use the real service)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.auth.credentials import Resolved
from app.domain.status import ExecutionStatus
from app.errors import CredentialNotFound, CredentialUnreadable
from app.nodes.registry import core_registry
from app.nodes.resources import NodeResources
from app.settings import Settings
from tests.integration.net_server import NetServer, net_server
from tests.support import Harness, workflow

CANARY = "canary-31c6e2d8-stored"


class Resolver:
    """Credentials by (project, name); records what was asked for."""

    def __init__(self, *stored: Resolved, unreadable: str | None = None) -> None:
        self.stored = {credential.name: credential for credential in stored}
        self.unreadable = unreadable
        self.asked: list[tuple[str, str]] = []

    async def resolve(self, project: str, name: str) -> Resolved:
        self.asked.append((project, name))
        if name == self.unreadable:
            raise CredentialUnreadable()
        if name not in self.stored:
            raise CredentialNotFound()
        return self.stored[name]


@pytest.fixture
async def server() -> AsyncIterator[NetServer]:
    async with net_server() as served:
        yield served


async def run(resolver: Resolver, node: dict[str, Any]) -> tuple[Harness, Any]:
    async with NodeResources(settings=Settings(), credentials=resolver) as resources:
        harness = Harness(registry=core_registry(resources))
        outcome = await harness.run(workflow([node], []))
    return harness, outcome


def leaked(harness: Harness, outcome: Any) -> bool:
    shown = json.dumps([e.data for e in harness.events()], default=str)
    return CANARY in shown + json.dumps(outcome.error) + json.dumps(outcome.outputs, default=str)


def http(url: str, name: str = "crm") -> dict[str, Any]:
    auth = {"type": "credential", "name": name}
    return {"id": "call", "type": "http", "config": {"url": url, "auth": auth}}


KINDS = [
    (Resolved("crm", "bearer", CANARY), "authorization", f"Bearer {CANARY}"),
    (
        Resolved("crm", "basic", CANARY, {"username": "ada"}),
        "authorization",
        "Basic " + base64.b64encode(f"ada:{CANARY}".encode()).decode(),
    ),
    (
        Resolved("crm", "api_key", CANARY, {"in": "header", "key_name": "X-Api-Key"}),
        "x-api-key",
        CANARY,
    ),
]


@pytest.mark.parametrize(
    ("stored", "header", "expected"), KINDS, ids=["bearer", "basic", "api_key"]
)
async def test_each_kind_arrives_in_its_header_and_its_echo_is_scrubbed(
    server: NetServer, stored: Resolved, header: str, expected: str
) -> None:
    resolver = Resolver(stored)
    harness, outcome = await run(resolver, http(f"{server.url}/echo/x"))
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert server.requests[0].headers[header] == expected
    assert resolver.asked == [("default", "crm")]
    assert outcome.outputs["json"]["headers"][header].endswith("[secret]")
    assert not leaked(harness, outcome)


async def test_an_api_key_in_the_query(server: NetServer) -> None:
    stored = Resolved("crm", "api_key", CANARY, {"in": "query", "key_name": "key"})
    harness, outcome = await run(Resolver(stored), http(f"{server.url}/refuse"))
    assert outcome.status is ExecutionStatus.FAILED
    assert server.requests[0].query == [("key", CANARY)]
    assert not leaked(harness, outcome)


async def test_an_error_quoting_the_header_is_scrubbed(server: NetServer) -> None:
    harness, outcome = await run(Resolver(KINDS[1][0]), http(f"{server.url}/refuse"))
    assert outcome.status is ExecutionStatus.FAILED
    error = outcome.error or {}
    assert error["code"] == "http_status"
    assert "[secret]" in json.dumps(error)
    assert not leaked(harness, outcome)
    encoded = base64.b64encode(f"ada:{CANARY}".encode()).decode()
    assert encoded not in json.dumps(error)


@pytest.mark.parametrize(
    ("resolver", "message"),
    [
        (Resolver(), "credential 'crm' not found in project 'default'"),
        (Resolver(unreadable="crm"), "credential 'crm' cannot be used"),
        (Resolver(Resolved("crm", "secret", CANARY)), "of kind 'secret', which a request"),
    ],
)
async def test_a_credential_that_cannot_be_sent_fails_the_node_before_calling(
    server: NetServer, resolver: Resolver, message: str
) -> None:
    harness, outcome = await run(resolver, http(f"{server.url}/echo/x"))
    assert outcome.status is ExecutionStatus.FAILED
    error = outcome.error or {}
    assert error["code"] == "node_config_invalid"
    assert message in error["message"]
    assert server.requests == []
    assert not leaked(harness, outcome)


async def test_a_graphql_node_sends_it_and_scrubs_the_answer(server: NetServer) -> None:
    node = {
        "id": "call",
        "type": "graphql",
        "config": {
            "url": f"{server.url}/graphql",
            "query": "{ me }",
            "auth": {"type": "credential", "name": "crm"},
        },
    }
    harness, outcome = await run(Resolver(KINDS[0][0]), node)
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert server.requests[0].headers["authorization"] == f"Bearer {CANARY}"
    assert outcome.outputs["authorization"] == "Bearer [secret]"
    assert not leaked(harness, outcome)


@pytest.mark.parametrize(
    ("provider", "stored", "message"),
    [
        ("ollama", KINDS[0][0], "ollama takes no key"),
        ("openai", KINDS[1][0], "is a basic credential"),
        ("openai", None, "credential 'crm' not found in project 'default'"),
    ],
)
async def test_a_model_call_refuses_a_credential_it_cannot_use(
    provider: str, stored: Resolved | None, message: str
) -> None:
    config = {
        "provider": provider,
        "base_url": "http://127.0.0.1:9/v1",  # never reached
        "model": "m",
        "prompt": "go",
        "credential": "crm",
    }
    resolver = Resolver(*([stored] if stored is not None else []))
    harness, outcome = await run(resolver, {"id": "ask", "type": "llm", "config": config})
    assert outcome.status is ExecutionStatus.FAILED
    error = outcome.error or {}
    assert error["code"] == "node_config_invalid"
    assert message in error["message"]
    assert not leaked(harness, outcome)
