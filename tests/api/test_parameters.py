"""Path, query and header parameters the database could not compare are refused with 422 at the
parameter: U+0000 in any text, integers beyond their column, forged cursors. Empty cursors are
the first page, as the OpenAPI document allows."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from tests.api.helpers import assert_problem, create_workflow, doubler, linear, start_run, wait_run

NUL = "a%00b"


def forged(*parts: Any) -> str:
    """A cursor in the lists' own encoding holding ``parts``."""
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode().rstrip("=")


def parameter_error(response: httpx.Response, code: str = "request_invalid") -> str:
    body = assert_problem(response, 422, code)
    [error] = body["errors"]
    parameter: str = error["parameter"]
    return parameter


@pytest.mark.parametrize(
    "path",
    [
        f"/v1/workflows/{NUL}",
        f"/v1/workflows/{NUL}/graph",
        f"/v1/executions/{NUL}",
        f"/v1/executions/{NUL}/events",
        f"/v1/executions/{NUL}/events/log",
        f"/v1/executions/{NUL}/checkpoints",
        f"/v1/forms/{NUL}",
    ],
)
async def test_nul_in_a_path_id_is_422(client: httpx.AsyncClient, path: str) -> None:
    assert parameter_error(await client.get(path)) in ("workflow_id", "execution_id", "form_id")


async def test_nul_in_ids_of_writes_is_422(client: httpx.AsyncClient) -> None:
    for method, path, body in [
        ("PUT", f"/v1/workflows/{NUL}", doubler()),
        ("DELETE", f"/v1/workflows/{NUL}", None),
        ("POST", f"/v1/workflows/{NUL}/executions", {}),
        ("POST", f"/v1/executions/{NUL}/cancel", None),
        ("POST", f"/v1/forms/{NUL}/submit", {"values": {}}),
    ]:
        response = await client.request(method, path, json=body)
        assert parameter_error(response) in ("workflow_id", "execution_id", "form_id"), path


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/v1/executions", "workflow_id"),
        ("/v1/executions", "cursor"),
        ("/v1/workflows", "cursor"),
        ("/v1/forms", "execution_id"),
        ("/v1/forms", "workflow_id"),
        ("/v1/forms", "assignee"),
        ("/v1/forms", "cursor"),
    ],
)
async def test_nul_in_a_query_filter_is_422(
    client: httpx.AsyncClient, path: str, parameter: str
) -> None:
    response = await client.get(f"{path}?{parameter}={NUL}")
    assert parameter_error(response) == parameter


async def test_nul_in_the_idempotency_key_is_422(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(client, doubler())
    response = await client.post(
        f"/v1/workflows/{workflow_id}/executions",
        json={"inputs": {"n": 1}},
        headers={"Idempotency-Key": "key\x00"},
    )
    assert parameter_error(response) == "Idempotency-Key"


async def test_versions_beyond_32_bits_are_422(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(client, doubler())
    for method, path in [
        ("GET", f"/v1/workflows/{workflow_id}"),
        ("GET", f"/v1/workflows/{workflow_id}/graph"),
        ("POST", f"/v1/workflows/{workflow_id}/executions"),
    ]:
        for version in ("2147483648", "99999999999", "1" + "0" * 30):
            response = await client.request(
                method, path, params={"version": version}, json={"inputs": {"n": 1}}
            )
            assert parameter_error(response) == "version", (path, version)
    too_big = linear(
        {"id": "start", "type": "start"},
        {
            "id": "child",
            "type": "subworkflow",
            "config": {"workflow_id": workflow_id, "version": 2**31},
        },
    )
    body = assert_problem(await client.post("/v1/workflows", json=too_big), 422, "workflow_invalid")
    assert [e["pointer"] for e in body["errors"]] == ["/nodes/1/config/version"]


async def test_a_superscript_digit_cursor_on_the_events_log_is_422(
    client: httpx.AsyncClient,
) -> None:
    workflow_id = await create_workflow(client, doubler())
    execution_id = (await start_run(client, workflow_id, {"inputs": {"n": 1}}))["id"]
    for cursor in ("³", "٣", "1²", "99999999999"):
        response = await client.get(
            f"/v1/executions/{execution_id}/events/log", params={"cursor": cursor}
        )
        assert parameter_error(response, "cursor_invalid") == "cursor", cursor


@pytest.mark.parametrize(
    ("path", "cursor"),
    [
        ("/v1/executions", forged("x", 2**70)),
        ("/v1/executions", forged("x", -(2**63) - 1)),
        ("/v1/workflows", forged("w", "2024-01-01T00:00:00+00:00", "a\x00")),
        ("/v1/forms", forged("f", "2024-01-01T00:00:00+00:00", "a\x00")),
    ],
)
async def test_forged_cursors_the_database_cannot_compare_are_422(
    client: httpx.AsyncClient, path: str, cursor: str
) -> None:
    response = await client.get(path, params={"cursor": cursor})
    assert parameter_error(response, "cursor_invalid") == "cursor"


async def test_an_empty_cursor_is_the_first_page(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(client, doubler())
    execution = await wait_run(
        client, (await start_run(client, workflow_id, {"inputs": {"n": 1}}))["id"]
    )
    for path in (
        "/v1/workflows",
        "/v1/executions",
        "/v1/forms",
        f"/v1/executions/{execution['id']}/events/log",
    ):
        first = await client.get(path)
        response = await client.get(path, params={"cursor": ""})
        assert response.status_code == 200, (path, response.text)
        assert response.json() == first.json()
