"""The config checks of the ``mcp`` node (is its ``tool`` on the server's tool list?) and of
the ``agent`` node's MCP tools (is each ``include`` name?).

Run when a document is validated or stored (:mod:`app.domain.config_checks`). A server named
in the settings that does not exist is an error (``unknown_server``), as it would fail every
run; a server that answers without the tool is an error (``unknown_tool``, naming a few tools it
has); a server that does not answer within ``LIST_TIMEOUT_S`` (or refuses, or breaks) leaves the
tool unchecked, which the answer says as a warning: the server may be down for a moment only,
and the node checks the tool again when it runs.

The lists come through the process's session pool (so a session opened here serves the runs
later). Each server is asked once at a time, whatever the number of nodes and requests naming
it, and an answer is kept ``ANSWER_TTL_S``; failures are not kept (the next check asks again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from app.domain.agent_nodes import AgentConfig, McpTool
from app.domain.config_checks import ConfigCheck, Finding
from app.domain.mcp_nodes import McpConfig
from app.domain.node_config import NodeConfig
from app.engine.ports import Clock
from app.errors import NodeConfigError
from app.nodes.mcp_sessions import McpServer, SessionPool, describe, unknown_tool_message

LIST_TIMEOUT_S = 2.0  # seconds a server has to list its tools (a session opened included)
ANSWER_TTL_S = 30.0  # seconds a server's tool list is trusted
TOOLS_SHOWN = 10  # tools named in the message about an unknown one


class ToolLists:
    """Servers' tool lists as validation sees them: shared questions, answers kept a while."""

    def __init__(self, pool: Callable[[], SessionPool], clock: Clock) -> None:
        self._pool = pool
        self._clock = clock
        self._answers: dict[str, tuple[float, frozenset[str]]] = {}
        self._asking: dict[str, asyncio.Task[frozenset[str]]] = {}

    async def tools(self, server: McpServer) -> frozenset[str]:
        """The server's tool names; raises (TimeoutError, NodeError, …) when it did not say."""
        kept = self._answers.get(server.key)
        if kept is not None and self._clock.monotonic() - kept[0] < ANSWER_TTL_S:
            return kept[1]
        task = self._asking.get(server.key)
        if task is None:
            task = asyncio.create_task(self._ask(server), name=f"mcp tools {server.label}")
            self._asking[server.key] = task
            task.add_done_callback(lambda done: self._asked(server.key, done))
        # Shielded: one request giving up (its own deadline) must not cancel the others' answer.
        return await asyncio.shield(task)

    async def _ask(self, server: McpServer) -> frozenset[str]:
        async with asyncio.timeout(LIST_TIMEOUT_S):
            names = await self._pool().tool_names(server, refresh=True)
        self._answers[server.key] = (self._clock.monotonic(), names)
        return names

    def _asked(self, key: str, task: asyncio.Task[frozenset[str]]) -> None:
        del self._asking[key]
        if not task.cancelled():
            task.exception()  # retrieved: a question all its askers gave up on must not warn


Where = tuple[str, tuple[str | int, ...]]  # a config field, and where inside it


def tool_check(resolve: Callable[[str], McpServer], lists: ToolLists) -> ConfigCheck:
    """The check of one ``mcp`` node's config, resolving ``server`` with ``resolve``."""

    async def check(config: NodeConfig) -> list[Finding]:
        mcp = cast(McpConfig, config)
        return await _findings(
            resolve, lists, mcp.server, ("server", ()), [(mcp.tool, ("tool", ()))]
        )

    return check


def agent_tool_check(resolve: Callable[[str], McpServer], lists: ToolLists) -> ConfigCheck:
    """The check of an ``agent``'s MCP tools: each server known, each ``include`` name listed."""

    async def check(config: NodeConfig) -> list[Finding]:
        entries = [
            (index, entry)
            for index, entry in enumerate(cast(AgentConfig, config).tools)
            if isinstance(entry, McpTool)
        ]
        found = await asyncio.gather(
            *(
                _findings(
                    resolve,
                    lists,
                    entry.server,
                    ("tools", (index, "server")),
                    [
                        (name, ("tools", (index, "include", position)))
                        for position, name in enumerate(entry.include or ())
                    ],
                )
                for index, entry in entries
            )
        )
        return [finding for findings in found for finding in findings]

    return check


async def _findings(
    resolve: Callable[[str], McpServer],
    lists: ToolLists,
    server_name: str,
    server_at: Where,
    tools: list[tuple[str, Where]],
) -> list[Finding]:
    """Whether ``server_name`` is known and lists each of ``tools``."""
    try:
        server = resolve(server_name)
    except NodeConfigError as exc:
        return [Finding(server_at[0], exc.message, "unknown_server", at=server_at[1])]
    if not tools:
        return []
    try:
        listed = await lists.tools(server)
    except TimeoutError:
        why = f"it did not answer within {LIST_TIMEOUT_S:g} s"
        return [_unchecked(tool, server, why, where) for tool, where in tools]
    except Exception as exc:  # any failure to list means the same: the tool is unchecked
        return [_unchecked(tool, server, describe(exc), where) for tool, where in tools]
    return [
        Finding(
            where[0],
            unknown_tool_message(server, tool, listed, TOOLS_SHOWN),
            "unknown_tool",
            at=where[1],
        )
        for tool, where in tools
        if tool not in listed
    ]


def _unchecked(tool: str, server: McpServer, why: str, where: Where) -> Finding:
    message = (
        f"tool {tool!r} not checked: MCP server {server.label} did not list its tools ({why}); "
        "the node checks it when it runs"
    )
    return Finding(where[0], message, warning=True, at=where[1])
