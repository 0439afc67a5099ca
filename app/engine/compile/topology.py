"""Order, levels and cycles of a graph given as adjacency lists over node indices.

Indices are document positions, so "lowest index first" means "document order first": every
result here is deterministic. All functions are iterative and linear in nodes + edges.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence


def kahn_order(successors: Sequence[Sequence[int]], indegree: Sequence[int]) -> list[int]:
    """Kahn's topological order; among the nodes ready at a step the lowest index goes first.

    ``indegree[i]`` must count the entries equal to ``i`` in ``successors``. Every edge
    ``u -> v`` has ``u`` before ``v`` in the result. When the graph has a cycle the result is
    shorter than the graph: the nodes left out are on a cycle or downstream of one.
    """
    remaining = list(indegree)
    ready = [node for node, degree in enumerate(remaining) if degree == 0]  # sorted: a heap
    order: list[int] = []
    pop, push, append = heapq.heappop, heapq.heappush, order.append
    while ready:
        node = pop(ready)
        append(node)
        for succ in successors[node]:
            remaining[succ] -= 1
            if not remaining[succ]:
                push(ready, succ)
    return order


def longest_path_levels(size: int, edges: Iterable[tuple[int, int]]) -> list[int]:
    """``level[i]`` = edges on the longest path from a root to ``i`` (roots are level 0).

    ``edges`` are ``(u, v)`` pairs, every edge out of a node after every edge into it (edges
    sorted by their source's place in a topological order). Guarantees ``level[v] > level[u]``
    for every edge ``u -> v``.
    """
    level = [0] * size
    for head, tail in edges:
        if level[tail] <= level[head]:
            level[tail] = level[head] + 1
    return level


def find_cycles(
    successors: Sequence[Sequence[int]], starts: Iterable[int], limit: int
) -> list[list[int]]:
    """Distinct cycles closed by the back edges of a depth-first search, at most ``limit``.

    The search starts from ``starts`` in the order given and follows edges in list order.
    Every cycle of the graph contains at least one back edge, so an empty result means the
    graph is acyclic. Each cycle lists its nodes once, in edge order, rotated to begin at its
    lowest index (``[0, 3, 2]`` means 0 -> 3 -> 2 -> 0). Self-loops must be left out.
    """
    state = [0] * len(successors)  # 0 unseen, 1 on the current path, 2 finished
    position = [0] * len(successors)
    found: dict[tuple[int, ...], None] = {}
    for root in starts:
        if state[root]:
            continue
        path = [root]
        state[root] = 1
        stack = [iter(successors[root])]
        while stack:
            for succ in stack[-1]:
                if not state[succ]:
                    state[succ], position[succ] = 1, len(path)
                    path.append(succ)
                    stack.append(iter(successors[succ]))
                    break
                if state[succ] == 1:
                    found.setdefault(_rotated(path[position[succ] :]))
                    if len(found) >= limit:
                        return [list(cycle) for cycle in found]
            else:
                stack.pop()
                state[path.pop()] = 2
    return [list(cycle) for cycle in found]


def _rotated(cycle: list[int]) -> tuple[int, ...]:
    first = cycle.index(min(cycle))
    return (*cycle[first:], *cycle[:first])
