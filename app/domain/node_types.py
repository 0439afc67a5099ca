"""Node types: the config schema of every core type and what each can branch to (the base
classes are in :mod:`app.domain.node_config`; human steps in :mod:`app.domain.human`).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field, StringConstraints, model_validator
from pydantic.config import JsonDict

from app.domain.agent_nodes import AgentConfig
from app.domain.ai_nodes import LlmConfig
from app.domain.code_nodes import CodeConfig
from app.domain.http_nodes import GraphqlConfig, HttpConfig
from app.domain.human import ApprovalConfig, FormConfig
from app.domain.mcp_nodes import McpConfig
from app.domain.node_config import ExpressionStr, NodeConfig, NodeType, NodeTypes, TemplateStr
from app.domain.retrieval_nodes import IndexConfig, RetrieverConfig
from app.domain.workflow import MAX_VERSION, NODE_ID_PATTERN, GraphSpec

__all__ = [
    "CORE_NODE_TYPES",
    "ExpressionStr",
    "NodeConfig",
    "NodeType",
    "NodeTypes",
    "TemplateStr",
]

DEFAULT_MAX_ITERATIONS = 1000


class StartConfig(NodeConfig):
    pass


class EndConfig(NodeConfig):
    outputs: dict[str, Any] | None = None


class TransformConfig(NodeConfig):
    value: Any


class SetVarConfig(NodeConfig):
    static = frozenset({"name"})
    name: str = Field(pattern=NODE_ID_PATTERN)
    value: Any


class IfConfig(NodeConfig):
    expressions = frozenset({"condition"})
    condition: ExpressionStr

    def branches(self) -> frozenset[str]:
        return frozenset({"true", "false"})


class SwitchConfig(NodeConfig):
    expressions = frozenset({"value"})
    static = frozenset({"cases"})
    value: ExpressionStr
    cases: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        min_length=1,
        max_length=256,
        json_schema_extra={"uniqueItems": True, "not": {"contains": {"const": "default"}}},
    )

    @model_validator(mode="after")
    def _distinct_cases(self) -> SwitchConfig:
        if len(set(self.cases)) != len(self.cases):
            raise ValueError("cases must be distinct")
        if "default" in self.cases:
            raise ValueError("'default' is the fallback branch and cannot be a case")
        return self

    def branches(self) -> frozenset[str]:
        return frozenset({*self.cases, "default"})


class DelayConfig(NodeConfig):
    seconds: Annotated[float, Field(ge=0, le=31_536_000)] | TemplateStr


class FailConfig(NodeConfig):
    message: str = Field(min_length=1, max_length=10_000)


class ForeachConfig(NodeConfig):
    graphs = frozenset({"body"})
    items: Any = Field(description="Template (or literal list) giving the items.")
    body: GraphSpec
    concurrency: Annotated[int, Field(ge=1, le=1000)] | TemplateStr = 1
    max_iterations: int = Field(default=DEFAULT_MAX_ITERATIONS, ge=1, le=1_000_000)

    def bindings(self, field: str) -> frozenset[str]:
        return frozenset({"item", "index"}) if field == "body" else frozenset()


class WhileConfig(NodeConfig):
    expressions = frozenset({"condition"})
    graphs = frozenset({"body"})
    condition: ExpressionStr
    body: GraphSpec
    max_iterations: int = Field(default=DEFAULT_MAX_ITERATIONS, ge=1, le=1_000_000)

    def bindings(self, field: str) -> frozenset[str]:
        return frozenset({"index", "last"}) if field in ("condition", "body") else frozenset()


class RepeatConfig(NodeConfig):
    graphs = frozenset({"body"})
    count: Annotated[int, Field(ge=0, le=1_000_000)] | TemplateStr
    body: GraphSpec
    max_iterations: int = Field(default=DEFAULT_MAX_ITERATIONS, ge=1, le=1_000_000)

    def bindings(self, field: str) -> frozenset[str]:
        return frozenset({"index"}) if field == "body" else frozenset()


class TryConfig(NodeConfig):
    graphs = frozenset({"try", "catch", "finally"})
    static = frozenset({"error_var"})
    try_: GraphSpec = Field(alias="try")
    catch: GraphSpec | None = None
    finally_: GraphSpec | None = Field(default=None, alias="finally")
    error_var: str = Field(default="error", pattern=NODE_ID_PATTERN)
    rethrow: bool = False

    def bindings(self, field: str) -> frozenset[str]:
        return frozenset({self.error_var}) if field in self.graphs else frozenset()


class InlineWorkflow(GraphSpec):
    outputs: dict[str, Any] | None = None


_WORKFLOW_ID_GIVEN: JsonDict = {
    "required": ["workflow_id"],
    "properties": {"workflow_id": {"type": "string"}},
}
_GRAPH_GIVEN: JsonDict = {"required": ["graph"], "properties": {"graph": {"type": "object"}}}
_VERSION_GIVEN: JsonDict = {"required": ["version"], "properties": {"version": {"type": "integer"}}}


class SubworkflowConfig(NodeConfig):
    """Either ``workflow_id`` (with an optional ``version``) or an inline ``graph``; ``null``
    counts as not given, in the schema as in the validator."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [_WORKFLOW_ID_GIVEN, _GRAPH_GIVEN],
            "if": _VERSION_GIVEN,
            "then": _WORKFLOW_ID_GIVEN,
        }
    )
    graphs = frozenset({"graph"})
    static = frozenset({"workflow_id", "version"})
    isolated = frozenset({"graph"})
    workflow_id: str | None = Field(default=None, min_length=1, max_length=200)
    version: int | None = Field(default=None, ge=1, le=MAX_VERSION)
    graph: InlineWorkflow | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SubworkflowConfig:
        if (self.workflow_id is None) == (self.graph is None):
            raise ValueError("give exactly one of 'workflow_id' or 'graph'")
        if self.version is not None and self.workflow_id is None:
            raise ValueError("'version' needs 'workflow_id'")
        return self

    def bindings(self, field: str) -> frozenset[str]:
        return frozenset({"outputs"}) if field == "outputs" else frozenset()


CORE_NODE_TYPES = NodeTypes(
    {
        t.name: t
        for t in (
            NodeType("start", StartConfig, "Entry point; outputs the run's inputs."),
            NodeType("end", EndConfig, "Exit point; outputs its mapping, else its inputs."),
            NodeType("transform", TransformConfig, "Outputs `value` with templates resolved."),
            NodeType("set_var", SetVarConfig, "Sets vars.<name> for later nodes."),
            NodeType("if", IfConfig, "Branches `true` or `false` on a condition."),
            NodeType("switch", SwitchConfig, "Branches to the matching case or `default`."),
            NodeType("delay", DelayConfig, "Sleeps for `seconds`."),
            NodeType("fail", FailConfig, "Always fails with `message`."),
            NodeType("foreach", ForeachConfig, "Runs `body` once per item."),
            NodeType("while", WhileConfig, "Runs `body` while `condition` holds."),
            NodeType("repeat", RepeatConfig, "Runs `body` `count` times."),
            NodeType("try", TryConfig, "Runs `try`; on error `catch`; always `finally`."),
            NodeType("subworkflow", SubworkflowConfig, "Runs another workflow as one node."),
            NodeType("http", HttpConfig, "Sends an HTTP request; outputs status, headers, body."),
            NodeType("graphql", GraphqlConfig, "Sends a GraphQL query; outputs its `data`."),
            NodeType("approval", ApprovalConfig, "Waits for people to approve or reject."),
            NodeType("form", FormConfig, "Waits for a person to fill in `fields`."),
            NodeType("llm", LlmConfig, "Calls a language model; outputs its answer and usage."),
            NodeType("index", IndexConfig, "Chunks, embeds and upserts documents into a store."),
            NodeType("retriever", RetrieverConfig, "Finds the chunks best matching `query`."),
            NodeType("mcp", McpConfig, "Calls a tool on an MCP server; outputs its result."),
            NodeType("code", CodeConfig, "Runs an expression, Python or WebAssembly on inputs."),
            NodeType("agent", AgentConfig, "A model calling tools over turns; each one durable."),
        )
    }
)
