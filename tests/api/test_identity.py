"""Who starts a run and who answers an approval come from the caller's credentials once there
are any: a key's name here (a token's subject and groups claim: tests/unit/auth). A body that
names someone else, or claims groups, is refused with a pointer at the field; without keys the
body still says who it is (tests/api/test_forms.py)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.helpers import assert_problem, linear, pointers, services_of, serving

PEPPER = "pepper-" + "y" * 40


async def key(client: httpx.AsyncClient, name: str, scope: str) -> dict[str, str]:
    created = await services_of(client).keys.create(
        name=name, scopes=[scope], project="default", limits=None
    )
    return {"Authorization": f"Bearer {created.key}"}


def approval(**config: Any) -> dict[str, Any]:
    return linear(
        {"id": "start", "type": "start"},
        {"id": "vote", "type": "approval", "config": {"prompt": "Ship it?", **config}},
        {"id": "end", "type": "end"},
        name="identity",
    )


async def pending_form(
    client: httpx.AsyncClient, headers: dict[str, str], document: dict[str, Any]
) -> tuple[str, str]:
    """A run of ``document`` started with ``headers``, and its approval once it waits."""
    created = await client.post("/v1/workflows", json=document, headers=headers)
    assert created.status_code == 201, created.text
    started = await client.post(
        f"/v1/workflows/{created.json()['id']}/executions", json={}, headers=headers
    )
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    waited = await client.get(
        f"/v1/executions/{run_id}/wait", params={"timeout_s": 30}, headers=headers
    )
    assert waited.json()["status"] == "waiting", waited.text
    forms = await client.get("/v1/forms", params={"execution_id": run_id}, headers=headers)
    return run_id, forms.json()["items"][0]["id"]


async def test_an_approval_is_answered_by_the_key_not_by_what_the_body_says(
    pg_database_url: str,
) -> None:
    async with serving(pg_database_url, key_pepper=PEPPER) as client:
        starter = await key(client, "ci", "runner")
        alice = await key(client, "alice", "reviewer")
        mallory = await key(client, "mallory", "reviewer")
        run_id, form_id = await pending_form(client, starter, approval(approvers=["alice"]))
        url = f"/v1/forms/{form_id}/submit"
        approve = {"values": {"decision": "approved"}}

        # Mallory cannot answer as Alice, nor claim a group.
        impostor = await client.post(url, json={**approve, "by": "alice"}, headers=mallory)
        assert pointers(assert_problem(impostor, 422, "request_invalid")) == {"/by"}
        assert impostor.json()["errors"][0]["code"] == "from_credentials"
        grouped = await client.post(url, json={**approve, "groups": ["ops"]}, headers=alice)
        assert pointers(assert_problem(grouped, 422, "request_invalid")) == {"/groups"}
        # As herself she is not an approver.
        assert_problem(
            await client.post(url, json=approve, headers=mallory), 403, "not_an_approver"
        )

        # Alice's key answers as Alice, whether or not the body repeats her name.
        answered = await client.post(url, json={**approve, "by": "alice"}, headers=alice)
        assert answered.status_code == 200, answered.text
        assert [a["by"] for a in answered.json()["answers"]] == ["alice"]
        done = await client.get(
            f"/v1/executions/{run_id}/wait", params={"timeout_s": 30}, headers=starter
        )
        assert done.json()["status"] == "completed"


async def test_the_starter_is_the_key_so_self_approval_cannot_be_dodged(
    pg_database_url: str,
) -> None:
    async with serving(pg_database_url, key_pepper=PEPPER) as client:
        bob = await key(client, "bob", "admin")
        created = await client.post("/v1/workflows", json=approval(), headers=bob)
        workflow_id = created.json()["id"]
        # Bob cannot say someone else started his run ...
        disguised = await client.post(
            f"/v1/workflows/{workflow_id}/executions", json={"by": "carol"}, headers=bob
        )
        assert pointers(assert_problem(disguised, 422, "request_invalid")) == {"/by"}
        # ... so the run he started is his, and he may not approve it.
        _, form_id = await pending_form(client, bob, approval())
        refused = await client.post(
            f"/v1/forms/{form_id}/submit", json={"values": {"decision": "approved"}}, headers=bob
        )
        assert_problem(refused, 403, "not_an_approver")
        assert "started this run" in refused.json()["detail"]
