"""The run-level progress of a graph: ``level.started``, ``level.completed``, ``progress.update``.

Only the top-level graph reports them (the nodes of a loop body are not levels of the run).
Levels label progress and never gate it: a level starts with the first event of one of its
nodes and completes when its last node ends, whatever else is running.
"""

from __future__ import annotations

from datetime import datetime

from app.domain.events import EventType
from app.engine.compile.plan import Plan
from app.engine.run.run_log import RunLog


class Progress:
    """The levels of one graph announced so far, and the events that report its progress.

    ``at`` is the instant of the node transition that caused an event (else now).
    """

    __slots__ = ("announced", "log", "plan", "top", "total")

    def __init__(self, log: RunLog, plan: Plan, *, top: bool) -> None:
        self.log = log
        self.plan = plan
        self.top = top
        self.total = len(plan.nodes)
        self.announced: set[int] = set()

    def level_started(self, level: int, at: datetime | None = None) -> None:
        """``level.started`` before the first event of a level."""
        if not self.top or level in self.announced:
            return
        self.announced.add(level)
        data = {"level": level, "nodes": self.plan.levels[level]}
        self.log.event(EventType.LEVEL_STARTED, level=level, data=data, at=at)

    def level_completed(self, level: int, replayed: set[str], at: datetime | None = None) -> None:
        """``level.completed`` for a level announced by this run, unless all of it finished
        before the run resumed (``replayed`` nodes were not run again)."""
        if not self.top or level not in self.announced:
            return
        # Only a resumed run has replayed nodes: no scan of the level otherwise.
        if replayed and all(node_id in replayed for node_id in self.plan.levels[level]):
            return
        self.log.event(EventType.LEVEL_COMPLETED, level=level, data={"level": level}, at=at)
        self.log.level_completed()

    def update(self, done: int, at: datetime | None = None) -> None:
        """``progress.update``: ``done`` of the graph's nodes are final."""
        if not self.top:
            return
        total = self.total
        data = {"completed": done, "total": total, "percent": round(100.0 * done / total, 1)}
        self.log.event(EventType.PROGRESS_UPDATE, data=data, at=at)
