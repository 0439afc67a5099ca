"""Projects: a caller bound to one project finds nothing of another (404, never 403), runs
belong to their workflow's project, and every statement a project-bound request makes on
workflows, executions or forms carries the project predicate."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from app.auth import context
from tests.api.helpers import (
    doubler,
    linear,
    services_of,
    serving,
)

PEPPER = "pepper-" + "z" * 40
_TABLES = re.compile(r"\b(workflows|executions|forms)\b")
# Statements that read across projects by design, each with its reason.
GLOBAL_BY_DESIGN = {
    # Admission: the queue's length across the cluster, for OXIFY_MAX_QUEUED_RUNS.
    "SELECT count(*) AS count_1 \nFROM executions \nWHERE executions.status = $1::VARCHAR",
}


def approval_flow() -> dict[str, Any]:
    return linear(
        {"id": "start", "type": "start"},
        {"id": "vote", "type": "approval", "config": {"prompt": "Ship it?"}},
        {"id": "end", "type": "end", "config": {"outputs": {"vote": "{{ vote.output }}"}}},
        name="approval",
    )


class Caller:
    def __init__(self, client: httpx.AsyncClient, key: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {key}"}

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.request(method, path, headers=self.headers, **kwargs)


@pytest.fixture
async def client(pg_database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(pg_database_url, shutdown_grace_s=2.0, key_pepper=PEPPER) as client:
        yield client


async def caller(client: httpx.AsyncClient, project: str | None, *scopes: str) -> Caller:
    created = await services_of(client).keys.create(
        name=f"{project}-{'-'.join(scopes)}", scopes=list(scopes), project=project
    )
    return Caller(client, created.key)


async def waiting_run(team: Caller) -> tuple[str, str, str]:
    """A workflow of ``team``'s project, a run of it waiting for an approval, and the form."""
    created = await team.request("POST", "/v1/workflows", json=approval_flow())
    assert created.status_code == 201, created.text
    workflow_id = created.json()["id"]
    started = await team.request("POST", f"/v1/workflows/{workflow_id}/executions", json={})
    assert started.status_code == 202, started.text
    execution_id = started.json()["id"]
    waited = await team.request("GET", f"/v1/executions/{execution_id}/wait")
    assert waited.json()["status"] == "waiting"
    forms = await team.request("GET", "/v1/forms", params={"execution_id": execution_id})
    [form] = forms.json()["items"]
    return workflow_id, execution_id, form["id"]


async def test_another_projects_objects_are_not_found(client: httpx.AsyncClient) -> None:
    team_a = await caller(client, "team-a", "runner", "reviewer")
    team_b = await caller(client, "team-b", "runner", "reviewer")
    workflow_id, execution_id, form_id = await waiting_run(team_a)

    run = f"/v1/executions/{execution_id}"
    for method, path, body in [
        ("GET", f"/v1/workflows/{workflow_id}", None),
        ("PUT", f"/v1/workflows/{workflow_id}", doubler()),
        ("GET", f"/v1/workflows/{workflow_id}/graph", None),
        ("POST", f"/v1/workflows/{workflow_id}/executions", {}),
        ("DELETE", f"/v1/workflows/{workflow_id}", None),
        ("GET", run, None),
        ("GET", f"{run}/wait", None),
        ("GET", f"{run}/events", None),
        ("GET", f"{run}/events/log", None),
        ("GET", f"{run}/checkpoints", None),
        ("GET", f"{run}/profile", None),
        ("POST", f"{run}/pause", None),
        ("POST", f"{run}/resume", None),
        ("POST", f"{run}/cancel", None),
        ("POST", f"{run}/retry", None),
        ("DELETE", run, None),
        ("GET", f"/v1/forms/{form_id}", None),
        ("POST", f"/v1/forms/{form_id}/submit", {"values": {"decision": "approved"}, "by": "b"}),
        ("POST", "/v1/auth/tickets", {"execution_id": execution_id}),
    ]:
        response = await team_b.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
    for listing in ("/v1/workflows", "/v1/executions", "/v1/forms"):
        assert (await team_b.request("GET", listing)).json()["items"] == [], listing

    # Nothing of team A changed; team A and an admin of every project still see it all.
    run_now = await team_a.request("GET", run)
    assert run_now.json()["status"] == "waiting"
    admin = await caller(client, None, "admin")
    for who in (team_a, admin):
        assert (await who.request("GET", f"/v1/forms/{form_id}")).json()["status"] == "pending"
        ids = {w["id"] for w in (await who.request("GET", "/v1/workflows")).json()["items"]}
        assert workflow_id in ids


async def test_a_run_belongs_to_its_workflows_project(client: httpx.AsyncClient) -> None:
    team_a = await caller(client, "team-a", "runner")
    admin = await caller(client, None, "admin")
    created = await team_a.request("POST", "/v1/workflows", json=doubler())
    workflow_id = created.json()["id"]
    # An admin of every project starts it: the run is team A's, which team A sees.
    started = await admin.request(
        "POST", f"/v1/workflows/{workflow_id}/executions", json={"inputs": {"n": 2}}
    )
    assert started.status_code == 202
    seen = await team_a.request("GET", f"/v1/executions/{started.json()['id']}/wait")
    assert seen.json()["status"] == "completed"


async def test_a_sub_workflow_of_another_project_is_not_found(client: httpx.AsyncClient) -> None:
    team_a = await caller(client, "team-a", "runner")
    team_b = await caller(client, "team-b", "runner")
    theirs = (await team_b.request("POST", "/v1/workflows", json=doubler())).json()["id"]
    parent = linear(
        {"id": "start", "type": "start"},
        {"id": "child", "type": "subworkflow", "config": {"workflow_id": theirs}},
        name="parent",
    )
    created = await team_a.request("POST", "/v1/workflows", json=parent)
    assert created.status_code == 201, created.text
    started = await team_a.request(
        "POST", f"/v1/workflows/{created.json()['id']}/executions", json={"inputs": {"n": 1}}
    )
    done = await team_a.request("GET", f"/v1/executions/{started.json()['id']}/wait")
    assert done.json()["status"] == "failed"
    assert f"no workflow '{theirs}'" in done.json()["error"]["message"]


async def test_every_statement_a_project_bound_request_makes_carries_the_project(
    client: httpx.AsyncClient,
) -> None:
    team = await caller(client, "team-a", "runner", "reviewer")
    with statements_in_requests(client) as seen:
        workflow_id, execution_id, form_id = await waiting_run(team)
        run = f"/v1/executions/{execution_id}"
        for method, path, body in [
            ("GET", "/v1/workflows", None),
            ("GET", f"/v1/workflows/{workflow_id}", None),
            ("PUT", f"/v1/workflows/{workflow_id}", approval_flow()),
            ("GET", "/v1/executions", None),
            ("GET", run, None),
            ("GET", f"{run}/events/log", None),
            ("GET", f"{run}/checkpoints", None),
            ("GET", f"{run}/profile", None),
            ("GET", f"/v1/forms/{form_id}", None),
            ("POST", f"/v1/forms/{form_id}/submit", {"values": {"decision": "approved"}}),
            ("GET", f"{run}/wait", None),
            ("POST", f"{run}/retry", None),
            ("POST", f"{run}/pause", None),
            ("POST", f"{run}/resume", None),
            ("POST", f"{run}/cancel", None),
            ("DELETE", run, None),
            ("DELETE", f"/v1/workflows/{workflow_id}", None),
        ]:
            await team.request(method, path, json=body)
    touching = [s for s in seen if _TABLES.search(s)]
    assert len(touching) > 20, touching
    missing = [s for s in touching if "project" not in s and s not in GLOBAL_BY_DESIGN]
    assert missing == []


@contextmanager
def statements_in_requests(client: httpx.AsyncClient) -> Iterator[list[str]]:
    """The SQL of every statement sent while a project-bound request was being served."""
    seen: list[str] = []
    engine = services_of(client).engine.sync_engine

    def record(*args: Any) -> None:
        current = context.current()
        if current is not None and current.request_id and current.principal.project:
            seen.append(args[2])

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)
