"""Runs across replicas under random faults: ``python -m bench.chaos [--runs N] [--seconds S]``.

Three ``oxify serve`` replicas on a scratch Postgres database (lease 2 s), each with random
faults armed (``OXIFY_FAULTS``, seeded): journal writes and renewals that fail on a dropped
connection, claims whose answer is lost after they committed, nudges that are not sent, event
listeners that raise, nodes that stall. For ``--seconds`` (default 60) the chaos goes on:
every few seconds a replica is SIGKILLed or SIGTERMed and started again (under a new id, as a
rescheduled pod), or a random one of the service's database connections is terminated
(``pg_terminate_backend``). Meanwhile ``--runs`` runs (default 240) are submitted to random
replicas, of four workflows:

- ``chain``: six ``http`` nodes, each a request to a local side-effect recorder;
- ``loop``: a ``foreach`` of five items around an ``http`` node;
- ``approve``: an ``http`` node, an ``approval`` that a script answers, another ``http`` node;
- ``slow``: an ``http`` node that outlasts the lease (3 s), then another;

and some runs are paused and resumed by a client while they go. When the chaos ends the faults
are disarmed (replicas restarted without them), every run is waited for, and the invariants are
checked and printed:

1. every run ended (completed);
2. every log is gap-free with unique seqs and exactly one terminal event, last;
3. no completed node ran again: no ``node.started`` after a node's ``node.completed``, and
   never two ``node.completed`` for one node;
4. no form answer was lost: every answered form's run completed with the answer;
5. no run is paused that nobody left paused.

Exits 1 when an invariant does not hold.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from bench._server import Server, database_url, scratch_database
from tests.e2e.effects import EffectRecorder, recording

SEED = 20261207
REPLICAS = 3
LEASE_S = 2.0
LONG_S = 3.0  # seconds of a node that outlasts the lease (a stop or a kill lands in it)
CHAOS_EVERY_S = (1.0, 4.0)  # seconds between two blows, drawn uniformly
FAULTS = [
    {"point": "journal.before_write", "action": "drop", "probability": 0.02},
    {"point": "journal.before_renew", "action": "drop", "probability": 0.05},
    {"point": "claims.after", "action": "drop", "probability": 0.03},
    {"point": "notify.before_send", "action": "drop", "probability": 0.05},
    {"point": "bus.listener", "action": "error", "probability": 0.01},
    {"point": "node.execute", "action": "delay", "seconds": 0.3, "probability": 0.05},
]
TERMINAL = {"workflow.completed", "workflow.failed", "workflow.cancelled", "workflow.timed_out"}


def effect(recorder: EffectRecorder, node_id: str, seconds: float = 0.05) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": "http",
        "config": {"method": "POST", "url": recorder.effect_url(seconds), "idempotency_key": True},
        "retry": {"max_retries": 3, "initial_delay_ms": 50},
    }


def workflows(recorder: EffectRecorder) -> dict[str, dict[str, Any]]:
    chain = [effect(recorder, f"s{i}") for i in range(6)]
    return {
        "chain": {
            "name": "chaos-chain",
            "nodes": chain,
            "edges": [{"from": f"s{i}", "to": f"s{i + 1}"} for i in range(5)],
        },
        "loop": {
            "name": "chaos-loop",
            "nodes": [
                {
                    "id": "each",
                    "type": "foreach",
                    "config": {
                        "items": "{{ list(range(5)) }}",
                        "body": {"nodes": [effect(recorder, "call")]},
                    },
                }
            ],
        },
        "slow": {
            "name": "chaos-slow",
            "nodes": [effect(recorder, "long", LONG_S), effect(recorder, "next")],
            "edges": [{"from": "long", "to": "next"}],
        },
        "approve": {
            "name": "chaos-approve",
            "nodes": [
                effect(recorder, "before"),
                {
                    "id": "ok",
                    "type": "approval",
                    "config": {"prompt": "go?", "approvers": ["bot"], "quorum": 1},
                },
                effect(recorder, "after"),
            ],
            "edges": [{"from": "before", "to": "ok"}, {"from": "ok", "to": "after"}],
        },
    }


class Cluster:
    def __init__(self, url: str, seed: int) -> None:
        self.url = url
        self.rng = random.Random(seed)
        self.replicas = [
            Server(url, migrate=i == 0, settings=self._settings(f"r{i}.0", seed + i))
            for i in range(REPLICAS)
        ]
        self.blows: Counter[str] = Counter()

    def _settings(self, replica_id: str, seed: int | None) -> dict[str, str]:
        settings = {"lease_s": str(LEASE_S), "shutdown_grace_s": "3", "replica_id": replica_id}
        if seed is not None:
            settings |= {"faults": json.dumps(FAULTS), "faults_seed": str(seed)}
        return settings

    def alive(self) -> list[Server]:
        return [r for r in self.replicas if r.alive]

    async def start(self) -> None:
        await self.replicas[0].start()  # migrates
        await asyncio.gather(*(r.start() for r in self.replicas[1:]))

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """To a random live replica; another one when it dies under the request."""
        for _ in range(100):
            alive = self.alive()
            if not alive:
                await asyncio.sleep(0.2)
                continue
            replica = self.rng.choice(alive)
            try:
                async with httpx.AsyncClient(base_url=replica.url, timeout=70.0) as http:
                    answer = await http.request(method, path, **kwargs)
                if answer.status_code < 500:
                    return answer
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError(f"no replica answered {method} {path}")

    async def chaos(self, stop: asyncio.Event) -> None:
        restarts: list[asyncio.Task[None]] = []
        while not stop.is_set():
            await _until(stop, self.rng.uniform(*CHAOS_EVERY_S))
            if stop.is_set():
                break
            blow = self.rng.choice(["kill", "term", "cut", "cut"])
            alive = self.alive()
            if blow == "cut":
                await self._cut()
            elif len(alive) >= 2:
                victim = self.rng.choice(alive)
                self.blows[blow] += 1
                restarts.append(asyncio.create_task(self._knock_down(victim, blow)))
        await asyncio.gather(*restarts)

    async def _knock_down(self, victim: Server, blow: str) -> None:
        await (victim.kill() if blow == "kill" else victim.stop())
        name, _, life = victim.env["OXIFY_REPLICA_ID"].partition(".")
        victim.env.update(
            {
                f"OXIFY_{k.upper()}": v
                for k, v in self._settings(
                    f"{name}.{int(life) + 1}", self.rng.randrange(1 << 30)
                ).items()
            }
        )
        await victim.start()

    async def _cut(self) -> None:
        dsn = make_url(self.url).set(drivername="postgresql").render_as_string(False)
        connection = await asyncpg.connect(dsn)
        try:
            cut = await connection.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM (SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND backend_type = 'client backend' "
                "AND pid <> pg_backend_pid() ORDER BY random() LIMIT 1) AS one"
            )
        finally:
            await connection.close()
        self.blows["pg_terminate_backend"] += int(cut or 0)

    async def calm(self) -> None:
        """Restart every replica without faults: what remains is the service's own work."""
        for replica in self.replicas:
            await replica.stop()
            name, _, life = replica.env["OXIFY_REPLICA_ID"].partition(".")
            replica.env.pop("OXIFY_FAULTS", None)
            replica.env["OXIFY_REPLICA_ID"] = f"{name}.{int(life) + 1}"
            await replica.start()

    async def close(self) -> None:
        await asyncio.gather(*(r.stop() for r in self.replicas))
        for replica in self.replicas:
            replica.close()


async def reviewer(cluster: Cluster, stop: asyncio.Event, answered: dict[str, str]) -> None:
    """Answer every pending approval (as the approver ``bot``); form id → its run."""
    while not stop.is_set():
        page = await cluster.request(
            "GET", "/v1/forms", params={"status": "pending", "assignee": "bot", "limit": 100}
        )
        for form in page.json()["items"]:
            if form["id"] in answered:
                continue
            reply = await cluster.request(
                "POST",
                f"/v1/forms/{form['id']}/submit",
                json={"values": {"decision": "approved"}, "by": "bot"},
            )
            if reply.status_code == 200 and reply.json()["status"] == "submitted":
                answered[form["id"]] = form["execution_id"]
        await _until(stop, 0.3)


async def meddler(
    cluster: Cluster, runs: list[str], stop: asyncio.Event, touched: set[str]
) -> None:
    """Pause a random run now and then, and resume it a moment later."""
    while not stop.is_set():
        if runs:
            run_id = cluster.rng.choice(runs)
            touched.add(run_id)
            await cluster.request("POST", f"/v1/executions/{run_id}/pause")
            await asyncio.sleep(cluster.rng.uniform(0.1, 1.0))
            await cluster.request("POST", f"/v1/executions/{run_id}/resume")
        await _until(stop, cluster.rng.uniform(0.2, 1.0))


async def _until(event: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds`` or until ``event`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


async def ended(cluster: Cluster, run_id: str, stray: list[str]) -> dict[str, Any]:
    """The run once it ended. A run found paused is resumed; ``stray`` collects those."""
    while True:
        answer = await cluster.request(
            "GET", f"/v1/executions/{run_id}/wait", params={"timeout_s": 30}
        )
        execution: dict[str, Any] = answer.json()
        if execution["status"] in ("completed", "failed", "cancelled", "timed_out"):
            return execution
        if execution["status"] == "paused":
            stray.append(run_id)
            await cluster.request("POST", f"/v1/executions/{run_id}/resume")


async def log_of(cluster: Cluster, run_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 500} | ({"cursor": cursor} if cursor else {})
        page = (
            await cluster.request("GET", f"/v1/executions/{run_id}/events/log", params=params)
        ).json()
        events += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return events


def audit(events: list[dict[str, Any]]) -> list[str]:
    """What is wrong with one run's log (nothing: [])."""
    problems = []
    seqs = [e["seq"] for e in events]
    if seqs != list(range(1, len(seqs) + 1)):
        problems.append("log has a gap or a repeated seq")
    ends = [e for e in events if e["type"] in TERMINAL]
    if len(ends) != 1 or events[-1] is not ends[0]:
        problems.append(f"{len(ends)} terminal events, not one at the end")
    done: set[str] = set()
    for event in events:
        node = event["node_id"]
        if event["type"] == "node.started" and node in done:
            problems.append(f"completed node {node} started again")
        if event["type"] == "node.completed":
            if node in done:
                problems.append(f"node {node} completed twice")
            done.add(node)
    return problems


async def main(runs: int, seconds: float, seed: int) -> int:
    async with scratch_database(database_url()) as url, recording() as recorder:
        cluster = Cluster(url, seed)
        await cluster.start()
        try:
            ids = {}
            for name, document in workflows(recorder).items():
                created = await cluster.request("POST", "/v1/workflows", json=document)
                ids[name] = created.json()["id"]
            stop = asyncio.Event()
            answered: dict[str, str] = {}
            started: list[str] = []
            touched: set[str] = set()
            helpers = [
                asyncio.create_task(cluster.chaos(stop)),
                asyncio.create_task(reviewer(cluster, stop, answered)),
                asyncio.create_task(meddler(cluster, started, stop, touched)),
            ]
            began = time.perf_counter()
            for index in range(runs):
                kind = ("chain", "loop", "approve", "slow")[index % 4]
                reply = await cluster.request(
                    "POST",
                    f"/v1/workflows/{ids[kind]}/executions",
                    json={},
                    headers={"Idempotency-Key": f"chaos-{index}"},
                )
                started.append(reply.json()["id"])
                await asyncio.sleep(
                    max(0.0, (index + 1) * seconds / runs - (time.perf_counter() - began))
                )
            stop.set()
            chaos_s = time.perf_counter() - began
            await asyncio.gather(*helpers)
            await cluster.calm()
            calm = asyncio.Event()
            late = asyncio.create_task(reviewer(cluster, calm, answered))
            stray: list[str] = []
            finals = [await ended(cluster, run_id, stray) for run_id in started]
            calm.set()
            await late
            logs = {run_id: await log_of(cluster, run_id) for run_id in started}
        finally:
            await cluster.close()
    paused = [run_id for run_id in stray if run_id not in touched]
    return report(runs, chaos_s, cluster, finals, logs, answered, recorder, paused)


def report(
    runs: int,
    chaos_s: float,
    cluster: Cluster,
    finals: list[dict[str, Any]],
    logs: dict[str, list[dict[str, Any]]],
    answered: dict[str, str],
    recorder: EffectRecorder,
    paused: list[str],
) -> int:
    statuses = Counter(final["status"] for final in finals)
    broken = {run_id: audit(events) for run_id, events in logs.items()}
    broken = {run_id: problems for run_id, problems in broken.items() if problems}
    by_run = {final["id"]: final for final in finals}
    lost_answers = [
        form_id for form_id, run_id in answered.items() if by_run[run_id]["status"] != "completed"
    ]
    reruns = sum(count - 1 for count in recorder.counts.values() if count > 1)
    recoveries = sum(
        1
        for events in logs.values()
        for e in events
        if e["type"] == "workflow.resumed" and e["data"].get("reason") == "recovered"
    )
    blows = ", ".join(f"{n} {what}" for what, n in sorted(cluster.blows.items()))
    print(
        f"{runs} runs over {chaos_s:.0f} s of chaos on {REPLICAS} replicas (lease {LEASE_S:g} s; "
        f"{blows}; random faults armed: {', '.join(f['point'] for f in FAULTS)}); "
        f"{recoveries} recoveries, {len(answered)} approvals answered, {reruns} interrupted "
        "effects sent again (at-least-once)"
    )
    checks = [
        ("every run ended completed", statuses["completed"] == runs, dict(statuses)),
        ("every log gap-free, unique seqs, one terminal event last", not broken, broken),
        (
            "no completed node ran again",
            not any("completed" in p for ps in broken.values() for p in ps),
            None,
        ),
        ("no form answer lost", not lost_answers, lost_answers),
        ("no run left paused that nobody paused", not paused, paused),
    ]
    for number, (what, held, detail) in enumerate(checks, 1):
        print(f"{number}. {what}: {'held' if held else 'BROKEN'}" + ("" if held else f" {detail}"))
    return 0 if all(held for _, held, _ in checks) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--runs", type=int, default=240)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.runs, args.seconds, args.seed)))
