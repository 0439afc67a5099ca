"""What one batch of events and checkpoints changes in the tables, computed in Python.

The event log is the source: node-run rows and the execution row's status, progress and
outputs are derived from the events of the same batch and written in the same transaction, so
a client never sees an event whose effect on the execution is not stored yet (or vice versa).
A node's usage comes with its ending (``node.completed`` / ``node.failed`` carry it) and with
its records in the batch's checkpoints (a node that finished a durable step has spent, and has
not ended yet).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.auth.audit import AuditEntry
from app.domain.events import Event, EventType
from app.domain.run import Checkpoint, NodeRecord
from app.domain.status import HAND_BACK_REASON, MOVES, Move, NodeStatus

_MOVE_OF_EVENT: dict[EventType, Move] = {
    EventType.WORKFLOW_STARTED: Move.START,
    EventType.WORKFLOW_RESUMED: Move.START,
    EventType.WORKFLOW_COMPLETED: Move.COMPLETE,
    EventType.WORKFLOW_FAILED: Move.FAIL,
    EventType.WORKFLOW_CANCELLED: Move.CANCEL,
    EventType.WORKFLOW_TIMED_OUT: Move.TIME_OUT,
    EventType.WORKFLOW_PAUSED: Move.PAUSE,
    EventType.WORKFLOW_WAITING: Move.WAIT,
}
_TERMINAL_MOVES = frozenset({Move.COMPLETE, Move.FAIL, Move.CANCEL, Move.TIME_OUT})
_NODE_STATUS_OF_EVENT: dict[EventType, NodeStatus] = {
    EventType.NODE_STARTED: NodeStatus.RUNNING,
    EventType.NODE_RETRY: NodeStatus.RUNNING,
    EventType.NODE_COMPLETED: NodeStatus.COMPLETED,
    EventType.NODE_FAILED: NodeStatus.FAILED,
    EventType.NODE_SKIPPED: NodeStatus.SKIPPED,
    EventType.NODE_CANCELLED: NodeStatus.CANCELLED,
    EventType.NODE_WAITING: NodeStatus.WAITING,
}


@dataclass(slots=True)
class NodeRunRow:
    execution_id: str
    node_key: str
    node_id: str
    status: str
    attempt: int = 0  # 0: not known from this batch (a skipped node never had an attempt)
    output: Any = None
    error: Any = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: float | None = None
    # Sub-steps that finished in this batch, appended to the row's (never replacing them: a
    # node's steps of every attempt stay listed). None: none finished.
    steps: list[dict[str, Any]] | None = None
    # What the node spent over all its attempts, from the batch's latest record of it (a sum
    # already: it replaces the row's). None: no record says, the row's stays.
    usage: dict[str, float] | None = None
    # The batch holds no node event of this node, only its finished steps or a record of its
    # usage: the writer sets those and leaves the row's other columns as they are (a
    # node.retry's error, for one).
    partial: bool = False


@dataclass(slots=True)
class ExecutionUpdate:
    """Changes to one execution row; None means "leave as is". ``first_seq``..``last_seq`` are
    the batch's events of the run: the row must be at ``first_seq - 1`` for them to be written."""

    execution_id: str
    first_seq: int = 0
    last_seq: int = 0
    move: Move | None = None  # the status change the batch makes (its last workflow.* event)
    outputs: Any = None
    error: Any = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    completed_nodes: int | None = None
    total_nodes: int | None = None
    terminal: bool = False
    fence: int | None = None  # the writer's lease generation; None: no lease applies


@dataclass(slots=True)
class FormRequest:
    """A form or approval a run asked people for (its ``form.requested`` event)."""

    id: str
    execution_id: str
    node_key: str
    kind: str
    prompt: str
    fields: Any
    context: Any  # None: a plain form or approval
    approvers: Any
    quorum: int
    allow_self_approval: bool
    on_timeout: str
    deadline: str | None  # RFC 3339
    created_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "execution_id": self.execution_id,
            "node_key": self.node_key,
            "kind": self.kind,
            "prompt": self.prompt,
            "fields": self.fields,
            "context": self.context,
            "approvers": self.approvers,
            "quorum": self.quorum,
            "allow_self_approval": self.allow_self_approval,
            "on_timeout": self.on_timeout,
            "deadline": self.deadline,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class RowState:
    """How a run of a batch stands after the batch's statement: whether this statement wrote
    its rows, and the row's status; for a run it did not write, also its last seq and
    generation (what tells a retried write stored already, a fenced one and a gap apart)."""

    written: bool
    status: str
    last_seq: int
    generation: int


@dataclass(frozen=True, slots=True)
class Append:
    """An event logged beside the engine's journal, as one statement with the status change
    it stands for: a client pausing or cancelling a run no replica drives, a deadline passing, a
    driver recording a crash (fenced by its generation). The database numbers it. A client's
    change carries its audit row, written in the same statement when the move applies."""

    execution_id: str
    move: Move
    type: EventType
    data: dict[str, Any]
    ts: datetime
    fence: int | None = None
    audit: AuditEntry | None = None

    @property
    def terminal(self) -> bool:
        return all(target.is_terminal for target in MOVES[self.move].values())


@dataclass(slots=True)
class BatchRows:
    events: list[Event] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    node_runs: dict[tuple[str, str], NodeRunRow] = field(default_factory=dict)
    executions: dict[str, ExecutionUpdate] = field(default_factory=dict)
    forms: list[FormRequest] = field(default_factory=list)

    def only(self, execution_ids: set[str]) -> BatchRows:
        """The rows of these executions only."""
        if len(execution_ids) == len(self.executions):
            return self
        return BatchRows(
            [e for e in self.events if e.execution_id in execution_ids],
            [c for c in self.checkpoints if c.execution_id in execution_ids],
            {k: v for k, v in self.node_runs.items() if k[0] in execution_ids},
            {k: v for k, v in self.executions.items() if k in execution_ids},
            [f for f in self.forms if f.execution_id in execution_ids],
        )


def derive(
    events: list[Event], checkpoints: list[Checkpoint], fences: dict[str, int | None]
) -> BatchRows:
    """Fold a batch (events in seq order per execution, each execution's events consecutive)
    into row changes, one per key; ``fences`` gives each execution's writer generation."""
    rows = BatchRows(events=events, checkpoints=checkpoints)
    for event in events:
        update = rows.executions.get(event.execution_id)
        if update is None:
            update = rows.executions[event.execution_id] = ExecutionUpdate(
                event.execution_id, first_seq=event.seq, fence=fences.get(event.execution_id)
            )
        update.last_seq = event.seq
        move = _MOVE_OF_EVENT.get(event.type)
        if move is not None:
            _apply_execution(update, event, move)
        elif event.type is EventType.PROGRESS_UPDATE:
            update.completed_nodes = event.data.get("completed")
            update.total_nodes = event.data.get("total")
        elif event.type is EventType.FORM_REQUESTED and event.node_id is not None:
            rows.forms.append(_form_request(event))
        node_status = _NODE_STATUS_OF_EVENT.get(event.type)
        if node_status is not None and event.node_id is not None:
            _apply_node(rows, event, node_status)
        elif event.type is EventType.NODE_STEP and event.node_id is not None:
            _apply_step(rows, event)
    for checkpoint in checkpoints:  # in number order: a later record's usage wins
        for record in checkpoint.records:
            if record.usage:
                _apply_usage(rows, checkpoint.execution_id, record)
    return rows


def _form_request(event: Event) -> FormRequest:
    data = event.data
    assert event.node_id is not None
    return FormRequest(
        id=data["form_id"],
        execution_id=event.execution_id,
        node_key=event.node_id,
        kind=data["kind"],
        prompt=data["prompt"],
        fields=data["fields"],
        context=data.get("context"),
        approvers=data.get("approvers"),
        quorum=data.get("quorum", 1),
        allow_self_approval=data.get("allow_self_approval", False),
        on_timeout=data["on_timeout"],
        deadline=data.get("deadline"),
        created_at=event.ts,
    )


def _apply_execution(update: ExecutionUpdate, event: Event, move: Move) -> None:
    if move is Move.PAUSE and event.data.get("reason") == HAND_BACK_REASON:
        move = Move.HAND_BACK
    update.move = move
    update.terminal = move in _TERMINAL_MOVES
    if move is Move.START:
        update.started_at = update.started_at or event.ts
        update.error = None
    elif update.terminal:
        update.finished_at = event.ts
        update.outputs = event.data.get("outputs")
        update.error = event.data.get("error")


def _apply_node(rows: BatchRows, event: Event, status: NodeStatus) -> None:
    assert event.node_id is not None
    key = (event.execution_id, event.node_id)
    row = rows.node_runs.get(key)
    data = event.data
    if row is None or event.type is EventType.NODE_STARTED:
        # A new attempt resets the row, but not the steps finished before it.
        steps = None if row is None else row.steps
        row = rows.node_runs[key] = _node_row(event, status)
        row.steps = steps
    row.partial = False
    row.status = status.value
    if event.type is EventType.NODE_STARTED:
        row.started_at = event.ts
        row.attempt = data.get("attempt", 1)
    elif event.type is EventType.NODE_RETRY:
        row.attempt = data.get("next_attempt", row.attempt)
        row.error = data.get("error")
    elif event.type in (EventType.NODE_COMPLETED, EventType.NODE_FAILED):
        row.attempt = data.get("attempt", row.attempt)
        row.output = data.get("output")
        row.error = data.get("error")
        row.finished_at = event.ts
        row.duration_ms = data.get("duration_ms")
        if "usage" in data:  # over every attempt: it replaces what the row had
            row.usage = data["usage"]
    elif event.type in (EventType.NODE_SKIPPED, EventType.NODE_CANCELLED):
        row.finished_at = event.ts


def _apply_step(rows: BatchRows, event: Event) -> None:
    """A finished sub-step: its name, outcome and time, never its result (which may be large,
    and lives in the checkpoints)."""
    assert event.node_id is not None
    key = (event.execution_id, event.node_id)
    row = rows.node_runs.get(key)
    if row is None:
        # The node's row exists already (its node.started came first); should it not, the
        # row the writer inserts says the node runs, which it does while its steps finish.
        row = rows.node_runs[key] = _node_row(event, NodeStatus.RUNNING)
        row.partial = True
    step: dict[str, Any] = {
        "name": event.data.get("name"),
        "ok": bool(event.data.get("ok")),
        "finished_at": event.ts.isoformat(),
    }
    if not step["ok"]:
        step["error"] = event.data.get("error")
    if row.steps is None:
        row.steps = []
    row.steps.append(step)


def _apply_usage(rows: BatchRows, execution_id: str, record: NodeRecord) -> None:
    """What a node spent, as of its record. Applied after the batch's events, so a new attempt
    they start does not reset it (a record's usage counts every attempt)."""
    key = (execution_id, record.key)
    row = rows.node_runs.get(key)
    if row is None:
        # Its events came in an earlier batch (a checkpoint policy other than every_node):
        # only the usage changes; the record's status stands in should the row be missing.
        row = rows.node_runs[key] = NodeRunRow(
            execution_id=execution_id,
            node_key=record.key,
            node_id=record.node_id,
            status=record.status.value,
            attempt=record.attempt,
            partial=True,
        )
    row.usage = record.usage


def _node_row(event: Event, status: NodeStatus) -> NodeRunRow:
    assert event.node_id is not None
    return NodeRunRow(
        execution_id=event.execution_id,
        node_key=event.node_id,
        node_id=event.node_id.rsplit(".", 1)[-1],
        status=status.value,
    )
