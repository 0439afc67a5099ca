"""Named fault points: where tests and chaos runs make the service fail on purpose.

The code marks the moments that matter for durability with ``await faults.hit(name, ...)``
(or :func:`hit_now` where it cannot await). Unarmed, a point costs one truthiness test. Armed,
by the ``OXIFY_FAULTS`` setting (tests and ``bench/chaos.py`` only; a server logs a warning
when it is set) or by :func:`armed` in an in-process test, a point can:

- ``delay`` (``seconds``): wait there, the event loop free (a slow network or disk);
- ``block`` (``seconds``): block the event loop (CPU-bound work where it must not be);
- ``hang``: never return until cancelled (a half-open socket);
- ``drop``: raise ``ConnectionResetError`` (a connection cut mid-call);
- ``error``: raise :class:`FaultInjected` (a bug in that code);
- ``exit``: ``os._exit`` (a kill -9 at exactly that moment);
- ``sigterm``: send this process SIGTERM (a graceful stop at exactly that moment).

A rule acts from its ``skip + 1``-th matching hit, ``times`` times (every time when unset),
each with ``probability`` (seeded by ``seed``: a chaos run can be replayed); ``match`` restricts
it to hits whose context (an execution id, a node key, a node type) contains that text.

Points: ``journal.before_write``, ``journal.after_commit``, ``journal.before_renew``,
``journal.append`` (an event logged beside a driver: a client's pause or cancel),
``claims.before``, ``claims.after``, ``runner.hand_back``, ``notify.before_send``,
``bus.listener``, ``node.execute`` (context: execution id, node key, node type),
``agent.turn`` (before an agent sends a model turn that is not recorded yet; context: execution
id, node key, step name ``turn-<n>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import time
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

Action = Literal["delay", "block", "hang", "drop", "error", "exit", "sigterm"]


class FaultInjected(Exception):
    """A fault point was told to fail here."""


class FaultRule(BaseModel):
    """One fault: what happens at which point, how often."""

    model_config = ConfigDict(extra="forbid")

    point: str = Field(min_length=1)
    action: Action
    seconds: float = Field(default=0.0, ge=0)
    skip: int = Field(default=0, ge=0)
    times: int | None = Field(default=None, ge=1)
    probability: float = Field(default=1.0, ge=0, le=1)
    match: str | None = None
    exit_code: int = 137


class _Armed:
    def __init__(self, rules: Sequence[FaultRule], seed: int | None) -> None:
        self.rules = list(rules)
        self.hits = [0] * len(self.rules)
        self.acted = [0] * len(self.rules)
        self.random = random.Random(seed)

    def choose(self, point: str, context: Sequence[str]) -> FaultRule | None:
        for index, rule in enumerate(self.rules):
            if rule.point != point:
                continue
            if rule.match is not None and not any(rule.match in value for value in context):
                continue
            self.hits[index] += 1
            if self.hits[index] <= rule.skip:
                continue
            if rule.times is not None and self.acted[index] >= rule.times:
                continue
            if rule.probability < 1 and self.random.random() >= rule.probability:
                continue
            self.acted[index] += 1
            return rule
        return None


_armed: _Armed | None = None


def install(rules: Sequence[FaultRule], seed: int | None = None) -> None:
    """Arm ``rules`` for this process (none: disarm)."""
    _set(_Armed(rules, seed) if rules else None)
    if rules:
        log.warning(
            "fault injection is armed: %s", ", ".join(f"{r.point}={r.action}" for r in rules)
        )


@contextlib.contextmanager
def armed(*rules: FaultRule, seed: int | None = None) -> Iterator[None]:
    """Arm ``rules`` for the duration of a block (in-process tests)."""
    previous = _armed
    install(rules, seed)
    try:
        yield
    finally:
        _set(previous)


def _set(value: _Armed | None) -> None:
    global _armed
    _armed = value


async def hit(point: str, *context: str) -> None:
    """A fault point: does what an armed rule for ``point`` says, else nothing."""
    if _armed is None:
        return
    rule = _armed.choose(point, context)
    if rule is None:
        return
    log.warning("fault point %s: %s", point, rule.action)
    if rule.action == "delay":
        await asyncio.sleep(rule.seconds)
    elif rule.action == "hang":
        await asyncio.Event().wait()
    else:
        _act(point, rule)


def hit_now(point: str, *context: str) -> None:
    """A fault point where the code cannot wait (``delay`` and ``hang`` act as ``block``)."""
    if _armed is None:
        return
    rule = _armed.choose(point, context)
    if rule is not None:
        log.warning("fault point %s: %s", point, rule.action)
        _act(point, rule)


def _act(point: str, rule: FaultRule) -> None:
    if rule.action in ("block", "delay", "hang"):
        time.sleep(rule.seconds)
    elif rule.action == "drop":
        raise ConnectionResetError(f"fault injected at {point}: connection dropped")
    elif rule.action == "error":
        raise FaultInjected(f"fault injected at {point}")
    elif rule.action == "exit":
        logging.shutdown()  # the log is written by a thread: the lines above reach stderr first
        os._exit(rule.exit_code)
    elif rule.action == "sigterm":
        os.kill(os.getpid(), signal.SIGTERM)


class FaultyExecutor:
    """A node executor with the ``node.execute`` fault point in front of every attempt (built
    only when faults are configured: the scheduler's inline fast path is given up for it)."""

    inline = False

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    async def execute(self, ctx: Any) -> Any:
        await hit("node.execute", ctx.execution_id, ctx.key, ctx.node.type)
        return await self._inner.execute(ctx)
