"""Execution and node statuses, and the one table of transitions between them.

Every status change of a run goes through :func:`check_execution_transition`, so a store, the
runner and the API agree on what may follow what.
"""

from __future__ import annotations

from enum import StrEnum


class ExecutionStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSING = "pausing"
    PAUSED = "paused"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_EXECUTION_STATUSES


class NodeStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    WAITING = "waiting"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_NODE_STATUSES


TERMINAL_EXECUTION_STATUSES = frozenset(
    {
        ExecutionStatus.COMPLETED,
        ExecutionStatus.FAILED,
        ExecutionStatus.TIMED_OUT,
        ExecutionStatus.CANCELLED,
    }
)
FINAL_NODE_STATUSES = frozenset(
    {NodeStatus.COMPLETED, NodeStatus.FAILED, NodeStatus.SKIPPED, NodeStatus.CANCELLED}
)

_E = ExecutionStatus
EXECUTION_TRANSITIONS: dict[ExecutionStatus, frozenset[ExecutionStatus]] = {
    # A queued run may be held (paused) or cancelled before it ever starts.
    _E.QUEUED: frozenset({_E.RUNNING, _E.PAUSED, _E.CANCELLED}),
    # A running run pauses through `pausing` (running nodes finish first) or, when nothing is in
    # flight, directly; it waits for people, or ends. `queued` again when its process stops it
    # for a restart elsewhere.
    _E.RUNNING: frozenset(
        {_E.PAUSING, _E.PAUSED, _E.WAITING, _E.QUEUED, *TERMINAL_EXECUTION_STATUSES}
    ),
    # Pausing ends paused, or queued when its process stopped before the pause completed.
    _E.PAUSING: frozenset({_E.PAUSED, _E.RUNNING, _E.QUEUED, *TERMINAL_EXECUTION_STATUSES}),
    # Paused and waiting runs hold no task: they resume (running or queued for a replica) or are
    # cancelled; a waiting run can also time out under a run-level deadline.
    _E.PAUSED: frozenset({_E.RUNNING, _E.QUEUED, _E.CANCELLED}),
    _E.WAITING: frozenset({_E.RUNNING, _E.QUEUED, _E.PAUSED, _E.CANCELLED, _E.TIMED_OUT}),
    # Retry re-opens a failed, timed-out or cancelled run; a completed run is final.
    _E.FAILED: frozenset({_E.QUEUED, _E.RUNNING}),
    _E.TIMED_OUT: frozenset({_E.QUEUED, _E.RUNNING}),
    _E.CANCELLED: frozenset({_E.QUEUED, _E.RUNNING}),
    _E.COMPLETED: frozenset(),
}


class InvalidTransition(ValueError):
    """The requested status change is not allowed."""

    def __init__(self, current: ExecutionStatus, target: ExecutionStatus) -> None:
        super().__init__(f"an execution cannot go from {current.value!r} to {target.value!r}")
        self.current = current
        self.target = target


def can_transition(current: ExecutionStatus, target: ExecutionStatus) -> bool:
    """True when ``current`` → ``target`` is allowed (staying in place is always allowed)."""
    return current == target or target in EXECUTION_TRANSITIONS[current]


def check_execution_transition(current: ExecutionStatus, target: ExecutionStatus) -> None:
    """Raise :class:`InvalidTransition` unless ``current`` → ``target`` is allowed."""
    if not can_transition(current, target):
        raise InvalidTransition(current, target)
