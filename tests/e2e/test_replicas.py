"""Replicas of ``oxify serve`` on one Postgres database, killed, frozen and restarted.

A run must survive its owner's death (kill -9) on another replica with a gap-free log, never
execute a node again whose completion was stored, and run an interrupted node at most twice.
Every ``http`` node here posts to a local side-effect recorder with ``idempotency_key: true``,
so the recorder counts the real executions of each node of each run.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from tests.e2e import effects
from tests.e2e.cluster import (
    Cluster,
    assert_gap_free_log,
    client,
    cluster,
    create_workflow,
    event_log,
    owner_once_started,
    settled,
    start_run,
)
from tests.e2e.effects import EffectRecorder, recording
from tests.e2e.live import sse

SEED = 20261202
KILL_POINTS = 10
STEPS = 6
STEP_S = 0.12  # seconds each recorded request takes


def effects_chain(recorder: EffectRecorder, steps: int = STEPS) -> dict[str, Any]:
    return effects.effects_chain(recorder, steps, STEP_S)


def delays(count: int, seconds: float) -> dict[str, Any]:
    nodes = [{"id": f"d{i}", "type": "delay", "config": {"seconds": seconds}} for i in range(count)]
    edges = [{"from": f"d{i}", "to": f"d{i + 1}"} for i in range(count - 1)]
    return {"name": "delays", "nodes": nodes, "edges": edges}


def check_effects(
    events: list[dict[str, Any]], counts: dict[str, int], steps: int = STEPS
) -> set[str]:
    """Every node ran; none whose completion was logged before the first recovery ran again;
    none ran more than twice. Returns the nodes that were interrupted (ran twice)."""
    recovered = next(
        (
            e["seq"]
            for e in events
            if e["type"] == "workflow.resumed" and e["data"].get("reason") == "recovered"
        ),
        None,
    )
    completed_before = {
        e["node_id"]
        for e in events
        if e["type"] == "node.completed" and (recovered is None or e["seq"] < recovered)
    }
    assert set(counts) == {f"s{i}" for i in range(steps)}, counts
    for node_id in completed_before:
        assert counts[node_id] == 1, (node_id, counts)
    assert max(counts.values()) <= 2, counts
    return {node_id for node_id, count in counts.items() if count == 2}


async def test_runs_survive_their_owner_being_killed(fresh_pg_url: str) -> None:
    rng = random.Random(SEED)
    recoveries = 0
    async with recording() as recorder, cluster(fresh_pg_url) as replicas:
        workflow_id = await create_workflow(replicas.replicas[0], effects_chain(recorder))
        restarts: list[asyncio.Task[None]] = []
        for _ in range(KILL_POINTS):
            entry = rng.choice(replicas.alive())
            run_id = await start_run(entry, workflow_id)
            owner = replicas.replica(await owner_once_started(entry, run_id))
            await asyncio.sleep(rng.uniform(0.0, STEPS * STEP_S * 0.8))  # the kill point
            await owner.kill()

            survivor = replicas.other_than(owner)
            done = await settled(survivor, run_id)
            assert done["status"] == "completed", done
            assert done["owner"] != f"r{replicas.replicas.index(owner)}"
            events = await event_log(survivor, run_id)
            assert_gap_free_log(events)
            check_effects(events, recorder.of_run(run_id))
            recoveries += any(
                e["type"] == "workflow.resumed" and e["data"]["reason"] == "recovered"
                for e in events
            )
            restarts.append(asyncio.create_task(owner.start()))  # back while the next run goes
            await _two_alive(replicas, restarts)
        await asyncio.gather(*restarts)
    assert recoveries == KILL_POINTS


async def _two_alive(replicas: Cluster, restarts: list[asyncio.Task[None]]) -> None:
    """At least two replicas up before the next kill: one to kill, one to take over."""
    while len(replicas.alive()) < 2:
        pending = [task for task in restarts if not task.done()]
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)


async def test_a_frozen_owner_is_fenced_when_it_wakes_up(fresh_pg_url: str) -> None:
    async with recording() as recorder, cluster(fresh_pg_url) as replicas:
        entry = replicas.replicas[0]
        workflow_id = await create_workflow(entry, effects_chain(recorder, steps=8))
        run_id = await start_run(entry, workflow_id)
        owner = replicas.replica(await owner_once_started(entry, run_id))
        owner.freeze()  # alive but silent: its lease lapses, another replica takes over
        try:
            survivor = replicas.other_than(owner)
            async with (
                client(survivor) as http,
                sse(http, f"/v1/executions/{run_id}/events") as events,
            ):
                resumed = await events.until("workflow.resumed")
        finally:
            owner.thaw()  # it wakes up believing it still drives the run
        assert resumed[-1].data["data"]["reason"] == "recovered"
        done = await settled(survivor, run_id)
        assert done["status"] == "completed", done
        assert done["owner"] != f"r{replicas.replicas.index(owner)}"
        events_logged = await event_log(survivor, run_id)
        assert_gap_free_log(events_logged)
        check_effects(events_logged, recorder.of_run(run_id), steps=8)
        assert owner.alive  # fenced, not crashed


async def test_pause_on_one_replica_resume_on_another(fresh_pg_url: str) -> None:
    async with cluster(fresh_pg_url) as replicas:
        entry = replicas.replicas[0]
        run_id = await start_run(entry, await create_workflow(entry, delays(8, 0.15)))
        owner = replicas.replica(await owner_once_started(entry, run_id))
        pauser = replicas.other_than(owner)
        resumer = replicas.other_than(owner, pauser)

        async with client(pauser) as http:
            assert (await http.post(f"/v1/executions/{run_id}/pause")).status_code == 202
        assert (await settled(pauser, run_id))["status"] == "paused"
        async with client(resumer) as http:
            assert (await http.post(f"/v1/executions/{run_id}/resume")).status_code == 202
        done = await settled(resumer, run_id)

        assert done["status"] == "completed"
        types = [e["type"] for e in await event_log(resumer, run_id)]
        assert types.index("workflow.paused") < types.index("workflow.resumed")


async def test_cancel_sent_to_a_non_owner_stops_the_run(fresh_pg_url: str) -> None:
    async with cluster(fresh_pg_url) as replicas:
        entry = replicas.replicas[0]
        run_id = await start_run(entry, await create_workflow(entry, delays(2, 30.0)))
        owner = replicas.replica(await owner_once_started(entry, run_id))
        other = replicas.other_than(owner)

        async with client(other) as http:
            answer = await http.post(f"/v1/executions/{run_id}/cancel", params={"wait": "true"})

        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "cancelled"
        events = await event_log(other, run_id)
        assert_gap_free_log(events)
        assert events[-1]["type"] == "workflow.cancelled"


async def test_a_stream_on_a_non_owner_gets_every_event_live(fresh_pg_url: str) -> None:
    async with cluster(fresh_pg_url) as replicas:
        entry = replicas.replicas[0]
        run_id = await start_run(entry, await create_workflow(entry, delays(10, 0.05)))
        owner = replicas.replica(await owner_once_started(entry, run_id))
        watcher = replicas.other_than(owner)

        async with client(watcher) as http, sse(http, f"/v1/executions/{run_id}/events") as tail:
            streamed = await tail.rest()

        logged = await event_log(watcher, run_id)
        assert [e.id for e in streamed] == [e["seq"] for e in logged]
        assert streamed[-1].event == "workflow.completed"


async def test_queued_runs_start_on_an_idle_replica(fresh_pg_url: str) -> None:
    """A replica whose slots are full leaves new runs to the others (they hear the nudge)."""
    async with cluster(fresh_pg_url, size=2, max_concurrent_runs="1") as replicas:
        entry = replicas.replicas[0]
        busy_workflow = await create_workflow(entry, delays(1, 30.0))
        blocker = await start_run(entry, busy_workflow)
        busy = replicas.replica(await owner_once_started(entry, blocker))
        quick = await start_run(busy, await create_workflow(entry, delays(1, 0.01)))

        done = await settled(busy, quick)

        assert done["status"] == "completed"
        assert done["owner"] != f"r{replicas.replicas.index(busy)}"
        async with client(busy) as http:
            await http.post(f"/v1/executions/{blocker}/cancel", params={"wait": "true"})
