"""The HTTP service under load: ``python -m bench.service [--duration S] [--only N,...]``.

A real ``oxify serve`` runs in a separate process on a scratch Postgres database
(``OXIFY_BENCH_DATABASE_URL`` or ``OXIFY_TEST_DATABASE_URL``, default the local test database;
created and dropped); this process is the load generator (httpx, HTTP/1.1 keep-alive). Prints
numbers, asserts nothing.

1  throughput: 20 clients each looping POST run (10-node chain of no-op transforms) → GET /wait,
   for ``--duration`` seconds: runs/s, node results/s, p50/p99 submit → completed.
2  submit → first ``node.started`` on an idle server: 200 sequential 1-node runs; the client's
   time.time() just before POST against the event's ``ts`` from /events/log (target p99 ≤ 10 ms).
3  commit → SSE frame at ~2,000 events/s: concurrent chains of short ``delay`` nodes, one SSE
   subscriber per run; now - event.ts per frame (target p99 ≤ 25 ms).
4  fan-out: 1,000 SSE subscribers on one run (paused, subscribed, resumed): every event exactly
   once and in order? and frame latency (target p99 ≤ 100 ms); (a) a fast run (~270 events/s),
   (b) a slow one (~20 events/s).
5  memory: server RSS idle, with 1,000 runs running, then paused (target ≤ +50 MB over idle),
   twice (a second round that leaves RSS flat shows paused runs keep nothing), and, on a second
   server whose runner is kept full, with 1,000 queued-then-paused runs.

Latencies compare this machine's clock on both sides (time.time() against the events' ts).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import uvloop

from bench._server import (
    BENCH_PEPPER,
    REQUEST_HEADERS,
    Server,
    SseTail,
    database_stats,
    database_url,
    describe,
    parse_ts,
    percentile,
    postgres_cpu_s,
    raise_open_files_limit,
    runner_key,
    scratch_database,
    serve,
)

TERMINAL = frozenset({"completed", "failed", "timed_out", "cancelled"})
SETTLED = TERMINAL | {"paused", "waiting"}
HTTP_TIMEOUT = httpx.Timeout(120.0)

S1_CLIENTS = 20
S1_CHAIN = 10
S2_RUNS = 200
S3_TARGET_EVENTS_S = 2000
S3_SECONDS = 10.0
S3_NODE_DELAY_S = 0.05
# level.started, node.started, node.completed, level.completed, progress.update, checkpoint
S3_EVENTS_PER_NODE = 6
S3_STEP_OVERHEAD_S = 0.004  # commit and scheduling per chain step, measured at this load
S4_SUBSCRIBERS = 1000
S4_CHAIN = 50
S4_NODE_DELAY_S = 0.02
S4B_CHAIN = 20  # a slower run (~20 events/s): fan-out below the server's frame capacity
S4B_NODE_DELAY_S = 0.3
S5_RUNS = 1000
S5_HOLD_S = 12.0  # the first node's delay: long enough for all runs to be running at once
S5_POSTERS = 20


def chain(size: int, *, delay_s: float | None = None, name: str = "chain") -> dict[str, Any]:
    """``size`` nodes in a line: no-op transforms, or ``delay`` nodes of ``delay_s``."""
    nodes = [
        {"id": f"n{i}", "type": "transform", "config": {"value": i}}
        if delay_s is None
        else {"id": f"n{i}", "type": "delay", "config": {"seconds": delay_s}}
        for i in range(size)
    ]
    edges = [{"from": f"n{i}", "to": f"n{i + 1}"} for i in range(size - 1)]
    return {"name": f"{name}-{size}", "nodes": nodes, "edges": edges}


def hold_then_transform(hold_s: float) -> dict[str, Any]:
    return {
        "name": "hold",
        "nodes": [
            {"id": "hold", "type": "delay", "config": {"seconds": hold_s}},
            {"id": "after", "type": "transform", "config": {"value": 1}},
        ],
        "edges": [{"from": "hold", "to": "after"}],
    }


def client(
    server: Server, connections: int = 50, timeout: httpx.Timeout = HTTP_TIMEOUT
) -> httpx.AsyncClient:
    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout closes them, so a
    # request never races the server's close.
    limits = httpx.Limits(
        max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=2.0
    )
    return httpx.AsyncClient(
        base_url=server.url, limits=limits, timeout=timeout, headers=REQUEST_HEADERS
    )


async def create_workflow(http: httpx.AsyncClient, document: dict[str, Any]) -> str:
    response = await http.post("/v1/workflows", json=document)
    response.raise_for_status()
    workflow_id: str = response.json()["id"]
    return workflow_id


async def start_run(http: httpx.AsyncClient, workflow_id: str) -> dict[str, Any]:
    response = await http.post(f"/v1/workflows/{workflow_id}/executions", json={})
    response.raise_for_status()
    execution: dict[str, Any] = response.json()
    return execution


class PauseRaces:
    """409s answered to POST /pause for a run that was being claimed (queued → running)."""

    count = 0


async def pause(http: httpx.AsyncClient, execution_id: str) -> dict[str, Any]:
    """POST /pause; a 409 while the runner claims the run (queued → running between the
    service's two conditional updates) is counted and the request sent again."""
    for _ in range(10):
        response = await http.post(f"/v1/executions/{execution_id}/pause")
        if response.status_code != 409:
            break
        PauseRaces.count += 1
        await asyncio.sleep(0.01)
    response.raise_for_status()
    execution: dict[str, Any] = response.json()
    return execution


async def settle(http: httpx.AsyncClient, execution_id: str) -> dict[str, Any]:
    """Long-poll /wait until the run is terminal, paused or waiting."""
    while True:
        response = await http.get(f"/v1/executions/{execution_id}/wait", params={"timeout_s": 60})
        response.raise_for_status()
        execution: dict[str, Any] = response.json()
        if execution["status"] in SETTLED:
            return execution


async def bounded(limit: int, jobs: Iterable[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Run the jobs, at most ``limit`` at once; their results in order."""
    gate = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await job()

    return await asyncio.gather(*(one(job) for job in jobs))


class Cpu:
    """Server, Postgres and load-generator CPU over a scenario, as shares of one core."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.wall = time.perf_counter()
        self.server_cpu = server.cpu_s()
        self.postgres_cpu = postgres_cpu_s()
        self.client_cpu = time.process_time()

    def line(self) -> str:
        wall = time.perf_counter() - self.wall
        shares = {
            "server": self.server.cpu_s() - self.server_cpu,
            "postgres": postgres_cpu_s() - self.postgres_cpu,
            "load generator": time.process_time() - self.client_cpu,
        }
        parts = ", ".join(f"{k} {v:.1f} s ({100 * v / wall:.0f}%)" for k, v in shares.items())
        return f"   cpu over {wall:.1f} s (100% = one core): {parts}"


class DbCounters:
    """Postgres sessions opened and transactions over a scenario (pg_stat_database; backends
    report at most once a second, hence the pauses)."""

    SETTLE_S = 1.2

    def __init__(self, server: Server) -> None:
        self.server = server
        self.before: dict[str, int] = {}

    async def start(self) -> None:
        await asyncio.sleep(self.SETTLE_S)
        self.before = await database_stats(self.server.database_url)

    async def line(self, runs: int) -> str:
        await asyncio.sleep(self.SETTLE_S)
        after = await database_stats(self.server.database_url)
        d = {k: after[k] - self.before[k] for k in after}
        per_run = (d["commits"] + d["rollbacks"]) / max(runs, 1)
        return (
            f"   postgres: {d['sessions']} new sessions (connections opened), {d['commits']} "
            f"commits + {d['rollbacks']} rollbacks = {per_run:.1f} transactions per run"
        )


# -- 1 ----------------------------------------------------------------------------------------


async def throughput(server: Server, duration: float) -> None:
    async with client(server, S1_CLIENTS * 2) as http:
        workflow_id = await create_workflow(http, chain(S1_CHAIN))

        phases: list[dict[str, float]] = []

        async def once() -> tuple[float, str]:
            start = time.perf_counter()
            submitted = time.time()
            execution = await start_run(http, workflow_id)
            answered = time.time()
            done = await settle(http, execution["id"])
            if done["status"] == "completed":
                phases.append(
                    {
                        "POST answered": answered - submitted,
                        "created_at": parse_ts(done["created_at"]) - submitted,
                        "started_at": parse_ts(done["started_at"]) - submitted,
                        "finished_at": parse_ts(done["finished_at"]) - submitted,
                        "/wait answered": time.time() - submitted,
                    }
                )
            return time.perf_counter() - start, done["status"]

        await bounded(S1_CLIENTS, [once] * S1_CLIENTS * 2)  # warm-up: connections, plan cache
        phases.clear()
        counters = DbCounters(server)
        await counters.start()
        latencies: list[float] = []
        statuses: dict[str, int] = {}
        cpu = Cpu(server)
        start = time.perf_counter()
        deadline = start + duration

        async def worker() -> None:
            while time.perf_counter() < deadline:
                seconds, status = await once()
                statuses[status] = statuses.get(status, 0) + 1
                if status == "completed":
                    latencies.append(seconds * 1000)

        await asyncio.gather(*(worker() for _ in range(S1_CLIENTS)))
        elapsed = time.perf_counter() - start
        cpu_line = cpu.line()
    runs = len(latencies)
    others = {k: v for k, v in statuses.items() if k != "completed"}
    print(
        f"1. throughput, {S1_CLIENTS} clients x (POST {S1_CHAIN}-node no-op chain → GET /wait) "
        f"for {elapsed:.1f} s: {runs / elapsed:.1f} runs/s, "
        f"{runs * S1_CHAIN / elapsed:.0f} node results/s ({runs} runs completed"
        + (f", not completed: {others}" if others else "")
        + ")"
    )
    print(f"   submit → completed: {describe(latencies, 'ms')}")
    steps = " → ".join(
        f"{key} {percentile([p[key] * 1000 for p in phases], 50):.1f}" for key in phases[0]
    )
    print(f"   where the time goes, p50 ms since submit: {steps}")
    print(cpu_line)
    print(await counters.line(sum(statuses.values())))


# -- 2 ----------------------------------------------------------------------------------------


async def first_node_started(server: Server) -> None:
    async with client(server, 4) as http:
        workflow_id = await create_workflow(http, chain(1, name="one"))

        async def once() -> dict[str, float]:
            submitted = time.time()
            execution = await start_run(http, workflow_id)
            answered = time.time()
            await settle(http, execution["id"])
            log = await http.get(
                f"/v1/executions/{execution['id']}/events/log", params={"limit": 20}
            )
            log.raise_for_status()
            ts: dict[str, float] = {}
            for event in log.json()["items"]:
                ts.setdefault(event["type"], parse_ts(event["ts"]))
            return {
                "node.started": ts["node.started"] - submitted,
                "POST answered": answered - submitted,
                "created_at": parse_ts(execution["created_at"]) - submitted,
                "workflow.started": ts["workflow.started"] - submitted,
            }

        for _ in range(10):  # warm-up
            await once()
        counters = DbCounters(server)
        await counters.start()
        cpu = Cpu(server)
        samples = [await once() for _ in range(S2_RUNS)]
        cpu_line = cpu.line()

    def ms(key: str) -> list[float]:
        return [s[key] * 1000 for s in samples]

    print(
        f"2. submit → first node.started, idle, {S2_RUNS} sequential 1-node runs "
        f"(event ts - client time.time() before POST): {describe(ms('node.started'), 'ms', 2)}"
    )
    print(f"   POST /executions answered: {describe(ms('POST answered'), 'ms', 2)}")
    print(
        "   breakdown, p50 since submit: row's created_at (request parsed, workflow planned) "
        f"{percentile(ms('created_at'), 50):.2f} ms → workflow.started (row committed, runner "
        f"claimed and loaded it) {percentile(ms('workflow.started'), 50):.2f} ms → node.started "
        f"{percentile(ms('node.started'), 50):.2f} ms"
    )
    print(cpu_line)
    print((await counters.line(S2_RUNS)).replace("per run", "per run (POST, /wait, /events/log)"))


# -- 3 ----------------------------------------------------------------------------------------


async def stream_latency(server: Server) -> None:
    step_s = S3_NODE_DELAY_S + S3_STEP_OVERHEAD_S
    runs = max(1, round(S3_TARGET_EVENTS_S * step_s / S3_EVENTS_PER_NODE))
    nodes = max(1, round(S3_SECONDS / step_s))
    async with client(server, runs * 2 + 10) as http:
        workflow_id = await create_workflow(
            http, chain(nodes, delay_s=S3_NODE_DELAY_S, name="paced")
        )
        tails = [SseTail() for _ in range(runs)]

        async def follow(tail: SseTail) -> None:
            execution = await start_run(http, workflow_id)
            await tail.read(server.url, f"/v1/executions/{execution['id']}/events")

        cpu = Cpu(server)
        await asyncio.gather(*(follow(tail) for tail in tails))
    live = [f for t in tails for f in t.frames if f.ts >= t.connected]
    latencies = [(f.received - f.ts) * 1000 for f in live]
    span = max(f.ts for f in live) - min(f.ts for f in live) if live else 0.0
    rate = len(live) / span if span else 0.0
    print(
        f"3. commit → SSE frame, {runs} runs x {nodes}-node chains of {S3_NODE_DELAY_S * 1000:.0f}"
        f" ms delays, one SSE subscriber each: {rate:.0f} events/s achieved "
        f"(target ~{S3_TARGET_EVENTS_S}); receipt - event ts (ts is taken just before the event "
        f"is persisted, so this includes the group commit): {describe(latencies, 'ms')}"
    )
    print(cpu.line())


# -- 4 ----------------------------------------------------------------------------------------


async def fan_out(server: Server, label: str, nodes: int, delay_s: float) -> None:
    """``S4_SUBSCRIBERS`` streams on one run of ``nodes`` delay nodes: the run is paused, every
    subscriber connects (after=0) and catches up, then the run is resumed."""
    async with client(server, 20) as http:
        workflow_id = await create_workflow(http, chain(nodes, delay_s=delay_s, name="fan"))
        execution_id = (await start_run(http, workflow_id))["id"]
        await pause(http, execution_id)
        paused = await settle(http, execution_id)
        paused_seq = paused["last_seq"]
        tails = [SseTail() for _ in range(S4_SUBSCRIBERS)]
        caught_up = [asyncio.Event() for _ in tails]
        path = f"/v1/executions/{execution_id}/events?after=0"
        readers = [
            asyncio.create_task(tail.read(server.url, path, caught_up[i], paused_seq))
            for i, tail in enumerate(tails)
        ]
        connect_start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in caught_up)), 120)
        connect_s = time.perf_counter() - connect_start
        cpu = Cpu(server)
        resumed_at = time.time()
        (await http.post(f"/v1/executions/{execution_id}/resume")).raise_for_status()
        await asyncio.wait_for(asyncio.gather(*readers), 300)
        cpu_line = cpu.line()
        finished = (await http.get(f"/v1/executions/{execution_id}")).json()
    expected = list(range(1, finished["last_seq"] + 1))
    exact = sum(1 for t in tails if [f.seq for f in t.frames] == expected)
    live = [f for t in tails for f in t.frames if f.ts >= resumed_at]
    latencies = [(f.received - f.ts) * 1000 for f in live]
    live_events = len({f.seq for f in live})
    run_s = max(f.ts for f in live) - resumed_at if live else 0.0
    delivered_s = max(f.received for f in live) - resumed_at if live else 0.0
    alone_s = nodes * (delay_s + 0.002)
    print(
        f"4{label}. fan-out, {S4_SUBSCRIBERS} SSE subscribers on one run ({nodes}-node chain of "
        f"{delay_s * 1000:.0f} ms delays, {finished['status']}, {len(expected)} events): "
        f"{exact}/{S4_SUBSCRIBERS} got every event exactly once, in order (all subscribed and "
        f"caught up in {connect_s:.1f} s)"
    )
    if not delivered_s:
        print("   no live frames")
        return
    print(
        f"   frame latency (receipt - event ts), {len(live)} live frames: "
        f"{describe(latencies, 'ms')}"
    )
    print(
        f"   offered ~{live_events / alone_s:.0f} events/s x {S4_SUBSCRIBERS} = "
        f"{live_events * S4_SUBSCRIBERS / alone_s:.0f} frames/s (the run alone takes "
        f"~{alone_s:.1f} s); it took {run_s:.2f} s with the streams, the last frame arrived "
        f"{delivered_s:.2f} s after resume: {len(live) / delivered_s:.0f} frames/s delivered"
    )
    print(cpu_line)


# -- 5 ----------------------------------------------------------------------------------------


async def running_count(http: httpx.AsyncClient) -> int:
    text = (await http.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith("oxify_runs_running "):
            return int(float(line.split()[1]))
    return -1


async def memory_paused_after_running(url: str) -> None:
    async with (
        serve(url, max_concurrent_runs=str(S5_RUNS * 2)) as server,
        client(server, S5_POSTERS * 5) as http,
    ):
        warm = await create_workflow(http, chain(2, name="warm"))
        await settle(http, (await start_run(http, warm))["id"])
        await asyncio.sleep(0.5)
        idle = server.rss_mb()
        print(
            f"5. memory (server RSS, OXIFY_MAX_CONCURRENT_RUNS={S5_RUNS * 2}): idle {idle:.1f} MB"
        )
        workflow_id = await create_workflow(http, hold_then_transform(S5_HOLD_S))
        for round_ in ("first", "second"):
            started = time.perf_counter()
            ids = [
                r["id"]
                for r in await bounded(S5_POSTERS, [lambda: start_run(http, workflow_id)] * S5_RUNS)
            ]
            while (running := await running_count(http)) < S5_RUNS:
                if time.perf_counter() - started > S5_HOLD_S:
                    break
                await asyncio.sleep(0.1)
            running_rss = server.rss_mb()
            ramp_s = time.perf_counter() - started
            await bounded(S5_POSTERS, [partial(pause, http, i) for i in ids])
            settled = await bounded(100, [partial(settle, http, i) for i in ids])
            statuses = _count(e["status"] for e in settled)
            await asyncio.sleep(1.0)
            paused_rss = server.rss_mb()
            print(
                f"   {round_} {S5_RUNS}: {running} running at once (each inside a "
                f"{S5_HOLD_S:.0f} s delay node; all started in {ramp_s:.1f} s): "
                f"{running_rss:.1f} MB ({running_rss - idle:+.1f} MB over idle); then paused "
                f"(POST /pause, /wait → {statuses}): {paused_rss:.1f} MB, delta over idle "
                f"{paused_rss - idle:+.1f} MB"
            )
        print(
            f"   ({2 * S5_RUNS} paused runs now; peak VmHWM {server.status_kb('VmHWM') / 1024:.1f}"
            " MB. Freed memory stays in the process, so the second round shows whether paused "
            "runs keep any: a flat RSS means the first round's memory was reused)"
        )


async def memory_queued_paused(url: str) -> None:
    async with serve(url, max_concurrent_runs="1") as server, client(server, 50) as http:
        warm = await create_workflow(http, chain(2, name="warm"))
        await settle(http, (await start_run(http, warm))["id"])
        await asyncio.sleep(0.5)
        idle = server.rss_mb()
        blocker = (await start_run(http, await create_workflow(http, chain(1, delay_s=60.0))))["id"]
        for _ in range(200):  # poll until the runner picked it up
            if await running_count(http) >= 1:
                break
            await asyncio.sleep(0.05)
        workflow_id = await create_workflow(http, hold_then_transform(S5_HOLD_S))

        async def start_and_pause() -> str:
            execution = await start_run(http, workflow_id)
            status: str = (await pause(http, execution["id"]))["status"]
            return status

        statuses = _count(await bounded(S5_POSTERS, [start_and_pause] * S5_RUNS))
        await asyncio.sleep(1.0)
        paused_rss = server.rss_mb()
        await http.post(f"/v1/executions/{blocker}/cancel", params={"wait": "true"})
    print(
        f"   second server (OXIFY_MAX_CONCURRENT_RUNS=1, its slot held by one run): idle "
        f"{idle:.1f} MB; {S5_RUNS} runs queued then paused at once ({statuses}): "
        f"{paused_rss:.1f} MB, delta over idle {paused_rss - idle:+.1f} MB"
    )


def _count(values: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


# -- main -------------------------------------------------------------------------------------


async def main(duration: float, only: set[int], auth: bool = False) -> None:
    files = raise_open_files_limit()
    print(
        f"machine: {os.cpu_count()} cores shared by the server (one uvicorn process), Postgres "
        f"and this load generator (Python, httpx): numbers are lower bounds for a dedicated "
        f"server. open-files limit {files}."
    )
    url = database_url()
    if only & {1, 2, 3, 4}:
        settings = {"key_pepper": BENCH_PEPPER} if auth else {}
        async with scratch_database(url) as scratch, serve(scratch, **settings) as server:
            print(f"server pid {server.pid} on {server.url}, RSS at start {server.rss_mb():.1f} MB")
            if auth:  # every request then carries a runner key, checked as in production
                REQUEST_HEADERS["Authorization"] = f"Bearer {await runner_key(scratch)}"
                print("authenticated: every request carries a runner key")
            if 1 in only:
                await throughput(server, duration)
            if 2 in only:
                await first_node_started(server)
            if 3 in only:
                await stream_latency(server)
            if 4 in only:
                await fan_out(server, "a", S4_CHAIN, S4_NODE_DELAY_S)
                await fan_out(server, "b", S4B_CHAIN, S4B_NODE_DELAY_S)
    if 5 in only:
        async with scratch_database(url) as scratch:
            await memory_paused_after_running(scratch)
        async with scratch_database(url) as scratch:
            await memory_queued_paused(scratch)
    if only & {4, 5}:
        print(
            f"POST /pause answered 409 {PauseRaces.count} time(s) for a run the runner was "
            "claiming at that moment (queued → running between the service's two conditional "
            "updates); sent again"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.service",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--duration", type=float, default=30.0, help="seconds of scenario 1 (default 30)"
    )
    parser.add_argument(
        "--only",
        type=lambda text: {int(part) for part in text.split(",") if part.strip()},
        default={1, 2, 3, 4, 5},
        help="comma-separated scenario numbers (default: all)",
    )
    parser.add_argument(
        "--auth",
        action="store_true",
        help="scenarios 1-4 with API keys on: a runner key on every request",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    # uvloop (a dependency of uvicorn[standard]) keeps the load generator's own overhead low.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main(args.duration, args.only, args.auth))
