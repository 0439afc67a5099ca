"""A cooperative bound on one evaluation of an expression: the work it does and what it builds.

Nothing can stop a Python loop from the outside, so the evaluator (and the JSONPath walk it
drives) charges its own work here as it goes. A *step* is one syntax node evaluated inside a
comprehension (elsewhere each node runs once, and the syntax is bounded), one element a builtin
will iterate over, one JSONPath selector applied or match made. *Bytes* approximate the size of
what the evaluation builds, written out: characters of strings, ``ITEM_BYTES`` per list or dict
entry, counted as a tree (a part held twice counts twice; see ``tree_sizes``), and
``MATCH_BYTES`` per JSONPath match.

Two kinds of budget:

- **inline** (``cpu_s`` None): ``INLINE_STEPS`` steps, then :class:`Escalate`. Cheap expressions,
  the common case, finish well within it on the event loop.
- **full**: a CPU-time deadline (``time.thread_time``, read every ``CHECK_EVERY`` steps, so the
  thread's own CPU and not its wait for the GIL is what counts); past it, or once
  :meth:`Budget.cancel` was called, the evaluation stops with :class:`BudgetExceeded`.

Both bound the bytes built the same way.
"""

from __future__ import annotations

import time

INLINE_STEPS = 10_000  # steps an evaluation may take on the event loop (a few milliseconds)
CHECK_EVERY = 1_000  # steps between reads of the CPU clock under a full budget
ITEM_BYTES = 8  # bytes charged per entry of a list, tuple, set or dict an evaluation builds
MATCH_BYTES = 256  # bytes charged per JSONPath match: a datum, its path and its context (measured)
DEFAULT_CPU_S = 2.0  # seconds of CPU for one evaluation, unless the run's limits say otherwise
DEFAULT_MAX_BYTES = 16 * 1024 * 1024  # bytes one evaluation may build, unless limits say otherwise
CPU_SETTING = "OXIFY_MAX_EXPRESSION_CPU_S"
BYTES_SETTING = "OXIFY_MAX_NODE_OUTPUT_BYTES"


class Escalate(Exception):
    """The inline budget is spent: evaluate again, off the event loop, under a full budget."""


class BudgetExceeded(Exception):
    """A full budget is spent (or was cancelled); the message names the limit."""


class Budget:
    """What one evaluation may still spend. Not thread-safe: one evaluation, one thread."""

    __slots__ = ("_cpu_s", "_deadline", "bytes_left", "cancelled", "max_bytes", "steps_left")

    def __init__(self, *, max_bytes: int = DEFAULT_MAX_BYTES, cpu_s: float | None = None) -> None:
        self.max_bytes = max_bytes
        self.bytes_left = max_bytes
        self.steps_left = INLINE_STEPS if cpu_s is None else CHECK_EVERY
        self.cancelled = False
        self._cpu_s = cpu_s
        self._deadline: float | None = None

    def renew(self, max_bytes: int) -> Budget:
        """This inline budget, full again with ``max_bytes``: evaluations on one thread's event
        loop never overlap inline (they run to the end or to :class:`Escalate` without an
        await), so one inline budget per thread serves them all."""
        self.max_bytes = self.bytes_left = max_bytes
        self.steps_left = INLINE_STEPS
        return self

    @classmethod
    def started(cls, *, max_bytes: int = DEFAULT_MAX_BYTES, cpu_s: float = DEFAULT_CPU_S) -> Budget:
        """A full budget whose CPU time starts now, on the calling thread."""
        budget = cls(max_bytes=max_bytes, cpu_s=cpu_s)
        budget.start()
        return budget

    def start(self) -> None:
        """Start the CPU clock; call it on the thread that will evaluate."""
        if self._cpu_s is not None:
            self._deadline = time.thread_time() + self._cpu_s

    def cancel(self) -> None:
        """Ask the evaluation to stop at its next clock check (its caller went away)."""
        self.cancelled = True

    def step(self, count: int = 1) -> None:
        """Charge ``count`` steps of work."""
        self.steps_left -= count
        if self.steps_left < 0:
            self._check()

    def build(self, size: int) -> None:
        """Charge ``size`` bytes of new values."""
        self.bytes_left -= size
        if self.bytes_left < 0:
            raise BudgetExceeded(
                f"the expression built more than {self.max_bytes} bytes of values "
                f"(limit {BYTES_SETTING})"
            )

    def _check(self) -> None:
        if self._cpu_s is None:
            raise Escalate
        if self.cancelled:
            raise BudgetExceeded("the evaluation was cancelled")
        if self._deadline is None:
            self.start()
        elif time.thread_time() > self._deadline:
            raise BudgetExceeded(
                f"the expression used more than {self._cpu_s:g} s of CPU time (limit {CPU_SETTING})"
            )
        self.steps_left = CHECK_EVERY
