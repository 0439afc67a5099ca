"""Random DAG workflows for the scheduler's property tests, and a reference model of them.

A generated :class:`DagCase` is a workflow document whose node ``n<i>`` only has edges from
lower indices (acyclic by construction), run inputs that decide every ``if`` node's branch, and
a run config. Node outputs are integers that digest the outputs of the node's sources, so data
flow (and its replay on resume) is observable in the outputs.

:func:`reference` predicts the final status and output of every node with plain loops over the
document, following the contract's "Branching and joins" text; it shares no code with the
engine's planner.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from hypothesis import strategies as st

from app.domain.events import Event, EventType
from app.domain.status import NodeStatus
from tests.support import edge, node, workflow

MOD = 1_000_003  # outputs are digests modulo this prime
COEFFICIENTS = (3, 5, 7, 11, 13, 17, 19, 23)  # weight of a node's k-th source in its digest
FAIL_FOREVER = 1_000  # probe failures: more than any retry policy here allows
MAX_SOURCES = 3  # distinct sources per node
Probe = Literal["ok", "flaky", "fail"]
PROBES: tuple[Probe, ...] = ("ok", "ok", "ok", "flaky", "fail")  # sampled uniformly
Strategy = Literal["skip", "defaults", "fail"]
CHECKPOINT_POLICIES: tuple[Any, ...] = (
    "every_node",
    "every_level",
    {"every_n_nodes": 3},
    {"every_n_levels": 2},
    "never",
)
NODE_EVENTS = frozenset(
    {
        EventType.NODE_STARTED,
        EventType.NODE_COMPLETED,
        EventType.NODE_FAILED,
        EventType.NODE_SKIPPED,
        EventType.NODE_CANCELLED,
    }
)
TERMINAL_NODE_EVENTS = NODE_EVENTS - {EventType.NODE_STARTED}


@dataclass(frozen=True)
class DagCase:
    """A document, its run inputs and config, and the sources of each node in edge order."""

    document: dict[str, Any]
    inputs: dict[str, bool]
    config: dict[str, Any]
    seed: int
    sources: dict[str, list[str]]

    @property
    def node_ids(self) -> list[str]:
        return [n["id"] for n in self.document["nodes"]]

    @property
    def strategy(self) -> Strategy:
        strategy: Strategy = self.config.get("dependency_strategy", "skip")
        return strategy

    def __repr__(self) -> str:  # hypothesis prints this for a falsifying example
        return (
            f"DagCase(document={self.document!r}, inputs={self.inputs!r}, "
            f"config={self.config!r}, seed={self.seed!r})"
        )


def digest(index: int, source_outputs: Sequence[Any]) -> int:
    """The output of node ``n<index>`` given its sources' outputs (None: no result)."""
    total = index
    for coefficient, value in zip(COEFFICIENTS, source_outputs, strict=False):
        total += coefficient * int(value or 0)
    return total % MOD


def digest_template(index: int, sources: Sequence[str]) -> str:
    """The template computing :func:`digest` in the engine's expression language.

    ``jsonpath_first`` gives null for a source without a result (skipped), so the template never
    fails; ``or 0`` maps null and false to 0.
    """
    terms = [str(index)] + [
        f"{c} * int(jsonpath_first('$.{s}.output') or 0)"
        for c, s in zip(COEFFICIENTS, sources, strict=False)
    ]
    return "{{ (" + " + ".join(terms) + f") % {MOD}" + " }}"


@st.composite
def dag_cases(
    draw: st.DrawFn,
    *,
    max_nodes: int = 250,
    failures: bool = True,
    sleeps: Sequence[float] = (0.0,),
    policies: Sequence[Any] = CHECKPOINT_POLICIES,
    max_concurrency: int = 8,
) -> DagCase:
    """A random DAG of ``transform``, ``if`` and ``probe`` nodes with a random run config.

    ``failures`` adds probes that fail for good (with random ``continue_on_error``/``critical``)
    and flaky probes that succeed on a retry, plus a random dependency strategy and run-level
    ``continue_on_error``. Probes sleep one of ``sleeps`` seconds per attempt.
    """
    size = draw(st.integers(1, max_nodes), label="nodes")
    # Half the cases tolerate every failure, so the whole graph runs (else most large graphs
    # would stop at their first untolerated failure).
    tolerant = failures and draw(st.booleans(), label="tolerate every failure")
    kinds = ["transform", "if", "probe"]
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    inputs: dict[str, bool] = {}
    sources: dict[str, list[str]] = {}
    for i in range(size):
        node_id = f"n{i}"
        preds = _draw_sources(draw, i)
        sources[node_id] = [f"n{p}" for p in preds]
        for p in preds:
            edges.extend(_draw_edges(draw, nodes[p], node_id))
        kind = draw(st.sampled_from(kinds))
        value = digest_template(i, sources[node_id])
        flags: dict[str, Any] = {}
        if failures:
            flags = {
                "continue_on_error": tolerant or draw(st.booleans()),
                "critical": draw(st.booleans()),
            }
        if kind == "transform":
            nodes.append(node(node_id, value=value, **flags))
        elif kind == "if":
            inputs[node_id] = draw(st.booleans())
            nodes.append(node(node_id, "if", condition=f"inputs.{node_id}", **flags))
        else:
            probe: Probe = draw(st.sampled_from(PROBES)) if failures else "ok"
            probe_config = _probe_config(draw, probe, sleeps)
            nodes.append(node(node_id, "probe", value=value, **probe_config, **flags))
    config: dict[str, Any] = {
        "max_concurrency": draw(st.integers(1, max_concurrency)),
        "checkpoint": draw(st.sampled_from(list(policies))),
    }
    if failures:
        config["dependency_strategy"] = draw(st.sampled_from(["skip", "defaults", "fail"]))
        config["continue_on_error"] = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    return DagCase(workflow(nodes, edges), inputs, config, seed, sources)


@st.composite
def paused_cases(draw: st.DrawFn, /, **kwargs: Any) -> tuple[DagCase, list[int]]:
    """A failure-free case and 1-3 sorted counts of ``node.completed`` to pause after."""
    case = draw(dag_cases(failures=False, **kwargs))
    total = sum(s is NodeStatus.COMPLETED for s in reference(case).status.values())
    counts = st.lists(st.integers(1, total), min_size=1, max_size=3, unique=True)
    return case, draw(counts.map(sorted), label="pause after completions")


def dag_case(
    kinds: str,
    edges: Sequence[tuple[int, int, str | None]] = (),
    *,
    inputs: dict[str, bool] | None = None,
    **config: Any,
) -> DagCase:
    """A hand-written case: ``kinds`` has one letter per node (``t`` transform, ``i`` if,
    ``p`` probe), ``edges`` are ``(source, target, branch)`` index triples."""
    sources: dict[str, list[str]] = {f"n{i}": [] for i in range(len(kinds))}
    for source, target, _ in edges:
        if f"n{source}" not in sources[f"n{target}"]:
            sources[f"n{target}"].append(f"n{source}")
    nodes: list[dict[str, Any]] = []
    for i, kind in enumerate(kinds):
        node_id = f"n{i}"
        value = digest_template(i, sources[node_id])
        if kind == "i":
            nodes.append(node(node_id, "if", condition=f"inputs.{node_id}"))
        else:
            nodes.append(node(node_id, "probe" if kind == "p" else "transform", value=value))
    document = workflow(nodes, [edge(f"n{s}", f"n{t}", b) for s, t, b in edges])
    return DagCase(document, inputs or {}, {"max_concurrency": 1, **config}, 0, sources)


def _draw_sources(draw: st.DrawFn, i: int) -> list[int]:
    """0-3 distinct lower indices, mostly near ``i`` (deep graphs), sometimes anywhere (joins)."""
    if i == 0:
        return []
    count = (0, 1, 1, 1, 1, 2, 2, 3)[draw(st.integers(0, 7))]
    chosen: list[int] = []
    for _ in range(min(count, i, MAX_SOURCES)):
        if draw(st.booleans()):
            p = i - 1 - draw(st.integers(0, min(i - 1, 4)))
        else:
            p = draw(st.integers(0, i - 1))
        if p not in chosen:
            chosen.append(p)
    return chosen


def _draw_edges(draw: st.DrawFn, source: dict[str, Any], target: str) -> list[dict[str, Any]]:
    """One edge; from an ``if`` usually labelled, sometimes unlabelled or one per branch."""
    if source["type"] != "if":
        return [edge(source["id"], target)]
    label = draw(st.sampled_from(["true", "false", "true", "false", "none", "both"]))
    if label == "none":
        return [edge(source["id"], target)]
    if label == "both":
        return [edge(source["id"], target, "true"), edge(source["id"], target, "false")]
    return [edge(source["id"], target, label)]


def _probe_config(draw: st.DrawFn, probe: Probe, sleeps: Sequence[float]) -> dict[str, Any]:
    config: dict[str, Any] = {"sleep_s": draw(st.sampled_from(list(sleeps)))}
    if probe == "flaky":
        config["fail_times"] = 1
        config["retry"] = {"max_retries": draw(st.integers(1, 2)), "initial_delay_ms": 10}
    elif probe == "fail":
        config["fail_times"] = FAIL_FOREVER
        retries = draw(st.integers(0, 2))
        if retries:
            config["retry"] = {"max_retries": retries, "initial_delay_ms": 10}
    return config


# -- the reference model ---------------------------------------------------------------------


@dataclass
class Expected:
    """What the contract says a run of a :class:`DagCase` ends with.

    ``status`` is each node's final status were the run never halted, except that a node
    downstream (along any edge) of an untolerated failure is ``cancelled``: the run stops there
    and nothing propagates along that failure's edges. ``untolerated`` lists the nodes whose
    failure fails the run; the run fails iff it is non-empty.
    """

    status: dict[str, NodeStatus] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    branch: dict[str, str] = field(default_factory=dict)
    untolerated: list[str] = field(default_factory=list)
    run_output: Any = None

    @property
    def skipped(self) -> set[str]:
        return {n for n, s in self.status.items() if s is NodeStatus.SKIPPED}


def reference(case: DagCase) -> Expected:
    """Walk the nodes in index order (a topological order here) and apply the contract.

    An incoming edge is live when its source completed and the edge has no branch or the
    branch the source took; dead when the source was skipped or took another branch. A
    tolerated failure makes it dead (``skip``), live (``defaults``) or poisoned (``fail``: the
    dependant fails). A node with a poisoned input fails; else one with a live input (or no
    input) runs; else it is skipped.
    """
    doc, config = case.document, case.config
    incoming: dict[str, list[tuple[str, str | None]]] = {n: [] for n in case.node_ids}
    for e in doc["edges"]:
        incoming[e["to"]].append((e["from"], e.get("branch")))
    expected = Expected()
    status, outputs = expected.status, expected.outputs
    results: dict[str, Any] = {}  # what a node's digest sees: completed or tolerated-failed
    blocked: set[str] = set()  # untolerated failures and everything after them
    run_tolerates = bool(config.get("continue_on_error", False))
    for index, spec in enumerate(doc["nodes"]):
        node_id = spec["id"]
        ins = incoming[node_id]
        if any(src in blocked for src, _ in ins):
            status[node_id] = NodeStatus.CANCELLED
            blocked.add(node_id)
            continue
        taken = expected.branch
        states = [_edge(status[src], label, taken.get(src), case.strategy) for src, label in ins]
        if "poisoned" in states:
            ends = NodeStatus.FAILED
        elif ins and "live" not in states:
            ends = NodeStatus.SKIPPED
        elif spec["type"] == "probe" and _fails(spec):
            ends = NodeStatus.FAILED
        else:
            ends = NodeStatus.COMPLETED
        status[node_id] = ends
        if ends is NodeStatus.COMPLETED:
            if spec["type"] == "if":
                outputs[node_id] = bool(case.inputs[node_id])
                expected.branch[node_id] = "true" if outputs[node_id] else "false"
            else:
                outputs[node_id] = digest(index, [results.get(s) for s in case.sources[node_id]])
            results[node_id] = outputs[node_id]
        elif ends is NodeStatus.FAILED:
            tolerated = spec.get("continue_on_error", False) or (
                not spec.get("critical", True) and run_tolerates
            )
            if tolerated:
                results[node_id] = None
            else:
                expected.untolerated.append(node_id)
                blocked.add(node_id)
    # The graph's output: the last completed node's in topological order (index order here).
    last = [n for n in reversed(case.node_ids) if status[n] is NodeStatus.COMPLETED]
    expected.run_output = outputs[last[0]] if last else None
    return expected


def _edge(source: NodeStatus, branch: str | None, taken: str | None, strategy: Strategy) -> str:
    if source is NodeStatus.COMPLETED:
        return "live" if branch is None or branch == taken else "dead"
    if source is NodeStatus.FAILED:
        return {"skip": "dead", "defaults": "live", "fail": "poisoned"}[strategy]
    return "dead"


def _fails(spec: dict[str, Any]) -> bool:
    retries: int = (spec.get("retry") or {}).get("max_retries", 0)
    fail_times: int = spec["config"].get("fail_times", 0)
    return fail_times > retries


# -- reading event logs ----------------------------------------------------------------------


def positions(events: Sequence[Event], types: frozenset[EventType]) -> dict[str, list[int]]:
    """Node id -> positions in ``events`` of that node's events of ``types``."""
    found: dict[str, list[int]] = {}
    for i, event in enumerate(events):
        if event.type in types and event.node_id is not None:
            found.setdefault(event.node_id, []).append(i)
    return found


def terminal_counts(events: Sequence[Event]) -> Counter[str]:
    """How many terminal node events (completed/failed/skipped/cancelled) each node has."""
    return Counter(e.node_id for e in events if e.type in TERMINAL_NODE_EVENTS and e.node_id)
