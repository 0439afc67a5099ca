"""What `oxify run` shows on stderr while a run goes: live (rich), plain lines, or nothing.

A display is a context manager around the run and a listener of the memory store's event
batches (``MemoryStore.subscribe``). The live display keeps a progress bar (completed / total
nodes, from ``progress.update``) and prints a line above it as each node finishes; the plain
display prints the same lines without colour or cursor movement, for logs and pipes. Nested
node keys (``loop[2].double``) are indented by depth and, live, dimmed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from app.domain.events import Event, EventType

MAX_DETAIL_CHARS = 200  # characters of an error message shown on one line
TRY_BLOCKS = frozenset({"try", "catch", "finally"})  # key segments naming a block, not a node


@dataclass(frozen=True, slots=True)
class NodeLine:
    """One finished (or retried, or waiting) node, ready to print."""

    symbol: str
    style: str
    key: str
    detail: str

    @property
    def depth(self) -> int:
        """How deep the node is nested: ``loop[2].double`` and ``guard.try.check`` are 1."""
        parts = self.key.split(".")
        blocks = sum(1 for part in parts[1:-1] if part in TRY_BLOCKS)
        return len(parts) - 1 - blocks

    def plain(self) -> str:
        text = f"{self.symbol} {'  ' * self.depth}{self.key}"
        return f"{text} {self.detail}" if self.detail else text


def describe(event: Event) -> NodeLine | None:
    """The line for a node event worth showing, or None (started, progress, level, …)."""
    key, data = event.node_id or "?", event.data
    match event.type:
        case EventType.NODE_COMPLETED:
            return NodeLine("✓", "green", key, _duration(data.get("duration_ms")))
        case EventType.NODE_FAILED:
            tolerated = " (tolerated, the run goes on)" if data.get("tolerated") else ""
            return NodeLine("✗", "red", key, f"{_message(data)}{tolerated}")
        case EventType.NODE_SKIPPED:
            return NodeLine("↷", "yellow", key, "skipped")
        case EventType.NODE_RETRY:
            delay = _duration(data.get("delay_ms"))
            detail = f"retry {data.get('retry')} in {delay.strip('()')}: {_message(data)}"
            return NodeLine("↻", "magenta", key, detail)
        case EventType.NODE_WAITING:
            return NodeLine("…", "cyan", key, f"waiting: {data.get('reason', '')}")
        case EventType.NODE_CANCELLED:
            return NodeLine("⊘", "red", key, "cancelled")
    return None


def _duration(ms: Any) -> str:
    if not isinstance(ms, int | float):
        return ""
    return f"({ms:.1f} ms)" if ms < 1000 else f"({ms / 1000:.2f} s)"


def _count(nodes: int) -> str:
    return f"{nodes} node" if nodes == 1 else f"{nodes} nodes"


def _message(data: dict[str, Any]) -> str:
    error = data.get("error") or {}
    message = str(error.get("message", "")).replace("\n", " ")
    if len(message) > MAX_DETAIL_CHARS:
        message = message[: MAX_DETAIL_CHARS - 1] + "…"
    return message


class Display(Protocol):
    def __enter__(self) -> Display: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def on_events(self, batch: Sequence[Event]) -> None: ...

    def note(self, text: str) -> None: ...


class _Base:
    """Counts, the summary line, and the context-manager plumbing shared by displays."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.completed = 0
        self.total = 0
        self.started = time.monotonic()

    def __enter__(self) -> Self:
        self.started = time.monotonic()
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def on_events(self, batch: Sequence[Event]) -> None:
        for event in batch:
            if event.type is EventType.WORKFLOW_STARTED:
                self.total = int(event.data.get("total_nodes", 0))
                self.on_started()
            elif event.type is EventType.PROGRESS_UPDATE:
                self.completed = int(event.data.get("completed", 0))
                self.total = int(event.data.get("total", self.total))
                self.on_progress()
            elif event.type.value.startswith("workflow."):
                self.on_finished(event.type.value.removeprefix("workflow."))
            elif (line := describe(event)) is not None:
                self.on_line(line)

    def summary(self, status: str) -> str:
        elapsed = time.monotonic() - self.started
        return f"{status}: {self.completed}/{_count(self.total)} in {elapsed:.2f} s"

    def on_started(self) -> None:
        pass

    def on_progress(self) -> None:
        pass

    def on_finished(self, status: str) -> None:
        pass

    def on_line(self, line: NodeLine) -> None:
        pass

    def note(self, text: str) -> None:
        pass


class NullDisplay(_Base):
    """Shows nothing (``--quiet``)."""


class PlainDisplay(_Base):
    """One line per finished node and a summary: for logs, pipes and CI."""

    def __init__(self, name: str, stream: TextIO) -> None:
        super().__init__(name)
        self.stream = stream

    def _write(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def on_started(self) -> None:
        self._write(f"▶ {self.name}: {_count(self.total)}")

    def on_line(self, line: NodeLine) -> None:
        self._write(line.plain())

    def on_finished(self, status: str) -> None:
        self._write(f"■ {self.summary(status)}")

    def note(self, text: str) -> None:
        self._write(text)


class LiveDisplay(_Base):
    """A rich progress bar on stderr with node lines printed above it."""

    def __init__(self, name: str, console: Console) -> None:
        super().__init__(name)
        self.console = console
        self.progress = Progress(
            SpinnerColumn(finished_text="■"),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("[dim]{task.fields[status]}"),
            console=console,
        )
        self.task: TaskID | None = None
        self.running: dict[str, None] = {}  # top-level nodes in flight, in start order

    def start(self) -> None:
        self.task = self.progress.add_task(self.name, total=None, status="")
        self.progress.start()

    def stop(self) -> None:
        self.progress.stop()

    def _update(self, **fields: Any) -> None:
        if self.task is not None:
            self.progress.update(self.task, **fields)

    def on_started(self) -> None:
        self._update(total=self.total or None, completed=0)

    def on_progress(self) -> None:
        self._update(total=self.total or None, completed=self.completed)

    def on_finished(self, status: str) -> None:
        self._update(status=status)
        if self.task is not None and status != "completed":
            self.progress.stop_task(self.task)

    def on_events(self, batch: Sequence[Event]) -> None:
        before = list(self.running)
        for event in batch:
            key = event.node_id
            if key is None or "." in key:
                continue
            if event.type is EventType.NODE_STARTED:
                self.running[key] = None
            elif event.type is not EventType.NODE_RETRY:
                self.running.pop(key, None)
        if list(self.running) != before:
            shown = ", ".join(self.running)
            self._update(status=f"running: {shown}" if shown else "")
        super().on_events(batch)

    def on_line(self, line: NodeLine) -> None:
        nested = line.depth > 0
        text = Text("  " * line.depth)
        text.append(line.symbol, style=line.style)
        text.append(" ")
        text.append(line.key, style="dim" if nested else "bold")
        if line.detail:
            detail_style = "dim" if nested or line.symbol == "✓" else line.style
            text.append(" ")
            text.append(line.detail, style=detail_style)
        self.progress.console.print(text, highlight=False)

    def note(self, text: str) -> None:
        self.progress.console.print(Text(text, style="yellow"))


def make_display(name: str, *, quiet: bool, stream: TextIO) -> Display:
    """Nothing with ``quiet``; live on a terminal; plain lines otherwise."""
    if quiet:
        return NullDisplay(name)
    if stream.isatty():
        return LiveDisplay(name, Console(file=stream))
    return PlainDisplay(name, stream)
