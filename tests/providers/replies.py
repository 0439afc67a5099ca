"""What a provider server answers: the scripted replies a test queues, and the answer one becomes.

A reply says *what* to answer (text, tool calls, an error, a hang) independent of the wire
protocol; each protocol module renders the resulting :class:`Answer` or :class:`Failure` in its
own format. Tokens are whitespace-separated words: that is how prompts and replies are counted
for usage, so a test can predict the numbers.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Finish = Literal["stop", "length", "tool_calls"]

_PIECES = re.compile(r"\S+\s*|\s+")


def count_tokens(text: str) -> int:
    """Usage tokens of ``text``: its whitespace-separated words."""
    return len(text.split())


def split_tokens(text: str) -> list[str]:
    """``text`` as stream chunks of one word each, trailing spaces kept (they join back)."""
    return _PIECES.findall(text)


@dataclass(frozen=True)
class Echo:
    """The normal answer: for chat, ``"echo: <last user message>"`` one word per chunk; for
    embeddings, the vectors of the inputs. ``delay_s`` passes before anything is sent."""

    delay_s: float = 0.0
    token_delay_s: float = 0.0  # seconds between stream chunks


@dataclass(frozen=True)
class Text:
    """A given text; streamed one word per chunk, or as exactly ``chunks`` when given."""

    text: str
    chunks: Sequence[str] | None = None
    delay_s: float = 0.0
    token_delay_s: float = 0.0
    finish: Literal["stop", "length"] = "stop"

    @classmethod
    def of_json(cls, value: Any, **options: Any) -> Text:
        """A reply whose text is ``value`` as JSON (a model asked for structured output)."""
        return cls(json.dumps(value), **options)


@dataclass(frozen=True)
class Tokens:
    """``count`` tokens (``"tok "`` each), one per chunk, as fast as possible or at ``per_s``
    tokens a second: the benchmark's load."""

    count: int
    per_s: float | None = None
    delay_s: float = 0.0


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None  # the protocol makes one up (call_…, toolu_…) when None


@dataclass(frozen=True)
class ToolCalls:
    """The model calls tools (finish reason ``tool_calls`` / ``tool_use``), after ``text``."""

    calls: Sequence[ToolCall]
    text: str = ""
    delay_s: float = 0.0


@dataclass(frozen=True)
class Failure:
    """An error answer: ``status`` with the protocol's error body built from ``message``
    (``kind`` and ``code`` override the error type/code the protocol picks for the status), or
    exactly ``body`` when given. ``headers`` go out as they are."""

    status: int
    message: str = "scripted failure"
    kind: str | None = None
    code: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    delay_s: float = 0.0

    @classmethod
    def rate_limited(
        cls,
        retry_after_s: float | None = 1.0,
        retry_after_ms: int | None = None,
        message: str = "Rate limit reached for requests",
    ) -> Failure:
        """A 429 with ``Retry-After`` (seconds) and/or ``retry-after-ms``."""
        headers = {}
        if retry_after_s is not None:
            headers["retry-after"] = f"{retry_after_s:g}"
        if retry_after_ms is not None:
            headers["retry-after-ms"] = str(retry_after_ms)
        return cls(429, message, headers=headers)


@dataclass(frozen=True)
class Hang:
    """Stream ``tokens`` chunks of the echo reply, then send nothing more until the client
    disconnects (a non-streaming request gets no answer at all). The server counts the
    disconnect in ``disconnects``; stopping the server ends the stream."""

    tokens: int = 2
    delay_s: float = 0.0


Reply = Echo | Text | Tokens | ToolCalls | Failure | Hang
EmbedReply = Echo | Failure | Hang


@dataclass(frozen=True)
class Answer:
    """A successful chat answer, ready to render in any protocol."""

    chunks: Sequence[str]
    tool_calls: Sequence[ToolCall] = ()
    finish: Finish = "stop"
    token_delay_s: float = 0.0
    hang: bool = False
    prompt_tokens: int = 0

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    @property
    def completion_tokens(self) -> int:
        arguments = " ".join(json.dumps(call.arguments) for call in self.tool_calls)
        return count_tokens(self.text) + count_tokens(arguments)

    def limited(self, max_tokens: int | None) -> Answer:
        """Cut to ``max_tokens`` words (finish ``length``), as a model stops at its limit."""
        if max_tokens is None or self.tool_calls or count_tokens(self.text) <= max_tokens:
            return self
        kept: list[str] = []
        words = 0
        for chunk in self.chunks:
            words += count_tokens(chunk)
            if words > max_tokens:
                break
            kept.append(chunk)
        return replace(self, chunks=kept, finish="length")


def answer(reply: Reply, last_user: str, prompt_tokens: int) -> Answer | Failure:
    """The answer ``reply`` makes to a chat whose last user message is ``last_user``."""
    echo = split_tokens(f"echo: {last_user}")
    match reply:
        case Failure():
            return reply
        case Echo(token_delay_s=delay):
            return Answer(echo, token_delay_s=delay, prompt_tokens=prompt_tokens)
        case Text(text=text, chunks=chunks, token_delay_s=delay, finish=finish):
            pieces = list(chunks) if chunks is not None else split_tokens(text)
            return Answer(pieces, finish=finish, token_delay_s=delay, prompt_tokens=prompt_tokens)
        case Tokens(count=count, per_s=per_s):
            delay = 0.0 if per_s is None else 1.0 / per_s
            return Answer(["tok "] * count, token_delay_s=delay, prompt_tokens=prompt_tokens)
        case ToolCalls(calls=calls, text=text):
            return Answer(
                split_tokens(text), calls, finish="tool_calls", prompt_tokens=prompt_tokens
            )
        case Hang(tokens=tokens):
            return Answer(echo[:tokens], hang=True, prompt_tokens=prompt_tokens)


def fragments(text: str, parts: int = 3) -> list[str]:
    """``text`` in about ``parts`` pieces: how providers stream a tool call's JSON arguments."""
    size = max(1, math.ceil(len(text) / parts))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and "text" in p)
    return ""


def prompt(messages: Any, system: Any = "") -> tuple[str, int]:
    """The last user message's text, and the usage tokens of the whole prompt."""
    turns = messages if isinstance(messages, list) else []
    texts = [text_of(system)] + [text_of(m.get("content")) for m in turns]
    users = [text_of(m.get("content")) for m in turns if m.get("role") == "user"]
    return (users[-1] if users else ""), sum(count_tokens(t) for t in texts)
