"""Execution and node statuses, and the one table of what may change a run's status.

Every change of an execution's status is a :class:`Move`: something that happened to the run
(a replica claimed it, its driver logged ``workflow.paused``, a person answered its form, a
client cancelled it). :data:`MOVES` says, for each move, from which statuses it applies and
which status each of them becomes; a move applied to any other status changes nothing. Every
SQL statement that writes ``executions.status`` is generated from this table (see
``app.store.status_sql``), and a test runs every move against every status on each backend, so
the table is the single place where the rules live.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType


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


class Move(StrEnum):
    """Something that changes a run's status. The docstring of :data:`MOVES` says why each
    maps as it does."""

    CLAIM = "claim"
    RECOVER = "recover"
    START = "start"
    COMPLETE = "complete"
    FAIL = "fail"
    CANCEL = "cancel"
    TIME_OUT = "time_out"
    PAUSE = "pause"
    HAND_BACK = "hand_back"
    WAIT = "wait"
    WAIT_ANSWERED = "wait_answered"
    SET_DOWN_CANCELLED = "set_down_cancelled"
    REQUEST_PAUSE = "request_pause"
    HOLD = "hold"
    RESUME = "resume"
    WITHDRAW = "withdraw"
    RETRY = "retry"
    ANSWER = "answer"
    EXPIRE = "expire"


_E = ExecutionStatus
DRIVEN = frozenset({_E.RUNNING, _E.PAUSING})
"""Statuses in which a replica drives the run under a lease; only its driver writes then."""

IDLE = frozenset({_E.QUEUED, _E.PAUSED, _E.WAITING})
"""Statuses in which no replica drives the run; clients and sweepers may settle it."""


def _from_driven(target: ExecutionStatus) -> Mapping[ExecutionStatus, ExecutionStatus]:
    return {status: target for status in DRIVEN}


MOVES: Mapping[Move, Mapping[ExecutionStatus, ExecutionStatus]] = MappingProxyType(
    {
        # -- a replica takes a run ----------------------------------------------------------
        # Claiming a queued run starts it. A run whose owner's lease lapsed is recovered in the
        # status it had: a pause asked of the dead owner is still asked of the new one.
        Move.CLAIM: {_E.QUEUED: _E.RUNNING},
        Move.RECOVER: {_E.RUNNING: _E.RUNNING, _E.PAUSING: _E.PAUSING},
        # -- what the driver logs (workflow.* events; only ever from a driven status) ---------
        # Starting or resuming keeps a pause that was asked while the run was being claimed.
        Move.START: {_E.RUNNING: _E.RUNNING, _E.PAUSING: _E.PAUSING},
        Move.COMPLETE: _from_driven(_E.COMPLETED),
        Move.FAIL: _from_driven(_E.FAILED),
        Move.CANCEL: _from_driven(_E.CANCELLED),
        Move.TIME_OUT: _from_driven(_E.TIMED_OUT),
        Move.PAUSE: _from_driven(_E.PAUSED),
        # The driver's replica is stopping: the run goes back to the queue for any replica,
        # unless a client asked for a pause meanwhile (then it is held, as asked).
        Move.HAND_BACK: {_E.RUNNING: _E.QUEUED, _E.PAUSING: _E.PAUSED},
        # Waiting for people holds no task; a pause asked meanwhile holds the run instead.
        # Answers that arrived while the run was busy elsewhere queue it at once.
        Move.WAIT: {_E.RUNNING: _E.WAITING, _E.PAUSING: _E.PAUSED},
        Move.WAIT_ANSWERED: {_E.RUNNING: _E.QUEUED, _E.PAUSING: _E.PAUSED},
        # A cancel asked of the driver (``cancel_requested``) that it had not acted on when it
        # set the run down (waiting, paused, handed back): the run is queued instead, and the
        # replica that claims it cancels it at once. Without this the cancel would be lost: no
        # replica drives a waiting or paused run, and the client's cancel already found it
        # driven.
        Move.SET_DOWN_CANCELLED: {_E.RUNNING: _E.QUEUED, _E.PAUSING: _E.QUEUED},
        # -- clients and sweepers --------------------------------------------------------------
        # A driven run pauses through `pausing` (its running nodes finish first); an idle one
        # is held at once. Resume queues it for any replica.
        Move.REQUEST_PAUSE: {_E.RUNNING: _E.PAUSING},
        Move.HOLD: {_E.QUEUED: _E.PAUSED, _E.WAITING: _E.PAUSED},
        Move.RESUME: {_E.PAUSED: _E.QUEUED},
        # Cancelling an idle run ends it at once (a driven one is cancelled by its driver,
        # asked through `cancel_requested`).
        Move.WITHDRAW: {_E.QUEUED: _E.CANCELLED, _E.PAUSED: _E.CANCELLED, _E.WAITING: _E.CANCELLED},
        # Retry re-opens a run that ended without completing; a completed run is final.
        Move.RETRY: {_E.FAILED: _E.QUEUED, _E.TIMED_OUT: _E.QUEUED, _E.CANCELLED: _E.QUEUED},
        # A decided form queues its waiting run; any other run counts the answer and reads it
        # when it would otherwise start waiting (``pending_answers``).
        Move.ANSWER: {_E.WAITING: _E.QUEUED},
        # A waiting run whose deadline (timeout_s counting waiting time) passed.
        Move.EXPIRE: {_E.WAITING: _E.TIMED_OUT},
    }
)
"""move → {status it applies to: status it leads to}."""

RESUME_REASON: Mapping[Move, str] = MappingProxyType(
    {
        Move.RECOVER: "recovered",
        Move.HAND_BACK: "shutdown",
        Move.WAIT_ANSWERED: "answered",
        Move.SET_DOWN_CANCELLED: "cancelling",
        Move.ANSWER: "answered",
        Move.RESUME: "resumed",
        Move.RETRY: "retry",
    }
)
"""Why the run's next start is a resume (the ``reason`` of ``workflow.resumed``), recorded by
the moves that make it startable again."""

HAND_BACK_REASON = RESUME_REASON[Move.HAND_BACK]
"""The ``reason`` of a ``workflow.paused`` its driver logs because its replica stops: the write
hands the run back to the queue (:data:`Move.HAND_BACK`) instead of holding it paused."""

EXECUTION_TRANSITIONS: Mapping[ExecutionStatus, frozenset[ExecutionStatus]] = MappingProxyType(
    {
        status: frozenset(
            target
            for rule in MOVES.values()
            for source, target in rule.items()
            if source == status and target != status
        )
        for status in ExecutionStatus
    }
)
"""Every status change any move makes: what a client can ever observe after what."""


class InvalidTransition(ValueError):
    """The requested status change is not allowed."""

    def __init__(self, current: ExecutionStatus, target: ExecutionStatus) -> None:
        super().__init__(f"an execution cannot go from {current.value!r} to {target.value!r}")
        self.current = current
        self.target = target


def can_transition(current: ExecutionStatus, target: ExecutionStatus) -> bool:
    """True when some move takes ``current`` to ``target`` (staying in place always is)."""
    return current == target or target in EXECUTION_TRANSITIONS[current]


def apply(move: Move, current: ExecutionStatus) -> ExecutionStatus | None:
    """The status ``move`` leads ``current`` to, or None when the move does not apply."""
    return MOVES[move].get(current)
