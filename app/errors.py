"""One root error for everything Oxify raises on purpose.

Each subclass carries a stable ``code`` (clients and tests match on it, never on the text) and
typed fields; its docstring is the default message. The API layer maps these to problem+json;
the engine and services never raise HTTP errors themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    """One precise complaint about an input: where (RFC 6901 JSON pointer) and what."""

    pointer: str
    message: str
    code: str = "invalid"

    def as_dict(self) -> dict[str, str]:
        return {"pointer": self.pointer, "message": self.message, "code": self.code}


class OxifyError(Exception):
    """Oxify failed."""

    code: ClassVar[str] = "oxify_error"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (type(self).__doc__ or self.code).strip().splitlines()[0]
        super().__init__(self.message)


class ExpressionError(OxifyError):
    """The expression is not valid."""

    code = "expression_invalid"

    def __init__(self, message: str | None = None, *, source: str = "") -> None:
        super().__init__(message)
        self.source = source


class ExpressionEvalError(OxifyError):
    """The expression could not be evaluated."""

    code = "expression_failed"

    def __init__(self, message: str | None = None, *, source: str = "") -> None:
        super().__init__(message)
        self.source = source


class ExpressionLimitExceeded(ExpressionEvalError):
    """The expression needed more CPU time or memory than one evaluation may use."""

    code = "expression_limit_exceeded"


class WorkflowInvalid(OxifyError):
    """The workflow document is not valid."""

    code = "workflow_invalid"

    def __init__(self, errors: list[ErrorDetail], message: str | None = None) -> None:
        self.errors = errors
        summary = message or f"{len(errors)} problem(s) in the workflow document"
        super().__init__(summary)

    def __str__(self) -> str:
        lines = [self.message, *(f"  {e.pointer or '/'}: {e.message}" for e in self.errors)]
        return "\n".join(lines)


class InputsInvalid(OxifyError):
    """The run inputs do not match the workflow's input schema."""

    code = "inputs_invalid"

    def __init__(self, errors: list[ErrorDetail]) -> None:
        self.errors = errors
        super().__init__(f"{len(errors)} problem(s) in the run inputs")


class InputsTooLarge(OxifyError):
    """The run inputs are larger than a run may start with."""

    code = "inputs_too_large"

    def __init__(self, message: str) -> None:
        self.errors = [ErrorDetail("/inputs", message, self.code)]
        super().__init__(message)


class WorkflowNotFound(OxifyError):
    """No such workflow."""

    code = "workflow_not_found"


class NodeError(OxifyError):
    """A node failed.

    ``retryable`` tells the scheduler whether the node's retry policy applies: a transient failure
    (timeout, network) is worth another attempt, a broken template is not.
    """

    code = "node_failed"
    retryable: bool = True

    def __init__(
        self,
        message: str | None = None,
        *,
        retryable: bool | None = None,
        details: dict[str, Any] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable
        self.details = details or {}
        # A server's own pacing (HTTP Retry-After) overrides the backoff schedule when given.
        self.retry_after_s = retry_after_s


class QuotaExhausted(NodeError):
    """The tokens/day quota of the run's key or project is used up until the UTC day ends."""

    code = "quota_exhausted"
    retryable = False


class NodeConfigError(NodeError):
    """The node's configuration could not be applied at run time."""

    code = "node_config_invalid"
    retryable = False


class NodeTimeout(NodeError):
    """The node exceeded its timeout."""

    code = "node_timeout"


class LoopLimitExceeded(NodeError):
    """The loop reached its max_iterations guard."""

    code = "loop_limit_exceeded"
    retryable = False


class FailNodeError(NodeError):
    """The workflow reached a fail node."""

    code = "fail_node"
    retryable = False


class FormTimedOut(NodeError):
    """Nobody answered the form or approval by its deadline."""

    code = "form_timed_out"
    retryable = False


class RunLimitExceeded(NodeError):
    """The run exceeded one of its configured limits."""

    code = "run_limit_exceeded"
    retryable = False


class OutputTooLarge(NodeError):
    """The node's output is larger than a node may produce."""

    code = "output_too_large"
    retryable = False


class OutputInvalid(NodeError):
    """The node's output is not a JSON value that can be stored."""

    code = "output_invalid"
    retryable = False


class ExecutionNotFound(OxifyError):
    """No such execution."""

    code = "execution_not_found"


class WorkflowArchived(OxifyError):
    """The workflow is archived: it cannot be run or changed."""

    code = "workflow_archived"


class InvalidState(OxifyError):
    """The execution is not in a state that allows this."""

    code = "invalid_state"


class IdempotencyConflict(OxifyError):
    """This Idempotency-Key was already used with a different request."""

    code = "idempotency_conflict"


class RunConfigInvalid(OxifyError):
    """The run config is not valid."""

    code = "run_config_invalid"

    def __init__(self, errors: list[ErrorDetail]) -> None:
        self.errors = errors
        super().__init__(f"{len(errors)} problem(s) in the run config")


class CursorInvalid(OxifyError, ValueError):
    """The cursor is not one this list handed out."""

    code = "cursor_invalid"


class LeaseLost(BaseException):
    """Another replica took over this run: this driver may not write for it any more.

    A BaseException, like ``GraphInterrupted``: it must stop the whole run on this replica, so
    no executor's ``except Exception`` may turn it into a node failure (which would retry the
    node and repeat its side effects).
    """


class JournalRejected(OxifyError):
    """The database refused to store what the run logged (the data, not the connection)."""

    code = "journal_rejected"


class QueueFull(OxifyError):
    """Too many runs are waiting to start: try again later."""

    code = "queue_full"

    def __init__(self, message: str | None = None, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateLimited(OxifyError):
    """Too many requests: slow down and try again after `Retry-After` seconds.

    ``policy`` names what was counted (``requests``, ``auth_failures``, ``concurrent``,
    ``runs``, ``tokens``), ``quota`` its limit in ``window_s`` seconds (None: no fixed window),
    ``remaining`` what is left and ``retry_after_s`` when to try again: the answer's
    ``RateLimit-Policy`` and ``RateLimit`` headers (IETF httpapi-ratelimit-headers).
    """

    code = "rate_limited"

    def __init__(
        self,
        message: str | None = None,
        *,
        policy: str,
        quota: float,
        window_s: int,
        retry_after_s: int,
        remaining: int = 0,
    ) -> None:
        super().__init__(message)
        self.policy = policy
        self.quota = quota
        self.window_s = window_s
        self.retry_after_s = retry_after_s
        self.remaining = remaining


class QuotaExceeded(RateLimited):
    """A quota of this key or project is used up until its window resets."""

    code = "quota_exceeded"


class DatabaseUnavailable(OxifyError):
    """The database cannot be reached right now: try again shortly."""

    code = "database_unavailable"

    def __init__(self, message: str | None = None, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class FormNotFound(OxifyError):
    """No such form or approval."""

    code = "form_not_found"


class FormClosed(OxifyError):
    """The form or approval takes no more answers (decided, timed out or cancelled)."""

    code = "form_closed"


class FormAlreadyAnswered(OxifyError):
    """This person already answered this approval."""

    code = "form_already_answered"


class NotAnApprover(OxifyError):
    """This person may not answer this approval."""

    code = "not_an_approver"


class RequestInvalid(OxifyError):
    """A body field is not valid for this caller (as the request validation would say)."""

    code = "request_invalid"

    def __init__(self, errors: list[ErrorDetail]) -> None:
        self.errors = errors
        super().__init__(f"{len(errors)} problem(s) in the request")


class SubmissionInvalid(OxifyError):
    """The submitted values do not match the form's fields."""

    code = "submission_invalid"

    def __init__(self, errors: list[ErrorDetail]) -> None:
        self.errors = errors
        super().__init__(f"{len(errors)} problem(s) in the submitted values")


class Unauthenticated(OxifyError):
    """Valid credentials are required: send `Authorization: Bearer <api key or token>`."""

    code = "unauthenticated"

    def __init__(self, message: str | None = None, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s  # set when the caller is being throttled


class InsufficientScope(OxifyError):
    """These credentials do not allow this operation."""

    code = "insufficient_scope"


class IdentityProviderUnavailable(OxifyError):
    """The identity provider's signing keys cannot be fetched right now: try again shortly."""

    code = "identity_provider_unavailable"

    def __init__(self, message: str | None = None, *, retry_after_s: int = 5) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class KeyNotFound(OxifyError):
    """No such API key."""

    code = "key_not_found"


class KeySpecInvalid(OxifyError):
    """The API key cannot be made as asked."""

    code = "key_invalid"


class KeyPepperMissing(OxifyError):
    """API keys need OXIFY_KEY_PEPPER (a server secret of at least 32 characters)."""

    code = "key_pepper_missing"


class CredentialNotFound(OxifyError):
    """No such credential."""

    code = "credential_not_found"


class CredentialExists(OxifyError):
    """A credential of that name exists in the project already: delete it first."""

    code = "credential_exists"


class EncryptionNotConfigured(OxifyError):
    """No encryption key is configured (OXIFY_SECRET_KEYS), so credentials cannot be stored.

    Nothing is ever stored in clear: set OXIFY_SECRET_KEYS to one or more Fernet keys.
    """

    code = "encryption_not_configured"


class CredentialUnreadable(OxifyError):
    """A stored credential cannot be decrypted: no configured key opens it, or it was altered."""

    code = "credential_unreadable"


class CredentialMismatch(CredentialUnreadable):
    """A stored credential's envelope names another credential or project: the ciphertext was
    copied from elsewhere, and is refused."""

    code = "credential_mismatch"


class CredentialInvalid(OxifyError):
    """The credential's fields do not fit its kind."""

    code = "credential_invalid"

    def __init__(self, errors: list[ErrorDetail]) -> None:
        self.errors = errors
        super().__init__(f"{len(errors)} problem(s) in the credential")


class ProjectNotFound(OxifyError):
    """No such project among those these credentials see."""

    code = "project_not_found"
