"""The authorization matrix: every route declares what it does, and on real objects each
route answers every kind of caller as the scope table says — no credential, a malformed,
expired or revoked key, each scope, and a key of another project."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts

from app.api import guard
from app.auth import keys as key_format
from app.auth import scopes as scope_table
from app.auth.scopes import Action, Scope
from app.store import keys as key_rows
from app.store.keys import KeyRow
from tests.api.helpers import doubler, linear, services_of, serving
from tests.streams.asgi import WsCall

PEPPER = "pepper-" + "m" * 40
# FastAPI's own pages: the API description is public, as on any documented API.
PUBLIC_DOCS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
_PARAM = re.compile(r"{(\w+)}")
# Valid bodies where a route needs one: a caller of another project must get its 404, not a 422.
BODIES: dict[tuple[str, str], Any] = {
    ("PUT", "/v1/workflows/{workflow_id}"): doubler(),
    ("POST", "/v1/forms/{form_id}/submit"): {"values": {"decision": "approved"}, "by": "m"},
    ("POST", "/v1/workflows/{workflow_id}/executions"): {"inputs": {"n": 1}},
}


@dataclass
class World:
    app: FastAPI
    client: httpx.AsyncClient
    ids: dict[str, str]  # path parameter -> a real object of project "default"
    keys: dict[str, str]  # caller -> Authorization header value


def routes(app: FastAPI) -> list[tuple[str, str, Action]]:
    """Every route of ``app`` (included routers walked, their prefixes applied)."""
    found = []
    for context in iter_route_contexts(app.routes):
        route, path = context.original_route, str(context.path)
        if not isinstance(route, APIRoute | APIWebSocketRoute):
            assert path in PUBLIC_DOCS, f"{path}: a route outside the guard"
            continue
        action = guard.declared(route)
        assert action is not None, f"{path} declares no action"
        methods = sorted(context.methods or ()) if isinstance(route, APIRoute) else ["WS"]
        found += [(method, path, action) for method in methods]
    return found


def test_every_route_declares_its_action(pg_database_url: str) -> None:
    from app.main import create_app
    from app.settings import Settings

    app = create_app(Settings(database_url=pg_database_url))
    declared = routes(app)
    assert len(declared) > 30
    assert ("GET", "/healthz", Action.PUBLIC) in declared
    assert ("POST", "/v1/forms/{form_id}/submit", Action.ANSWER_FORMS) in declared


@pytest.fixture
async def world(pg_database_url: str) -> AsyncIterator[World]:
    secret_keys = Fernet.generate_key().decode()
    async with serving(
        pg_database_url,
        key_pepper=PEPPER,
        secret_keys=secret_keys,
        shutdown_grace_s=2.0,
        # The matrix fails to authenticate hundreds of times from one address on purpose.
        auth_failures_per_min=1_000_000,
    ) as client:
        services = services_of(client)
        keys: dict[str, str] = {}
        for scope in Scope:
            keys[scope.value] = (
                await services.keys.create(name=scope.value, scopes=[scope], project="default")
            ).key
            keys[f"other-{scope.value}"] = (
                await services.keys.create(name=scope.value, scopes=[scope], project="other")
            ).key
        revoked = await services.keys.create(name="r", scopes=["admin"], project=None)
        await services.keys.revoke(revoked.id)
        keys["revoked"] = revoked.key
        keys["expired"] = await expired_key(client)
        keys["malformed"] = "oxify_not_a_key"
        admin = {"Authorization": f"Bearer {keys['admin']}"}
        ids = await objects(client, admin)
        ids["key_id"] = revoked.id
        ids["project"] = "default"
        transport: Any = client._transport
        yield World(transport.app, client, ids, keys)


async def expired_key(client: httpx.AsyncClient) -> str:
    text, parsed = key_format.new_key()
    now = datetime.now(UTC)
    async with services_of(client).engine.begin() as conn:
        await key_rows.insert(
            conn,
            KeyRow(
                id=parsed.key_id,
                name="expired",
                digest=key_format.digest(parsed.secret, PEPPER.encode()),
                scopes=["admin"],
                project=None,
                limits=None,
                created_at=now - timedelta(days=1),
                expires_at=now - timedelta(minutes=1),
                revoked_at=None,
                last_used_at=None,
                replaced_by=None,
            ),
        )
    return text


async def objects(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, str]:
    """A workflow, a finished run of it, and a pending form of another run (project default)."""
    workflow = (await client.post("/v1/workflows", json=doubler(), headers=admin)).json()["id"]
    run = (
        await client.post(
            f"/v1/workflows/{workflow}/executions", json={"inputs": {"n": 1}}, headers=admin
        )
    ).json()["id"]
    await client.get(f"/v1/executions/{run}/wait", headers=admin)
    approval = linear(
        {"id": "start", "type": "start"},
        {"id": "vote", "type": "approval", "config": {"prompt": "ok?"}},
        name="approval",
    )
    asks = (await client.post("/v1/workflows", json=approval, headers=admin)).json()["id"]
    waiting = (
        await client.post(f"/v1/workflows/{asks}/executions", json={}, headers=admin)
    ).json()["id"]
    await client.get(f"/v1/executions/{waiting}/wait", headers=admin)
    forms = await client.get("/v1/forms", params={"execution_id": waiting}, headers=admin)
    credential = await client.post(
        "/v1/credentials", json={"name": "api", "kind": "bearer", "value": "s3cr3t"}, headers=admin
    )
    return {
        "workflow_id": workflow,
        "execution_id": run,
        "form_id": forms.json()["items"][0]["id"],
        "credential_id": credential.json()["id"],
    }


async def status_of(world: World, method: str, template: str, caller: str | None) -> int:
    params = _PARAM.findall(template)
    unknown = set(params) - world.ids.keys()
    assert not unknown, f"{template}: give the matrix a real object for {unknown}"
    path = _PARAM.sub(lambda m: world.ids[m.group(1)], template)
    headers = {} if caller is None else {"Authorization": f"Bearer {world.keys[caller]}"}
    if method == "WS":
        return await websocket_status(world.app, path, headers)
    body = BODIES.get((method, template), {}) if method in ("POST", "PUT") else None
    response = await world.client.request(method, path, json=body, headers=headers)
    return response.status_code


async def websocket_status(app: FastAPI, path: str, headers: dict[str, str]) -> int:
    """A handshake refused before accept, or a close right after it, as an HTTP status (close
    code 4000 + status); 200 for a stream that was served."""
    call = WsCall(app, path, headers=list(headers.items()))
    first = await call.next_sent()
    if first["type"] == "websocket.accept":
        await call.frames()
    else:
        call.close_code = first["code"]
    call.disconnect()
    await call.finished()
    code = call.close_code or 1000
    return code - 4000 if code >= 4000 else 200


async def test_each_route_answers_each_caller_as_the_scope_table_says(world: World) -> None:
    problems: list[str] = []
    for method, template, action in routes(world.app):
        if method in ("HEAD", "OPTIONS"):
            continue
        for caller in (None, "malformed", "expired", "revoked"):
            status = await status_of(world, method, template, caller)
            expected_denied = action is not Action.PUBLIC
            if expected_denied and status != 401:
                problems.append(f"{method} {template} as {caller}: {status}, not 401")
        if action is Action.PUBLIC:
            continue
        for scope in Scope:
            status = await status_of(world, method, template, scope.value)
            allowed = scope in scope_table.ALLOWED[action]
            if not allowed and status != 403:
                problems.append(f"{method} {template} as {scope}: {status}, not 403")
            if allowed and status in (401, 403):
                problems.append(f"{method} {template} as {scope}: {status}, allowed")
            if allowed and _PARAM.search(template) and not template.startswith("/v1/admin/keys"):
                other = await status_of(world, method, template, f"other-{scope.value}")
                if other != 404:
                    problems.append(f"{method} {template} as {scope} of another project: {other}")
    assert problems == [], "\n".join(problems)
