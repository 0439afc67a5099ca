"""Validate workflow documents, plan them, and cache the plans by content hash.

A plan is built once per distinct document and shared read-only by every run of it. Validation
reports every problem at once, each with an RFC 6901 pointer into the document and a stable
code; planning adds typed configs, compiled expressions and templates, adjacency, a
deterministic topological order and levels (see :mod:`app.engine.compile.builder`).

Codes and where they point:

- ``missing_field``, ``unknown_field``, ``invalid_value``: the document's shape, where pydantic
  found it (``/name``, ``/edges/2/colour``, ``/nodes/0/id``); a union's complaints are merged.
- ``duplicate_id`` ``/nodes/i/id`` and ``multiple_starts`` ``/nodes/i/type``: the second one.
- ``unknown_type`` ``/nodes/i/type`` (the message lists the known types).
- ``invalid_config`` ``/nodes/i/config/seconds``: the config fails its type's schema.
- ``invalid_expression`` ``/nodes/i/config/condition``; ``invalid_template`` at the bad string
  (``/nodes/i/config/value/items/2``, ``/outputs/x``); literal arithmetic past the evaluation
  bounds (``9 ** 9 ** 9``) is one.
- ``unknown_reference`` at the string that uses the name: a name that is not ``inputs``,
  ``vars``, a node id of its graph or of the graphs around it, nor bound there by a node
  (``item`` in a loop body; see ``NodeConfig.bindings``).
- ``unknown_node`` ``/edges/j/from`` or ``/edges/j/to``; ``self_loop`` ``/edges/j``;
  ``duplicate_edge`` ``/edges/j`` (same from, to and branch as an earlier edge);
  ``start_has_incoming`` ``/edges/j/to``; ``invalid_branch`` ``/edges/j/branch``.
- ``cycle`` ``/edges/j``, the edge closing it: "cycle: a → b → c → a" (one per cycle found;
  not checked while edges name unknown nodes).
- ``invalid_schema`` ``/inputs/...``: ``inputs`` is not a JSON Schema.
- ``limit_exceeded``: ``/nodes`` or ``/edges`` (totals, nested graphs included), a nested
  graph's field (depth), an expression's field (length).

Nested graphs use the same pointers below their field: ``/nodes/1/config/body/nodes/0/...``
(``body``, ``try``, ``catch``, ``finally``, ``graph``); node ids are scoped to their graph.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import orjson

from app.domain.node_types import CORE_NODE_TYPES, NodeTypes
from app.domain.workflow import GraphSpec, WorkflowDocument
from app.engine.compile import shape as graph_shape
from app.engine.compile.builder import DEFAULT_LIMITS, GraphBuilder, Limits
from app.engine.compile.plan import Plan
from app.errors import ErrorDetail, WorkflowInvalid

__all__ = [
    "DEFAULT_LIMITS",
    "Limits",
    "PlanCache",
    "content_hash",
    "default_plan_cache",
    "plan_graph",
    "plan_workflow",
    "validate_workflow",
]

Document = Mapping[str, Any] | WorkflowDocument
_CANONICAL = json.JSONEncoder(
    sort_keys=True,
    separators=(",", ":"),
    ensure_ascii=False,
    check_circular=False,  # ~20% faster; a self-containing document ends in RecursionError
    default=repr,
)


def plan_workflow(
    document: Document,
    *,
    node_types: NodeTypes = CORE_NODE_TYPES,
    limits: Limits = DEFAULT_LIMITS,
) -> Plan:
    """Validate ``document`` and build its plan.

    Raises WorkflowInvalid listing every problem found (never just the first). The plan is
    complete and consistent: every edge runs forward in ``order``, ``level`` of a target
    exceeds its source's, nested graphs are planned too, and ``content_hash`` is set.
    """
    return _plan(document, node_types, limits, None)


def validate_workflow(
    document: Document,
    *,
    node_types: NodeTypes = CORE_NODE_TYPES,
    limits: Limits = DEFAULT_LIMITS,
) -> list[ErrorDetail]:
    """Every problem of ``document`` (the same checks as planning), or [] when it is valid."""
    builder = GraphBuilder(node_types, limits)
    with gc_paused():
        builder.document(document)
    return builder.errors


def plan_graph(
    graph: GraphSpec,
    *,
    pointer: str,
    node_types: NodeTypes = CORE_NODE_TYPES,
    limits: Limits = DEFAULT_LIMITS,
    depth: int = 0,
) -> Plan:
    """Validate and plan one already-parsed graph whose pointer in its document is ``pointer``.

    For sub-workflows loaded at run time and nested graphs: ids are scoped to this graph,
    error pointers start with ``pointer``, containers inside count depth from ``depth``, and an
    InlineWorkflow's ``outputs`` become ``Plan.outputs``. Raises WorkflowInvalid like
    :func:`plan_workflow`.
    """
    builder = GraphBuilder(node_types, limits)
    plan = None
    with gc_paused():
        if builder.depth_ok(pointer, depth):
            parts = builder.graph_from_model(graph, pointer)
            if parts is not None:
                graph_shape.detach(parts)
                plan = builder.graph(parts, depth, None)
    if plan is None:
        raise WorkflowInvalid(builder.errors or [ErrorDetail(pointer, "invalid graph")])
    return plan


def content_hash(document: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``document``: sorted keys, no whitespace, UTF-8.

    Documents equal as JSON hash equal whatever their key order; values JSON cannot hold are
    written with ``repr`` so hashing never fails on them. Raises ValueError for a document
    nested deeper than the interpreter's recursion limit (or that contains itself).
    """
    try:
        # orjson writes the same canonical text ten times faster; the stdlib encoder takes what
        # it refuses (integers beyond 64 bits, surrogates, values JSON cannot hold).
        data = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        try:
            data = _CANONICAL.encode(document).encode("utf-8", "surrogatepass")
        except RecursionError:
            raise ValueError("the document is nested too deeply or contains itself") from None
    return hashlib.sha256(data).hexdigest()


class PlanCache:
    """LRU cache of plans keyed by content hash, node-type registry (identity) and limits.

    Plans are shared by every caller that asks for an equal document: treat them as read-only.
    Documents that fail validation are not cached. A lock guards the bookkeeping only; two
    threads missing on the same document may both plan it (the results are equivalent).
    """

    def __init__(self, maxsize: int = 100) -> None:
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[tuple[str, int, Limits], tuple[NodeTypes, Plan]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get_or_plan(
        self,
        document: Document,
        *,
        node_types: NodeTypes = CORE_NODE_TYPES,
        limits: Limits = DEFAULT_LIMITS,
    ) -> Plan:
        """The cached plan of an equal document, else :func:`plan_workflow`'s (then cached)."""
        digest = _document_hash(document)
        key = (digest, id(node_types), limits)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] is node_types:
                self._entries.move_to_end(key)
                self.hits += 1
                return entry[1]
            self.misses += 1
        plan = _plan(document, node_types, limits, digest)
        with self._lock:
            self._entries[key] = (node_types, plan)  # holding node_types pins its id
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
        return plan

    async def get_or_plan_async(
        self,
        document: Document,
        *,
        node_types: NodeTypes = CORE_NODE_TYPES,
        limits: Limits = DEFAULT_LIMITS,
    ) -> Plan:
        """:meth:`get_or_plan` in a worker thread, for callers on an event loop.

        Hashing and planning take time in proportion to the document (10,000 nodes: ~4 ms to
        hash, ~60 ms to plan) and the loop must not stop for that. The hop costs about what
        planning a two-node document does (~50 µs), so every document takes it: a size check
        that also counted nested graphs would walk the document on the loop.
        """
        return await asyncio.to_thread(
            self.get_or_plan, document, node_types=node_types, limits=limits
        )

    def clear(self) -> None:
        """Forget every plan and reset the counters."""
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0


default_plan_cache = PlanCache()


def _plan(document: Document, node_types: NodeTypes, limits: Limits, digest: str | None) -> Plan:
    builder = GraphBuilder(node_types, limits)
    with gc_paused():
        plan = builder.document(document)
    if plan is None:
        raise WorkflowInvalid(builder.errors or [ErrorDetail("", "invalid workflow")])
    plan.content_hash = digest or _document_hash(document)
    return plan


def _document_hash(document: Document) -> str:
    if isinstance(document, WorkflowDocument):
        return content_hash(document.model_dump(mode="json", by_alias=True, exclude_unset=True))
    return content_hash(document)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Run the block with the cyclic garbage collector off (if it was on).

    Planning allocates objects that all live as long as the plan (a few per node: the node,
    its typed config, the config's field set). With the collector on, the growing heap triggers
    collection after collection over them, which doubled the planning time of a 10,000-node
    document; the one collection that follows is the normal cost of those objects. The switch
    is process-wide: while a worker thread plans, the event loop's thread collects nothing
    either (for those milliseconds), and of threads planning at once the first to finish turns
    it back on.
    (Promoting them with ``gc.freeze()``/``gc.unfreeze()`` would save that pass too, but it
    also hides young garbage from the collector's accounting and let cyclic garbage pile up
    across plans: measured, not worth it.)
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
