"""GET /v1/admin/audit over the real app: run control and form answers leave their rows, in
order, each in the transaction (or journal statement) of the change it records."""

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
    services_of,
    serving,
    start_run,
    wait_run,
)


async def audit_rows(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    """Every row matching ``params``, oldest first, read two at a time."""
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        answer = await client.get(
            "/v1/admin/audit", params={**params, "limit": 2, "cursor": cursor}
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        rows += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return rows[::-1]


async def test_run_control_is_audited_whichever_path_it_takes(pg_database_url: str) -> None:
    async with serving(pg_database_url, max_concurrent_runs=1, shutdown_grace_s=2.0) as client:
        slow = await create_workflow(client, delays(1, 30.0))
        quick = await create_workflow(client, doubler())
        blocker = await start_run(client, slow)
        await next_event(client, blocker["id"], EventType.NODE_STARTED, "d1")
        held = await start_run(client, quick, {"inputs": {"n": 5}})
        dropped = await start_run(client, quick, {"inputs": {"n": 6}})

        # Queued runs no one drives: held and withdrawn by the journal's statement.
        assert (await client.post(f"/v1/executions/{held['id']}/pause")).status_code == 202
        assert (await client.post(f"/v1/executions/{dropped['id']}/cancel")).status_code == 202
        # A driven run: cancelled through its owner.
        stopped = await client.post(f"/v1/executions/{blocker['id']}/cancel", params={"wait": True})
        assert stopped.json()["status"] == "cancelled"
        # Refused changes leave nothing.
        assert (await client.post(f"/v1/executions/{dropped['id']}/resume")).status_code == 409
        assert (await client.post(f"/v1/executions/{held['id']}/resume")).status_code == 202
        assert (await wait_run(client, held["id"]))["status"] == "completed"
        assert (await client.post(f"/v1/executions/{dropped['id']}/retry")).status_code == 202
        assert (await wait_run(client, dropped["id"]))["status"] == "completed"
        assert (await client.delete(f"/v1/executions/{held['id']}")).status_code == 204
        # A driven run paused: asked of its owner.
        stepper = await start_run(client, await create_workflow(client, delays(2, 0.2)))
        await next_event(client, stepper["id"], EventType.NODE_STARTED, "d1")
        assert (await client.post(f"/v1/executions/{stepper['id']}/pause")).status_code == 202
        assert (await wait_run(client, stepper["id"]))["status"] == "paused"

        rows = await audit_rows(client)
        assert [(r["action"], r["target"]) for r in rows[:-3]] == [
            ("workflow.create", slow),
            ("workflow.create", quick),
            ("run.start", blocker["id"]),
            ("run.start", held["id"]),
            ("run.start", dropped["id"]),
            ("run.pause", held["id"]),
            ("run.cancel", dropped["id"]),
            ("run.cancel", blocker["id"]),
            ("run.resume", held["id"]),
            ("run.retry", dropped["id"]),
            ("run.delete", held["id"]),
        ]
        assert [(r["action"], r["target"]) for r in rows[-2:]] == [
            ("run.start", stepper["id"]),
            ("run.pause", stepper["id"]),
        ]
        assert [r["id"] for r in rows] == list(range(1, len(rows) + 1))
        assert {(r["actor"], r["project"], r["outcome"]) for r in rows} == {
            ("anonymous", "default", "ok")
        }
        assert rows[2]["detail"] == {"workflow_id": slow, "version": 1}
        # Rows written by the journal's statement chain like the others.
        assert (await services_of(client).audit.verify()).broken is None

        cancels = await audit_rows(client, action="run.cancel")
        assert [r["target"] for r in cancels] == [dropped["id"], blocker["id"]]
        later = await audit_rows(client, since=rows[-4]["at"], target=held["id"])
        assert [r["action"] for r in later] == ["run.delete"]


async def test_a_form_answer_is_audited(client: httpx.AsyncClient) -> None:
    fields = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    document = linear(
        {"id": "start", "type": "start"},
        {"id": "ask", "type": "form", "config": {"prompt": "Go?", "fields": fields}},
        {"id": "end", "type": "end"},
        name="ask",
    )
    run = await start_run(client, await create_workflow(client, document))
    assert (await wait_run(client, run["id"]))["status"] == "waiting"
    forms = await client.get("/v1/forms", params={"execution_id": run["id"]})
    form_id = forms.json()["items"][0]["id"]
    bad = await client.post(f"/v1/forms/{form_id}/submit", json={"values": {"ok": "maybe"}})
    assert bad.status_code == 422
    good = await client.post(
        f"/v1/forms/{form_id}/submit", json={"values": {"ok": True}, "by": "ada"}
    )
    assert good.status_code == 200, good.text

    answers = await audit_rows(client, action="form.answer")
    assert [(r["target"], r["detail"]) for r in answers] == [
        (form_id, {"execution_id": run["id"], "kind": "form", "by": "ada"})
    ]


async def test_bad_filters_and_cursors_are_refused(client: httpx.AsyncClient) -> None:
    naive = await client.get("/v1/admin/audit", params={"since": "2026-12-07T10:00:00"})
    body = assert_problem(naive, 422, "request_invalid")
    assert [e["loc"] for e in body["errors"]] == [["query", "since"]]
    number = await client.get("/v1/admin/audit", params={"until": "0.5"})
    body = assert_problem(number, 422, "request_invalid")
    assert [e["loc"] for e in body["errors"]] == [["query", "until"]]
    early = await client.get("/v1/admin/audit", params={"until": "0001-01-01T00:00:00+01:00"})
    body = assert_problem(early, 422, "request_invalid")
    assert [e["loc"] for e in body["errors"]] == [["query", "until"]]
    cursor = await client.get("/v1/admin/audit", params={"cursor": "bm90IGEgY3Vyc29y"})
    assert_problem(cursor, 422, "cursor_invalid")
