"""Run configuration, node records, checkpoints and outcomes.

A checkpoint holds only what changed since the previous one (the node records finished in
between), so a run's checkpoints grow linearly with the run; the state at checkpoint ``k`` is the
fold of checkpoints ``1..k`` (:func:`fold_records`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.domain.status import ExecutionStatus, NodeStatus

# The largest count a run can be limited to: every JSON client reads it exactly (JavaScript's
# largest safe integer), and so does the OpenAPI document (FastAPI writes bounds as floats).
MAX_COUNT = 2**53 - 1
_STRICT = ConfigDict(extra="forbid", strict=True)  # JSON types exactly: 0 is not false


class EveryNLevels(BaseModel):
    model_config = _STRICT
    every_n_levels: int = Field(ge=1, le=MAX_COUNT)


class EveryNNodes(BaseModel):
    model_config = _STRICT
    every_n_nodes: int = Field(ge=1, le=MAX_COUNT)


CheckpointPolicy = Literal["every_node", "every_level", "never"] | EveryNLevels | EveryNNodes


class RunLimits(BaseModel):
    """Hard caps on what one run may consume; crossing one fails the run with the error
    ``run_limit_exceeded``, naming the limit and the counts."""

    model_config = _STRICT

    max_nodes: int | None = Field(
        default=None,
        ge=1,
        le=MAX_COUNT,
        description="Node executions, nested ones and retries included.",
    )
    max_tokens: int | None = Field(
        default=None, ge=1, le=MAX_COUNT, description="LLM tokens, input and output."
    )
    max_api_calls: int | None = Field(
        default=None,
        ge=1,
        le=MAX_COUNT,
        description="Outbound calls (http, graphql, mcp, llm, embeddings), retries included.",
    )


DependencyStrategy = Literal["skip", "defaults", "fail"]


class RunConfig(BaseModel):
    """Per-run options (the ``config`` of ``POST /v1/workflows/{id}/executions``)."""

    model_config = _STRICT

    max_concurrency: int = Field(default=16, ge=1, le=10_000)
    timeout_s: float | None = Field(default=None, gt=0, le=31_536_000)
    timeout_includes_waiting: bool = Field(
        default=False,
        description="Count time spent waiting for people (and paused) toward timeout_s; by "
        "default only the time the run is being driven counts.",
    )
    checkpoint: CheckpointPolicy = "every_node"
    continue_on_error: bool = Field(
        default=False, description="Failures of nodes marked critical=false do not fail the run."
    )
    dependency_strategy: DependencyStrategy = "skip"
    limits: RunLimits = Field(default_factory=RunLimits)


@dataclass(slots=True)
class NodeRecord:
    """What one node execution ended with; the unit of checkpoints and of resume.

    ``key`` qualifies nested nodes by their container and iteration (``loop[2].double``) so a
    resumed loop skips the body nodes that already completed. ``set_vars`` keeps the node's
    effect on ``vars`` so replaying the record restores them.
    """

    key: str
    node_id: str
    status: NodeStatus
    output: Any = None
    error: dict[str, Any] | None = None
    branch: str | None = None
    attempt: int = 1
    set_vars: dict[str, Any] | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    data: dict[str, Any] | None = None
    # The results of the node's durable sub-steps that finished (``ctx.step``), by name: a
    # node that runs again (resume, takeover, retry) gets them back instead of repeating them.
    # A record may hold only the steps new since the node's previous one (fold_records).
    steps: dict[str, Any] | None = None
    # What the node spent on outbound calls, LLM tokens and priced calls over all its attempts
    # so far (``api_calls``, ``tokens``, ``cost_usd``); with ``attempt`` (its node executions),
    # the run's counters are the sums over its records.
    usage: dict[str, float] | None = None


@dataclass(slots=True)
class Checkpoint:
    """Records finished since the previous checkpoint, and the last event seq they cover."""

    execution_id: str
    number: int
    seq: int
    created_at: datetime
    records: list[NodeRecord] = field(default_factory=list)


def fold_records(checkpoints: Iterable[Checkpoint]) -> dict[str, NodeRecord]:
    """The node records a run had at the last of ``checkpoints``: later records win, except
    for ``steps``, which add up (a record made when a step finishes holds that step only, so a
    node with many steps costs each checkpoint its new step, not all of them again)."""
    state: dict[str, NodeRecord] = {}
    for checkpoint in sorted(checkpoints, key=lambda c: c.number):
        for record in checkpoint.records:
            previous = state.get(record.key)
            if previous is not None and previous.steps:
                record = replace(record, steps={**previous.steps, **(record.steps or {})})
            state[record.key] = record
    return state


@dataclass(slots=True)
class RunOutcome:
    """How a call to the scheduler ended. ``status`` is never ``running``."""

    status: ExecutionStatus
    outputs: Any = None
    error: dict[str, Any] | None = None
    waiting_on: list[str] = field(default_factory=list)
    nodes: dict[str, NodeStatus] = field(default_factory=dict)
