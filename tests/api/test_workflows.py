"""Workflows over HTTP: validate, create, read, version, list, archive, draw, and their errors."""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.helpers import (
    assert_problem,
    create_workflow,
    doubler,
    linear,
    pointers,
    serving,
)


def broken() -> dict[str, Any]:
    """Three problems at three pointers: a bad condition, an unknown edge target, a bad type."""
    return {
        "name": "broken",
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "check", "type": "if", "config": {"condition": "inputs.x >"}},
            {"id": "odd", "type": "no_such_type"},
        ],
        "edges": [{"from": "start", "to": "check"}, {"from": "check", "to": "ghost"}],
    }


async def test_validate_answers_levels(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/workflows/validate", json=doubler())
    assert response.status_code == 200
    body = response.json()
    assert body["valid"] is True
    assert body["levels"] == [["start"], ["double"], ["end"]]
    assert body["node_count"] == 3


async def test_validate_points_at_every_problem_in_the_document(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/v1/workflows/validate", json=broken())
    body = assert_problem(response, 422, "workflow_invalid")
    assert {"/nodes/1/config/condition", "/edges/1/to", "/nodes/2/type"} <= pointers(body)
    for error in body["errors"]:
        assert error["loc"][0] == "body"
        assert error["msg"]
        assert error["code"]
    condition = next(e for e in body["errors"] if e["pointer"] == "/nodes/1/config/condition")
    assert condition["loc"] == ["body", "nodes", 1, "config", "condition"]


async def test_shape_errors_point_into_the_document_not_the_body(
    client: httpx.AsyncClient,
) -> None:
    document = {"nodes": [{"id": "1bad", "type": "start"}], "edges": []}
    response = await client.post("/v1/workflows", json=document)
    body = assert_problem(response, 422, "workflow_invalid")
    assert {"/name", "/nodes/0/id"} <= pointers(body)
    assert not any(p.startswith("/body") for p in pointers(body))


async def test_a_body_that_is_not_an_object_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/workflows", json=[1, 2])
    body = assert_problem(response, 422, "request_invalid")
    assert body["errors"][0]["pointer"] == ""

    response = await client.post(
        "/v1/workflows", content=b'{"name": ', headers={"content-type": "application/json"}
    )
    body = assert_problem(response, 422, "request_invalid")
    assert body["errors"][0]["code"] == "json_invalid"
    assert body["errors"][0]["loc"] == ["body"]


async def test_create_read_update_versions(client: httpx.AsyncClient) -> None:
    created = await client.post("/v1/workflows", json=doubler())
    assert created.status_code == 201
    workflow = created.json()
    assert created.headers["location"] == f"/v1/workflows/{workflow['id']}"
    assert workflow["version"] == 1
    assert workflow["name"] == "doubler"
    assert workflow["document"] == doubler()
    assert workflow["archived"] is False

    renamed = {**doubler(), "name": "doubler v2"}
    updated = await client.put(f"/v1/workflows/{workflow['id']}", json=renamed)
    assert updated.status_code == 200
    assert updated.json()["version"] == 2

    latest = await client.get(f"/v1/workflows/{workflow['id']}")
    assert latest.json()["version"] == 2
    assert latest.json()["document"]["name"] == "doubler v2"
    first = await client.get(f"/v1/workflows/{workflow['id']}", params={"version": 1})
    assert first.json()["version"] == 1
    assert first.json()["document"]["name"] == "doubler"

    missing = await client.get(f"/v1/workflows/{workflow['id']}", params={"version": 9})
    assert_problem(missing, 404, "workflow_not_found")
    zero = await client.get(f"/v1/workflows/{workflow['id']}", params={"version": 0})
    body = assert_problem(zero, 422, "request_invalid")
    assert body["errors"][0]["parameter"] == "version"


async def test_update_validates_the_new_version(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(client, doubler())
    response = await client.put(f"/v1/workflows/{workflow_id}", json=broken())
    assert_problem(response, 422, "workflow_invalid")
    latest = await client.get(f"/v1/workflows/{workflow_id}")
    assert latest.json()["version"] == 1


async def test_unknown_workflows_are_404(client: httpx.AsyncClient) -> None:
    for response in [
        await client.get("/v1/workflows/nope"),
        await client.put("/v1/workflows/nope", json=doubler()),
        await client.delete("/v1/workflows/nope"),
        await client.get("/v1/workflows/nope/graph"),
        await client.post("/v1/workflows/nope/executions", json={}),
    ]:
        body = assert_problem(response, 404, "workflow_not_found")
        assert "nope" in body["detail"]


async def test_archive_hides_from_the_list_and_refuses_changes(
    client: httpx.AsyncClient,
) -> None:
    workflow_id = await create_workflow(client, doubler())
    response = await client.delete(f"/v1/workflows/{workflow_id}")
    assert response.status_code == 204
    assert response.content == b""
    again = await client.delete(f"/v1/workflows/{workflow_id}")
    assert again.status_code == 204  # archiving is idempotent

    readable = await client.get(f"/v1/workflows/{workflow_id}")
    assert readable.status_code == 200
    assert readable.json()["archived"] is True

    put = await client.put(f"/v1/workflows/{workflow_id}", json=doubler())
    assert_problem(put, 409, "workflow_archived")
    run = await client.post(f"/v1/workflows/{workflow_id}/executions", json={"inputs": {"n": 1}})
    assert_problem(run, 409, "workflow_archived")

    listed = await client.get("/v1/workflows", params={"limit": 500})
    assert workflow_id not in {w["id"] for w in listed.json()["items"]}
    listed = await client.get("/v1/workflows", params={"limit": 500, "include_archived": True})
    assert workflow_id in {w["id"] for w in listed.json()["items"]}


async def test_list_pages_with_cursors(fresh_pg_url: str) -> None:
    async with serving(fresh_pg_url) as client:
        created = [await create_workflow(client, {**doubler(), "name": f"w{i}"}) for i in range(5)]
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 2}
            if cursor is not None:
                params["cursor"] = cursor
            response = await client.get("/v1/workflows", params=params)
            assert response.status_code == 200
            page = response.json()
            assert len(page["items"]) <= 2
            seen += [w["id"] for w in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == 3
        assert seen == list(reversed(created))  # newest first, each once

        default = await client.get("/v1/workflows")
        assert len(default.json()["items"]) == 5
        assert default.json()["next_cursor"] is None


async def test_list_parameters_are_validated(client: httpx.AsyncClient) -> None:
    for params in ({"limit": 0}, {"limit": 501}, {"limit": "many"}):
        body = assert_problem(
            await client.get("/v1/workflows", params=params), 422, "request_invalid"
        )
        assert body["errors"][0]["loc"] == ["query", "limit"]
        assert body["errors"][0]["parameter"] == "limit"
    response = await client.get("/v1/workflows", params={"cursor": "not-a-cursor"})
    body = assert_problem(response, 422, "cursor_invalid")
    assert body["errors"][0]["parameter"] == "cursor"


async def test_graph_in_every_format(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(client, doubler())
    for fmt, marker in (("mermaid", "flowchart"), ("dot", "digraph"), ("ascii", "double")):
        response = await client.get(f"/v1/workflows/{workflow_id}/graph", params={"format": fmt})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert marker in response.text
        assert "double" in response.text
    default = await client.get(f"/v1/workflows/{workflow_id}/graph", params={"version": 1})
    assert default.status_code == 200
    bad = await client.get(f"/v1/workflows/{workflow_id}/graph", params={"format": "png"})
    body = assert_problem(bad, 422, "request_invalid")
    assert body["errors"][0]["parameter"] == "format"


async def test_workflows_over_the_node_limit_are_refused(fresh_pg_url: str) -> None:
    async with serving(fresh_pg_url, max_workflow_nodes=3) as client:
        assert (await client.post("/v1/workflows", json=doubler())).status_code == 201
        four = linear(
            {"id": "start", "type": "start"},
            {"id": "a", "type": "transform", "config": {"value": 1}},
            {"id": "b", "type": "transform", "config": {"value": 2}},
            {"id": "end", "type": "end"},
        )
        for path in ("/v1/workflows", "/v1/workflows/validate"):
            body = assert_problem(await client.post(path, json=four), 422, "workflow_invalid")
            assert [e["code"] for e in body["errors"]] == ["limit_exceeded"]
            assert body["errors"][0]["pointer"] == "/nodes"
