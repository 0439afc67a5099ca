"""Durability under the faults operators see, injected on purpose into real ``oxify serve``
processes on one Postgres: rolling restarts (SIGTERM mid-node), a replica that takes its own
run over, writes that fail, listeners that raise, half-open and cut database connections.

Each test names the promise it holds: every run ends, its log is gap-free with one terminal
event, and no node whose completion was stored runs again (a side-effect recorder counts what
every node really did, per idempotency key).
"""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.e2e.cluster import (
    FAST_LEASES,
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
from tests.e2e.pgproxy import proxied
from tests.e2e.processes import ServerProcess

SETTLE_S = 60.0  # seconds a run may take to settle in these tests (they take a few)


def effects(recorder: EffectRecorder, *seconds: float) -> dict[str, Any]:
    """A chain of http nodes, node ``s<i>`` a recorded call of ``seconds[i]``."""
    nodes = [
        {
            "id": f"s{i}",
            "type": "http",
            "config": {"method": "POST", "url": recorder.effect_url(s), "idempotency_key": True},
        }
        for i, s in enumerate(seconds)
    ]
    edges = [{"from": f"s{i}", "to": f"s{i + 1}"} for i in range(len(seconds) - 1)]
    return {"name": "effects", "nodes": nodes, "edges": edges}


def faults(*rules: dict[str, Any]) -> str:
    return json.dumps(list(rules))


async def completed(replica: ServerProcess, run_id: str) -> list[dict[str, Any]]:
    """The run's log once it completed there (asserting it did, gap-free, one end)."""
    async with asyncio.timeout(SETTLE_S):
        done = await settled(replica, run_id)
    assert done["status"] == "completed", done
    events = await event_log(replica, run_id)
    assert_gap_free_log(events)
    return events


async def ended(replica: ServerProcess, run_id: str) -> dict[str, Any]:
    """The run once it ended, resuming it whenever it settles paused."""
    async with asyncio.timeout(SETTLE_S), client(replica) as http:
        while True:
            final = await settled(replica, run_id)
            if final["status"] != "paused":
                return final
            await http.post(f"/v1/executions/{run_id}/resume")


def stopped_by_itself(replica: ServerProcess) -> bool:
    """It ended after SIGTERM (uvicorn re-raises it once shut down), not by stop()'s SIGKILL."""
    assert replica.process is not None
    return replica.process.returncode in (0, -signal.SIGTERM)


def reasons(events: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [
        (e["type"], e["data"].get("reason"))
        for e in events
        if e["type"] in ("workflow.paused", "workflow.resumed")
    ]


async def test_a_graceful_stop_hands_a_busy_run_back_while_renewing(fresh_pg_url: str) -> None:
    # The node outlasts the lease: the stopping owner must keep renewing while it finishes,
    # then queue the run for the other replica.
    settings = {"lease_s": "1", "shutdown_grace_s": "20"}
    async with recording() as recorder, cluster(fresh_pg_url, size=2, **settings) as replicas:
        entry = replicas.replicas[0]
        run_id = await start_run(entry, await create_workflow(entry, effects(recorder, 3.0, 0.05)))
        owner = replicas.replica(await owner_once_started(entry, run_id))
        survivor = replicas.other_than(owner)
        async with client(survivor) as http:
            waiting = asyncio.create_task(
                http.get(f"/v1/executions/{run_id}/wait", params={"timeout_s": 30})
            )

            await owner.stop()  # SIGTERM during s0's 3 s call

            events = await completed(survivor, run_id)
            # A long-poll does not end at the hand-back's pause: the run was never paused.
            assert (await waiting).json()["status"] == "completed"
    assert recorder.of_run(run_id) == {"s0": 1, "s1": 1}
    assert reasons(events) == [("workflow.paused", "shutdown"), ("workflow.resumed", "shutdown")]


async def test_a_takeover_during_the_hand_back_is_not_undone(fresh_pg_url: str) -> None:
    # The stopping owner freezes before it hands back (its loop blocked past the lease): the
    # other replica recovers the run first; the owner's late hand-back must change nothing.
    settings = {
        "lease_s": "1",
        "shutdown_grace_s": "20",
        "faults": faults({"point": "runner.hand_back", "action": "block", "seconds": 3}),
    }
    async with recording() as recorder, cluster(fresh_pg_url, size=2, **settings) as replicas:
        entry = replicas.replicas[0]
        run_id = await start_run(entry, await create_workflow(entry, effects(recorder, 2.0, 0.05)))
        owner = replicas.replica(await owner_once_started(entry, run_id))
        stopping = asyncio.create_task(owner.stop())

        events = await completed(replicas.other_than(owner), run_id)
        await stopping
    assert ("workflow.resumed", "recovered") in reasons(events)
    assert ("workflow.paused", "shutdown") not in reasons(events)
    assert recorder.of_run(run_id)["s1"] == 1
    assert stopped_by_itself(owner)


async def test_a_failed_write_is_written_again_and_no_node_repeats(fresh_pg_url: str) -> None:
    # Four writes in a row fail on a dropped connection (after the first three succeed): the
    # journal writes them again; no node sees its write fail, none runs again.
    settings = {
        "faults": faults({"point": "journal.before_write", "action": "drop", "skip": 3, "times": 4})
    }
    async with recording() as recorder, cluster(fresh_pg_url, size=1, **settings) as replicas:
        [server] = replicas.replicas
        run_id = await start_run(
            server, await create_workflow(server, effects(recorder, *[0.02] * 4))
        )
        events = await completed(server, run_id)
    assert recorder.of_run(run_id) == {f"s{i}": 1 for i in range(4)}
    assert not [e for e in events if e["type"] == "node.retry"]


async def test_a_failing_event_listener_neither_rewrites_nor_fails_runs(fresh_pg_url: str) -> None:
    settings = {"faults": faults({"point": "bus.listener", "action": "error"})}
    async with recording() as recorder, cluster(fresh_pg_url, size=1, **settings) as replicas:
        [server] = replicas.replicas
        workflow_id = await create_workflow(server, effects(recorder, 0.02, 0.02, 0.02))
        runs = await asyncio.gather(*(start_run(server, workflow_id) for _ in range(8)))
        for run_id in runs:
            await completed(server, run_id)  # /wait follows the bus: it heard the end
            assert recorder.of_run(run_id) == {"s0": 1, "s1": 1, "s2": 1}


async def test_a_half_open_journal_connection_is_replaced(fresh_pg_url: str) -> None:
    async with proxied(fresh_pg_url) as proxy, recording() as recorder:
        server = ServerProcess(proxy.url(fresh_pg_url), settings={"lease_s": "3"})
        await server.start()
        try:
            workflow_id = await create_workflow(server, effects(recorder, 1.0, 0.05, 0.05))
            run_id = await start_run(server, workflow_id)
            await owner_once_started(server, run_id)
            assert proxy.hang("oxify-journal") == 1  # s0's completion goes into the void

            events = await completed(server, run_id)
        finally:
            await server.stop()
            server.close()
    assert recorder.of_run(run_id) == {"s0": 1, "s1": 1, "s2": 1}
    assert reasons(events) == []  # the same replica drove it to the end


async def test_a_replica_cut_off_from_the_database_loses_its_runs_in_time(
    fresh_pg_url: str,
) -> None:
    # Every connection of the owner hangs, new ones too: it cannot renew, so the other replica
    # takes the run over; and it still stops promptly when told to.
    async with proxied(fresh_pg_url) as proxy, recording() as recorder:
        cut_off = ServerProcess(
            proxy.url(fresh_pg_url), settings={**FAST_LEASES, "replica_id": "cut"}
        )
        other = ServerProcess(fresh_pg_url, settings={**FAST_LEASES, "replica_id": "other"})
        await cut_off.start()
        try:
            workflow_id = await create_workflow(cut_off, effects(recorder, 2.0, 0.05, 0.05))
            run_id = await start_run(cut_off, workflow_id)
            assert await owner_once_started(cut_off, run_id) == "cut"
            proxy.down = True
            proxy.hang()
            await other.start()

            events = await completed(other, run_id)
            assert ("workflow.resumed", "recovered") in reasons(events)
            async with asyncio.timeout(20):  # under the 30 s after which stop() kills
                await cut_off.stop()
            assert stopped_by_itself(cut_off)
        finally:
            await asyncio.gather(cut_off.stop(), other.stop())
            cut_off.close()
            other.close()
    assert recorder.of_run(run_id)["s2"] == 1


async def test_a_replica_that_takes_its_own_run_over_fences_the_old_driver(
    fresh_pg_url: str,
) -> None:
    # The run's lease lapses under its own replica (a long stall: here the test ends it by
    # hand while s0 is delayed) and the same replica claims it again: the old driver must stop
    # and write nothing more, so the run gets exactly one ending.
    settings = {
        "lease_s": "30",
        "heartbeat_s": "30",
        "poll_s": "0.1",
        "faults": faults(
            {"point": "node.execute", "action": "delay", "seconds": 2, "match": "s0", "times": 1}
        ),
    }
    async with recording() as recorder, cluster(fresh_pg_url, size=1, **settings) as replicas:
        [server] = replicas.replicas
        run_id = await start_run(
            server, await create_workflow(server, effects(recorder, 0.05, 0.05))
        )
        await owner_once_started(server, run_id)
        dsn = make_url(fresh_pg_url).set(drivername="postgresql").render_as_string(False)
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(
                "UPDATE executions SET lease_expires_at = now() - interval '1 s' WHERE id = $1",
                run_id,
            )
        finally:
            await connection.close()

        events = await completed(server, run_id)
    assert ("workflow.resumed", "recovered") in reasons(events)
    assert recorder.of_run(run_id) == {"s0": 1, "s1": 1}


@pytest.mark.parametrize("seed", [1, 2])
async def test_racing_clients_never_break_a_run_s_log(fresh_pg_url: str, seed: int) -> None:
    # Pause, resume, cancel and retry from several clients at once, on runs being claimed,
    # running and waiting: every log stays gap-free with unique seqs, nothing fails inside.
    document = {
        "name": "short",
        "nodes": [{"id": f"d{i}", "type": "delay", "config": {"seconds": 0.05}} for i in range(4)],
        "edges": [{"from": f"d{i}", "to": f"d{i + 1}"} for i in range(3)],
    }
    async with cluster(fresh_pg_url, size=2) as replicas:
        entry = replicas.replicas[0]
        workflow_id = await create_workflow(entry, document)
        runs = await asyncio.gather(*(start_run(entry, workflow_id) for _ in range(12)))
        actions = ["pause", "resume", "cancel", "retry", "resume", "pause"]

        async def poke(replica: ServerProcess, run_id: str, offset: int) -> None:
            async with client(replica) as http:
                for k in range(len(actions)):
                    action = actions[(k + offset + seed) % len(actions)]
                    answer = await http.post(f"/v1/executions/{run_id}/{action}")
                    assert answer.status_code in (200, 202, 409), answer.text

        await asyncio.gather(
            *(
                poke(replicas.replicas[(i + j) % 2], run_id, i + j)
                for i, run_id in enumerate(runs)
                for j in range(2)
            )
        )
        for run_id in runs:
            final = await ended(entry, run_id)
            events = await event_log(entry, run_id)
            seqs = [e["seq"] for e in events]
            assert seqs == list(range(1, len(seqs) + 1)), run_id
            assert not [
                e for e in events if (e["data"].get("error") or {}).get("code") == "internal_error"
            ]
            assert final["status"] in ("completed", "cancelled"), final["status"]
            ends = [e for e in events if e["type"] in ("workflow.completed", "workflow.cancelled")]
            assert events[-1] in ends


async def test_a_pause_racing_a_claim_never_shares_a_seq(fresh_pg_url: str) -> None:
    # A client pauses a queued run; while the pause is being logged, another client resumes it
    # and a replica claims and starts it. Whatever the order, the run's log numbers each event
    # once, and the pause either held the run or reached its driver.
    settings = {
        "max_concurrent_runs": "1",
        "faults": faults({"point": "journal.append", "action": "delay", "seconds": 1, "times": 1}),
    }
    async with cluster(fresh_pg_url, size=1, **settings) as replicas:
        [server] = replicas.replicas
        blocker_id = await start_run(
            server,
            await create_workflow(
                server,
                {
                    "name": "blocker",
                    "nodes": [{"id": "d", "type": "delay", "config": {"seconds": 30}}],
                },
            ),
        )
        await owner_once_started(server, blocker_id)
        run_id = await start_run(
            server,
            await create_workflow(
                server,
                {
                    "name": "quick",
                    "nodes": [{"id": "q", "type": "delay", "config": {"seconds": 0.5}}],
                },
            ),
        )  # queued: the only slot is taken
        async with client(server) as http:
            pausing = asyncio.create_task(http.post(f"/v1/executions/{run_id}/pause"))
            # Resume as soon as the run reads as paused: its pause is stored, its event may not
            # be (the fault holds the logging of it for a second).
            while not pausing.done():
                if (await http.get(f"/v1/executions/{run_id}")).json()["status"] == "paused":
                    break
            resumed = await http.post(f"/v1/executions/{run_id}/resume")
            cancelled = await http.post(f"/v1/executions/{blocker_id}/cancel?wait=true")
            paused = await pausing
        assert paused.status_code == 202, paused.text
        assert resumed.status_code == 202, resumed.text
        assert cancelled.status_code == 200, cancelled.text
        final = await ended(server, run_id)
        events = await event_log(server, run_id)
    assert final["status"] == "completed"
    assert_gap_free_log(events)
