"""`POST /v1/workflows/validate` under fuzzing (issue 16): documents drawn from the workflow
JSON Schema, broken ones, 200-deep nesting and megabyte strings are answered 200 or 422 (413
past the body cap), never 500, and every error's pointer leads into the body that was sent.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings

from tests.api.helpers import PROBLEM_JSON
from tests.strategies.documents import MEGABYTE_STRING, documents, mutated, nested, points_into

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one app for all examples is what we want
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


async def validated(client: httpx.AsyncClient, document: Any) -> httpx.Response:
    """POST ``document`` (JSON with non-ASCII escaped, so that strings the API must refuse,
    like lone surrogates, reach it) and check the answer's shape; the answer."""
    body = json.dumps(document).encode()
    response = await client.post(
        "/v1/workflows/validate", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code in (200, 413, 422), response.text
    if response.status_code == 200:
        assert response.json()["valid"] is True
        return response
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    for error in problem.get("errors", []):
        assert error["msg"], error
        pointer = error.get("pointer")
        assert pointer is not None, error
        assert points_into(document, pointer, error["code"], error["msg"]), error
    return response


@FUZZ
@given(document=documents())
async def test_documents_from_the_schema_are_answered_with_pointers(
    client: httpx.AsyncClient, document: Any
) -> None:
    await validated(client, document)


@FUZZ
@given(document=mutated())
async def test_broken_documents_are_answered_with_pointers(
    client: httpx.AsyncClient, document: Any
) -> None:
    await validated(client, document)


async def test_nesting_200_deep_is_refused_at_the_edge(client: httpx.AsyncClient) -> None:
    response = await validated(client, nested(200))
    assert response.status_code == 422
    assert {e["code"] for e in response.json()["errors"]} == {"json_too_deep"}


async def test_nesting_within_the_body_limit_reaches_validation(client: httpx.AsyncClient) -> None:
    response = await validated(client, nested(10))
    assert response.status_code == 422
    assert response.json()["code"] == "workflow_invalid"


async def test_megabyte_strings_are_answered(client: httpx.AsyncClient) -> None:
    document = {
        "name": MEGABYTE_STRING,
        "nodes": [
            {"id": "c", "type": "if", "config": {"condition": MEGABYTE_STRING}},
            {"id": "t", "type": "transform", "config": {"value": "{{ " + MEGABYTE_STRING}},
        ],
    }
    response = await validated(client, document)
    assert response.status_code == 422
    pointers = {e["pointer"] for e in response.json()["errors"]}
    assert pointers >= {"/name", "/nodes/0/config/condition", "/nodes/1/config/value"}


async def test_non_json_bodies_are_answered(client: httpx.AsyncClient) -> None:
    for body in (b"", b"{", b"[1, 2]", b'"x"', b"\xff", b'{"name": NaN}', b"1e999"):
        response = await client.post(
            "/v1/workflows/validate", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422, (body, response.text)
