"""Runs across replicas that keep dying: ``python -m bench.recovery [--runs N] [--lease S]``.

Three ``oxify serve`` replicas on a scratch Postgres database (lease 2 s by default). 100 runs of
a 10-node chain of ``http`` nodes (each a request to a local side-effect recorder that counts
requests per Idempotency-Key, 100 ms each) are submitted by 10 clients to random replicas, while
one replica is SIGKILLed and restarted every 2 s. Printed:

1. runs completed, events lost (gaps or a missing terminal event), completed nodes executed
   again (a node whose ``node.completed`` was logged before a recovery and that the recorder saw
   more than once), interrupted nodes;
2. kill → first node started again on a survivor, p50/p99 (target p99 ≤ 3 s with a 2 s lease);
3. lease traffic: renewal statements per second per replica (target ≤ 4), claims per second,
   notifying transactions per second (at most one per ~10 ms);
4. queue pick-up on an idle cluster: submit → first ``node.started``, 200 sequential runs, p99
   (target ≤ 10 ms);
5. the claim statement's time with 100,000 queued runs (target ≤ 2 ms), and its plan.

Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
import httpx
import uvloop
from sqlalchemy.engine import make_url

from app.store import claims, db
from bench._server import Server, database_url, describe, parse_ts, scratch_database
from tests.e2e.effects import effects_chain, recording

SEED = 7
REPLICAS = 3
CLIENTS = 10
STEPS = 10
STEP_S = 0.1  # seconds each recorded request takes
KILL_EVERY_S = 2.0
PICKUP_RUNS = 200
QUEUED_FOR_CLAIM = 100_000
CLAIM_SAMPLES = 50


class Chaos:
    """The replicas, and a task that kills one (SIGKILL) and restarts it every few seconds."""

    def __init__(self, url: str, lease_s: float) -> None:
        settings = {"lease_s": str(lease_s), "shutdown_grace_s": "2"}
        self.replicas = [
            Server(url, migrate=True, settings={**settings, "replica_id": f"r{i}"})
            for i in range(REPLICAS)
        ]
        self.kills: list[tuple[float, str]] = []  # (time.time(), replica id) of each kill
        self.lives: dict[str, float] = {}  # replica id -> time.time() its current life began
        self.rng = random.Random(SEED)
        self._restarts: list[asyncio.Task[None]] = []

    def alive(self) -> list[Server]:
        return [r for r in self.replicas if r.alive]

    async def start(self) -> None:
        await asyncio.gather(*(self._start(r) for r in self.replicas))

    async def _start(self, replica: Server) -> None:
        await replica.start()
        self.lives[replica.env["OXIFY_REPLICA_ID"]] = time.time()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), KILL_EVERY_S)
                return
            except TimeoutError:
                pass
            alive = self.alive()
            if len(alive) < 2:
                continue  # one is still restarting: keep a survivor
            victim = self.rng.choice(alive)
            self.kills.append((time.time(), victim.env["OXIFY_REPLICA_ID"]))
            await victim.kill()
            # Back while the others carry on (a restart takes a second or two), under a new
            # replica id as a rescheduled pod would be: the dead one's runs are left to the
            # survivors' lease expiry (a restart under the same id would recover them at once).
            name, _, life = victim.env["OXIFY_REPLICA_ID"].partition(".")
            victim.env["OXIFY_REPLICA_ID"] = f"{name}.{int(life or 0) + 1}"
            self._restarts.append(asyncio.create_task(self._start(victim)))

    async def settle(self) -> None:
        """Every restart done."""
        await asyncio.gather(*self._restarts)

    async def close(self) -> None:
        await self.settle()
        await asyncio.gather(*(r.stop() for r in self.replicas))
        for replica in self.replicas:
            replica.close()


async def request(chaos: Chaos, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """Send to a random live replica; on a dead one try another (kills happen meanwhile)."""
    for _ in range(50):
        replica = chaos.rng.choice(chaos.alive())
        try:
            async with httpx.AsyncClient(base_url=replica.url, timeout=70.0) as http:
                return await http.request(method, path, **kwargs)
        except httpx.TransportError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"no replica answered {method} {path}")


async def submit(chaos: Chaos, workflow_id: str, index: int) -> str:
    # The same key on every try: a retry after a dying replica answered nothing is no duplicate.
    response = await request(
        chaos,
        "POST",
        f"/v1/workflows/{workflow_id}/executions",
        json={},
        headers={"Idempotency-Key": f"bench-{index}"},
    )
    response.raise_for_status()
    execution_id: str = response.json()["id"]
    return execution_id


async def finish(chaos: Chaos, execution_id: str) -> dict[str, Any]:
    while True:
        response = await request(
            chaos, "GET", f"/v1/executions/{execution_id}/wait", params={"timeout_s": 60}
        )
        if response.status_code == 200 and response.json()["status"] not in (
            "queued",
            "running",
            "pausing",
        ):
            result: dict[str, Any] = response.json()
            return result


async def log_of(chaos: Chaos, execution_id: str) -> list[dict[str, Any]]:
    path = f"/v1/executions/{execution_id}/events/log"
    response = await request(chaos, "GET", path, params={"limit": 500})
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def audit(
    events: list[dict[str, Any]], counts: dict[str, int], kills: list[tuple[float, str]]
) -> dict[str, Any]:
    """What one run's log and the recorder say: lost events, re-executions, recovery delays."""
    seqs = [e["seq"] for e in events]
    lost = (
        seqs != list(range(1, len(seqs) + 1))
        or not events
        or events[-1]["type"]
        not in (
            "workflow.completed",
            "workflow.failed",
        )
    )
    recoveries = [
        e
        for e in events
        if e["type"] == "workflow.resumed" and e["data"].get("reason") == "recovered"
    ]
    completed_at = {e["node_id"]: e["seq"] for e in events if e["type"] == "node.completed"}
    first_recovery = recoveries[0]["seq"] if recoveries else None
    again = sum(
        1
        for node_id, seq in completed_at.items()
        if first_recovery is not None and seq < first_recovery and counts.get(node_id, 0) > 1
    )
    delays = []
    drivers = [e for e in events if e["type"] in ("workflow.started", "workflow.resumed")]
    for resumed in recoveries:
        resumed_ts = parse_ts(resumed["ts"])
        started = next(
            (e for e in events if e["seq"] > resumed["seq"] and e["type"] == "node.started"), None
        )
        # The kill of the replica that drove the run before this recovery.
        previous = [d for d in drivers if d["seq"] < resumed["seq"]][-1]["data"].get("replica")
        killed = [t for t, replica in kills if replica == previous and t <= resumed_ts]
        if started is not None and killed:
            delays.append((parse_ts(started["ts"]) - killed[-1]) * 1000)
    return {
        "lost": lost,
        "again": again,
        "interrupted": sum(1 for c in counts.values() if c > 1),
        "recoveries": len(recoveries),
        "delays": delays,
    }


async def metric(replica: Server, name: str) -> float:
    async with httpx.AsyncClient(base_url=replica.url) as http:
        text = (await http.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(f"oxify_{name}_total ") or line.startswith(f"oxify_{name} "):
            return float(line.split()[1])
    return 0.0


async def chaos_scenario(url: str, runs: int, lease_s: float) -> Chaos:
    chaos = Chaos(url, lease_s)
    await chaos.start()
    async with recording() as recorder:
        workflow = await request(
            chaos, "POST", "/v1/workflows", json=effects_chain(recorder, STEPS, STEP_S)
        )
        workflow_id = workflow.json()["id"]
        stop = asyncio.Event()
        killer = asyncio.create_task(chaos.run(stop))
        gate = asyncio.Semaphore(CLIENTS)
        started = time.perf_counter()

        async def one(index: int) -> tuple[str, dict[str, Any]]:
            async with gate:
                execution_id = await submit(chaos, workflow_id, index)
                return execution_id, await finish(chaos, execution_id)

        results = await asyncio.gather(*(one(i) for i in range(runs)))
        elapsed = time.perf_counter() - started
        stop.set()
        await killer
        await chaos.settle()
        audits = [
            audit(await log_of(chaos, run_id), recorder.of_run(run_id), chaos.kills)
            for run_id, _ in results
        ]
    completed = sum(1 for _, r in results if r["status"] == "completed")
    delays = [d for a in audits for d in a["delays"]]
    total = {key: sum(a[key] for a in audits) for key in ("lost", "again", "interrupted")}
    recoveries = sum(a["recoveries"] for a in audits)
    print(
        f"1. {runs} runs ({STEPS}-node chains of {STEP_S * 1000:.0f} ms http effects) across "
        f"{REPLICAS} replicas, lease {lease_s:g} s, one replica SIGKILLed and restarted every "
        f"{KILL_EVERY_S:g} s ({len(chaos.kills)} kills in {elapsed:.1f} s): {completed}/{runs} "
        f"completed; runs with lost events {total['lost']}; completed nodes executed again "
        f"{total['again']}; interrupted nodes (ran twice) {total['interrupted']}; "
        f"recoveries {recoveries}"
    )
    print(f"2. kill → first node started again on a survivor: {describe(delays, 'ms')}")
    return chaos


async def traffic(chaos: Chaos) -> None:
    now = time.time()
    parts = []
    for replica in chaos.alive():
        replica_id = replica.env["OXIFY_REPLICA_ID"]
        life = now - chaos.lives[replica_id]
        renewals, claims, notes = [
            await metric(replica, name) for name in ("lease_renewals", "claims", "notifications")
        ]
        parts.append(
            f"{replica_id} (up {life:.0f} s): {renewals / life:.1f} renewals/s, "
            f"{claims / life:.1f} claims/s, {notes / life:.1f} notifying transactions/s"
        )
    print("3. lease traffic, this life of each replica: " + "; ".join(parts))


async def pickup(chaos: Chaos) -> None:
    replica = chaos.alive()[0]
    one_node = {
        "name": "one",
        "nodes": [{"id": "n", "type": "transform", "config": {"value": 1}}],
        "edges": [],
    }
    async with httpx.AsyncClient(base_url=replica.url, timeout=30) as http:
        workflow_id = (await http.post("/v1/workflows", json=one_node)).json()["id"]
        samples = []
        for index in range(PICKUP_RUNS + 10):
            submitted = time.time()
            run = (await http.post(f"/v1/workflows/{workflow_id}/executions", json={})).json()
            await http.get(f"/v1/executions/{run['id']}/wait", params={"timeout_s": 30})
            log = (await http.get(f"/v1/executions/{run['id']}/events/log")).json()["items"]
            started = next(e for e in log if e["type"] == "node.started")
            if index >= 10:  # the first ones warm up connections and caches
                samples.append((parse_ts(started["ts"]) - submitted) * 1000)
    print(
        f"4. queue pick-up on an idle cluster, submit → first node.started ({PICKUP_RUNS} "
        f"sequential runs): {describe(samples, 'ms', 2)}"
    )


async def claim_time(url: str) -> None:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        workflow = await connection.fetchval("SELECT workflow_id FROM workflow_versions LIMIT 1")
        await connection.execute(
            "INSERT INTO executions (id, workflow_id, workflow_version, status, inputs, config, "
            "created_at, updated_at) SELECT gen_random_uuid()::text, $1, 1, 'queued', '{}', "
            "'{}', now(), now() FROM generate_series(1, $2)",
            workflow,
            QUEUED_FOR_CLAIM,
        )
        await connection.execute("ANALYZE executions")
        engine = db.create_engine(url)
        sql, arguments = claims.PgClaims(engine).sql("queued", "bench", 1, 2.0)
        await engine.dispose()
        samples = []
        for _ in range(CLAIM_SAMPLES):
            transaction = connection.transaction()
            await transaction.start()
            started = time.perf_counter()
            await connection.fetch(sql, *arguments)
            samples.append((time.perf_counter() - started) * 1000)
            await transaction.rollback()
        transaction = connection.transaction()
        await transaction.start()
        plan = await connection.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *arguments)
        await transaction.rollback()
        await connection.execute("DELETE FROM executions WHERE status = 'queued'")
    finally:
        await connection.close()
    print(
        f"5. claim statement with {QUEUED_FOR_CLAIM:,} queued runs (claim 1, rolled back; "
        f"round trip included): {describe(samples, 'ms', 3)}"
    )
    for row in plan:
        if "Scan" in row[0] or "Execution Time" in row[0]:
            print(f"   {row[0].strip()}")


async def main(runs: int, lease_s: float) -> None:
    async with scratch_database(database_url()) as url:
        chaos = await chaos_scenario(url, runs, lease_s)
        try:
            await traffic(chaos)
            await pickup(chaos)
        finally:
            await chaos.close()
        await claim_time(url)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.recovery", description=__doc__)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--lease", type=float, default=2.0, help="lease seconds (default 2)")
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main(args.runs, args.lease))
