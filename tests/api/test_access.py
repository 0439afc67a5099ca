"""API keys on the request path: 401/403 before anything else, revocation and rotation,
whoami, the admin routes, and single-use stream tickets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from app.auth import keys as key_format
from app.store import keys as key_rows
from app.store.keys import KeyRow
from tests.api.helpers import assert_problem, doubler, services_of, serving

PEPPER = "pepper-" + "x" * 40


@pytest.fixture
async def client(pg_database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(pg_database_url, shutdown_grace_s=2.0, key_pepper=PEPPER) as client:
        yield client


async def new_key(client: httpx.AsyncClient, *scopes: str, project: str | None = "default") -> str:
    created = await services_of(client).keys.create(
        name="test", scopes=list(scopes), project=project
    )
    return created.key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_open_until_the_first_key_exists_then_closed(fresh_pg_url: str) -> None:
    async with serving(fresh_pg_url, key_pepper=PEPPER) as client:
        await open_then_closed(client)


async def open_then_closed(client: httpx.AsyncClient) -> None:
    whoami = await client.get("/v1/auth/whoami")
    assert whoami.json() == {
        "key_id": None,
        "subject": None,
        "name": None,
        "scopes": ["admin"],
        "project": None,
        "authenticated": False,
    }
    key = await new_key(client, "viewer")
    response = await client.get("/v1/workflows")
    body = assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"] == 'Bearer realm="oxify"'
    assert "oxify_" not in str(body)
    assert (await client.get("/v1/workflows", headers=bearer(key))).status_code == 200
    assert (await client.get("/healthz")).status_code == 200  # probes stay open


async def test_whoami_names_the_key(client: httpx.AsyncClient) -> None:
    key = await new_key(client, "runner", "reviewer", project="team-a")
    key_id = key_format.parse(key).key_id  # type: ignore[union-attr]
    answer = (await client.get("/v1/auth/whoami", headers=bearer(key))).json()
    assert answer == {
        "key_id": key_id,
        "subject": None,
        "name": "test",
        "scopes": ["reviewer", "runner"],
        "project": "team-a",
        "authenticated": True,
    }


async def test_malformed_keys_are_refused_without_a_database_read(
    client: httpx.AsyncClient,
) -> None:
    await new_key(client, "viewer")
    cache = services_of(client).keys.cache
    reads = cache.reads
    text, _ = key_format.new_key()
    for header in (
        "Bearer oxify_nonsense",
        "Bearer " + text[:-1] + ("A" if text[-1] != "A" else "B"),  # bad checksum
        "Basic dXNlcjpwYXNz",
        "Bearer",
    ):
        response = await client.get("/v1/workflows", headers={"Authorization": header})
        assert_problem(response, 401, "unauthenticated")
    assert cache.reads == reads
    unknown = await client.get("/v1/workflows", headers=bearer(text))  # well formed, unknown
    assert_problem(unknown, 401, "unauthenticated")
    assert cache.reads == reads + 1
    await client.get("/v1/workflows", headers=bearer(text))
    assert cache.reads == reads + 1  # the unknown id is remembered too


async def test_credentials_come_before_the_body(client: httpx.AsyncClient) -> None:
    viewer = await new_key(client, "viewer")
    json_type = {"Content-Type": "application/json"}
    anonymous = await client.post("/v1/workflows", content=b"{not json", headers=json_type)
    assert_problem(anonymous, 401, "unauthenticated")
    denied = await client.post(
        "/v1/workflows",
        content=b"{not json",
        headers={"Content-Type": "application/json", **bearer(viewer)},
    )
    body = assert_problem(denied, 403, "insufficient_scope")
    assert body["detail"] == "this needs scope admin or runner"
    assert denied.headers["www-authenticate"].endswith('error="insufficient_scope"')


async def test_keys_in_the_query_string_are_refused(client: httpx.AsyncClient) -> None:
    key = await new_key(client, "viewer")
    for name in ("api_key", "token", "access_token"):
        response = await client.get("/v1/workflows", params={name: key}, headers=bearer(key))
        body = assert_problem(response, 401, "unauthenticated")
        assert "URL" in body["detail"]


async def test_a_revoked_key_is_refused_at_once(client: httpx.AsyncClient) -> None:
    key = await new_key(client, "viewer")
    assert (await client.get("/v1/workflows", headers=bearer(key))).status_code == 200
    key_id = key_format.parse(key).key_id  # type: ignore[union-attr]
    await services_of(client).keys.revoke(key_id)
    body = assert_problem(
        await client.get("/v1/workflows", headers=bearer(key)), 401, "unauthenticated"
    )
    assert "revoked" in body["detail"]


async def test_an_expired_key_is_refused(client: httpx.AsyncClient) -> None:
    services = services_of(client)
    text, parsed = key_format.new_key()
    now = datetime.now(UTC)
    async with services.engine.begin() as conn:
        await key_rows.insert(
            conn,
            KeyRow(
                id=parsed.key_id,
                name="old",
                digest=key_format.digest(parsed.secret, PEPPER.encode()),
                scopes=["admin"],
                project=None,
                limits=None,
                created_at=now - timedelta(days=2),
                expires_at=now - timedelta(seconds=1),
                revoked_at=None,
                last_used_at=None,
                replaced_by=None,
            ),
        )
    body = assert_problem(
        await client.get("/v1/workflows", headers=bearer(text)), 401, "unauthenticated"
    )
    assert "expired" in body["detail"]


async def test_rotation_keeps_the_old_key_for_the_grace_period(
    client: httpx.AsyncClient,
) -> None:
    admin = await new_key(client, "admin", project=None)
    old = await new_key(client, "viewer")
    old_id = key_format.parse(old).key_id  # type: ignore[union-attr]
    rotated = await client.post(
        f"/v1/admin/keys/{old_id}/rotate", json={"grace_s": 600}, headers=bearer(admin)
    )
    assert rotated.status_code == 201, rotated.text
    new = rotated.json()
    assert new["scopes"] == ["viewer"] and new["project"] == "default"
    assert (await client.get("/v1/workflows", headers=bearer(new["key"]))).status_code == 200
    assert (await client.get("/v1/workflows", headers=bearer(old))).status_code == 200
    listed = {
        k["id"]: k for k in (await client.get("/v1/admin/keys", headers=bearer(admin))).json()
    }
    assert listed[old_id]["replaced_by"] == new["id"]
    assert listed[old_id]["expires_at"] is not None
    # No grace: the old key stops now.
    again = await client.post(
        f"/v1/admin/keys/{new['id']}/rotate", json={"grace_s": 0}, headers=bearer(admin)
    )
    assert again.status_code == 201
    assert_problem(
        await client.get("/v1/workflows", headers=bearer(new["key"])), 401, "unauthenticated"
    )


async def test_admin_key_routes(client: httpx.AsyncClient) -> None:
    admin = await new_key(client, "admin", project=None)
    created = await client.post(
        "/v1/admin/keys",
        json={"name": "ci", "scopes": ["runner"], "project": "team-b", "expires_in_days": 30},
        headers=bearer(admin),
    )
    assert created.status_code == 201, created.text
    made = created.json()
    assert made["key"].startswith(f"oxify_{made['id']}_")
    listed = (await client.get("/v1/admin/keys", headers=bearer(admin))).json()
    [row] = [k for k in listed if k["id"] == made["id"]]
    assert "key" not in row and "digest" not in row
    assert row["project"] == "team-b" and row["scopes"] == ["runner"]
    # A runner cannot manage keys; a non-admin key cannot span projects.
    assert_problem(
        await client.get("/v1/admin/keys", headers=bearer(made["key"])), 403, "insufficient_scope"
    )
    invalid = await client.post(
        "/v1/admin/keys",
        json={"name": "x", "scopes": ["viewer"], "all_projects": True},
        headers=bearer(admin),
    )
    assert_problem(invalid, 422, "key_invalid")
    # An admin of one project sees and hands out keys of that project only.
    team_admin = await new_key(client, "admin", project="team-a")
    seen = (await client.get("/v1/admin/keys", headers=bearer(team_admin))).json()
    assert {k["project"] for k in seen} == {"team-a"}
    assert_problem(
        await client.delete(f"/v1/admin/keys/{made['id']}", headers=bearer(team_admin)),
        404,
        "key_not_found",
    )
    assert (
        await client.delete(f"/v1/admin/keys/{made['id']}", headers=bearer(admin))
    ).status_code == 204
    assert_problem(
        await client.get("/v1/workflows", headers=bearer(made["key"])), 401, "unauthenticated"
    )


async def test_a_stream_ticket_opens_one_stream_once(client: httpx.AsyncClient) -> None:
    runner = await new_key(client, "runner")
    viewer = await new_key(client, "viewer")
    workflow_id = await create_workflow_as(client, runner)
    run = await start_run_as(client, runner, workflow_id)
    await wait_run_as(client, runner, run)

    issued = await client.post(
        "/v1/auth/tickets", json={"execution_id": run}, headers=bearer(viewer)
    )
    assert issued.status_code == 201, issued.text
    ticket = issued.json()["ticket"]
    events = f"/v1/executions/{run}/events"
    first = await client.get(events, params={"ticket": ticket})
    assert first.status_code == 200
    assert "workflow.completed" in first.text
    assert_problem(await client.get(events, params={"ticket": ticket}), 401, "unauthenticated")
    # Tickets open streams only, for their own run only.
    other = (
        await client.post("/v1/auth/tickets", json={"execution_id": run}, headers=bearer(viewer))
    ).json()["ticket"]
    assert_problem(
        await client.get(f"/v1/executions/{run}", params={"ticket": other}),
        401,
        "unauthenticated",
    )
    missing = await client.post(
        "/v1/auth/tickets", json={"execution_id": "no-such-run"}, headers=bearer(viewer)
    )
    assert_problem(missing, 404, "execution_not_found")


async def create_workflow_as(client: httpx.AsyncClient, key: str) -> str:
    response = await client.post("/v1/workflows", json=doubler(), headers=bearer(key))
    assert response.status_code == 201, response.text
    workflow_id: str = response.json()["id"]
    return workflow_id


async def start_run_as(client: httpx.AsyncClient, key: str, workflow_id: str) -> str:
    response = await client.post(
        f"/v1/workflows/{workflow_id}/executions", json={"inputs": {"n": 2}}, headers=bearer(key)
    )
    assert response.status_code == 202, response.text
    execution_id: str = response.json()["id"]
    return execution_id


async def wait_run_as(client: httpx.AsyncClient, key: str, execution_id: str) -> None:
    response = await client.get(
        f"/v1/executions/{execution_id}/wait", params={"timeout_s": 30}, headers=bearer(key)
    )
    assert response.json()["status"] == "completed"


async def test_key_changes_and_refused_keys_are_audited(client: httpx.AsyncClient) -> None:
    services = services_of(client)
    admin = await new_key(client, "admin", project=None)
    created = await client.post(
        "/v1/admin/keys", json={"name": "ci", "scopes": ["viewer"]}, headers=bearer(admin)
    )
    key_id = created.json()["id"]
    await client.delete(f"/v1/admin/keys/{key_id}", headers=bearer(admin))
    refused = await client.get("/v1/workflows", headers=bearer(created.json()["key"]))
    assert refused.status_code == 401
    await services.auth_failures.close()  # the sampled row is written in the background

    rows = (
        await client.get(
            "/v1/admin/audit", params={"target": f"key:{key_id}"}, headers=bearer(admin)
        )
    ).json()["items"]
    admin_id = key_format.parse(admin).key_id  # type: ignore[union-attr]
    assert [(r["action"], r["actor"], r["outcome"]) for r in rows] == [
        ("auth.failure", "anonymous", "denied"),
        ("key.revoke", f"key:{admin_id}", "ok"),
        ("key.create", f"key:{admin_id}", "ok"),
    ]
    assert created.json()["key"] not in str(rows)
    assert "revoked" in rows[0]["detail"]["reason"]
