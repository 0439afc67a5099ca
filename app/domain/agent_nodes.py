"""Config of the ``agent`` node: a model that calls tools over several turns.

Names follow the API contract ("agent"). The model keys are the ``llm`` node's. ``tools`` is
used as written except the ``request`` and ``auth`` of http tools, which are templates over the
run's context and the call's arguments (``args``), rendered for each call. A code tool's source
is Python, never a template. A workflow tool's ``workflow_id`` may be a template over the run's
context (``"{{ inputs.summarizer }}"``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from app.domain.ai_nodes import ModelCallConfig, check_json_schema
from app.domain.code_nodes import MAX_SOURCE_CHARS
from app.domain.http_nodes import HEADER_NAME_PATTERN, HeaderName, HttpAuth, HttpMethod, HttpScalar
from app.domain.mcp_nodes import MAX_TOOL_NAME, McpServerName
from app.domain.node_config import NodeConfig, TemplateStr

DEFAULT_MAX_TURNS = 10
MAX_TURNS = 200
DEFAULT_TOOL_TIMEOUT_S = 60.0
MAX_TOOL_TIMEOUT_S = 3600.0
MAX_TOOLS = 128  # OpenAI's bound on the tools of one request
MAX_DESCRIPTION_CHARS = 10_000
MAX_APPROVERS = 100
ARGS = "args"  # the name an http tool's templates see the call's arguments under

# The providers' common rule for function names (OpenAI's is the strictest).
ToolName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
McpToolName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TOOL_NAME)]
Description = Annotated[str, StringConstraints(max_length=MAX_DESCRIPTION_CHARS)]


class ToolApproval(NodeConfig):
    """Who must approve a call before it runs, and what a missed deadline decides."""

    approvers: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_APPROVERS,
        description="User ids or `group:<name>`; unset: anyone (but the run's starter).",
    )
    required: int = Field(default=1, ge=1, le=MAX_APPROVERS, description="Approvals needed.")
    timeout_s: float | None = Field(default=None, gt=0, le=365 * 86_400)
    on_timeout: Literal["reject", "approve"] = "reject"


Approval = bool | ToolApproval


def _parameters(value: dict[str, Any]) -> dict[str, Any]:
    check_json_schema(value)
    if value.get("type", "object") != "object":
        raise ValueError("a tool's parameters are a JSON Schema of type 'object'")
    return value


class McpTool(NodeConfig):
    """Every tool an MCP server lists (or those ``include`` names), as the server describes
    them."""

    type: Literal["mcp"]
    server: McpServerName
    include: list[McpToolName] | None = Field(default=None, min_length=1, max_length=MAX_TOOLS)
    approval: Approval = False


class HttpToolRequest(NodeConfig):
    """The request an http tool sends; templates see the call's arguments as ``args``. A
    string ``body`` is sent as text, any other JSON value as JSON."""

    method: HttpMethod = "GET"
    url: str = Field(min_length=1, max_length=8192)
    headers: dict[HeaderName, HttpScalar] = Field(
        default_factory=dict,
        json_schema_extra={"propertyNames": {"pattern": HEADER_NAME_PATTERN, "maxLength": 256}},
    )
    query: dict[str, HttpScalar | list[HttpScalar]] = Field(
        default_factory=dict, description='Query parameters, encoded (`{"q": "{{ args.query }}"}`).'
    )
    body: Any = None


class HttpTool(NodeConfig):
    """An HTTP API as a tool, with the http node's auth, egress and per-host policies."""

    type: Literal["http"]
    name: ToolName
    description: Description
    parameters: dict[str, Any] = Field(description="JSON Schema (object) of the arguments.")
    request: HttpToolRequest
    auth: HttpAuth | None = None
    approval: Approval = False

    _schema = field_validator("parameters")(_parameters)


class WorkflowTool(NodeConfig):
    """A stored workflow run as a sub-workflow: its ``inputs`` schema is the tool's
    parameters, its outputs the result."""

    type: Literal["workflow"]
    name: ToolName
    description: Description
    workflow_id: str = Field(
        min_length=1, max_length=200, description="May be a template over the run's context."
    )
    version: int | None = Field(default=None, ge=1)
    approval: Approval = False


class CodeTool(NodeConfig):
    """Python run in the code node's sandbox: ``def main(inputs)`` gets the arguments."""

    type: Literal["code"]
    name: ToolName
    description: Description
    parameters: dict[str, Any] = Field(description="JSON Schema (object) of the arguments.")
    language: Literal["python"] = "python"
    source: str = Field(min_length=1, max_length=MAX_SOURCE_CHARS)
    approval: Approval = False

    _schema = field_validator("parameters")(_parameters)


AgentTool = Annotated[McpTool | HttpTool | WorkflowTool | CodeTool, Field(discriminator="type")]


class AgentConfig(ModelCallConfig):
    """Config of the ``agent`` node: model turns and tool calls until the model answers."""

    static = ModelCallConfig.static | {"parallel_tool_calls"}

    tools: list[AgentTool] = Field(default_factory=list, max_length=MAX_TOOLS)
    max_turns: Annotated[int, Field(ge=1, le=MAX_TURNS)] | TemplateStr = Field(
        default=DEFAULT_MAX_TURNS, description="Model calls before the node fails."
    )
    parallel_tool_calls: bool = Field(
        default=True, description="Let the model ask for several calls at once (run together)."
    )
    tool_timeout_s: Annotated[float, Field(gt=0, le=MAX_TOOL_TIMEOUT_S)] | TemplateStr = Field(
        default=DEFAULT_TOOL_TIMEOUT_S,
        description="Seconds one http, mcp or code tool call may take (a timeout is an error "
        "result the model sees).",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> AgentConfig:
        seen: dict[str, int] = {}
        for index, tool in enumerate(self.tools):
            names = tool.include or [] if isinstance(tool, McpTool) else [tool.name]
            for name in names:
                if name in seen:
                    raise ValueError(
                        f"tool name {name!r} is used by tools/{seen[name]} and tools/{index}: "
                        "names must be unique within a node"
                    )
                seen[name] = index
        return self

    def bindings(self, field: str) -> frozenset[str]:
        return frozenset({ARGS}) if field == "tools" else frozenset()

    @classmethod
    def template_part(cls, field: str, raw: Any) -> Any:
        """Only http tools' ``request`` and ``auth`` and workflow tools' ``workflow_id`` are
        templates in ``tools``."""
        if field != "tools" or not isinstance(raw, list):
            return raw
        return [_templated(tool) if isinstance(tool, dict) else None for tool in raw]


def _templated(tool: dict[str, Any]) -> dict[str, Any] | None:
    """The parts of one tool entry that hold templates."""
    if tool.get("type") == "http":
        return {"request": tool.get("request"), "auth": tool.get("auth")}
    if tool.get("type") == "workflow":
        return {"workflow_id": tool.get("workflow_id")}
    return None
