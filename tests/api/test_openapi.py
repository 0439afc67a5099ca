"""The committed OpenAPI document is the app's, and documents every route fully."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from app import cli, cli_docs
from app.api import openapi
from app.api.schemas import PROBLEM_MEDIA_TYPE
from app.main import create_app
from app.settings import Settings
from tests.api.helpers import client_of

COMMITTED = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"
REGENERATE = "oxify openapi"
METHODS = {"get", "put", "post", "delete", "patch"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    generated: dict[str, Any] = json.loads(cli_docs.openapi_text())
    return generated


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def test_the_committed_document_is_current() -> None:
    assert COMMITTED.exists(), f"openapi/openapi.json is missing: run `{REGENERATE}`"
    assert COMMITTED.read_text(encoding="utf-8") == cli_docs.openapi_text(), (
        f"openapi/openapi.json is stale: run `{REGENERATE}` and commit the result"
    )


async def test_the_app_serves_the_same_document() -> None:
    app = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:"))
    async with client_of(app) as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert openapi.dump(response.json()) == cli_docs.openapi_text()


def test_every_route_has_a_summary_and_documented_errors(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        where = f"{method.upper()} {path}"
        assert operation.get("summary"), f"{where} has no summary"
        errors = {s: r for s, r in operation["responses"].items() if s[0] in "45"}
        assert errors, f"{where} documents no error response"
        for status, response in errors.items():
            assert list(response["content"]) == [PROBLEM_MEDIA_TYPE], f"{where} {status}"
            schema = response["content"][PROBLEM_MEDIA_TYPE]["schema"]
            assert schema == {"$ref": "#/components/schemas/ProblemDetails"}, f"{where} {status}"


def test_routes_with_parameters_document_422(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        if operation.get("parameters") or operation.get("requestBody"):
            assert "422" in operation["responses"], f"{method.upper()} {path}"
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_the_contract_endpoints_are_documented(document: dict[str, Any]) -> None:
    paths = document["paths"]
    expected = {
        "/healthz": {"get"},
        "/readyz": {"get"},
        "/metrics": {"get"},
        "/v1/workflows/validate": {"post"},
        "/v1/workflows": {"get", "post"},
        "/v1/workflows/{workflow_id}": {"get", "put", "delete"},
        "/v1/workflows/{workflow_id}/graph": {"get"},
        "/v1/workflows/{workflow_id}/executions": {"post"},
        "/v1/executions": {"get"},
        "/v1/executions/{execution_id}": {"get"},
        "/v1/executions/{execution_id}/wait": {"get"},
        "/v1/executions/{execution_id}/pause": {"post"},
        "/v1/executions/{execution_id}/resume": {"post"},
        "/v1/executions/{execution_id}/cancel": {"post"},
        "/v1/executions/{execution_id}/retry": {"post"},
        "/v1/executions/{execution_id}/checkpoints": {"get"},
        "/v1/executions/{execution_id}/events/log": {"get"},
    }
    for path, methods in expected.items():
        assert methods <= set(paths[path]), path
    start = paths["/v1/workflows/{workflow_id}/executions"]["post"]
    assert {"200", "202", "404", "409", "422"} <= set(start["responses"])
    cancel = paths["/v1/executions/{execution_id}/cancel"]["post"]
    assert {"200", "202", "409"} <= set(cancel["responses"])
    assert "204" in paths["/v1/workflows/{workflow_id}"]["delete"]["responses"]


def test_workflow_bodies_carry_the_workflow_schema(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for path in ("/v1/workflows", "/v1/workflows/validate"):
        body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        assert body["schema"]["$ref"] == "#/components/schemas/WorkflowDocument"
    workflow = schemas["WorkflowDocument"]
    assert workflow["title"] == "Oxify workflow document"
    assert workflow["properties"]["nodes"]["items"] == {"$ref": "#/components/schemas/NodeSpec"}
    node = schemas["NodeSpec"]
    assert "delay" in node["discriminator"]["mapping"]
    text = json.dumps(document)
    assert "#/$defs/" not in text
    for ref in _refs(document):
        name = ref.removeprefix("#/components/schemas/")
        assert name in schemas, ref


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        mapping = node.get("mapping")
        if isinstance(mapping, dict):
            found += list(mapping.values())
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_the_command_writes_the_document(tmp_path: Path) -> None:
    target = tmp_path / "out" / "openapi.json"
    assert cli.main(["openapi", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == cli_docs.openapi_text()
    assert target.read_text(encoding="utf-8").endswith("}\n")


def _parameter_schemas(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every parameter's schema (items of arrays, branches of nullable unions) by its name."""
    found = []
    for method, path, operation in operations(document):
        for parameter in operation.get("parameters", []):
            where = f"{method.upper()} {path} {parameter['name']}"
            pending = [parameter["schema"]]
            while pending:
                schema = pending.pop()
                pending += schema.get("anyOf", [])
                if schema.get("type") == "array":
                    pending.append(schema["items"])
                elif "type" in schema:
                    found.append((where, schema))
    return found


def test_text_parameters_refuse_nul_and_integers_are_bounded(document: dict[str, Any]) -> None:
    # Postgres text cannot hold U+0000 and its integers have widths: whatever a parameter is
    # compared with in the database, its schema already refuses what the database would.
    for where, schema in _parameter_schemas(document):
        if schema["type"] == "string" and "enum" not in schema:
            assert "pattern" in schema, where
            assert re.search(schema["pattern"], "a\x00b") is None, where
        if schema["type"] == "integer":
            assert schema.get("maximum", math.inf) <= 2**63 - 1, where


def test_no_route_answers_400(document: dict[str, Any]) -> None:
    # Bodies that are not JSON get the 422 every other body problem gets.
    for method, path, operation in operations(document):
        assert "400" not in operation["responses"], f"{method.upper()} {path}"


def test_no_parameter_offers_null(document: dict[str, Any]) -> None:
    # A query string or a header cannot say null: a client taking the document at its word
    # would send "null" and be refused.
    for where, schema in _parameter_schemas(document):
        assert schema["type"] != "null", where
