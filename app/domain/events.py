"""Events: the run's append-only log, as clients see it over SSE, WebSocket and the JSON log.

Events are plain slotted dataclasses because the scheduler makes several per node on its hot path;
pydantic is kept for the HTTP edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    WORKFLOW_STARTED = "workflow.started"
    WORKFLOW_COMPLETED = "workflow.completed"
    WORKFLOW_FAILED = "workflow.failed"
    WORKFLOW_PAUSED = "workflow.paused"
    WORKFLOW_RESUMED = "workflow.resumed"
    WORKFLOW_CANCELLED = "workflow.cancelled"
    WORKFLOW_TIMED_OUT = "workflow.timed_out"
    WORKFLOW_WAITING = "workflow.waiting"
    LEVEL_STARTED = "level.started"
    LEVEL_COMPLETED = "level.completed"
    NODE_STARTED = "node.started"
    NODE_COMPLETED = "node.completed"
    NODE_FAILED = "node.failed"
    NODE_RETRY = "node.retry"
    NODE_SKIPPED = "node.skipped"
    NODE_CANCELLED = "node.cancelled"
    NODE_WAITING = "node.waiting"
    NODE_TOKEN = "node.token"
    NODE_PROGRESS = "node.progress"
    NODE_STEP = "node.step"
    CHECKPOINT_CREATED = "checkpoint.created"
    PROGRESS_UPDATE = "progress.update"
    FORM_REQUESTED = "form.requested"
    FORM_SUBMITTED = "form.submitted"
    FORM_TIMED_OUT = "form.timed_out"
    AGENT_TOOL_CALL = "agent.tool_call"
    AGENT_TOOL_RESULT = "agent.tool_result"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_EVENT_TYPES


TERMINAL_EVENT_TYPES = frozenset(
    {
        EventType.WORKFLOW_COMPLETED,
        EventType.WORKFLOW_FAILED,
        EventType.WORKFLOW_CANCELLED,
        EventType.WORKFLOW_TIMED_OUT,
    }
)
"""After one of these a run's stream closes (paused and waiting runs may continue later)."""


@dataclass(slots=True)
class Event:
    """One entry of a run's log. ``seq`` is 1, 2, 3 … per execution with no gaps."""

    execution_id: str
    seq: int
    type: EventType
    ts: datetime
    node_id: str | None = None
    level: int | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The wire shape of the contract's event stream."""
        return {
            "seq": self.seq,
            "execution_id": self.execution_id,
            "type": self.type.value,
            "ts": self.ts.isoformat().replace("+00:00", "Z"),
            "node_id": self.node_id,
            "level": self.level,
            "data": self.data,
        }
