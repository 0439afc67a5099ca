"""Pause, cancel and timeout requests for a run, delivered to every graph loop of it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

ControlState = Literal["run", "pause", "cancel", "timeout"]


class RunControl:
    """Pause and cancel requests for a run, delivered to every graph loop of it.

    Cancel wins over pause; a timeout is a cancel that ends the run as ``timed_out``.
    """

    def __init__(self) -> None:
        self.state: ControlState = "run"
        self.pause_reason: str | None = None  # why the driver paused (``shutdown``), if it did
        self._listeners: set[Callable[[], None]] = set()

    @property
    def stopping(self) -> bool:
        return self.state != "run"

    @property
    def cancelling(self) -> bool:
        return self.state in ("cancel", "timeout")

    def pause(self, reason: str | None = None) -> None:
        """Start nothing new; running nodes finish; the run ends as ``paused``.

        ``reason`` is logged with ``workflow.paused``: a pause the run's own replica asks for
        (``shutdown``: it hands the run back to the queue) rather than a client.
        """
        if self.state == "run":
            self.pause_reason = reason
            self._set("pause")

    def cancel(self) -> None:
        """Cancel running nodes now; the run ends as ``cancelled``."""
        if not self.cancelling:
            self._set("cancel")

    def time_out(self) -> None:
        """Like cancel, ending as ``timed_out``."""
        if not self.cancelling:
            self._set("timeout")

    def subscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.add(listener)

    def unsubscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.discard(listener)

    def _set(self, state: ControlState) -> None:
        self.state = state
        for listener in list(self._listeners):
            listener()
