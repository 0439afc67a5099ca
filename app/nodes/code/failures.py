"""What can go wrong running a ``code`` node, as node errors that say what happened.

None is retryable: code that hit a limit or raised does the same when run again with the same
inputs. ``details`` carries ``language`` and, for a limit, which one (``timeout``, ``cpu``,
``memory``, ``output``, ``fuel``, ``processes``).
"""

from __future__ import annotations

from typing import Any

from app.errors import NodeError

EXCERPT_CHARS = 2000  # of a traceback or of what the code printed, kept in an error


class CodeLimitExceeded(NodeError):
    """The code crossed one of its limits and was stopped."""

    code = "code_limit_exceeded"
    retryable = False

    def __init__(self, message: str, *, language: str, limit: str, **details: Any) -> None:
        super().__init__(message, details={"language": language, "limit": limit, **details})


class CodeFailed(NodeError):
    """The code raised, trapped or exited with an error."""

    code = "code_failed"
    retryable = False

    def __init__(self, message: str, *, language: str, **details: Any) -> None:
        super().__init__(message, details={"language": language, **details})


class CodeOutputInvalid(NodeError):
    """The code's result is not JSON."""

    code = "code_output_invalid"
    retryable = False

    def __init__(self, message: str, *, language: str) -> None:
        super().__init__(message, details={"language": language})


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """The end of ``text`` (where a traceback's cause is), at most ``limit`` characters."""
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]
