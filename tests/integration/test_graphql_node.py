"""The ``graphql`` node against a small GraphQL-speaking local server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.domain.events import EventType
from app.domain.status import ExecutionStatus
from app.nodes.registry import core_registry
from app.nodes.resources import NodeResources
from tests.integration.net_server import NetServer, net_server
from tests.support import Harness, workflow

QUERY = "query Order($id: ID!) { order(id: $id) { total } }"


@pytest.fixture
async def server() -> AsyncIterator[NetServer]:
    async with net_server() as served:
        yield served


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with NodeResources() as resources:
        yield Harness(registry=core_registry(resources))


def gql(server: NetServer, retry: dict[str, Any] | None = None, **config: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "id": "ask",
        "type": "graphql",
        "config": {"url": f"{server.url}/graphql", **config},
    }
    if retry is not None:
        spec["retry"] = retry
    return spec


async def test_data_with_variables_operation_name_and_auth(
    harness: Harness, server: NetServer
) -> None:
    node = gql(
        server,
        query=QUERY,
        variables={"id": "{{ inputs.order }}", "n": "{{ inputs.n }}"},
        operation_name="Order",
        auth={"type": "bearer", "token": "{{ inputs.token }}"},
        headers={"X-Tenant": "acme"},
    )
    outcome = await harness.run(workflow([node], []), {"order": "o-1", "n": 2, "token": "tk"})
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert outcome.outputs == {
        "query": QUERY,
        "variables": {"id": "o-1", "n": 2},
        "operationName": "Order",
        "authorization": "Bearer tk",
    }
    (seen,) = server.requests
    assert seen.method == "POST"
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["x-tenant"] == "acme"


async def test_the_body_leaves_out_an_operation_name_not_given(
    harness: Harness, server: NetServer
) -> None:
    outcome = await harness.run(workflow([gql(server, query="{ a }")], []))
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert json.loads(server.requests[0].body) == {"query": "{ a }", "variables": {}}


async def test_errors_fail_the_node_carrying_them(harness: Harness, server: NetServer) -> None:
    node = gql(server, query="{ broken }", retry={"max_retries": 2})
    outcome = await harness.run(workflow([node], []))
    assert outcome.status is ExecutionStatus.FAILED
    error = outcome.error or {}
    assert error["code"] == "graphql_errors"
    assert error["message"] == (
        f"POST {server.url}/graphql answered with GraphQL errors: "
        "Cannot query field 'broken' on type 'Query'."
    )
    assert error["details"] == {
        "status": 200,
        "errors": [{"message": "Cannot query field 'broken' on type 'Query'."}],
    }
    assert harness.of_type(EventType.NODE_RETRY) == []


async def test_errors_with_a_retryable_status_are_retried(
    harness: Harness, server: NetServer
) -> None:
    node = gql(server, query="{ busy }", retry={"max_retries": 1, "initial_delay_ms": 1})
    outcome = await harness.run(workflow([node], []))
    assert (outcome.error or {})["code"] == "graphql_errors"
    (retried,) = harness.of_type(EventType.NODE_RETRY)
    assert retried.data["delay_ms"] == 2000.0  # the server's Retry-After
    assert len(server.requests) == 2


async def test_an_error_status_without_graphql_errors(harness: Harness, server: NetServer) -> None:
    outcome = await harness.run(workflow([gql(server, query="{ crash }")], []))
    error = outcome.error or {}
    assert error["code"] == "http_status"
    assert error["details"] == {"status": 500, "body_excerpt": "internal error"}
