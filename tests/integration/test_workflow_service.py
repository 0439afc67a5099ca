"""WorkflowService over real databases: a fresh Postgres clone and a fresh SQLite file per test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.domain.node_types import CORE_NODE_TYPES
from app.domain.views import SavedWorkflow, Workflow
from app.engine.compile import graph
from app.engine.compile.graph import Limits, PlanCache
from app.errors import CursorInvalid, WorkflowArchived, WorkflowInvalid, WorkflowNotFound
from app.services.workflows import WorkflowService
from app.store.db import create_engine
from app.store.workflows import encode_cursor
from tests.support import big_document, edge, node, ticks_while, workflow

T0 = datetime(2026, 5, 1, 9, 30, 0, 250000, tzinfo=UTC)


class StepClock:
    """``now`` for the service: T0, then one second later at every call (or frozen)."""

    def __init__(self) -> None:
        self.t = T0
        self.step = timedelta(seconds=1)

    def __call__(self) -> datetime:
        now = self.t
        self.t += self.step
        return now


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
def plan_cache() -> PlanCache:
    return PlanCache()


@pytest.fixture
async def service(
    database_url: str, clock: StepClock, plan_cache: PlanCache
) -> AsyncIterator[WorkflowService]:
    engine = create_engine(database_url)
    try:
        yield WorkflowService(
            engine, plan_cache=plan_cache, limits=Limits(), node_types=CORE_NODE_TYPES, now=clock
        )
    finally:
        await engine.dispose()


def stored(saved: SavedWorkflow) -> Workflow:
    """The version as reading it answers: without the warnings of storing it."""
    return Workflow(**saved.model_dump(exclude={"warnings"}))


def doc(name: str = "flow", value: Any = "hello") -> dict[str, Any]:
    return workflow(
        [
            node("start", "start"),
            node("check", "if", condition="inputs.n > 1"),
            node("yes", value=value),
            node("no", value="no"),
            node("end", "end"),
        ],
        [
            edge("start", "check"),
            edge("check", "yes", "true"),
            edge("check", "no", "false"),
            edge("yes", "end"),
            edge("no", "end"),
        ],
        name=name,
        description="a test flow",
        inputs={"type": "object", "properties": {"n": {"type": "integer"}}},
    )


INVALID = workflow(
    [node("a"), node("a"), node("b", "nope")],
    [edge("a", "zz"), edge("b", "b")],
)


# -- validate and create ---------------------------------------------------------------------


async def test_validate_reports_levels_and_stores_nothing(service: WorkflowService) -> None:
    document = doc()

    result = await service.validate(document)

    assert result.valid is True
    assert result.levels == [["start"], ["check"], ["yes", "no"], ["end"]]
    assert result.node_count == 5
    assert result.content_hash == graph.content_hash(document)
    assert (await service.list(limit=10)).items == []


async def test_invalid_documents_raise_with_pointers_to_every_problem(
    service: WorkflowService,
) -> None:
    for attempt in (service.validate, service.create):
        with pytest.raises(WorkflowInvalid) as caught:
            await attempt(INVALID)
        problems = {(e.pointer, e.code) for e in caught.value.errors}
        assert problems == {
            ("/nodes/1/id", "duplicate_id"),
            ("/nodes/2/type", "unknown_type"),
            ("/edges/0/to", "unknown_node"),
            ("/edges/1", "self_loop"),
        }
    assert (await service.list(limit=10, include_archived=True)).items == []


async def test_a_big_document_is_planned_while_the_event_loop_runs_other_tasks(
    service: WorkflowService,
) -> None:
    document = big_document()  # 10,000 nodes: tens of milliseconds of planning

    # Validating reads and writes nothing: every tick of the other task is one planning allowed.
    result, ticks = await ticks_while(service.validate(document))

    assert result.node_count == 10_000
    assert ticks >= 10  # planning in place, the other task would not run until it ended


async def test_create_stores_version_one_exactly_as_given(service: WorkflowService) -> None:
    document = doc("triage")

    created = await service.create(document)

    assert created.version == 1 and created.name == "triage"
    assert created.document == document
    # Equal as JSON, aliases kept (jsonb does not keep key order: the content hash ignores it).
    assert created.document["edges"][1] == {"from": "check", "to": "yes", "branch": "true"}
    assert created.content_hash == graph.content_hash(document)
    assert created.created_at == created.updated_at == created.version_created_at == T0
    assert created.archived is False
    assert await service.get(created.id) == stored(created)
    assert await service.get(created.id, 1) == stored(created)


# -- versions --------------------------------------------------------------------------------


async def test_update_adds_a_version_and_keeps_the_old_ones(service: WorkflowService) -> None:
    first = await service.create(doc("v1", value="one"))

    second = await service.update(first.id, doc("v2", value="two"))

    assert second.id == first.id and second.version == 2 and second.name == "v2"
    assert second.document["nodes"][2]["config"]["value"] == "two"
    assert second.created_at == first.created_at
    assert second.updated_at == second.version_created_at > first.updated_at
    assert second.content_hash != first.content_hash
    assert await service.get(first.id) == stored(second)
    old = await service.get(first.id, 1)
    assert old.version == 1 and old.document == first.document
    assert old.name == "v2"  # the workflow's name is its latest version's
    [summary] = (await service.list(limit=10)).items
    assert (summary.version, summary.name) == (2, "v2")


async def test_missing_workflows_and_versions_are_named_in_the_error(
    service: WorkflowService,
) -> None:
    created = await service.create(doc())

    with pytest.raises(WorkflowNotFound, match=rf"'{created.id}' version 3"):
        await service.get(created.id, 3)
    with pytest.raises(WorkflowNotFound, match="'nope'"):
        await service.get("nope")
    with pytest.raises(WorkflowNotFound, match="'nope'"):
        await service.update("nope", doc())
    with pytest.raises(WorkflowNotFound, match="'nope'"):
        await service.archive("nope")
    with pytest.raises(WorkflowNotFound):
        await service.graph("nope", None, "mermaid")


async def test_an_invalid_update_changes_nothing(service: WorkflowService) -> None:
    created = await service.create(doc())

    with pytest.raises(WorkflowInvalid):
        await service.update(created.id, INVALID)

    assert await service.get(created.id) == stored(created)


async def test_concurrent_updates_get_distinct_consecutive_versions(
    service: WorkflowService,
) -> None:
    created = await service.create(doc())
    count = 12

    updated = await asyncio.gather(
        *(service.update(created.id, doc(f"v{i}", value=i)) for i in range(count))
    )

    assert sorted(w.version for w in updated) == list(range(2, count + 2))
    latest = await service.get(created.id)
    assert latest.version == count + 1
    by_version = {w.version: w for w in updated}
    assert latest.document == by_version[count + 1].document
    for version, written in by_version.items():
        stored = await service.get(created.id, version)
        assert stored.document == written.document


# -- archive and list ------------------------------------------------------------------------


async def test_archived_workflows_are_listed_only_on_request(service: WorkflowService) -> None:
    kept = await service.create(doc("kept"))
    gone = await service.create(doc("gone"))

    await service.archive(gone.id)
    await service.archive(gone.id)  # idempotent

    listed = await service.list(limit=10)
    assert [w.id for w in listed.items] == [kept.id]
    everything = await service.list(limit=10, include_archived=True)
    assert [(w.id, w.archived) for w in everything.items] == [(gone.id, True), (kept.id, False)]
    archived = await service.get(gone.id)  # still readable, with its versions
    assert archived.archived is True and archived.document == gone.document
    with pytest.raises(WorkflowArchived):
        await service.update(gone.id, doc("again"))
    assert (await service.get(gone.id)).version == 1


def all_pages(pages: list[Any]) -> Iterator[str]:
    for page in pages:
        yield from (w.id for w in page.items)


async def test_pagination_walks_every_workflow_newest_first(
    service: WorkflowService, clock: StepClock
) -> None:
    created: list[Workflow] = []
    for i in range(4):
        created.append(await service.create(doc(f"w{i}")))
    clock.step = timedelta(0)  # three more at the very same instant: ties broken by id
    for i in range(4, 7):
        created.append(await service.create(doc(f"w{i}")))
    archived = await service.create(doc("archived"))
    await service.archive(archived.id)
    expected = [w.id for w in sorted(created, key=lambda w: (w.created_at, w.id), reverse=True)]

    pages = [await service.list(limit=3)]
    while pages[-1].next_cursor is not None:
        pages.append(await service.list(limit=3, cursor=pages[-1].next_cursor))

    assert [len(p.items) for p in pages] == [3, 3, 1]
    assert list(all_pages(pages)) == expected
    assert pages[0].items[0].id == expected[0]
    exact = [await service.list(limit=7)]
    assert exact[0].next_cursor is None and list(all_pages(exact)) == expected
    with pytest.raises(ValueError, match="limit"):
        await service.list(limit=0)


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor!",
        "",
        encode_cursor("x", 12),  # another list's
        encode_cursor("w", "yesterday", "id"),
        encode_cursor("w", "2026-01-01T00:00:00", "id"),  # naive
        encode_cursor("w", T0.isoformat()),
        encode_cursor("w", T0.isoformat(), 5),
    ],
)
async def test_bad_cursors_are_refused_clearly(service: WorkflowService, cursor: str) -> None:
    with pytest.raises(CursorInvalid) as caught:
        await service.list(limit=2, cursor=cursor)
    assert isinstance(caught.value, ValueError)
    assert caught.value.code == "cursor_invalid"


# -- graph, plans, loader --------------------------------------------------------------------


async def test_graph_draws_the_requested_version(service: WorkflowService) -> None:
    created = await service.create(doc())
    extra = doc()
    extra["nodes"].append(node("extra_node"))
    extra["edges"].append(edge("end", "extra_node"))
    await service.update(created.id, extra)

    latest = await service.graph(created.id, None, "mermaid")
    first = await service.graph(created.id, 1, "mermaid")
    assert latest.startswith("flowchart") and "extra_node" in latest
    assert "extra_node" not in first and "check" in first
    assert "digraph" in await service.graph(created.id, 2, "dot")
    assert "extra_node" in await service.graph(created.id, 2, "ascii")
    with pytest.raises(ValueError, match="unknown graph format"):
        await service.graph(created.id, 1, "svg")  # type: ignore[arg-type]


async def test_plan_for_plans_stored_versions_through_the_cache(
    service: WorkflowService, plan_cache: PlanCache
) -> None:
    created = await service.create(doc())
    hits = plan_cache.hits

    stored_version, plan = await service.plan_for(created.id, 1)
    again = (await service.plan_for(created.id, None))[1]

    assert stored_version == stored(created)
    assert plan.content_hash == created.content_hash
    assert sorted(plan.nodes) == ["check", "end", "no", "start", "yes"]
    assert again is plan and plan_cache.hits > hits
    assert await service.load_workflow(created.id, None) == created.document
