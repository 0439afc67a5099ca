"""What a run has consumed against its limits (``config.limits``), and the check that stops it.

Three counters with limits: ``nodes`` (node attempts, nested ones and retries included),
``api_calls`` (outbound calls: http, graphql, mcp, llm, embeddings; every retry is a call) and
``tokens`` (LLM input + output). Executors report through ``NodeContext.spend``; the attempt
runner counts nodes. A fourth, ``cost_usd`` (what priced model calls cost), is only added up:
a run's cost is shown, not capped.

The counters survive a takeover through the node records: a record's ``attempt`` is how many
times its node has run (so ``nodes`` needs nothing more), and its ``usage`` holds what the node
spent on calls and tokens over all its attempts so far. A run that continues elsewhere starts
from the sums over its checkpointed records. Calls and tokens that were never recorded (a node
cut off by a crash) are spent again when the node runs again, and counted again.

Only nodes that call out get a per-node entry: a plain node costs a counter increment, not a
dict that the run's records would keep alive (thousands of them weigh on the collector).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from app.domain.run import NodeRecord, RunLimits
from app.errors import RunLimitExceeded

COUNTERS: Final = ("nodes", "api_calls", "tokens")
# What a node's record carries; ``unpriced_calls`` counts priced-by-nobody model calls, whose
# cost is unknown (not zero).
SPENT: Final = ("api_calls", "tokens", "cost_usd", "unpriced_calls")
_LIMIT_OF: Final = {"nodes": "max_nodes", "api_calls": "max_api_calls", "tokens": "max_tokens"}
_UNIT: Final = {"nodes": "node executions", "api_calls": "API calls", "tokens": "tokens"}


class RunUsage:
    """The run's counters, per node key and in total; raises once a limit is crossed."""

    __slots__ = ("_by_key", "_caps", "exceeded", "totals")

    def __init__(self, limits: RunLimits, restored: Iterable[NodeRecord] = ()) -> None:
        self._caps = {
            counter: cap
            for counter in COUNTERS
            if (cap := getattr(limits, _LIMIT_OF[counter])) is not None
        }
        # Calls, tokens and cost of the nodes that spent any.
        self._by_key: dict[str, dict[str, float]] = {}
        self.totals: dict[str, float] = dict.fromkeys(COUNTERS, 0)
        self.totals["cost_usd"] = 0.0
        self.totals["unpriced_calls"] = 0
        for record in restored:
            self.totals["nodes"] += record.attempt
            if record.usage:
                self._by_key[record.key] = spent = dict(record.usage)
                for counter, amount in spent.items():
                    self.totals[counter] = self.totals.get(counter, 0) + amount
        # The error payload of the first limit crossed; once set, the run only winds down.
        self.exceeded: dict[str, Any] | None = None

    def spend(
        self,
        key: str,
        *,
        nodes: int = 0,
        api_calls: int = 0,
        tokens: int = 0,
        cost_usd: float | None = 0.0,
    ) -> None:
        """Count what node ``key`` spent; raise RunLimitExceeded when a limit is now crossed
        (or was crossed before: nothing more may be spent once one is). ``cost_usd`` None: a
        model call without a price."""
        self.totals["nodes"] += nodes
        unpriced = 1 if cost_usd is None else 0
        if api_calls or tokens or cost_usd or unpriced:
            spent = self._by_key.get(key)
            if spent is None:
                spent = self._by_key[key] = {}
            amounts = (api_calls, tokens, cost_usd or 0.0, unpriced)
            for counter, amount in zip(SPENT, amounts, strict=True):
                if amount:
                    spent[counter] = spent.get(counter, 0) + amount
                    self.totals[counter] += amount
        if self.exceeded is None and self._caps:
            self._check(key)
        if self.exceeded is not None:
            raise RunLimitExceeded(self.exceeded["message"], details=self.exceeded["details"])

    def of(self, key: str) -> dict[str, float] | None:
        """What node ``key`` spent on calls, tokens and cost over all its attempts (None when
        nothing; its node executions are its record's ``attempt``)."""
        spent = self._by_key.get(key)
        return dict(spent) if spent else None

    def _check(self, key: str) -> None:
        for counter, cap in self._caps.items():
            used = self.totals[counter]
            if used > cap:
                limit = _LIMIT_OF[counter]
                self.exceeded = {
                    "code": RunLimitExceeded.code,
                    "message": (
                        f"the run crossed limits.{limit} ({cap}): {used} {_UNIT[counter]} "
                        f"counted at node {key!r}"
                    ),
                    "node_id": key,
                    "details": {"limit": limit, "max": cap, "used": dict(self.totals)},
                }
                return
