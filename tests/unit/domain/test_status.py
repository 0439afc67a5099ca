"""The table of moves says what the service promises about statuses; these are its promises."""

from __future__ import annotations

from app.domain.status import (
    DRIVEN,
    EXECUTION_TRANSITIONS,
    IDLE,
    MOVES,
    RESUME_REASON,
    TERMINAL_EXECUTION_STATUSES,
    ExecutionStatus,
    Move,
    apply,
    can_transition,
)
from app.store.status_sql import JOURNAL_MOVES

S = ExecutionStatus


def test_a_driver_logs_only_while_it_drives_the_run() -> None:
    for move in JOURNAL_MOVES:
        assert set(MOVES[move]) == DRIVEN, move


def test_clients_settle_only_runs_no_replica_drives() -> None:
    for move in (Move.HOLD, Move.WITHDRAW, Move.EXPIRE, Move.RESUME, Move.ANSWER):
        assert set(MOVES[move]) <= IDLE, move


def test_a_completed_run_is_final_and_only_retry_leaves_the_other_ends() -> None:
    assert EXECUTION_TRANSITIONS[S.COMPLETED] == frozenset()
    for status in TERMINAL_EXECUTION_STATUSES - {S.COMPLETED}:
        leaving = {move for move, rule in MOVES.items() if status in rule}
        assert leaving == {Move.RETRY}, status


def test_every_run_can_end_from_every_status_but_the_ends() -> None:
    # Nothing is stuck: from each non-terminal status some chain of moves reaches an end.
    for status in set(S) - TERMINAL_EXECUTION_STATUSES:
        seen, frontier = {status}, [status]
        while frontier:
            for nxt in EXECUTION_TRANSITIONS[frontier.pop()] - seen:
                seen.add(nxt)
                frontier.append(nxt)
        assert seen & TERMINAL_EXECUTION_STATUSES, status


def test_a_pause_asked_of_a_run_is_never_lost_by_its_driver() -> None:
    # `pausing` only ever ends paused or terminal, whatever the driver logs, unless a cancel
    # asked meanwhile queues it to be cancelled (a cancel outranks a pause).
    assert EXECUTION_TRANSITIONS[S.PAUSING] <= {S.PAUSED, S.QUEUED} | TERMINAL_EXECUTION_STATUSES
    to_queue = {move for move, rule in MOVES.items() if rule.get(S.PAUSING) is S.QUEUED}
    assert to_queue == {Move.SET_DOWN_CANCELLED}
    assert apply(Move.HAND_BACK, S.PAUSING) is S.PAUSED
    assert apply(Move.WAIT, S.PAUSING) is S.PAUSED


def test_moves_that_make_a_run_startable_again_say_why() -> None:
    for move, rule in MOVES.items():
        if move is Move.CLAIM:
            continue
        if any(target is S.QUEUED for target in rule.values()):
            assert move in RESUME_REASON, move


def test_transitions_are_exactly_what_the_moves_make() -> None:
    pairs = {(s, t) for rule in MOVES.values() for s, t in rule.items() if s != t}
    assert pairs == {(s, t) for s, targets in EXECUTION_TRANSITIONS.items() for t in targets}
    for current in S:
        for target in S:
            assert can_transition(current, target) == (
                current == target or (current, target) in pairs
            )
