"""Durable sub-steps across a SIGKILL: a node's finished steps never run again on the replica
that takes the run over; the step that was cut off runs again with the same key."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from tests.e2e import steps_plugin
from tests.e2e.cluster import (
    FAST_LEASES,
    assert_gap_free_log,
    client,
    create_workflow,
    event_log,
    settled,
    start_run,
)
from tests.e2e.effects import recording
from tests.e2e.live import sse
from tests.e2e.processes import ROOT, ServerProcess

CALLS = 4
CALL_S = 0.4  # each recorded call takes this long: the kill lands inside one


def calls_workflow(url: str) -> dict[str, Any]:
    return {
        "name": "durable-steps",
        "nodes": [{"id": "work", "type": "steps.calls", "config": {"url": url, "calls": CALLS}}],
        "edges": [],
    }


async def test_finished_steps_happen_once_across_a_sigkill_takeover(
    fresh_pg_url: str, tmp_path: Path
) -> None:
    plugins = steps_plugin.install(tmp_path / "plugins")
    path = os.pathsep.join(filter(None, [str(plugins), str(ROOT), os.environ.get("PYTHONPATH")]))
    replicas = [
        ServerProcess(fresh_pg_url, settings={**FAST_LEASES, "replica_id": f"r{i}"})
        for i in range(2)
    ]
    for replica in replicas:
        replica.env["PYTHONPATH"] = path
    try:
        for replica in replicas:
            await replica.start()
        first, second = replicas
        async with recording() as recorder:
            workflow_id = await create_workflow(first, calls_workflow(recorder.effect_url(CALL_S)))
            run_id = await start_run(first, workflow_id)
            async with client(first) as http:
                async with sse(http, f"/v1/executions/{run_id}/events") as events:
                    await events.until("node.step")
                    await events.until("node.step")  # two steps finished, the third is in flight
                owner = (await http.get(f"/v1/executions/{run_id}")).json()["owner"]
            victim = replicas[int(owner.removeprefix("r"))]
            await victim.kill()
            survivor = second if victim is first else first

            done = await settled(survivor, run_id)
            counts = recorder.of_run(run_id)

        assert done["status"] == "completed", done
        assert done["owner"] != owner
        events = await event_log(survivor, run_id)
        assert_gap_free_log(events)
        assert any(
            e["type"] == "workflow.resumed" and e["data"]["reason"] == "recovered" for e in events
        )
        # Finished before the kill: once. Cut off by it: at most twice, with the same key.
        assert counts["work#0"] == 1 and counts["work#1"] == 1, counts
        assert set(counts) == {f"work#{i}" for i in range(CALLS)}, counts
        assert all(count <= 2 for count in counts.values()), counts
        finished = Counter(e["data"]["name"] for e in events if e["type"] == "node.step")
        assert finished == {f"call-{i}": 1 for i in range(CALLS)}, finished
        (work,) = [n for n in done["nodes"] if n["node_id"] == "work"]
        assert [s["name"] for s in work["steps"]] == [f"call-{i}" for i in range(CALLS)]
        # The output holds what the server had seen per key: the recorded results, not reruns.
        assert done["outputs"] == [counts[f"work#{i}"] for i in range(CALLS)]
    finally:
        for replica in replicas:
            await replica.stop()
            replica.close()
