"""The node types' config checks over a plan: every node of a checked type, nested ones at
their own pointers, in parallel and bounded; a check that hangs or raises becomes a warning."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from app.domain.config_checks import Finding
from app.domain.node_config import NodeConfig
from app.engine.compile.graph import plan_workflow
from app.engine.compile.plan import Plan
from app.services.config_checks import run_checks
from tests.support import workflow


def transform(node_id: str, value: str) -> dict[str, object]:
    return {"id": node_id, "type": "transform", "config": {"value": value}}


def nested_plan() -> Plan:
    body = {"nodes": [transform("inner", "bad")], "edges": []}
    loop = {"id": "loop", "type": "foreach", "config": {"items": [1], "body": body}}
    return plan_workflow(workflow([transform("outer", "good"), loop], []))


async def test_errors_and_warnings_at_the_pointers_of_nested_nodes() -> None:
    async def check(config: NodeConfig) -> Sequence[Finding]:
        value = config.model_dump()["value"]
        if value == "bad":
            return [Finding("value", "bad value", "bad_value")]
        return [Finding("value", "could not tell", warning=True)]

    found = await run_checks(nested_plan(), {"transform": check})
    assert [(e.pointer, e.code) for e in found.errors] == [
        ("/nodes/1/config/body/nodes/0/config/value", "bad_value")
    ]
    assert [w.pointer for w in found.warnings] == ["/nodes/0/config/value"]


async def test_checks_run_in_parallel_and_hung_or_broken_ones_become_warnings() -> None:
    release = asyncio.Event()

    async def check(config: NodeConfig) -> Sequence[Finding]:
        if config.model_dump()["value"] == "bad":
            raise RuntimeError("boom")
        await release.wait()  # never set: the pass's bound ends it
        return []

    started = time.monotonic()
    found = await run_checks(nested_plan(), {"transform": check}, timeout_s=0.2)
    assert time.monotonic() - started < 1.0
    assert found.errors == []
    messages = {w.pointer: w.message for w in found.warnings}
    assert messages == {
        "/nodes/0/config": "not checked: the transform check did not finish within 0.2 s",
        "/nodes/1/config/body/nodes/0/config": "not checked: the transform check failed "
        "(RuntimeError: boom)",
    }
