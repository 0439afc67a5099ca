"""Workflow use cases: validate, store versions, list, archive, draw, and plan stored versions."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.auth import context
from app.domain import views as models
from app.domain.config_checks import ConfigCheck
from app.domain.node_types import NodeTypes
from app.engine.compile import render
from app.engine.compile.graph import Limits, PlanCache
from app.engine.compile.plan import Plan
from app.errors import WorkflowInvalid, WorkflowNotFound
from app.services import audit
from app.services.audit import AuditAction
from app.services.config_checks import CheckResults, run_checks
from app.store import db
from app.store import workflows as store


@dataclass(frozen=True, slots=True)
class Runnable:
    version: int
    archived: bool
    plan: Plan
    project: str  # the workflow's: its runs belong to it
    head: int  # the latest version, as this replica knows it (see WorkflowService.runnable)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class WorkflowService:
    """Workflows and their versions. Every method is one transaction."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        plan_cache: PlanCache,
        limits: Limits,
        node_types: NodeTypes,
        checks: Mapping[str, ConfigCheck] | None = None,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._engine = engine
        self._read = db.autocommit(engine)  # reads: no BEGIN/ROLLBACK round trips
        self._plans = plan_cache
        self._limits = limits
        self._node_types = node_types
        self._checks = checks or {}
        self._now = now
        self._versions: OrderedDict[tuple[str, int], Plan] = OrderedDict()
        # workflow id -> (latest version, archived, project), as last read here
        self._heads: OrderedDict[str, tuple[int, bool, str]] = OrderedDict()

    async def validate(self, document: dict[str, Any]) -> models.ValidationResult:
        """Check a document (stores nothing); raises WorkflowInvalid listing every problem."""
        plan, found = await self._checked_plan(document)
        return models.ValidationResult(
            valid=True,
            levels=[[*level] for level in plan.levels],
            node_count=plan.node_count,
            content_hash=plan.content_hash,
            warnings=found.warnings,
        )

    async def create(self, document: dict[str, Any]) -> models.SavedWorkflow:
        """Store ``document`` as version 1 (validated and checked first)."""
        plan, found = await self._checked_plan(document)
        workflow_id = str(uuid.uuid4())
        project = context.home_project()
        async with self._engine.begin() as conn:
            await store.insert_workflow(
                conn,
                workflow_id=workflow_id,
                name=str(document["name"]),
                document=document,
                content_hash=plan.content_hash,
                now=self._now(),
                project=project,
            )
            stored = await self._get(conn, workflow_id, 1, project)
            await audit.record(
                conn,
                action=AuditAction.WORKFLOW_CREATE,
                target=workflow_id,
                project=project,
                detail={"version": 1},
            )
        return models.SavedWorkflow(**dict(stored), warnings=found.warnings)

    async def update(self, workflow_id: str, document: dict[str, Any]) -> models.SavedWorkflow:
        """Store ``document`` as the next version (validated and checked first; old versions
        stay).

        Raises WorkflowInvalid, WorkflowNotFound or WorkflowArchived.
        """
        plan, found = await self._checked_plan(document)
        project = context.project()
        async with self._engine.begin() as conn:
            version = await store.insert_version(
                conn,
                workflow_id,
                name=str(document["name"]),
                document=document,
                content_hash=plan.content_hash,
                now=self._now(),
                project=project,
            )
            stored = await self._get(conn, workflow_id, version, project)
            self._heads.pop(workflow_id, None)  # read again, after this commits
            await audit.record(
                conn,
                action=AuditAction.WORKFLOW_UPDATE,
                target=workflow_id,
                project=stored.project,
                detail={"version": version},
            )
        return models.SavedWorkflow(**dict(stored), warnings=found.warnings)

    async def get(self, workflow_id: str, version: int | None = None) -> models.Workflow:
        """A version (the latest by default), archived or not; raises WorkflowNotFound."""
        async with self._read.connect() as conn:
            return await self._get(conn, workflow_id, version, context.project())

    async def list(
        self, *, limit: int, cursor: str | None = None, include_archived: bool = False
    ) -> models.Page[models.WorkflowSummary]:
        """Newest first; raises CursorInvalid for a cursor this list did not hand out."""
        async with self._read.connect() as conn:
            return await store.list_workflows(
                conn,
                limit=limit,
                cursor=cursor,
                include_archived=include_archived,
                project=context.project(),
            )

    async def archive(self, workflow_id: str) -> None:
        """Archive (idempotent); its runs stay readable. Raises WorkflowNotFound."""
        async with self._engine.begin() as conn:
            archived = await store.archive_workflow(
                conn, workflow_id, self._now(), project=context.project()
            )
            if not archived:
                raise WorkflowNotFound(f"no workflow {workflow_id!r}")
            self._heads.pop(workflow_id, None)
            await audit.record(conn, action=AuditAction.WORKFLOW_ARCHIVE, target=workflow_id)

    async def graph(self, workflow_id: str, version: int | None, fmt: render.Format) -> str:
        """The plan drawn as Mermaid, DOT or text; ValueError for another format."""
        if fmt not in render.FORMATS:
            raise ValueError(f"unknown graph format {fmt!r}: expected one of {render.FORMATS}")
        _workflow, plan = await self.plan_for(workflow_id, version)
        return render.render(plan, fmt)

    async def plan_for(self, workflow_id: str, version: int | None) -> tuple[models.Workflow, Plan]:
        """A stored version and its plan (cached by content hash)."""
        workflow = await self.get(workflow_id, version)
        return workflow, await self._plan(workflow.document)

    async def runnable(
        self, workflow_id: str, version: int | None, *, fresh: bool = False
    ) -> Runnable:
        """What starting a run needs: the version (latest by default), whether the workflow is
        archived, and the plan (cached per version). Raises WorkflowNotFound.

        The head (latest version, archived, project) comes from this replica's memory unless
        ``fresh``: another replica may have changed it since, so the run's submission checks
        it still holds (:class:`app.store.submissions.HeadChanged` otherwise: ask again,
        fresh)."""
        head = None if fresh else self._heads.get(workflow_id)
        if head is None:
            async with self._read.connect() as conn:
                head = await store.workflow_head(conn, workflow_id, project=context.project())
            if head is not None:
                self._remember(workflow_id, head)
        else:
            self._heads.move_to_end(workflow_id)
        if head is None or not context.principal().sees(head[2]):
            raise WorkflowNotFound(f"no workflow {workflow_id!r}")
        latest, archived, project = head
        if version is not None and not 1 <= version <= latest:
            raise WorkflowNotFound(f"no workflow {workflow_id!r} version {version}")
        chosen = latest if version is None else version
        plan = await self.plan_of_version(workflow_id, chosen)
        return Runnable(chosen, archived, plan, project, latest)

    def _remember(self, workflow_id: str, head: tuple[int, bool, str]) -> None:
        self._heads[workflow_id] = head
        self._heads.move_to_end(workflow_id)
        if len(self._heads) > self._plans.maxsize:
            self._heads.popitem(last=False)

    async def plan_of_version(self, workflow_id: str, version: int) -> Plan:
        """The plan of one stored version. Versions never change, so it is read once per
        process (runs start, recover and resume without reading their document again)."""
        key = (workflow_id, version)
        plan = self._versions.get(key)
        if plan is None:
            _workflow, plan = await self.plan_for(workflow_id, version)
            self._versions[key] = plan
            if len(self._versions) > self._plans.maxsize:
                self._versions.popitem(last=False)
        else:
            self._versions.move_to_end(key)
        return plan

    async def plan(self, document: Mapping[str, Any]) -> Plan:
        """The plan of a document that is not stored (WorkflowInvalid listing every problem);
        the node types' config checks are not run."""
        return await self._plan(document)

    async def load_workflow(self, workflow_id: str, version: int | None) -> Mapping[str, Any]:
        """The engine's WorkflowLoader port, for ``subworkflow`` nodes naming a stored workflow."""
        return (await self.get(workflow_id, version)).document

    async def _checked_plan(self, document: Mapping[str, Any]) -> tuple[Plan, CheckResults]:
        """The plan of a document given to be validated or stored, and what the node types'
        config checks found, run once it planned cleanly: WorkflowInvalid when they found an
        error, else only warnings. Stored versions are only planned, never checked again."""
        plan = await self._plan(document)
        found = await run_checks(plan, self._checks)
        if found.errors:
            raise WorkflowInvalid(found.errors)
        return plan, found

    async def _plan(self, document: Mapping[str, Any]) -> Plan:
        """Off the event loop (a worker thread): a big document takes tens of milliseconds."""
        return await self._plans.get_or_plan_async(
            document, node_types=self._node_types, limits=self._limits
        )

    @staticmethod
    async def _get(
        conn: AsyncConnection, workflow_id: str, version: int | None, project: str | None
    ) -> models.Workflow:
        workflow = await store.get_workflow(conn, workflow_id, version, project=project)
        if workflow is None:
            suffix = "" if version is None else f" version {version}"
            raise WorkflowNotFound(f"no workflow {workflow_id!r}{suffix}")
        return workflow
