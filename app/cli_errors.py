"""What the ``oxify`` commands tell the user when they stop early, and their exit codes."""

from __future__ import annotations

from collections.abc import Iterable

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_WAITING, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class CliError(Exception):
    """Something to tell the user on stderr, and the exit code that goes with it."""

    def __init__(self, lines: str | Iterable[str], exit_code: int = EXIT_USAGE) -> None:
        self.lines = [lines] if isinstance(lines, str) else list(lines)
        self.exit_code = exit_code
        super().__init__("\n".join(self.lines))
