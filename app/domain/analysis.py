"""Read models of a workflow document's static analysis: health, complexity, estimate, batching.

Kept apart from ``views`` because the engine's analysis functions build them (the engine may
import the domain, not the services) and the API serves them as they are.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Category = Literal["structure", "reliability", "performance", "cost", "security", "maintainability"]
Severity = Literal["error", "warning", "info"]


class HealthIssue(BaseModel):
    code: str = Field(description="Stable identifier of the kind of issue (`no_retry`, ...).")
    category: Category
    severity: Severity
    pointer: str = Field(description="RFC 6901 pointer into the document.")
    node_id: str | None = None
    message: str
    suggestion: str


class HealthReport(BaseModel):
    """A score from 0 to 100: 100 minus each code's penalty (see the README's formula)."""

    score: int = Field(ge=0, le=100)
    issues: list[HealthIssue]
    counts: dict[str, int] = Field(description="Issues by severity.")


class ComplexityReport(BaseModel):
    nodes: int = Field(description="Every node, container bodies included.")
    edges: int = Field(description="Every edge, container bodies included.")
    graphs: int = Field(description="The workflow's graph plus one per container body.")
    depth: int = Field(description="Levels of the top graph.")
    width: int = Field(description="Most nodes in one level of the top graph.")
    decision_points: int = Field(description="if, switch, foreach, while, repeat and try nodes.")
    cyclomatic: int = Field(
        description="E - N + 2P over every graph (P: weakly connected components), plus one "
        "per loop body and one per try with a catch."
    )
    nesting_depth: int = Field(description="Containers inside containers; 0 when flat.")
    score: int = Field(ge=0, le=100, description="0 is trivial, 100 very complex.")
    rating: Literal["simple", "moderate", "complex"]


class Range(BaseModel):
    low: float
    expected: float
    high: float


class MeasuredUsage(BaseModel):
    """What past runs of this version spent on a node, per run."""

    runs: int
    tokens: Range
    cost_usd: Range | None = None


class NodeEstimate(BaseModel):
    node_id: str
    pointer: str
    type: str
    provider: str
    model: str
    calls: Range = Field(description="Model calls per run (loops and agent turns included).")
    input_tokens: Range
    output_tokens: Range
    tokens: Range = Field(description="Input plus output; from past runs when there are any.")
    cost_usd: Range | None = Field(description="null when the model has no price.")
    basis: Literal["static", "past_runs"]
    measured: MeasuredUsage | None = None


class EstimateReport(BaseModel):
    tokenizer: str = Field(description="How prompt text was counted: `chars/4`.")
    nodes: list[NodeEstimate]
    tokens: Range
    cost_usd: Range = Field(description="Sum over priced nodes.")
    unpriced_nodes: list[str]
    assumptions: list[str]


class BatchGroup(BaseModel):
    kind: Literal["model", "collection", "host"]
    target: str = Field(description="provider/model, backend:collection, or host.")
    graph: str = Field(description="Pointer of the graph the nodes are in ('' is the workflow).")
    node_ids: list[str]
    calls_saved: int = Field(description="Calls per run of the graph saved by one merged call.")
    latency_saved_s: float = Field(description="Upper bound, when the calls run one at a time.")


class BatchingReport(BaseModel):
    groups: list[BatchGroup]
    assumptions: list[str]
