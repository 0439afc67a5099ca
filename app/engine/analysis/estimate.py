"""Tokens and dollars a run of a planned document should spend on its llm and agent nodes,
each as low / expected / high.

Static estimate of one model call (every constant below is listed in the answer):

- input tokens: the prompt text as written (``system``, ``prompt``, ``messages``) counted as
  characters ÷ 4 (no offline tokenizer is used), times :data:`TOKENIZER_SPREAD` (a model's
  tokenizer counts differently: short words take fewer), plus per ``{{ }}`` placeholder
  :data:`PLACEHOLDER_TOKENS` (low / expected / high) for the text it renders to;
- output tokens: one token at least; :data:`EXPECTED_OUTPUT_SHARE` of ``max_tokens`` (else of
  :data:`DEFAULT_OUTPUT_CAP`) expected; all of it at most.

Calls per run: the product of the enclosing loops' sizes (a literal ``foreach`` list or
``repeat`` count, or one named by a whole ``{{ inputs.x }}`` found in the given inputs, is exact;
otherwise 1 / :data:`UNKNOWN_LOOP` / ``max_iterations``); an agent makes 1 / min(3, max_turns) /
``max_turns`` model calls, each resending the transcript: turn ``t`` reads the prompt plus the
``t - 1`` earlier answers. Every node is assumed to run (branches not taken are counted).

Past runs of the version, when given, replace a node's tokens and dollars: min / mean / max of
what each run spent on the node (all iterations and attempts summed).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.domain.analysis import EstimateReport, MeasuredUsage, NodeEstimate, Range
from app.engine.analysis import graphs
from app.engine.compile.plan import Plan, PlanNode

Pricing = Callable[[str, str], tuple[float, float] | None]
"""(provider, model) → (input, output) US dollars per million tokens, or None when unknown."""

TOKENIZER = "chars/4"
CHARS_PER_TOKEN = 4
TOKENIZER_SPREAD = (0.5, 1.0, 1.5)  # low, expected, high multiples of the chars/4 count
PLACEHOLDER_TOKENS = (0, 100, 1000)  # low, expected, high tokens a {{ }} renders to
DEFAULT_OUTPUT_CAP = 4096  # tokens, when max_tokens is not set (or is a template)
EXPECTED_OUTPUT_SHARE = 0.25  # of the output cap
UNKNOWN_LOOP = 10  # expected iterations of a loop whose size is unknown
EXPECTED_TURNS = 3  # an agent's expected model calls (at most max_turns)
DEFAULT_MAX_TURNS = 10
PER_MILLION = 1_000_000

_PLACEHOLDER = re.compile(r"\{\{")


@dataclass(frozen=True, slots=True)
class PastUsage:
    """What one past run spent on one node (every iteration and attempt)."""

    tokens: float
    cost_usd: float | None


def assumptions() -> list[str]:
    """The estimate's assumptions, as the answer lists them."""
    low, mid, high = PLACEHOLDER_TOKENS
    return [
        f"prompt text is counted as characters / {CHARS_PER_TOKEN} (no offline tokenizer), "
        f"times {' / '.join(map(str, TOKENIZER_SPREAD))} (low/expected/high)",
        f"each {{{{ }}}} placeholder renders to {low} / {mid} / {high} tokens (low/expected/high)",
        f"answers are 1 token / {EXPECTED_OUTPUT_SHARE:.0%} / 100% of max_tokens "
        f"({DEFAULT_OUTPUT_CAP} when unset or templated)",
        "loops of unknown size run 1 / "
        f"{UNKNOWN_LOOP} (at most max_iterations) / max_iterations times",
        f"an agent makes 1 / min({EXPECTED_TURNS}, max_turns) / max_turns model calls, each "
        "resending the prompt and the earlier answers (tool results not counted)",
        "every node runs: branches not taken are counted; retries are not",
        "stored sub-workflows (workflow_id) and agents' workflow tools are not followed; "
        "inline sub-workflow graphs are",
        "past runs of this version, when there are any, replace a node's tokens and dollars "
        "with the min / mean / max per run",
        "a templated provider or model is read from the inputs when it is a whole "
        "{{ inputs.x }} given there; else, like a model without a price, it is left out of "
        "the dollars (listed in unpriced_nodes)",
    ]


def estimate(
    plan: Plan,
    pricing: Pricing,
    *,
    inputs: Mapping[str, Any] | None = None,
    past: Mapping[str, Sequence[PastUsage]] | None = None,
) -> EstimateReport:
    """Every llm and agent node's estimate, and their sums."""
    nodes: list[NodeEstimate] = []
    for visit in graphs.walk(plan):
        if visit.node.type in graphs.MODEL_TYPES:
            loops = _loop_sizes(visit.containers, inputs)
            measured = (past or {}).get(visit.key)
            nodes.append(_node(visit.node, loops, pricing, measured or (), inputs))
    priced = [n.cost_usd for n in nodes if n.cost_usd is not None]
    return EstimateReport(
        tokenizer=TOKENIZER,
        nodes=nodes,
        tokens=_sum([n.tokens for n in nodes]),
        cost_usd=_sum(priced),
        unpriced_nodes=[n.node_id for n in nodes if n.cost_usd is None],
        assumptions=assumptions(),
    )


def _node(
    node: PlanNode,
    loops: tuple[float, float, float],
    pricing: Pricing,
    measured: Sequence[PastUsage],
    inputs: Mapping[str, Any] | None,
) -> NodeEstimate:
    config = node.raw_config
    provider, model = (graphs.sized(config.get(key), inputs) for key in ("provider", "model"))
    known = isinstance(provider, str) and isinstance(model, str)
    provider = provider if isinstance(provider, str) else str(config.get("provider"))
    model = model if isinstance(model, str) else str(config.get("model"))
    prompt = _prompt_tokens(config)
    cap = config.get("max_tokens")
    cap = cap if isinstance(cap, int) else DEFAULT_OUTPUT_CAP
    answer = (1, math.ceil(cap * EXPECTED_OUTPUT_SHARE), cap)
    turns = _turns(node)
    calls: list[float] = []
    reads: list[float] = []  # input tokens: low, expected, high
    writes: list[float] = []  # output tokens
    for i in range(3):
        t = turns[i]
        calls.append(loops[i] * t)
        reads.append(loops[i] * (t * prompt[i] + answer[i] * t * (t - 1) / 2))
        writes.append(loops[i] * t * answer[i])
    tokens = _range(a + b for a, b in zip(reads, writes, strict=True))
    price = pricing(provider, model) if known else None
    cost = None
    if price is not None:
        cost = _range(
            (i * price[0] + o * price[1]) / PER_MILLION for i, o in zip(reads, writes, strict=True)
        )
    seen = _measured(measured) if measured else None
    return NodeEstimate(
        node_id=node.id,
        pointer=node.pointer,
        type=node.type,
        provider=provider,
        model=model,
        calls=_range(calls),
        input_tokens=_range(reads),
        output_tokens=_range(writes),
        tokens=seen.tokens if seen is not None else tokens,
        cost_usd=seen.cost_usd if seen is not None and seen.cost_usd is not None else cost,
        basis="past_runs" if seen is not None else "static",
        measured=seen,
    )


def _prompt_tokens(config: Mapping[str, Any]) -> tuple[float, float, float]:
    texts = [config.get("system"), config.get("prompt")]
    texts += [m.get("content") for m in config.get("messages") or () if isinstance(m, Mapping)]
    written = [t for t in texts if isinstance(t, str)]
    chars = sum(len(t) for t in written)
    holes = sum(len(_PLACEHOLDER.findall(t)) for t in written)
    base = math.ceil(chars / CHARS_PER_TOKEN)
    low, expected, high = (
        math.ceil(base * spread) + holes * n
        for spread, n in zip(TOKENIZER_SPREAD, PLACEHOLDER_TOKENS, strict=True)
    )
    return low, expected, high


def _turns(node: PlanNode) -> tuple[int, int, int]:
    if node.type != "agent":
        return (1, 1, 1)
    most = node.raw_config.get("max_turns", DEFAULT_MAX_TURNS)
    most = most if isinstance(most, int) else DEFAULT_MAX_TURNS
    return (1, min(EXPECTED_TURNS, most), most)


def _loop_sizes(
    containers: Sequence[PlanNode], inputs: Mapping[str, Any] | None
) -> tuple[float, float, float]:
    """Iterations of the node's enclosing loops, multiplied (low, expected, high)."""
    low = expected = high = 1.0
    for container in containers:
        size = _loop_size(container, inputs)
        low, expected, high = low * size[0], expected * size[1], high * size[2]
    return low, expected, high


def _loop_size(node: PlanNode, inputs: Mapping[str, Any] | None) -> tuple[float, float, float]:
    config = node.raw_config
    cap = config.get("max_iterations", 1000)
    known: Any = None
    if node.type == "foreach":
        items = graphs.sized(config.get("items"), inputs)
        known = len(items) if isinstance(items, list) else None
    elif node.type == "repeat":
        count = graphs.sized(config.get("count"), inputs)
        known = count if isinstance(count, int) and not isinstance(count, bool) else None
    elif node.type != "while":
        return (1, 1, 1)
    if known is not None:
        n = min(known, cap)
        return (n, n, n)
    return (1, min(UNKNOWN_LOOP, cap), cap)


def _measured(runs: Sequence[PastUsage]) -> MeasuredUsage:
    tokens = [r.tokens for r in runs]
    costs = [r.cost_usd for r in runs if r.cost_usd is not None]
    return MeasuredUsage(
        runs=len(runs),
        tokens=_spread(tokens),
        cost_usd=_spread(costs) if len(costs) == len(runs) else None,
    )


def _spread(values: Sequence[float]) -> Range:
    return Range(low=min(values), expected=math.fsum(values) / len(values), high=max(values))


def _sum(ranges: Sequence[Range]) -> Range:
    return Range(
        low=math.fsum(r.low for r in ranges),
        expected=math.fsum(r.expected for r in ranges),
        high=math.fsum(r.high for r in ranges),
    )


def _range(values: Iterable[float]) -> Range:
    low, expected, high = values
    return Range(low=low, expected=expected, high=high)
