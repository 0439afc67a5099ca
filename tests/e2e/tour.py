"""The README's tour as data: its bash block cut into commands, each with what its comment says
it prints, and the printed output cut back into one piece per command.

A command's expectation is its trailing comment (``... | jq .status  # "paused"``) or, for long
answers, the comment line right under it when that holds JSON (``# {"greetings": [...]}``).
Prose comments sit on lines of their own above the commands they explain.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

TOUR_HEADING = "## A five-minute tour"
MARKER = "@@tour-command"
_INLINE = re.compile(r"\s{2,}# (?P<expected>.+)$")
_HEREDOC = re.compile(r"<<-?'?(?P<word>\w+)'?")


@dataclass(frozen=True)
class Command:
    text: str
    expected: str | None  # what the comment says it prints


def tour_block(readme: str) -> str:
    """The first ```bash block after the tour's heading."""
    section = readme[readme.index(TOUR_HEADING) :]
    start = section.index("```bash\n") + len("```bash\n")
    return section[start : section.index("\n```", start) + 1]


def commands(block: str) -> list[Command]:
    """The block's commands in order (continued lines and here-documents joined)."""
    lines = block.splitlines()
    found: list[Command] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#"):
            i += 1
            continue
        parts = [line]
        heredoc = _HEREDOC.search(line)
        while parts[-1].endswith("\\") or heredoc:
            i += 1
            parts.append(lines[i])
            if heredoc and lines[i] == heredoc.group("word"):
                heredoc = None
        i += 1
        inline = _INLINE.search(parts[-1])
        expected = None
        if inline:
            expected = inline.group("expected")
            parts[-1] = parts[-1][: inline.start()]
        elif i < len(lines) and re.match(r"# [\[{\"]", lines[i]):
            expected = lines[i][2:]
            i += 1
        found.append(Command("\n".join(parts), expected))
    return found


def script(found: list[Command]) -> str:
    """A bash script running the commands, each announced by a marker line on stdout."""
    body = [f"printf '\\n{MARKER} %d\\n' {n}\n{c.text}" for n, c in enumerate(found)]
    return "set -euo pipefail\n" + "\n".join(body) + "\n"


def outputs(stdout: str, count: int) -> list[str]:
    """What each of ``count`` commands printed (stripped), from the script's stdout."""
    pieces = re.split(rf"^{MARKER} (\d+)$", stdout, flags=re.MULTILINE)
    printed = {int(n): text.strip() for n, text in zip(pieces[1::2], pieces[2::2], strict=True)}
    return [printed.get(n, "") for n in range(count)]


def matches(expected: str, printed: str) -> bool:
    """JSON equal when the comment is JSON (spacing aside), else the same text."""
    try:
        want: Any = json.loads(expected)
        return bool(want == json.loads(printed))
    except json.JSONDecodeError:
        return expected == printed


@dataclass(frozen=True)
class SseEvent:
    id: int
    event: str
    data: dict[str, Any]


def sse_events(printed: str) -> list[SseEvent]:
    """The events of an SSE body (the retry hint and comment pings left out)."""
    events = []
    for frame in printed.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in frame.splitlines() if ": " in line)
        if "id" in fields:
            events.append(SseEvent(int(fields["id"]), fields["event"], json.loads(fields["data"])))
    return events
