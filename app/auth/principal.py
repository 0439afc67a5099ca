"""The caller of a request, once authenticated: what it may do and which project it sees."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.auth import scopes as scope_table
from app.auth.scopes import Action, Scope
from app.domain.limits import Limits

DEFAULT_PROJECT = "default"


@dataclass(frozen=True, slots=True)
class Principal:
    """An API key (``key_id``) or a token's ``subject``; ``project`` None sees every project
    (admin credentials only). ``anonymous``: the service runs without authentication (no key
    exists yet, on loopback, or explicitly allowed)."""

    scopes: frozenset[Scope]
    project: str | None
    key_id: str | None = None
    subject: str | None = None
    name: str | None = None  # the key's name, for people reading audit rows and approvals
    anonymous: bool = False
    # The key's own limits (None: none of its own; its project's still apply).
    limits: Limits | None = field(default=None, compare=False, hash=False)
    # The groups a token says the caller is in, for approvers named ``group:<name>``.
    groups: frozenset[str] = frozenset()

    def may(self, action: Action) -> bool:
        return scope_table.allows(self.scopes, action)

    @property
    def person(self) -> str | None:
        """Who the caller is where people are named (an approval's approvers, a run's
        starter): a token's subject, else a key's name (else its id). None for an anonymous
        caller, who says who it is in the request (``by``)."""
        if self.anonymous:
            return None
        return self.subject or self.name or self.actor

    @property
    def actor(self) -> str:
        """Who acted, for audit rows, logs and spans: never the secret itself."""
        if self.key_id is not None:
            return f"key:{self.key_id}"
        if self.subject is not None:
            return f"sub:{self.subject}"
        return "anonymous"

    def sees(self, project: str) -> bool:
        """Whether objects of ``project`` exist for this caller (others answer 404)."""
        return self.project is None or self.project == project


# Without authentication (no key yet, loopback): the caller may do everything, everywhere.
ANONYMOUS = Principal(scopes=frozenset({Scope.ADMIN}), project=None, anonymous=True)


def of_run(execution_id: str, project: str) -> Principal:
    """Who a run acts as while a replica drives it: within its project, as a runner (its
    sub-workflows and credentials come from that project only)."""
    return Principal(
        scopes=frozenset({Scope.RUNNER}), project=project, subject=f"run:{execution_id}"
    )
