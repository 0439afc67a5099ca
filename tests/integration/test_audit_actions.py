"""Workflow writes are audited in their own transaction: a write that fails leaves no row, and
a row that cannot be written undoes the write."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.audit import Filters
from app.domain.node_types import CORE_NODE_TYPES
from app.engine.compile.graph import Limits, PlanCache
from app.errors import WorkflowInvalid, WorkflowNotFound
from app.services.audit import AuditService
from app.services.workflows import WorkflowService
from app.store.tables import workflows
from tests.support import edge, node, workflow

VALID = workflow([node("start", "start"), node("end", "end")], [edge("start", "end")])
CYCLIC = workflow([node("a", value=1), node("b", value=2)], [edge("a", "b"), edge("b", "a")])


@pytest.fixture
async def service(engine: AsyncEngine) -> AsyncIterator[WorkflowService]:
    yield WorkflowService(
        engine, plan_cache=PlanCache(), limits=Limits(), node_types=CORE_NODE_TYPES
    )


async def audited(engine: AsyncEngine) -> list[tuple[str, str, dict[str, object] | None]]:
    page = await AuditService(engine).page(Filters(), cursor=None, limit=100)
    return [(r.action, r.target, r.detail) for r in reversed(page.items)]


async def test_workflow_writes_leave_one_row_each(
    engine: AsyncEngine, service: WorkflowService
) -> None:
    created = await service.create(VALID)
    await service.update(created.id, VALID)
    await service.archive(created.id)
    assert await audited(engine) == [
        ("workflow.create", created.id, {"version": 1}),
        ("workflow.update", created.id, {"version": 2}),
        ("workflow.archive", created.id, None),
    ]
    assert (await AuditService(engine).verify()).broken is None


async def test_a_write_that_fails_leaves_no_row(
    engine: AsyncEngine, service: WorkflowService
) -> None:
    with pytest.raises(WorkflowInvalid):
        await service.create(CYCLIC)
    with pytest.raises(WorkflowNotFound):
        await service.update("no-such-workflow", VALID)
    with pytest.raises(WorkflowNotFound):
        await service.archive("no-such-workflow")
    assert await audited(engine) == []


async def test_a_row_that_cannot_be_written_undoes_the_write(
    engine: AsyncEngine, service: WorkflowService
) -> None:
    async with engine.begin() as conn:
        count = select(func.count()).select_from(workflows)
        before = (await conn.execute(count)).scalar_one()
        if engine.dialect.name == "postgresql":
            await conn.execute(
                text(
                    "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'no audit today'; END $$"
                )
            )
            await conn.execute(
                text("CREATE TRIGGER refuse BEFORE INSERT ON audit_log EXECUTE FUNCTION refuse()")
            )
        else:
            await conn.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON audit_log "
                    "BEGIN SELECT RAISE(ABORT, 'no audit today'); END"
                )
            )
    with pytest.raises(DBAPIError, match="no audit today"):
        await service.create(VALID)
    async with engine.connect() as conn:
        assert (await conn.execute(count)).scalar_one() == before
