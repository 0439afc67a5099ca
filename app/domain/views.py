"""Read models: what services return and the API serves (and documents in OpenAPI)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from app.domain.status import ExecutionStatus, NodeStatus

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """A page of a list; pass ``next_cursor`` back as ``?cursor=`` for the next one."""

    items: list[T]
    next_cursor: str | None = None


class WorkflowSummary(BaseModel):
    id: str
    name: str
    version: int = Field(description="The latest version.")
    created_at: datetime
    updated_at: datetime
    archived: bool = False
    project: str = Field(default="default", description="The project it belongs to.")


class Workflow(WorkflowSummary):
    """One version of a workflow with its document."""

    document: dict[str, Any]
    content_hash: str
    version_created_at: datetime


class ValidationWarning(BaseModel):
    """Something validation could not check, or doubts, that does not reject the document."""

    pointer: str = Field(description="JSON pointer (RFC 6901) into the document.")
    message: str


WARNINGS_DESCRIPTION = (
    "What validation could not check (an MCP server that did not answer, so its `tool` "
    "was not checked); the document was accepted. Empty when everything was checked."
)


class SavedWorkflow(Workflow):
    """The version just stored, with what validation could not check."""

    warnings: list[ValidationWarning] = Field(
        default_factory=list, description=WARNINGS_DESCRIPTION
    )


class Progress(BaseModel):
    completed: int = 0
    total: int = 0
    percent: float = 0.0


class StepState(BaseModel):
    """A durable sub-step of a node (`ctx.step`) that finished, in this attempt or an
    earlier one; its result is not shown (it may be large)."""

    name: str
    ok: bool = Field(description="False: the step raised (it runs again when the node does).")
    finished_at: datetime
    error: dict[str, Any] | None = Field(
        default=None, description="Why the step failed; null when `ok`."
    )


class NodeUsage(BaseModel):
    """What a node spent over all its attempts: as its ending event says, or as far as its
    finished durable steps go while it runs."""

    api_calls: int = Field(default=0, description="Outbound calls, every retry of one included.")
    tokens: int = Field(default=0, description="LLM input + output tokens.")
    cost_usd: float = Field(
        default=0.0,
        description="What its priced model calls cost (US dollars); calls to a model the price "
        "table does not know add nothing and are counted in `unpriced_calls`.",
    )
    unpriced_calls: int = Field(
        default=0, description="Model calls the price table has no price for (not in the cost)."
    )


class NodeState(BaseModel):
    node_key: str = Field(description="Node id, qualified inside loops: loop[2].double.")
    node_id: str
    status: NodeStatus
    attempt: int
    output: Any = None
    error: dict[str, Any] | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: float | None = None
    steps: list[StepState] = Field(
        default_factory=list,
        description="Sub-steps that finished, every attempt's, in the order they finished.",
    )
    usage: NodeUsage | None = Field(
        default=None, description="What the node spent on calls and tokens; null: nothing."
    )


class ExecutionUsage(NodeUsage):
    """What the whole run spent: the sums over its nodes, nested ones (loop iterations,
    sub-workflow nodes) included. Cost covers priced model calls only (see `unpriced_calls`)."""

    nodes: int = Field(default=0, description="Node executions, every attempt counted.")

    @classmethod
    def of(cls, nodes: list[NodeState]) -> ExecutionUsage:
        """The sums over ``nodes``; the cost rounded to 10 decimals (a sum of many small
        prices in floats would show noise in its last digits)."""
        spent = [node.usage for node in nodes if node.usage is not None]
        return cls(
            nodes=sum(node.attempt for node in nodes),
            api_calls=sum(usage.api_calls for usage in spent),
            tokens=sum(usage.tokens for usage in spent),
            cost_usd=round(math.fsum(usage.cost_usd for usage in spent), 10),
            unpriced_calls=sum(usage.unpriced_calls for usage in spent),
        )


class ExecutionSummary(BaseModel):
    id: str
    workflow_id: str
    workflow_version: int
    status: ExecutionStatus
    progress: Progress
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    last_seq: int = Field(description="Seq of the last event logged.")
    project: str = Field(default="default", description="The project it belongs to.")


class Execution(ExecutionSummary):
    """A run with its inputs, config, outputs or error, and the state of every node."""

    inputs: Any
    config: dict[str, Any]
    outputs: Any = None
    error: dict[str, Any] | None = None
    nodes: list[NodeState] = Field(default_factory=list)
    usage: ExecutionUsage = Field(
        default_factory=ExecutionUsage,
        description="What the run spent so far: node executions, calls, tokens and cost, "
        "summed over `nodes`.",
    )
    owner: str | None = Field(
        default=None, description="The replica driving the run (or that last drove it)."
    )
    purged_at: datetime | None = Field(
        default=None,
        description="When retention deleted the run's events, checkpoints and node outputs.",
    )
    trace_id: str | None = Field(
        default=None,
        description="The run's OpenTelemetry trace (32 hex digits): every segment of the run, "
        "on any replica, is in it. Taken from the submitting request's `traceparent`, else "
        "made when tracing is on; null when neither.",
    )
    trace_url: str | None = Field(
        default=None,
        description="The trace in a trace viewer, when `OXIFY_TRACE_URL_TEMPLATE` is set.",
    )


class CheckpointInfo(BaseModel):
    number: int
    seq: int = Field(description="Seq of the last event the checkpoint covers.")
    created_at: datetime
    nodes: list[str] = Field(description="Node keys whose results the checkpoint saved.")


class ProfileNode(BaseModel):
    """One top-level node of a run profile. Times are milliseconds since the run started; a
    node's span (start to end) splits into running, backoff and waiting."""

    node_id: str
    type: str
    status: str
    attempts: int = Field(description="Attempts made (retries + 1).")
    started_ms: float = Field(description="When it first started (skipped: when it was skipped).")
    finished_ms: float = Field(description="When it ended; for an unfinished node, the run's end.")
    running_ms: float = Field(description="Its span less backoff and waiting.")
    backoff_ms: float = Field(description="Retry delays, its nested nodes' included.")
    waiting_ms: float = Field(description="Waiting for people, its nested nodes' included.")
    queued_ms: float = Field(
        description="Ready but not started: its start less the end of the dependency that "
        "gated it (the run's start for a root)."
    )
    gated_by: str | None = Field(
        default=None, description="The dependency that finished last before it started."
    )


class TimeSplit(BaseModel):
    """Node time summed over the top-level nodes (node-milliseconds, not wall time): each
    node's span is running + backoff + waiting; queued comes before its span."""

    running_ms: float
    backoff_ms: float
    queued_ms: float
    waiting_ms: float


class Parallelism(BaseModel):
    efficiency: float = Field(
        ge=0, le=1, description="busy_ms ÷ makespan_ms ÷ slots, clamped to [0, 1]."
    )
    busy_ms: float = Field(description="Running time summed over the top-level nodes.")
    slots: int = Field(description="min(max_concurrency, width).")
    max_concurrency: int | None
    width: int = Field(description="The most top-level nodes on one level of the plan.")


class Bottleneck(BaseModel):
    type: str = Field(
        description="`slow_critical_node`, `retry_storm`, `starved_slots`, `unread_edge` or "
        "`repeated_llm_call`."
    )
    severity: float = Field(ge=0, le=1, description="0: harmless … 1: it is the run's time.")
    nodes: list[str] = Field(description="The node keys involved (an edge: source, target).")
    detail: str = Field(description="What the records show.")
    fix: str = Field(description="What to change in the document or the run's config.")


class RunProfile(BaseModel):
    """Where a run's time went, from its recorded events (see `GET /v1/executions/{id}/profile`)."""

    execution_id: str
    status: ExecutionStatus
    partial: bool = Field(
        description="The run has not finished: unfinished nodes and the makespan run to the "
        "time of the request, and the critical path is the path so far."
    )
    makespan_ms: float = Field(description="From the run's start to its end (or to now).")
    critical_path: list[ProfileNode] = Field(
        description="From a root to the node that ended last, each node the one that gated "
        "the next one's start."
    )
    critical_path_ms: float = Field(description="The spans of the critical path's nodes, summed.")
    slowest: list[ProfileNode] = Field(description="The top-level nodes that ran longest.")
    time: TimeSplit
    parallelism: Parallelism
    bottlenecks: list[Bottleneck] = Field(description="Most severe first.")
    nodes_profiled: int = Field(description="Top-level nodes that started or were skipped.")
    nested_folded: int = Field(
        description="Nested node keys (loop iterations, sub-workflow and agent nodes) whose "
        "backoff and waiting were added to their top-level container."
    )


class EventOut(BaseModel):
    seq: int
    execution_id: str
    type: str
    ts: datetime
    node_id: str | None = None
    level: int | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class ValidationResult(BaseModel):
    valid: bool = True
    levels: list[list[str]]
    node_count: int
    content_hash: str
    warnings: list[ValidationWarning] = Field(
        default_factory=list, description=WARNINGS_DESCRIPTION
    )


class FormAnswer(BaseModel):
    """One answer to a form or approval, as the audit trail keeps it."""

    by: str | None = None
    values: dict[str, Any]
    comment: str | None = None
    at: datetime


class Form(BaseModel):
    """A request for people: a form to fill in, or an approval (whose answer is a form too:
    ``decision`` = ``approved`` | ``rejected``, optional ``comment``)."""

    id: str
    execution_id: str
    project: str = Field(default="default", description="The project it belongs to.")
    workflow_id: str
    node_key: str
    kind: str = Field(description="`approval` or `form`.")
    status: str = Field(description="`pending`, `submitted`, `timed_out` or `cancelled`.")
    prompt: str
    fields: dict[str, Any] = Field(description="JSON Schema (object) of the values to submit.")
    context: dict[str, Any] | None = Field(
        default=None,
        description="What the request is about; for an agent's tool call: `tool`, `arguments` "
        "and the model's `reasoning`.",
    )
    approvers: list[str] | None = Field(
        default=None, description="Who may answer (user ids, `group:<name>`); null: anyone."
    )
    quorum: int = Field(default=1, description="Approvals needed (one rejection rejects).")
    allow_self_approval: bool = False
    on_timeout: str
    deadline: datetime | None = None
    created_at: datetime
    decided_at: datetime | None = None
    answer: dict[str, Any] | None = Field(
        default=None, description="What the run received: the values, or the decision."
    )
    answers: list[FormAnswer] = Field(
        default_factory=list, description="Every answer given, oldest first (audit trail)."
    )


class NodeTypeInfo(BaseModel):
    """A node type this deployment knows, where it comes from, and its config's schema."""

    type: str = Field(description="The name a node gives as its `type`.", examples=["http"])
    source: str = Field(
        description="`builtin`, or the name of the distribution whose plug-in added it.",
        examples=["builtin"],
    )
    version: str = Field(description="The version of Oxify, or of the plug-in's distribution.")
    description: str = Field(description="What a node of this type does, in one line.")
    config_schema: dict[str, Any] = Field(description="JSON Schema of the node's `config`.")


class NodeTypeList(BaseModel):
    """Every node type, sorted by name."""

    items: list[NodeTypeInfo]


class AuditRecord(BaseModel):
    """One row of the audit log: who did what to what, and how it went."""

    id: int = Field(description="Increasing with time, without gaps.")
    at: datetime
    actor: str = Field(description="`key:<key id>`, `sub:<subject>` or `anonymous`.")
    action: str = Field(description="What was done, such as `workflow.create` or `run.cancel`.")
    target: str = Field(description="What it was done to (an id).")
    project: str
    outcome: str = Field(description="`ok`, or why it was refused (`denied`, ...).")
    request_id: str | None = None
    client_ip: str | None = None
    detail: dict[str, Any] | None = None
