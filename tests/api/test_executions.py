"""Executions over HTTP: start (idempotent), read, wait, list, control, history, and errors."""

from __future__ import annotations

from typing import Any

import httpx

from app.domain.events import EventType
from tests.api.helpers import (
    assert_problem,
    create_workflow,
    delays,
    doubler,
    linear,
    next_event,
    pointers,
    serving,
    start_run,
    wait_run,
)


async def test_a_run_completes_with_outputs_node_states_and_progress(
    client: httpx.AsyncClient,
) -> None:
    workflow_id = await create_workflow(client, doubler())
    response = await client.post(
        f"/v1/workflows/{workflow_id}/executions", json={"inputs": {"n": 21}}
    )
    assert response.status_code == 202
    started = response.json()
    assert response.headers["location"] == f"/v1/executions/{started['id']}"
    assert started["workflow_id"] == workflow_id
    assert started["workflow_version"] == 1
    assert started["inputs"] == {"n": 21}
    assert started["status"] in ("queued", "running", "completed")

    done = await wait_run(client, started["id"])
    assert done["status"] == "completed"
    assert done["outputs"] == {"result": 42}
    assert done["error"] is None
    assert done["progress"] == {"completed": 3, "total": 3, "percent": 100.0}
    assert done["finished_at"] is not None
    nodes = {n["node_id"]: n for n in done["nodes"]}
    assert set(nodes) == {"start", "double", "end"}
    assert all(n["status"] == "completed" and n["attempt"] == 1 for n in nodes.values())
    assert nodes["double"]["output"] == 42

    read = await client.get(f"/v1/executions/{started['id']}")
    assert read.status_code == 200
    assert read.json() == done


async def test_start_answers_the_bad_inputs_and_config_with_pointers(
    client: httpx.AsyncClient,
) -> None:
    workflow_id = await create_workflow(client, doubler())
    url = f"/v1/workflows/{workflow_id}/executions"

    body = assert_problem(
        await client.post(url, json={"inputs": {"n": "x"}}), 422, "inputs_invalid"
    )
    assert pointers(body) == {"/inputs/n"}
    assert body["errors"][0]["loc"] == ["body", "inputs", "n"]
    body = assert_problem(await client.post(url, json={}), 422, "inputs_invalid")
    assert body["errors"][0]["pointer"].startswith("/inputs")

    config = {"max_concurrency": 0, "checkpoint": "sometimes"}
    body = assert_problem(
        await client.post(url, json={"inputs": {"n": 1}, "config": config}), 422, "request_invalid"
    )
    assert "/config/max_concurrency" in pointers(body)
    assert any(p.startswith("/config/checkpoint") for p in pointers(body))

    body = assert_problem(await client.post(url, json={"inputz": {}}), 422, "request_invalid")
    assert pointers(body) == {"/inputz"}

    response = await client.post(url, json={"inputs": {"n": 1}}, params={"version": 7})
    assert_problem(response, 404, "workflow_not_found")


async def test_start_refuses_inputs_over_the_limit(pg_database_url: str) -> None:
    async with serving(pg_database_url, max_input_bytes=2048) as client:
        workflow_id = await create_workflow(client, linear({"id": "start", "type": "start"}))
        url = f"/v1/workflows/{workflow_id}/executions"
        body = assert_problem(
            await client.post(url, json={"inputs": {"text": "x" * 3000}}), 422, "inputs_too_large"
        )
        assert pointers(body) == {"/inputs"}
        assert body["detail"].startswith("the inputs are larger than 2048 bytes (at least ")
        assert "limit OXIFY_MAX_INPUT_BYTES" in body["detail"]
        assert (await client.post(url, json={"inputs": {"text": "x" * 1000}})).status_code == 202


async def test_an_output_the_store_cannot_write_fails_its_node_not_the_run(
    client: httpx.AsyncClient,
) -> None:
    document = linear(
        {"id": "start", "type": "start"},
        {"id": "big", "type": "transform", "config": {"value": "{{ 1 << 100 }}"}},
        {"id": "end", "type": "end"},
    )
    started = await start_run(client, await create_workflow(client, document))
    done = await wait_run(client, started["id"])
    assert done["status"] == "failed"
    assert done["error"]["code"] == "output_invalid"
    assert done["error"]["node_id"] == "big"
    assert "does not fit in 64 bits" in done["error"]["message"]
    nodes = {n["node_id"]: n["status"] for n in done["nodes"]}
    assert nodes["start"] == "completed"
    assert nodes["big"] == "failed"


async def test_a_config_is_kept_with_the_run(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(client, doubler())
    body = {"inputs": {"n": 2}, "config": {"max_concurrency": 2, "checkpoint": "every_level"}}
    started = await start_run(client, workflow_id, body)
    assert started["config"]["max_concurrency"] == 2
    assert started["config"]["checkpoint"] == "every_level"
    assert (await wait_run(client, started["id"]))["outputs"] == {"result": 4}


async def test_a_run_without_a_body_uses_the_input_defaults(client: httpx.AsyncClient) -> None:
    document = linear(
        {"id": "start", "type": "start"},
        {"id": "end", "type": "end", "config": {"outputs": {"who": "{{ inputs.who }}"}}},
        inputs={"type": "object", "properties": {"who": {"type": "string", "default": "Ada"}}},
    )
    workflow_id = await create_workflow(client, document)
    response = await client.post(f"/v1/workflows/{workflow_id}/executions")
    assert response.status_code == 202, response.text
    assert (await wait_run(client, response.json()["id"]))["outputs"] == {"who": "Ada"}


async def test_idempotent_starts(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(client, doubler())
    url = f"/v1/workflows/{workflow_id}/executions"
    headers = {"Idempotency-Key": "order-17"}

    first = await client.post(url, json={"inputs": {"n": 1}}, headers=headers)
    assert first.status_code == 202
    replay = await client.post(url, json={"inputs": {"n": 1}}, headers=headers)
    assert replay.status_code == 200
    assert replay.json()["id"] == first.json()["id"]
    assert replay.headers["location"] == first.headers["location"]

    conflict = await client.post(url, json={"inputs": {"n": 2}}, headers=headers)
    assert_problem(conflict, 409, "idempotency_conflict")

    other_key = await client.post(
        url, json={"inputs": {"n": 1}}, headers={"Idempotency-Key": "o18"}
    )
    assert other_key.status_code == 202
    assert other_key.json()["id"] != first.json()["id"]

    too_long = await client.post(url, json={}, headers={"Idempotency-Key": "k" * 201})
    body = assert_problem(too_long, 422, "request_invalid")
    assert body["errors"][0]["loc"] == ["header", "Idempotency-Key"]
    assert body["errors"][0]["parameter"] == "Idempotency-Key"


async def test_unknown_executions_are_404(client: httpx.AsyncClient) -> None:
    for method, path in [
        ("GET", ""),
        ("GET", "/wait"),
        ("POST", "/pause"),
        ("POST", "/resume"),
        ("POST", "/cancel"),
        ("POST", "/retry"),
        ("GET", "/checkpoints"),
        ("GET", "/events/log"),
    ]:
        response = await client.request(method, f"/v1/executions/nope{path}")
        assert_problem(response, 404, "execution_not_found")


async def test_wait_timeout_is_bounded(client: httpx.AsyncClient) -> None:
    for timeout in (0, -1, 61, "soon"):
        response = await client.get("/v1/executions/x/wait", params={"timeout_s": timeout})
        body = assert_problem(response, 422, "request_invalid")
        assert body["errors"][0]["parameter"] == "timeout_s"


async def test_wait_answers_after_its_timeout_when_the_run_goes_on(
    client: httpx.AsyncClient,
) -> None:
    workflow_id = await create_workflow(client, delays(1, 5.0))
    run = await start_run(client, workflow_id)
    await next_event(client, run["id"], EventType.NODE_STARTED, "d1")
    response = await client.get(f"/v1/executions/{run['id']}/wait", params={"timeout_s": 0.2})
    assert response.status_code == 200
    assert response.json()["status"] == "running"
    cancelled = await client.post(f"/v1/executions/{run['id']}/cancel", params={"wait": True})
    assert cancelled.json()["status"] == "cancelled"


async def test_list_filters_and_pages(fresh_pg_url: str) -> None:
    async with serving(fresh_pg_url) as client:
        doubling = await create_workflow(client, doubler())
        other = await create_workflow(client, {**doubler(), "name": "other"})
        runs = [(await start_run(client, doubling, {"inputs": {"n": i}}))["id"] for i in range(3)]
        failing = (await start_run(client, other, {"inputs": {"n": 1}}))["id"]
        for execution_id in [*runs, failing]:
            await wait_run(client, execution_id)

        listed = await client.get("/v1/executions", params={"workflow_id": doubling})
        assert [e["id"] for e in listed.json()["items"]] == list(reversed(runs))
        assert listed.json()["next_cursor"] is None
        summary = listed.json()["items"][0]
        assert summary["status"] == "completed"
        assert "nodes" not in summary
        assert summary["progress"]["percent"] == 100.0

        seen: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 3}
            if cursor:
                params["cursor"] = cursor
            page = (await client.get("/v1/executions", params=params)).json()
            seen += [e["id"] for e in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [failing, *reversed(runs)]

        completed = await client.get("/v1/executions", params={"status": "completed"})
        assert len(completed.json()["items"]) == 4
        several = await client.get(
            "/v1/executions", params=[("status", "failed"), ("status", "completed")]
        )
        assert len(several.json()["items"]) == 4
        commas = await client.get("/v1/executions", params={"status": "queued,running"})
        assert commas.json()["items"] == []

        bad = await client.get("/v1/executions", params={"status": "completed,done"})
        body = assert_problem(bad, 422, "request_invalid")
        assert body["errors"][0]["loc"] == ["query", "status"]
        assert "done" in body["errors"][0]["msg"]
        bad_cursor = await client.get("/v1/executions", params={"cursor": "abc"})
        assert_problem(bad_cursor, 422, "cursor_invalid")
        bad_limit = await client.get("/v1/executions", params={"limit": 501})
        assert_problem(bad_limit, 422, "request_invalid")


async def test_pause_then_resume(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(client, delays(3, 0.2))
    run = await start_run(client, workflow_id)
    await next_event(client, run["id"], EventType.NODE_STARTED, "d1")

    paused = await client.post(f"/v1/executions/{run['id']}/pause")
    assert paused.status_code == 202
    assert paused.json()["status"] in ("pausing", "paused")
    again = await client.post(f"/v1/executions/{run['id']}/pause")
    assert again.status_code == 202  # asking twice is harmless

    held = await wait_run(client, run["id"])
    assert held["status"] == "paused"
    nodes = {n["node_id"]: n["status"] for n in held["nodes"]}
    assert nodes["d1"] == "completed"  # the running node finished
    assert "d2" not in nodes or nodes["d2"] == "pending"  # nothing new started

    resumed = await client.post(f"/v1/executions/{run['id']}/resume")
    assert resumed.status_code == 202
    assert resumed.json()["status"] in ("queued", "running", "completed")
    done = await wait_run(client, run["id"])
    assert done["status"] == "completed"
    assert done["outputs"] == {"slept": 0.2}
    assert {n["node_id"]: n["attempt"] for n in done["nodes"]}["d1"] == 1

    log = await client.get(f"/v1/executions/{run['id']}/events/log", params={"limit": 500})
    types = [e["type"] for e in log.json()["items"]]
    assert types.index("workflow.paused") < types.index("workflow.resumed")
    assert types[-1] == "workflow.completed"


async def test_control_of_runs_in_the_wrong_state_is_409(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(client, doubler())
    done = await wait_run(
        client, (await start_run(client, workflow_id, {"inputs": {"n": 1}}))["id"]
    )
    for action in ("pause", "resume", "retry", "cancel"):
        response = await client.post(f"/v1/executions/{done['id']}/{action}")
        body = assert_problem(response, 409, "invalid_state")
        assert "completed" in body["detail"]

    slow = await create_workflow(client, delays(1, 5.0))
    run = await start_run(client, slow)
    await next_event(client, run["id"], EventType.NODE_STARTED, "d1")
    assert_problem(await client.post(f"/v1/executions/{run['id']}/retry"), 409, "invalid_state")
    resumed = await client.post(f"/v1/executions/{run['id']}/resume")
    assert resumed.status_code == 202  # already running: resuming is a no-op
    assert resumed.json()["status"] == "running"
    await client.post(f"/v1/executions/{run['id']}/cancel", params={"wait": True})


async def test_cancel_with_wait_then_retry(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(client, delays(2, 0.3))
    run = await start_run(client, workflow_id)
    await next_event(client, run["id"], EventType.NODE_STARTED, "d1")

    cancelled = await client.post(f"/v1/executions/{run['id']}/cancel", params={"wait": True})
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["finished_at"] is not None
    nodes = {n["node_id"]: n["status"] for n in cancelled.json()["nodes"]}
    assert nodes["d1"] == "cancelled"
    again = await client.post(f"/v1/executions/{run['id']}/cancel")
    assert again.status_code == 202
    assert again.json()["status"] == "cancelled"

    retried = await client.post(f"/v1/executions/{run['id']}/retry")
    assert retried.status_code == 202
    assert retried.json()["status"] in ("queued", "running")
    done = await wait_run(client, run["id"])
    assert done["status"] == "completed"
    attempts = {n["node_id"]: (n["status"], n["attempt"]) for n in done["nodes"]}
    assert attempts["start"] == ("completed", 1)  # completed nodes keep their results
    assert attempts["d1"] == ("completed", 2)  # the interrupted one ran again


async def test_cancel_without_wait_answers_at_once(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(client, delays(1, 5.0))
    run = await start_run(client, workflow_id)
    await next_event(client, run["id"], EventType.NODE_STARTED, "d1")
    response = await client.post(f"/v1/executions/{run['id']}/cancel")
    assert response.status_code == 202
    assert response.json()["status"] in ("running", "cancelled")
    assert (await wait_run(client, run["id"]))["status"] == "cancelled"


async def test_retry_of_a_failed_run_runs_only_the_failed_node_again(
    client: httpx.AsyncClient,
) -> None:
    document = linear(
        {"id": "start", "type": "start"},
        {"id": "prepare", "type": "transform", "config": {"value": 1}},
        {"id": "guard", "type": "fail", "config": {"message": "stop here"}},
        {"id": "end", "type": "end"},
    )
    workflow_id = await create_workflow(client, document)
    failed = await wait_run(client, (await start_run(client, workflow_id))["id"])
    assert failed["status"] == "failed"
    assert failed["error"] is not None
    assert "stop here" in str(failed["error"])

    retried = await client.post(f"/v1/executions/{failed['id']}/retry")
    assert retried.status_code == 202
    again = await wait_run(client, failed["id"])
    assert again["status"] == "failed"
    attempts = {n["node_id"]: (n["status"], n["attempt"]) for n in again["nodes"]}
    assert attempts["prepare"] == ("completed", 1)
    assert attempts["guard"] == ("failed", 2)


async def test_checkpoints_and_the_events_log(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(client, doubler())
    done = await wait_run(
        client, (await start_run(client, workflow_id, {"inputs": {"n": 3}}))["id"]
    )

    checkpoints = await client.get(f"/v1/executions/{done['id']}/checkpoints")
    assert checkpoints.status_code == 200
    items = checkpoints.json()["items"]
    assert items
    assert [c["number"] for c in items] == list(range(1, len(items) + 1))
    assert {key for c in items for key in c["nodes"]} == {"start", "double", "end"}
    assert all(c["seq"] <= done["last_seq"] for c in items)

    events: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 4}
        if cursor is not None:
            params["cursor"] = cursor
        response = await client.get(f"/v1/executions/{done['id']}/events/log", params=params)
        assert response.status_code == 200
        page = response.json()
        assert len(page["items"]) <= 4
        events += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [e["seq"] for e in events] == list(range(1, done["last_seq"] + 1))
    assert events[0]["type"] == "workflow.started"
    assert events[-1]["type"] == "workflow.completed"
    assert all(e["execution_id"] == done["id"] for e in events)
    completed = [e for e in events if e["type"] == "node.completed"]
    assert {e["node_id"] for e in completed} == {"start", "double", "end"}

    after = await client.get(
        f"/v1/executions/{done['id']}/events/log", params={"after": done["last_seq"] - 1}
    )
    assert [e["type"] for e in after.json()["items"]] == ["workflow.completed"]
    assert after.json()["next_cursor"] is None

    bad = await client.get(f"/v1/executions/{done['id']}/events/log", params={"cursor": "x1"})
    assert_problem(bad, 422, "cursor_invalid")
    negative = await client.get(f"/v1/executions/{done['id']}/events/log", params={"after": -1})
    assert_problem(negative, 422, "request_invalid")
