"""SQL for status changes, generated from the domain's table of moves (``app.domain.status``).

No statement of the store writes ``executions.status`` by hand: each takes its condition (the
statuses a move applies to) and its new value (a ``CASE`` over the current status) from here, on
both backends, so the rules live in one place and a test can check every statement against it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, String, and_, case, literal_column

from app.domain.status import DRIVEN, MOVES, RESUME_REASON, Move
from app.store.tables import executions

_status = executions.c.status


def constant(value: str) -> ColumnElement[Any]:
    """A status or reason written into the SQL text (not a parameter): statements stay the
    same text whatever they are run with, and the planner sees the values (index choice)."""
    return literal_column(f"'{value}'", String)


def applies(move: Move, status: ColumnElement[Any] = _status) -> ColumnElement[bool]:
    """``status`` is one the move applies to."""
    return status.in_([constant(source.value) for source in sorted(MOVES[move])])


def target(move: Move, status: ColumnElement[Any] = _status) -> ColumnElement[Any]:
    """The status ``move`` leads to from ``status`` (NULL where it does not apply: callers
    also require :func:`applies`)."""
    rule = MOVES[move]
    return case(
        *(
            (status == constant(source.value), constant(rule[source].value))
            for source in sorted(rule)
        )
    )


def resume_reason(move: Move, current: ColumnElement[Any]) -> ColumnElement[Any]:
    """What ``resume_reason`` becomes under ``move``: the move's reason when it has one."""
    reason = RESUME_REASON.get(move)
    return current if reason is None else constant(reason)


# -- the journal: the move comes with the batch, one per execution ------------------------------

JOURNAL_MOVES = (
    Move.START,
    Move.COMPLETE,
    Move.FAIL,
    Move.CANCEL,
    Move.TIME_OUT,
    Move.PAUSE,
    Move.HAND_BACK,
    Move.WAIT,
)
"""The moves a run's driver makes by logging ``workflow.*`` events."""


# The driver's moves that set a run down without ending it.
_SET_DOWN = (Move.WAIT, Move.PAUSE, Move.HAND_BACK)


def _set_down_cancelled(
    move: ColumnElement[Any], cancel_asked: ColumnElement[bool]
) -> ColumnElement[bool]:
    return and_(move.in_([constant(m.value) for m in _SET_DOWN]), cancel_asked)


def journal_status(
    move: ColumnElement[Any],
    status: ColumnElement[Any],
    answered: ColumnElement[bool],
    cancel_asked: ColumnElement[bool],
) -> ColumnElement[Any]:
    """The new status of a run whose driver logged a batch with ``move`` (NULL: the batch
    changes no status). ``answered`` says answers arrived while the run was busy: a run about
    to wait is then queued instead (:data:`Move.WAIT_ANSWERED`). ``cancel_asked`` says a
    client asked the driver to cancel: a run being set down is queued to be cancelled
    (:data:`Move.SET_DOWN_CANCELLED`), which comes first."""
    whens: list[tuple[ColumnElement[bool], ColumnElement[Any]]] = [
        (_set_down_cancelled(move, cancel_asked), target(Move.SET_DOWN_CANCELLED, status)),
        (and_(move == constant(Move.WAIT.value), answered), target(Move.WAIT_ANSWERED, status)),
    ]
    whens += [(move == constant(m.value), target(m, status)) for m in JOURNAL_MOVES]
    return case(*whens, else_=status)


def journal_reason(
    move: ColumnElement[Any],
    current: ColumnElement[Any],
    answered: ColumnElement[bool],
    cancel_asked: ColumnElement[bool],
) -> ColumnElement[Any]:
    """``resume_reason`` after the batch: the reason of the move it made, if that has one."""
    whens: list[tuple[ColumnElement[bool], ColumnElement[Any]]] = [
        (_set_down_cancelled(move, cancel_asked), resume_reason(Move.SET_DOWN_CANCELLED, current)),
        (
            and_(move == constant(Move.WAIT.value), answered),
            resume_reason(Move.WAIT_ANSWERED, current),
        ),
    ]
    whens += [
        (move == constant(m.value), resume_reason(m, current))
        for m in JOURNAL_MOVES
        if m in RESUME_REASON
    ]
    return case(*whens, else_=current)


def journal_applies(status: ColumnElement[Any]) -> ColumnElement[bool]:
    """The driver may write: the run is in a status every journal move applies to (a batch
    that changes no status included): driven by a replica."""
    return status.in_([constant(s.value) for s in sorted(DRIVEN)])
