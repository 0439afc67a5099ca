"""JSON bodies the store or a run could not hold are refused with 422 at the field, on every
route with a body: U+0000, lone surrogates, integers beyond 64 bits, NaN/Infinity/1e999, nesting
beyond the limit, bodies that are not UTF-8 or not JSON. The deepest body accepted runs to its end.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from app.api.bodies import MAX_DEPTH, OFF_LOOP_BYTES
from tests.api.helpers import assert_problem, create_workflow, doubler, linear, wait_run

JSON = {"content-type": "application/json"}


def nested(levels: int) -> Any:
    """A value of ``levels`` nested lists around a number (1: ``[0]``)."""
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


def passthrough() -> dict[str, Any]:
    """start → end: the run's outputs are its inputs, so they pass through events and store."""
    return linear({"id": "start", "type": "start"}, {"id": "end", "type": "end"}, name="echo")


async def post_raw(client: httpx.AsyncClient, path: str, text: str) -> httpx.Response:
    return await client.post(path, content=text.encode("utf-8", "surrogatepass"), headers=JSON)


def the_error(response: httpx.Response, code: str) -> dict[str, Any]:
    body = assert_problem(response, 422, "request_invalid")
    assert [e["code"] for e in body["errors"]] == [code], body
    error: dict[str, Any] = body["errors"][0]
    return error


@pytest.mark.parametrize(
    ("text", "pointer"),
    [
        ('{"inputs": {"x": "a\\u0000b"}}', "/inputs/x"),
        ('{"inputs": {"a\\u0000": 1}}', "/inputs/a\x00"),
        ('{"inputs": {"list": [1, "\\ud800"]}}', "/inputs/list/1"),
        ('{"by": "me\\u0000"}', "/by"),
    ],
)
async def test_strings_postgres_cannot_hold_are_refused(
    client: httpx.AsyncClient, text: str, pointer: str
) -> None:
    workflow_id = await create_workflow(client, passthrough())
    response = await post_raw(client, f"/v1/workflows/{workflow_id}/executions", text)
    assert the_error(response, "json_unstorable_string")["pointer"] == pointer


async def test_a_workflow_name_or_document_string_with_nul_is_refused(
    client: httpx.AsyncClient,
) -> None:
    for document in ({**doubler(), "name": "a\x00b"}, {**doubler(), "outputs": {"r": "\x00"}}):
        for path in ("/v1/workflows", "/v1/workflows/validate"):
            response = await client.post(path, json=document)
            assert the_error(response, "json_unstorable_string")["pointer"] in (
                "/name",
                "/outputs/r",
            )


async def test_form_values_with_nul_are_refused_before_the_form_is_looked_up(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/v1/forms/nope/submit", json={"values": {"a": "\x00"}})
    assert the_error(response, "json_unstorable_string")["pointer"] == "/values/a"


@pytest.mark.parametrize(
    "number", ["18446744073709551616", "-9223372036854775809", "1" + "0" * 5000]
)
async def test_integers_beyond_64_bits_are_refused(client: httpx.AsyncClient, number: str) -> None:
    workflow_id = await create_workflow(client, passthrough())
    text = f'{{"inputs": {{"n": {number}}}}}'
    response = await post_raw(client, f"/v1/workflows/{workflow_id}/executions", text)
    assert the_error(response, "json_number_unfit")["pointer"] == "/inputs/n"
    document = json.dumps(doubler())[:-1] + f', "outputs": {{"big": {number}}}}}'
    response = await post_raw(client, "/v1/workflows", document)
    assert the_error(response, "json_number_unfit")["pointer"] == "/outputs/big"


async def test_64_bit_integers_are_kept_exactly(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(client, passthrough())
    inputs = {"max": 2**64 - 1, "min": -(2**63)}
    response = await client.post(f"/v1/workflows/{workflow_id}/executions", json={"inputs": inputs})
    assert response.status_code == 202, response.text
    assert (await wait_run(client, response.json()["id"]))["outputs"] == inputs


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
async def test_non_finite_numbers_are_refused_not_stored_as_null(
    client: httpx.AsyncClient, number: str
) -> None:
    workflow_id = await create_workflow(client, passthrough())
    text = f'{{"inputs": {{"x": [1, {number}]}}}}'
    response = await post_raw(client, f"/v1/workflows/{workflow_id}/executions", text)
    assert the_error(response, "json_number_unfit")["pointer"] == "/inputs/x/1"
    listed = await client.get("/v1/executions", params={"workflow_id": workflow_id})
    assert listed.json()["items"] == []


async def test_nesting_beyond_the_limit_is_refused_everywhere(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(client, passthrough())
    too_deep = nested(MAX_DEPTH - 1)  # inside {"inputs": {...}}: one level more than the limit
    response = await client.post(
        f"/v1/workflows/{workflow_id}/executions", json={"inputs": {"x": too_deep}}
    )
    error = the_error(response, "json_too_deep")
    assert error["pointer"] == "/inputs/x" + "/0" * (MAX_DEPTH - 2)
    document = {**doubler(), "outputs": {"x": nested(MAX_DEPTH)}}
    the_error(await client.post("/v1/workflows", json=document), "json_too_deep")
    response = await client.post("/v1/forms/nope/submit", json={"values": {"x": too_deep}})
    the_error(response, "json_too_deep")


async def test_nesting_past_the_recursion_limit_is_a_422_not_a_500(
    client: httpx.AsyncClient,
) -> None:
    text = '{"inputs": {"x": ' + "[" * 100_000 + "]" * 100_000 + "}}"
    response = await post_raw(client, "/v1/workflows/validate", text)
    assert the_error(response, "json_too_deep")["pointer"] == ""


async def test_the_deepest_inputs_accepted_run_to_the_end(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(client, passthrough())
    deepest = nested(MAX_DEPTH - 2)  # the body, "inputs" and this: MAX_DEPTH levels
    response = await client.post(
        f"/v1/workflows/{workflow_id}/executions", json={"inputs": {"x": deepest}}
    )
    assert response.status_code == 202, response.text
    done = await wait_run(client, response.json()["id"])
    assert done["status"] == "completed", done
    assert done["outputs"] == {"x": deepest}


@pytest.mark.parametrize(
    ("body", "offset"),
    [(b'{"name": "x", \xff}', 14), (b'{"name": ', 9), (b"\xef\xbb\xbf{}", 0)],
)
async def test_bodies_that_are_not_json_are_422_with_the_offset(
    client: httpx.AsyncClient, body: bytes, offset: int
) -> None:
    for path in ("/v1/workflows", "/v1/workflows/validate", "/v1/forms/f/submit"):
        response = await client.post(path, content=body, headers=JSON)
        error = the_error(response, "json_invalid")
        assert error["pointer"] == ""
        assert f"offset {offset}" in error["msg"]


async def test_a_large_body_is_checked_as_strictly(client: httpx.AsyncClient) -> None:
    padding = ["x" * 1000] * (OFF_LOOP_BYTES // 1000)  # parsed in a worker thread
    document = {**doubler(), "outputs": {"padding": padding, "bad": [1, "\x00"]}}
    response = await client.post("/v1/workflows/validate", json=document)
    assert the_error(response, "json_unstorable_string")["pointer"] == "/outputs/bad/1"
