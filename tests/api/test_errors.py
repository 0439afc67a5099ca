"""Errors are problem+json whatever raised them; bodies over the cap are refused early."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from app.api.errors import status_for
from app.errors import (
    CursorInvalid,
    ExecutionNotFound,
    ExpressionError,
    IdempotencyConflict,
    InputsInvalid,
    InvalidState,
    OxifyError,
    RunConfigInvalid,
    WorkflowArchived,
    WorkflowInvalid,
    WorkflowNotFound,
)
from app.main import create_app
from app.settings import Settings
from tests.api.helpers import assert_problem, client_of, doubler, serving

ELEVEN_MB = 11 * 1024 * 1024


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (WorkflowInvalid, 422),
        (InputsInvalid, 422),
        (RunConfigInvalid, 422),
        (CursorInvalid, 422),
        (WorkflowNotFound, 404),
        (ExecutionNotFound, 404),
        (WorkflowArchived, 409),
        (InvalidState, 409),
        (IdempotencyConflict, 409),
        (ExpressionError, 500),
        (OxifyError, 500),
    ],
)
def test_error_codes_map_to_statuses(error: type[OxifyError], status: int) -> None:
    assert status_for(error.code) == status


async def test_unknown_routes_and_wrong_methods(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/v1/nothing-here"), 404, "not_found")
    response = await client.delete("/v1/executions")
    assert_problem(response, 405, "method_not_allowed")
    assert "GET" in response.headers["allow"]


async def test_an_11_mb_body_is_refused_before_parsing(client: httpx.AsyncClient) -> None:
    document = {**doubler(), "description": "x" * ELEVEN_MB}
    response = await client.post("/v1/workflows", content=json.dumps(document))
    body = assert_problem(response, 413, "body_too_large")
    assert str(10 * 1024 * 1024) in body["detail"]


async def test_a_streamed_body_is_cut_off_at_the_cap(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "big", "description": "'
        for _ in range(11):
            yield b"x" * 1024 * 1024
        yield b'"}'

    response = await client.post(
        "/v1/workflows/validate", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_problem(response, 413, "body_too_large")


async def test_a_body_under_the_cap_goes_through(pg_database_url: str) -> None:
    async with serving(pg_database_url, max_body_bytes=4096) as client:
        assert (await client.post("/v1/workflows/validate", json=doubler())).status_code == 200
        padded = {**doubler(), "description": "x" * 5000}
        response = await client.post("/v1/workflows/validate", json=padded)
        assert_problem(response, 413, "body_too_large")


async def test_unexpected_errors_are_500_without_details() -> None:
    app = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:"))

    async def boom() -> None:
        raise RuntimeError("secret connection string postgres://u:p@h")

    async def unmapped() -> None:
        raise ExpressionError("internal detail")

    app.add_api_route("/boom", boom)
    app.add_api_route("/unmapped", unmapped)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://oxify.test") as client:
        for path in ("/boom", "/unmapped"):
            response = await client.get(path)
            body = assert_problem(response, 500, "internal_error")
            assert "secret" not in response.text
            assert "internal detail" not in response.text
            assert "Traceback" not in response.text
            assert body["errors"] == []


async def test_services_missing_answers_503() -> None:
    app = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:"))
    async with client_of(app) as client:
        assert_problem(await client.get("/v1/workflows"), 503, "not_ready")
