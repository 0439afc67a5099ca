"""A node's durable sub-steps (``ctx.step``) in ``GET /v1/executions/{id}``, over the real app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app import main
from app.domain.node_types import NodeConfig, NodeType
from app.engine.run.context import NodeContext
from app.engine.run.outcomes import NodeOutput
from app.errors import NodeError
from app.nodes.registry import Registry, load_registry
from tests.api.helpers import create_workflow, linear, serving, start_run, wait_run


class Stepper:
    """Steps ``a`` then ``b``; ``b`` fails on its first run, so the node is retried, and its
    second attempt reuses ``a``'s result."""

    def __init__(self) -> None:
        self.calls = {"a": 0, "b": 0}

    async def execute(self, ctx: NodeContext) -> NodeOutput:
        async def a() -> list[int]:
            self.calls["a"] += 1
            return [1, 2, 3]

        async def b() -> int:
            self.calls["b"] += 1
            if self.calls["b"] == 1:
                raise NodeError("b is not ready")
            return 6

        items = await ctx.step("a", a)
        return NodeOutput({"items": items, "sum": await ctx.step("b", b)})


@pytest.fixture
def stepper(monkeypatch: pytest.MonkeyPatch) -> Stepper:
    """A ``stepper`` node type in the registry the app builds."""
    stepper = Stepper()

    def with_stepper(*args: Any, **kwargs: Any) -> Registry:
        return load_registry(*args, **kwargs).with_type(NodeType("stepper", NodeConfig), stepper)

    monkeypatch.setattr(main, "load_registry", with_stepper)
    return stepper


@pytest.fixture
async def client(pg_database_url: str, stepper: Stepper) -> AsyncIterator[httpx.AsyncClient]:
    del stepper  # requested only so its registry patch is in place before the app starts
    async with serving(pg_database_url, shutdown_grace_s=2.0) as client:
        yield client


async def test_steps_of_every_attempt_are_listed_under_their_node(
    client: httpx.AsyncClient, stepper: Stepper
) -> None:
    retry = {"max_retries": 1, "initial_delay_ms": 0}
    document = linear(
        {"id": "start", "type": "start"},
        {"id": "work", "type": "stepper", "config": {}, "retry": retry},
        name="steps",
    )
    workflow_id = await create_workflow(client, document)

    done = await wait_run(client, (await start_run(client, workflow_id))["id"])

    assert done["status"] == "completed", done
    assert stepper.calls == {"a": 1, "b": 2}
    nodes = {n["node_id"]: n for n in done["nodes"]}
    assert nodes["start"]["steps"] == []
    work = nodes["work"]
    assert (work["status"], work["attempt"]) == ("completed", 2)
    assert work["output"] == {"items": [1, 2, 3], "sum": 6}
    steps = work["steps"]
    assert [(s["name"], s["ok"]) for s in steps] == [("a", True), ("b", False), ("b", True)]
    assert steps[1]["error"]["message"] == "b is not ready"
    assert steps[0]["error"] is None and steps[2]["error"] is None
    assert all("result" not in s and s["finished_at"] for s in steps)
    assert (await client.get(f"/v1/executions/{done['id']}")).json() == done
