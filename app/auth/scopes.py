"""Scopes a credential carries, and the actions a route declares.

A route names the *action* it performs (read runs, answer forms, ...), never a scope: which
scopes allow an action is this one table, so the contract's scope table and the code cannot
drift apart. ``admin`` allows everything.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Scope(StrEnum):
    VIEWER = "viewer"
    RUNNER = "runner"
    REVIEWER = "reviewer"
    ADMIN = "admin"


class Action(StrEnum):
    """What a route does, as far as authorization is concerned."""

    PUBLIC = "public"  # probes: no credential at all
    AUTHENTICATED = "authenticated"  # any valid credential (whoami, node types)
    READ_WORKFLOWS = "read_workflows"
    WRITE_WORKFLOWS = "write_workflows"
    READ_RUNS = "read_runs"
    CONTROL_RUNS = "control_runs"  # start, pause, resume, cancel, retry, delete
    READ_FORMS = "read_forms"
    ANSWER_FORMS = "answer_forms"
    READ_METRICS = "read_metrics"
    ADMIN = "admin"  # keys, credentials, the audit log


_ALL = frozenset(Scope)
# Which scopes allow each action (admin is in every row): the contract's scope table.
ALLOWED: dict[Action, frozenset[Scope]] = {
    Action.PUBLIC: _ALL,
    Action.AUTHENTICATED: _ALL,
    Action.READ_WORKFLOWS: frozenset({Scope.VIEWER, Scope.RUNNER, Scope.ADMIN}),
    Action.WRITE_WORKFLOWS: frozenset({Scope.RUNNER, Scope.ADMIN}),
    Action.READ_RUNS: _ALL,
    Action.CONTROL_RUNS: frozenset({Scope.RUNNER, Scope.ADMIN}),
    Action.READ_FORMS: _ALL,
    Action.ANSWER_FORMS: frozenset({Scope.REVIEWER, Scope.ADMIN}),
    Action.READ_METRICS: frozenset({Scope.VIEWER, Scope.RUNNER, Scope.ADMIN}),
    Action.ADMIN: frozenset({Scope.ADMIN}),
}


def allows(scopes: Iterable[Scope], action: Action) -> bool:
    """Whether a credential holding ``scopes`` may perform ``action``."""
    allowed = ALLOWED[action]
    return any(scope in allowed for scope in scopes)


def parse(values: Iterable[str]) -> frozenset[Scope]:
    """Scope names as a set; an unknown name is a ValueError naming it and the known ones."""
    scopes = set()
    for value in values:
        try:
            scopes.add(Scope(value))
        except ValueError:
            known = ", ".join(s.value for s in Scope)
            raise ValueError(f"unknown scope {value!r}; scopes are {known}") from None
    return frozenset(scopes)
