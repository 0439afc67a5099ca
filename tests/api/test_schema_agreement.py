"""The OpenAPI document and the server agree: what the schema refuses the server refuses and
what it allows the server takes (strict types, sub-workflow sources), a 405 names every method
of the path, and the SSE stream sends what the document describes."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import jsonschema
import pytest

from app import cli_docs
from tests.api.helpers import assert_problem, create_workflow, linear, start_run, wait_run

SCHEMAS = "#/components/schemas/"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    generated: dict[str, Any] = json.loads(cli_docs.openapi_text())
    return generated


def validator(document: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Validator:
    """A validator of ``schema`` whose ``#/components/...`` references resolve in ``document``."""
    root = {**schema, "components": document["components"]}
    return jsonschema.Draft202012Validator(root)


def workflow_valid(document: dict[str, Any], workflow: dict[str, Any]) -> bool:
    return validator(document, {"$ref": SCHEMAS + "WorkflowDocument"}).is_valid(workflow)


def start_body_valid(document: dict[str, Any], body: dict[str, Any]) -> bool:
    return validator(document, {"$ref": SCHEMAS + "StartExecution"}).is_valid(body)


def with_node(**node: Any) -> dict[str, Any]:
    return linear({"id": "start", "type": "start"}, {"id": "n", **node})


CHILD = {"nodes": [{"id": "only", "type": "start"}]}
WORKFLOWS = [
    (with_node(type="subworkflow"), False),
    (with_node(type="subworkflow", config={}), False),
    (with_node(type="subworkflow", config={"workflow_id": None}), False),
    (with_node(type="subworkflow", config={"workflow_id": None, "graph": None}), False),
    (with_node(type="subworkflow", config={"workflow_id": "w", "graph": CHILD}), False),
    (with_node(type="subworkflow", config={"graph": CHILD, "version": 1}), False),
    (
        with_node(type="subworkflow", config={"workflow_id": None, "graph": CHILD, "version": 1}),
        False,
    ),
    (with_node(type="subworkflow", config={"graph": CHILD}), True),
    (with_node(type="subworkflow", config={"workflow_id": None, "graph": CHILD}), True),
    (with_node(type="subworkflow", config={"graph": CHILD, "version": None}), True),
    (with_node(type="transform", config={"value": 1}, continue_on_error=0), False),
    (with_node(type="transform", config={"value": 1}, critical=1), False),
    (with_node(type="transform", config={"value": 1}, retry={"max_retries": True}), False),
    (with_node(type="transform", config={"value": 1}, retry={"max_retries": "2"}), False),
    (with_node(type="transform", config={"value": 1}, continue_on_error=False), True),
    (with_node(type="delay", config={"seconds": 1}), True),
    (with_node(type="delay", config={"seconds": "1"}), False),
    (with_node(type="try", config={"try": CHILD, "rethrow": 0}), False),
    (with_node(type="http", config={"url": "http://x.test", "idempotency_key": 1}), False),
    (with_node(type="approval", config={"prompt": "ok?", "quorum": True}), False),
]


@pytest.mark.parametrize(("workflow", "valid"), WORKFLOWS)
async def test_the_workflow_schema_and_the_server_agree(
    client: httpx.AsyncClient, document: dict[str, Any], workflow: dict[str, Any], valid: bool
) -> None:
    assert workflow_valid(document, workflow) is valid
    response = await client.post("/v1/workflows/validate", json=workflow)
    if valid:
        assert response.status_code == 200, response.text
    else:
        body = assert_problem(response, 422, "workflow_invalid")
        assert all(e["pointer"].startswith("/nodes/1") for e in body["errors"]), body


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ({"config": {"continue_on_error": 0}}, False),
        ({"config": {"limits": {"max_nodes": True}}}, False),
        ({"config": {"limits": {"max_nodes": 2**53}}}, False),
        ({"config": {"limits": {"max_nodes": 2**53 - 1}}}, True),
        ({"config": {"max_concurrency": "4"}}, False),
        ({"config": {"timeout_includes_waiting": "true"}}, False),
        ({"config": {"checkpoint": {"every_n_nodes": False}}}, False),
        ({"config": {"continue_on_error": True, "limits": {"max_nodes": 10}}}, True),
        ({"config": {"timeout_s": 5}}, True),
    ],
)
async def test_run_options_are_strictly_typed(
    client: httpx.AsyncClient, document: dict[str, Any], body: dict[str, Any], valid: bool
) -> None:
    assert start_body_valid(document, body) is valid
    workflow_id = await create_workflow(client, linear({"id": "start", "type": "start"}))
    response = await client.post(f"/v1/workflows/{workflow_id}/executions", json=body)
    if valid:
        assert response.status_code == 202, response.text
    else:
        body = assert_problem(response, 422, "request_invalid")
        assert body["errors"][0]["pointer"].startswith("/config/")


async def test_a_problem_under_a_non_ascii_digit_key_points_at_it(
    client: httpx.AsyncClient,
) -> None:
    workflow = with_node(type="transform", config={"value": {"³": "{{ 1 + }}"}})
    body = assert_problem(
        await client.post("/v1/workflows/validate", json=workflow), 422, "workflow_invalid"
    )
    [error] = body["errors"]
    assert error["pointer"] == "/nodes/1/config/value/³"
    assert error["loc"] == ["body", "nodes", 1, "config", "value", "³"]


async def test_a_405_allows_every_method_of_the_path(
    client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    for template, operations in document["paths"].items():
        path = template.replace("{workflow_id}", "w1").replace("{execution_id}", "e1")
        path = path.replace("{form_id}", "f1")
        response = await client.request("PATCH", path)
        assert_problem(response, 405, "method_not_allowed")
        allowed = sorted(method.upper() for method in operations)
        assert response.headers["allow"].split(", ") == allowed, template


async def test_the_sse_stream_sends_what_the_document_describes(
    client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    operation = document["paths"]["/v1/executions/{execution_id}/events"]["get"]
    content = operation["responses"]["200"]["content"]["text/event-stream"]
    message_schema = validator(document, content["itemSchema"])
    event_schema = validator(document, content["itemSchema"]["properties"]["data"]["contentSchema"])
    workflow_id = await create_workflow(client, linear({"id": "start", "type": "start"}))
    execution_id = (await start_run(client, workflow_id))["id"]
    await wait_run(client, execution_id)
    # The run has ended, so the stream ends too (and the ASGI transport can buffer it).
    response = await client.get(f"/v1/executions/{execution_id}/events")
    assert response.status_code == 200
    messages = _messages(response.text)
    assert messages[0] == {"retry": 2000}
    events = messages[1:]
    assert events[-1]["event"] == "workflow.completed"
    for message in messages:
        message_schema.validate(message)
    for event in events:
        data = json.loads(event["data"])
        event_schema.validate(data)
        assert (data["seq"], data["type"]) == (int(event["id"]), event["event"])


def _messages(text: str) -> list[dict[str, Any]]:
    """Each SSE message as fields (``retry`` an integer), comments left out."""
    messages: list[dict[str, Any]] = []
    for block in text.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            name, _, value = line.partition(": ")
            if name:
                fields[name] = int(value) if name == "retry" else value
        if fields:
            messages.append(fields)
    return messages


async def test_the_documented_examples_are_accepted(
    client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    bodies = document["paths"]["/v1/workflows"]["post"]["requestBody"]["content"]
    start = document["paths"]["/v1/workflows/{workflow_id}/executions"]["post"]["requestBody"]
    [start_example] = start["content"]["application/json"]["examples"].values()
    for example in bodies["application/json"]["examples"].values():
        assert workflow_valid(document, example["value"])
        workflow_id = await create_workflow(client, example["value"])
        execution = await start_run(client, workflow_id, start_example["value"])
        assert (await wait_run(client, execution["id"]))["status"] in ("completed", "waiting")


def test_links_name_operations_and_their_parameters(document: dict[str, Any]) -> None:
    operations = {
        operation["operationId"]: operation
        for item in document["paths"].values()
        for operation in item.values()
    }
    for source, operation in operations.items():
        for status, response in operation["responses"].items():
            for name, link in response.get("links", {}).items():
                where = f"{source} {status} → {name}"
                target = operations[link["operationId"]]
                names = {f"{p['in']}.{p['name']}" for p in target.get("parameters", [])}
                assert set(link["parameters"]) <= names, where


@pytest.mark.parametrize(
    "value",
    ["queued", "queued,running", " queued , failed ,", "", ",", "queued running", "Queued"],
)
async def test_the_status_filter_accepts_what_its_pattern_allows(
    client: httpx.AsyncClient, document: dict[str, Any], value: str
) -> None:
    [parameter] = [
        p for p in document["paths"]["/v1/executions"]["get"]["parameters"] if p["name"] == "status"
    ]
    allowed = re.search(parameter["schema"]["items"]["pattern"], value) is not None
    response = await client.get("/v1/executions", params={"status": value})
    assert response.status_code == (200 if allowed else 422), response.text
    assert allowed is (value not in ("queued running", "Queued"))
