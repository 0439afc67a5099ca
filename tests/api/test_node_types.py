"""GET /v1/node-types: every node type the deployment knows, built-in and plug-in, the same
answer ``oxify nodes --json`` prints; a plug-in's type runs through the API."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from app import cli
from app.domain.node_types import CORE_NODE_TYPES
from tests.api.helpers import create_workflow, serving, start_run, wait_run
from tests.plugin_dists import BROKEN_ON_IMPORT, write_plugin


async def test_lists_the_built_in_types_as_oxify_nodes_does(
    client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    response = await client.get("/v1/node-types")
    assert response.status_code == 200
    items = response.json()["items"]
    assert [item["type"] for item in items] == sorted(CORE_NODE_TYPES)
    version = cli.installed_version()
    for item in items:
        node_type = CORE_NODE_TYPES[item["type"]]
        assert (item["source"], item["version"]) == ("builtin", version)
        assert item["description"] == node_type.description
        assert item["config_schema"] == node_type.config.model_json_schema(by_alias=True)
    # the command runs event loops of its own: off this one
    assert await asyncio.to_thread(cli.main, ["nodes", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == response.json()


async def test_a_plug_in_type_is_listed_and_runs(
    pg_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    write_plugin(tmp_path, "oxify-echo", {"echo": "echo"}, version="2.0.0")
    write_plugin(tmp_path, "oxify-broken", {"fragile": "definitions"}, source=BROKEN_ON_IMPORT)
    async with serving(pg_database_url) as client:
        response = await client.get("/v1/node-types")
        assert response.status_code == 200
        items = {item["type"]: item for item in response.json()["items"]}
        assert set(items) == {*CORE_NODE_TYPES, "test.echo"}
        echo = items["test.echo"]
        assert (echo["source"], echo["version"]) == ("oxify-echo", "2.0.0")
        document = {
            "name": "echo",
            "nodes": [{"id": "say", "type": "test.echo", "config": {"text": "{{ inputs.w }}!"}}],
        }
        workflow_id = await create_workflow(client, document)
        execution = await start_run(client, workflow_id, {"inputs": {"w": "hi"}})
        done = await wait_run(client, execution["id"])
    assert done["status"] == "completed", done
    assert done["outputs"] == {"echo": "hi!"}
