"""Config of the ``mcp`` node type: one tool call on an MCP server over streamable HTTP.

Names follow the API contract ("AI, tool and code node types"). ``server`` and ``tool`` are
names, used as written (so that validation can ask the server for its tools); ``arguments``
holds templates and ``timeout_s`` may be a lone template.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints

from app.domain.node_config import NodeConfig, TemplateStr
from app.domain.urls import check_http_url

MCP_DEFAULT_TIMEOUT_S = 60.0  # seconds one tool call may take
MCP_MAX_TIMEOUT_S = 3600.0  # seconds
SERVER_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
MAX_TOOL_NAME = 128  # characters (the MCP specification's bound on tool names)


def is_server_url(server: str) -> bool:
    """Whether a node's ``server`` is a URL (else it names a server in the settings)."""
    return "://" in server


def _url_or_name(server: str) -> str:
    if is_server_url(server):
        check_http_url(server)
    elif not re.fullmatch(SERVER_NAME_PATTERN, server):
        raise ValueError(
            "server must be an http(s) URL or a server name (letters, digits, '_', '.', '-')"
        )
    return server


McpServerName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=2048),
    AfterValidator(_url_or_name),
    Field(
        description="A streamable-HTTP URL (http:// or https://), or the name of a server in "
        "OXIFY_MCP_SERVERS."
    ),
]


class McpConfig(NodeConfig):
    """Config of the ``mcp`` node: call ``tool`` on ``server`` with ``arguments``."""

    static = frozenset({"server", "tool"})

    server: McpServerName
    tool: str = Field(min_length=1, max_length=MAX_TOOL_NAME)
    arguments: dict[str, Any] = Field(
        default_factory=dict, description="The tool's arguments; values may hold templates."
    )
    timeout_s: Annotated[float, Field(gt=0, le=MCP_MAX_TIMEOUT_S)] | TemplateStr = (
        MCP_DEFAULT_TIMEOUT_S
    )
