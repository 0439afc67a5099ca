"""Forms and approvals through the API on Postgres: runs that wait for people, answers that
continue them, quorum, self-approval, races between answers, validation and deadlines."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from app.domain.events import EventType
from tests.api.helpers import (
    assert_problem,
    create_workflow,
    linear,
    next_event,
    services_of,
    serving,
    start_run,
    wait_run,
)

FIELDS = {
    "type": "object",
    "properties": {
        "email": {"type": "string", "format": "email"},
        "seats": {"type": "integer", "minimum": 1, "maximum": 10},
        "team": {"type": "string", "enum": ["data", "platform"], "default": "data"},
    },
    "required": ["email", "seats"],
}


def form_node(node_id: str = "ask", **config: Any) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": "form",
        "config": {"prompt": "Seats for {{ inputs.who }}?", "fields": FIELDS, **config},
    }


def approval_node(node_id: str = "vote", **config: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "approval", "config": {"prompt": "Ship it?", **config}}


def with_form(**config: Any) -> dict[str, Any]:
    return linear(
        {"id": "start", "type": "start"},
        form_node(**config),
        {"id": "end", "type": "end", "config": {"outputs": {"answer": "{{ ask.output }}"}}},
        name="form",
        inputs={"type": "object", "properties": {"who": {"type": "string", "default": "ada"}}},
    )


def routed_approval(**config: Any) -> dict[str, Any]:
    """start → vote → approved / rejected / timed_out → end {path, vote}."""
    branches = [
        "approved",
        "rejected",
        *(["timed_out"] if config.get("on_timeout") == "branch" else []),
    ]
    nodes = [
        {"id": "start", "type": "start"},
        approval_node(**config),
        *({"id": b, "type": "transform", "config": {"value": b}} for b in branches),
        {
            "id": "end",
            "type": "end",
            "config": {
                "outputs": {
                    "path": "{{ " + " or ".join(f"{b}.output" for b in branches) + " }}",
                    "vote": "{{ vote.output }}",
                }
            },
        },
    ]
    edges = [{"from": "start", "to": "vote"}]
    for branch in branches:
        edges += [{"from": "vote", "to": branch, "branch": branch}, {"from": branch, "to": "end"}]
    return {"name": "approval", "nodes": nodes, "edges": edges}


async def waiting_forms(client: httpx.AsyncClient, execution_id: str) -> list[dict[str, Any]]:
    """The run's pending forms, once the run waits."""
    assert (await wait_run(client, execution_id))["status"] == "waiting"
    page = await client.get("/v1/forms", params={"execution_id": execution_id, "status": "pending"})
    assert page.status_code == 200, page.text
    items: list[dict[str, Any]] = page.json()["items"]
    return items


async def submit(
    client: httpx.AsyncClient, form_id: str, values: dict[str, Any], **extra: Any
) -> httpx.Response:
    return await client.post(f"/v1/forms/{form_id}/submit", json={"values": values, **extra})


async def finished(client: httpx.AsyncClient, execution_id: str) -> dict[str, Any]:
    """The run once it logged its terminal event (however many waits and resumes before)."""
    stream = services_of(client).bus.stream(execution_id)
    async for _event in stream:  # ends after the terminal event
        pass
    execution: dict[str, Any] = (await client.get(f"/v1/executions/{execution_id}")).json()
    return execution


async def event_types(client: httpx.AsyncClient, execution_id: str) -> list[str]:
    log = await client.get(f"/v1/executions/{execution_id}/events/log", params={"limit": 500})
    return [e["type"] for e in log.json()["items"]]


async def test_a_waiting_run_survives_a_restart_and_the_answer_completes_it(
    fresh_pg_url: str,
) -> None:
    async with serving(fresh_pg_url) as client:
        run = await start_run(client, await create_workflow(client, with_form()))
        [form] = await waiting_forms(client, run["id"])
        assert form["prompt"] == "Seats for ada?"
        assert form["kind"] == "form" and form["fields"] == FIELDS
        assert form["node_key"] == "ask" and form["deadline"] is None
    # The server is gone; the run holds nothing anywhere. A new one takes the answer.
    async with serving(fresh_pg_url) as client:
        answer = await submit(
            client, form["id"], {"email": "ada@example.com", "seats": 3}, by="ada"
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "submitted"
        done = await finished(client, run["id"])
        assert done["status"] == "completed", done
        assert done["outputs"] == {
            "answer": {"email": "ada@example.com", "seats": 3, "team": "data"}
        }
        types = await event_types(client, run["id"])
        assert types.count("form.requested") == 1 and types.count("form.submitted") == 1
        assert types.count("workflow.waiting") == 1 and types[-1] == "workflow.completed"
        audit = (await client.get(f"/v1/forms/{form['id']}")).json()["answers"]
        assert [(a["by"], a["values"]["seats"]) for a in audit] == [("ada", 3)]


async def test_two_approvals_in_parallel_both_answered_complete_the_run_once(
    client: httpx.AsyncClient,
) -> None:
    document = {
        "name": "two-approvals",
        "nodes": [
            {"id": "start", "type": "start"},
            approval_node("legal"),
            approval_node("security"),
            {
                "id": "end",
                "type": "end",
                "config": {
                    "outputs": {
                        "legal": "{{ legal.output.decision }}",
                        "security": "{{ security.output.decision }}",
                    }
                },
            },
        ],
        "edges": [
            {"from": "start", "to": "legal"},
            {"from": "start", "to": "security"},
            {"from": "legal", "to": "end", "branch": "approved"},
            {"from": "security", "to": "end", "branch": "approved"},
        ],
    }
    run = await start_run(client, await create_workflow(client, document))
    forms = {f["node_key"]: f for f in await waiting_forms(client, run["id"])}
    assert set(forms) == {"legal", "security"}

    assert (
        await submit(client, forms["legal"]["id"], {"decision": "approved"}, by="lee")
    ).status_code == 200
    assert [f["node_key"] for f in await waiting_forms(client, run["id"])] == ["security"]
    assert (
        await submit(client, forms["security"]["id"], {"decision": "approved"}, by="sam")
    ).status_code == 200

    done = await finished(client, run["id"])
    assert done["status"] == "completed", done
    assert done["outputs"] == {"legal": "approved", "security": "approved"}
    types = await event_types(client, run["id"])
    assert types.count("workflow.completed") == 1
    assert types.count("form.submitted") == 2


async def test_quorum_self_approval_and_one_answer_per_approver(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(
        client, routed_approval(approvers=["ann", "bob", "cid"], quorum=2)
    )
    run = await start_run(client, workflow_id, {"by": "ann"})
    [form] = await waiting_forms(client, run["id"])
    assert form["fields"]["properties"]["decision"]["enum"] == ["approved", "rejected"]

    assert_problem(
        await submit(client, form["id"], {"decision": "approved"}, by="ann"), 403, "not_an_approver"
    )
    assert_problem(
        await submit(client, form["id"], {"decision": "approved"}, by="eve"), 403, "not_an_approver"
    )
    assert_problem(
        await submit(client, form["id"], {"decision": "approved"}), 422, "submission_invalid"
    )
    first = await submit(client, form["id"], {"decision": "approved", "comment": "fine"}, by="bob")
    assert first.status_code == 200 and first.json()["status"] == "pending"  # 1 of 2
    assert_problem(
        await submit(client, form["id"], {"decision": "approved"}, by="bob"),
        409,
        "form_already_answered",
    )
    second = await submit(client, form["id"], {"decision": "approved"}, by="cid")
    assert second.json()["status"] == "submitted"
    assert_problem(
        await submit(client, form["id"], {"decision": "rejected"}, by="ann"), 409, "form_closed"
    )

    done = await finished(client, run["id"])
    assert done["outputs"]["path"] == "approved"
    vote = done["outputs"]["vote"]
    assert vote["decision"] == "approved" and vote["by"] == "cid"
    assert [(a["by"], a["decision"]) for a in vote["approvals"]] == [
        ("bob", "approved"),
        ("cid", "approved"),
    ]
    assert [a["by"] for a in (await client.get(f"/v1/forms/{form['id']}")).json()["answers"]] == [
        "bob",
        "cid",
    ]


async def test_one_rejection_rejects_and_groups_name_approvers(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(
        client,
        routed_approval(approvers=["group:finance", "bob"], quorum=2, allow_self_approval=True),
    )
    run = await start_run(client, workflow_id, {"by": "fay"})
    [form] = await waiting_forms(client, run["id"])
    approved = await submit(
        client, form["id"], {"decision": "approved"}, by="fay", groups=["finance"]
    )
    assert approved.json()["status"] == "pending"
    rejected = await submit(
        client, form["id"], {"decision": "rejected", "comment": "over budget"}, by="bob"
    )
    assert rejected.json()["status"] == "submitted"

    done = await finished(client, run["id"])
    assert done["outputs"]["path"] == "rejected"
    assert done["outputs"]["vote"]["comment"] == "over budget"


async def test_twenty_concurrent_answers_to_one_form_have_one_winner(
    client: httpx.AsyncClient,
) -> None:
    run = await start_run(client, await create_workflow(client, with_form()))
    [form] = await waiting_forms(client, run["id"])

    answers = await asyncio.gather(
        *(
            submit(client, form["id"], {"email": f"u{i}@example.com", "seats": i % 10 + 1})
            for i in range(20)
        )
    )

    winners = [i for i, a in enumerate(answers) if a.status_code == 200]
    assert len(winners) == 1
    for answer in answers:
        if answer.status_code != 200:
            assert_problem(answer, 409, "form_closed")
    done = await finished(client, run["id"])
    winner = winners[0]
    assert done["outputs"]["answer"]["email"] == f"u{winner}@example.com"
    assert len((await client.get(f"/v1/forms/{form['id']}")).json()["answers"]) == 1


async def test_invalid_values_get_one_error_per_field_and_store_nothing(
    client: httpx.AsyncClient,
) -> None:
    run = await start_run(client, await create_workflow(client, with_form()))
    [form] = await waiting_forms(client, run["id"])

    refused = await submit(client, form["id"], {"email": "not-an-email", "team": "sales"})

    body = assert_problem(refused, 422, "submission_invalid")
    pointers = {e["pointer"] for e in body["errors"]}
    assert pointers == {"/values/email", "/values/seats", "/values/team"}
    again = (await client.get(f"/v1/forms/{form['id']}")).json()
    assert again["status"] == "pending" and again["answers"] == []
    bad_type = await submit(client, form["id"], {"email": "a@b.io", "seats": 99})
    assert {
        e["pointer"] for e in assert_problem(bad_type, 422, "submission_invalid")["errors"]
    } == {"/values/seats"}


async def test_forms_are_listed_by_status_execution_workflow_and_assignee(
    client: httpx.AsyncClient,
) -> None:
    approvals = await create_workflow(client, routed_approval(approvers=["ann", "bob"]))
    forms_wf = await create_workflow(client, with_form())
    first = await start_run(client, approvals)
    second = await start_run(client, forms_wf)
    [vote] = await waiting_forms(client, first["id"])
    await waiting_forms(client, second["id"])

    async def ids(**params: Any) -> set[str]:
        page = await client.get("/v1/forms", params=params)
        assert page.status_code == 200, page.text
        return {f["execution_id"] for f in page.json()["items"]}

    assert await ids(workflow_id=approvals) == {first["id"]}
    bobs = await ids(assignee="bob")  # (the module's other tests add forms too)
    assert first["id"] in bobs and second["id"] not in bobs
    assert await ids(assignee="zed") == set()
    assert {first["id"], second["id"]} <= await ids(status="pending")
    assert_problem(await client.get("/v1/forms/nope"), 404, "form_not_found")
    assert_problem(await client.get("/v1/forms", params={"status": "open"}), 422, "request_invalid")
    one = await client.get("/v1/forms", params={"limit": 1, "status": "pending"})
    assert one.json()["next_cursor"] is not None

    cancelled = await client.post(f"/v1/executions/{first['id']}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    assert (await client.get(f"/v1/forms/{vote['id']}")).json()["status"] == "cancelled"
    assert_problem(
        await submit(client, vote["id"], {"decision": "approved"}, by="ann"), 409, "form_closed"
    )


async def test_an_answer_while_the_run_is_busy_elsewhere_is_not_lost(
    client: httpx.AsyncClient,
) -> None:
    document = {
        "name": "busy",
        "nodes": [
            {"id": "start", "type": "start"},
            form_node(),
            {"id": "slow", "type": "delay", "config": {"seconds": 1.0}},
            {"id": "end", "type": "end", "config": {"outputs": {"answer": "{{ ask.output }}"}}},
        ],
        "edges": [
            {"from": "start", "to": "ask"},
            {"from": "start", "to": "slow"},
            {"from": "ask", "to": "end"},
            {"from": "slow", "to": "end"},
        ],
        "inputs": {"type": "object", "properties": {"who": {"type": "string", "default": "x"}}},
    }
    run = await start_run(client, await create_workflow(client, document))
    requested = await next_event(client, run["id"], EventType.FORM_REQUESTED)
    assert (await client.get(f"/v1/executions/{run['id']}")).json()["status"] == "running"

    form_id = requested.data["form_id"]
    assert (await submit(client, form_id, {"email": "a@b.io", "seats": 2})).status_code == 200

    done = await finished(client, run["id"])
    assert done["status"] == "completed"
    assert done["outputs"]["answer"]["seats"] == 2


@pytest.mark.parametrize(
    ("on_timeout", "status", "path"),
    [
        ("fail", "failed", None),
        ("reject", "completed", "rejected"),
        ("approve", "completed", "approved"),
        ("branch", "completed", "timed_out"),
    ],
)
async def test_approval_deadlines(
    fresh_pg_url: str, on_timeout: str, status: str, path: str | None
) -> None:
    async with serving(fresh_pg_url, deadline_sweep_s=0.05) as client:
        workflow_id = await create_workflow(
            client, routed_approval(timeout_s=0.2, on_timeout=on_timeout)
        )
        run = await start_run(client, workflow_id)
        [form] = await waiting_forms(client, run["id"])
        done = await finished(client, run["id"])

        assert done["status"] == status, done
        assert (await client.get(f"/v1/forms/{form['id']}")).json()["status"] == "timed_out"
        assert "form.timed_out" in await event_types(client, run["id"])
        if path is None:
            assert done["error"]["code"] == "form_timed_out"
        else:
            assert done["outputs"]["path"] == path


@pytest.mark.parametrize(
    ("on_timeout", "status", "answer"),
    [
        ("fail", "failed", None),
        ("default", "completed", {"team": "data"}),
        ("branch", "completed", None),
    ],
)
async def test_form_deadlines(fresh_pg_url: str, on_timeout: str, status: str, answer: Any) -> None:
    async with serving(fresh_pg_url, deadline_sweep_s=0.05) as client:
        document = with_form(timeout_s=0.2, on_timeout=on_timeout)
        if on_timeout == "branch":
            document["edges"] = [
                {"from": "start", "to": "ask"},
                {"from": "ask", "to": "end", "branch": "timed_out"},
            ]
        run = await start_run(client, await create_workflow(client, document))
        await waiting_forms(client, run["id"])
        done = await finished(client, run["id"])

        assert done["status"] == status, done
        if status == "completed":
            assert done["outputs"] == {"answer": answer}


async def test_a_run_whose_timeout_counts_waiting_times_out_while_it_waits(
    fresh_pg_url: str,
) -> None:
    async with serving(fresh_pg_url, deadline_sweep_s=0.05) as client:
        workflow_id = await create_workflow(client, with_form())
        # Without the flag the same wait does not count: started first, it outlives the other.
        patient = await start_run(client, workflow_id, {"config": {"timeout_s": 0.3}})
        await waiting_forms(client, patient["id"])
        config = {"timeout_s": 0.3, "timeout_includes_waiting": True}
        run = await start_run(client, workflow_id, {"config": config})
        [form] = await waiting_forms(client, run["id"])

        done = await finished(client, run["id"])

        assert done["status"] == "timed_out", done
        assert (await client.get(f"/v1/forms/{form['id']}")).json()["status"] == "cancelled"
        assert (await client.get(f"/v1/executions/{patient['id']}")).json()["status"] == "waiting"
