"""``/v1/credentials`` on a real Postgres: values go in encrypted and never come back out; a
caller bound to a project sees only its own; without a key nothing is stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import delete, select

from app.auth import context
from app.auth.context import RequestContext
from app.auth.principal import Principal
from app.auth.scopes import Scope
from app.domain.credentials import NewCredential
from app.errors import CredentialNotFound, InsufficientScope
from app.store.tables import credentials
from tests.api.helpers import assert_problem, pointers, services_of, serving

KEY = Fernet.generate_key().decode()
CANARY = "canary-7d41c0b2-do-not-leak"


@pytest.fixture
async def client(pg_database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app with a key, on the module's database, its credentials table emptied first."""
    async with serving(pg_database_url, secret_keys=KEY) as client:
        async with services_of(client).engine.begin() as conn:
            await conn.execute(delete(credentials))
        yield client


def bearer(name: str = "crm", **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "bearer", "value": CANARY, **extra}


async def test_storing_without_a_key_is_refused_and_stores_nothing(fresh_pg_url: str) -> None:
    async with serving(fresh_pg_url) as client:  # a database of its own: nothing in it
        body = assert_problem(
            await client.post("/v1/credentials", json=bearer()), 503, "encryption_not_configured"
        )
        assert "OXIFY_SECRET_KEYS" in body["detail"]
        listed = await client.get("/v1/credentials")
        async with services_of(client).engine.connect() as conn:
            rows = (await conn.execute(select(credentials))).all()
    assert listed.json() == {"items": [], "next_cursor": None}
    assert rows == []


async def test_create_list_read_delete_never_show_the_value(client: httpx.AsyncClient) -> None:
    created = await client.post("/v1/credentials", json=bearer())
    assert created.status_code == 201, created.text
    credential = created.json()
    assert created.headers["location"] == f"/v1/credentials/{credential['id']}"
    assert credential["name"] == "crm"
    assert credential["kind"] == "bearer"
    assert credential["project"] == "default"
    basic = {"name": "db", "kind": "basic", "username": "ada", "value": CANARY}
    key = {"name": "k", "kind": "api_key", "in": "query", "key_name": "key", "value": CANARY}
    assert (await client.post("/v1/credentials", json=basic)).json()["params"] == {
        "username": "ada"
    }
    assert (await client.post("/v1/credentials", json=key)).json()["params"] == {
        "in": "query",
        "key_name": "key",
    }
    listed = await client.get("/v1/credentials", params={"limit": 2})
    page = listed.json()
    assert [c["name"] for c in page["items"]] == ["crm", "db"]
    rest = await client.get("/v1/credentials", params={"cursor": page["next_cursor"]})
    assert [c["name"] for c in rest.json()["items"]] == ["k"]
    read = await client.get(f"/v1/credentials/{credential['id']}")
    assert read.json() == credential
    for answer in (created, listed, rest, read):
        assert CANARY not in answer.text
    async with services_of(client).engine.connect() as conn:
        stored = (await conn.execute(select(credentials.c.ciphertext))).scalars().all()
    assert stored and all(CANARY.encode() not in token for token in stored)

    assert (await client.delete(f"/v1/credentials/{credential['id']}")).status_code == 204
    gone = await client.get(f"/v1/credentials/{credential['id']}")
    assert_problem(gone, 404, "credential_not_found")
    again = await client.delete(f"/v1/credentials/{credential['id']}")
    assert_problem(again, 404, "credential_not_found")


async def test_a_taken_name_is_a_conflict(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/credentials", json=bearer())).status_code == 201
    taken = await client.post("/v1/credentials", json=bearer())
    assert_problem(taken, 409, "credential_exists")
    other_project = await client.post("/v1/credentials", json=bearer(project="p2"))
    assert other_project.status_code == 201
    assert other_project.json()["project"] == "p2"


BAD_FIELDS = [
    ({"name": "b", "kind": "basic", "value": CANARY}, "/username"),
    ({"name": "k", "kind": "api_key", "value": CANARY}, "/key_name"),
    ({"name": "k", "kind": "api_key", "key_name": "X Y", "value": CANARY}, "/key_name"),
    ({"name": "t", "kind": "bearer", "username": "ada", "value": CANARY}, "/username"),
    ({"name": "t", "kind": "bearer", "in": "query", "value": CANARY}, "/in"),
    ({"name": "t", "value": CANARY + "\n"}, "/value"),
    ({"name": "has space", "value": CANARY}, "/name"),
    ({"name": "t", "kind": "oauth", "value": CANARY}, "/kind"),
    ({"name": "t", "value": ""}, "/value"),
    ({"name": "t", "value": CANARY, "extra": 1}, "/extra"),
]


async def test_bad_fields_are_pointed_at_without_the_value(client: httpx.AsyncClient) -> None:
    for body, pointer in BAD_FIELDS:
        answer = await client.post("/v1/credentials", json=body)
        assert answer.status_code == 422, answer.text
        assert pointer in pointers(answer.json()), (body, answer.text)
        assert CANARY not in answer.text
    assert (await client.get("/v1/credentials")).json()["items"] == []


async def test_a_caller_bound_to_a_project_sees_only_its_own(client: httpx.AsyncClient) -> None:
    service = services_of(client).credentials
    theirs = await service.create(NewCredential.model_validate(bearer(project="other")))
    token = context.bind(RequestContext(Principal(frozenset({Scope.ADMIN}), project="mine")))
    try:
        ours = await service.create(NewCredential.model_validate(bearer()))
        assert ours.project == "mine"
        assert [c.id for c in (await service.list(limit=10, cursor=None)).items] == [ours.id]
        with pytest.raises(CredentialNotFound):
            await service.get(theirs.id)
        with pytest.raises(CredentialNotFound):
            await service.delete(theirs.id)
        with pytest.raises(InsufficientScope):
            await service.create(NewCredential.model_validate(bearer("x", project="other")))
    finally:
        context.reset(token)
    everything = await service.list(limit=10, cursor=None)  # no project: every project
    assert {c.project for c in everything.items} == {"other", "mine"}


async def test_credential_changes_are_audited_without_their_value(
    client: httpx.AsyncClient,
) -> None:
    created = await client.post(
        "/v1/credentials", json={"name": "audited", "kind": "bearer", "value": "canary-4242"}
    )
    assert created.status_code == 201, created.text
    credential_id = created.json()["id"]
    assert (await client.delete(f"/v1/credentials/{credential_id}")).status_code == 204
    rows = (
        await client.get("/v1/admin/audit", params={"target": f"credential:{credential_id}"})
    ).json()["items"]
    assert [r["action"] for r in rows] == ["credential.delete", "credential.create"]
    assert "canary-4242" not in str(rows)
