"""The workflow document: what clients POST and what the engine validates and plans.

These models check shape only (ids, required keys, numeric bounds), strictly: a boolean is
``true`` or ``false`` and an integer is an integer, as the JSON Schema says (``0`` is not
``false``, ``true`` is not ``1``). Cross-node rules (unknown
edge targets, cycles, node-type configs, expressions) live in ``app.engine.compile.graph``
because they need the whole graph and the node-type registry; it reports every problem with a
JSON pointer.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

NODE_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
MAX_VERSION = 2**31 - 1  # versions are 32-bit in the store


class RetryPolicy(BaseModel):
    """Per-node retries with exponential backoff: delay_n = min(initial * multiplier**n, max)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    max_retries: int = Field(default=0, ge=0, le=100)
    initial_delay_ms: int = Field(default=200, ge=0, le=3_600_000)
    max_delay_ms: int = Field(default=10_000, ge=0, le=3_600_000)
    multiplier: float = Field(default=2.0, ge=1.0, le=100.0)
    jitter: float = Field(
        default=0.1, ge=0.0, le=1.0, description="Fraction of each delay randomised (±)."
    )


class NodeSpec(BaseModel):
    """One node of a graph. ``config`` is checked against the node type's schema at validation."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: str = Field(pattern=NODE_ID_PATTERN, description="Unique within its graph.")
    type: str = Field(min_length=1, max_length=64)
    name: str | None = Field(default=None, max_length=200)
    config: dict[str, Any] = Field(default_factory=dict)
    retry: RetryPolicy | None = None
    timeout_s: float | None = Field(default=None, gt=0, le=31_536_000)
    critical: bool = True
    continue_on_error: bool = False


class EdgeSpec(BaseModel):
    """A dependency ``from`` → ``to``; ``branch`` makes it live only when the source takes it."""

    model_config = ConfigDict(
        extra="forbid", strict=True, populate_by_name=True, serialize_by_alias=True
    )

    source: str = Field(alias="from")
    target: str = Field(alias="to")
    branch: str | None = Field(default=None, min_length=1, max_length=64)


class GraphSpec(BaseModel):
    """A DAG of nodes; container nodes hold graphs of this same shape in their config."""

    model_config = ConfigDict(extra="forbid", strict=True)

    nodes: list[NodeSpec] = Field(min_length=1)
    edges: list[EdgeSpec] = Field(default_factory=list)


class WorkflowDocument(GraphSpec):
    """A whole workflow as stored and versioned."""

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    inputs: dict[str, Any] | None = Field(
        default=None, description="JSON Schema (2020-12) that run inputs are validated against."
    )
    outputs: dict[str, Any] | None = Field(
        default=None,
        description="Mapping name → template over the run context; else the end node's output.",
    )
