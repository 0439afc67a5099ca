"""A plug-in node type for the durable-step tests: ``steps.calls`` makes ``calls`` recorded side
effects one after another, each inside its own ``ctx.step``.

Installed into a server process the way any plug-in is: :func:`install` writes a distribution's
metadata (an ``oxify.nodes`` entry point naming :func:`definitions`) into a directory the test
puts on the server's ``PYTHONPATH``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import httpx

from app.nodes.plugin import (
    NodeConfig,
    NodeContext,
    NodeDefinition,
    NodeOutput,
    NodeResources,
    NodeType,
)

DISTRIBUTION = "oxify-steps-probe"


class CallsConfig(NodeConfig):
    url: str
    calls: int = 1


class CallsExecutor:
    """POSTs to ``url`` ``calls`` times, each call a durable step sent with its own stable key
    (``<idempotency key>#<i>``); outputs what the server said it had seen per key."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def execute(self, ctx: NodeContext) -> NodeOutput:
        config = cast(CallsConfig, ctx.config)
        seen: list[Any] = []
        for i in range(config.calls):

            async def call(i: int = i) -> Any:
                ctx.spend(api_calls=1)
                key = f"{ctx.idempotency_key}#{i}"
                response = await self._http.post(config.url, headers={"Idempotency-Key": key})
                response.raise_for_status()
                return response.json()["seen"]

            seen.append(await ctx.step(f"call-{i}", call))
        return NodeOutput(seen)


def definitions(resources: NodeResources) -> NodeDefinition:
    node_type = NodeType("steps.calls", CallsConfig, "Recorded calls, one durable step each.")
    return NodeDefinition(node_type, CallsExecutor(resources.http))


def install(directory: Path) -> Path:
    """Make this plug-in discoverable from ``directory`` (put it on ``PYTHONPATH``)."""
    info = directory / f"{DISTRIBUTION.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[oxify.nodes]\nsteps = {__name__}:definitions\n")
    return directory
