"""What authentication costs: ``python -m bench.auth``.

1. An API key checked by the authenticator (``Authorization`` header in, caller out): with the
   key in the replica's cache (targets p50 ≤ 20 µs), and read from Postgres each time (the
   cache emptied before every call; target ≤ 1 ms). RS256 tokens: ``python -m bench.auth_oidc``.
2. A request through the whole app in-process (ASGI, no network): GET of a workflow with no
   key configured (open) and with a runner key, CPU per request.
3. A revocation reaching three replicas (three apps on one database, each with its own
   notification connection): time from the revoking commit until each replica refuses the
   key, over repeated revocations (target p99 ≤ 1 s).

Uses the test database (``OXIFY_TEST_DATABASE_URL``, default the local one): a scratch database
is created and dropped. Prints numbers, asserts nothing.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx

from app.main import create_app
from app.settings import Settings
from app.store import db
from bench._server import BENCH_PEPPER, database_url, scratch_database
from tests.api.helpers import client_of, doubler, services_of

CALLS = 5000
MISSES = 500
REQUESTS = 2000
REVOCATIONS = 30
REPLICAS = 3


def _cuts(samples_ns: list[int]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples_ns, n=100, method="inclusive")
    return cuts[49] / 1000, cuts[98] / 1000


@asynccontextmanager
async def app_client(url: str, **settings: object) -> AsyncIterator[httpx.AsyncClient]:
    await db.migrate(url)
    app = create_app(Settings(database_url=url, key_pepper=BENCH_PEPPER, **settings))
    async with app.router.lifespan_context(app), client_of(app) as client:
        yield client


async def key_checks(url: str) -> None:
    async with app_client(url) as client:
        services = services_of(client)
        key = (await services.keys.create(name="b", scopes=["runner"], project="p")).key
        header = f"Bearer {key}"
        auth = services.auth
        for _ in range(200):
            await auth.principal(header)
        hits = []
        for _ in range(CALLS):
            started = time.perf_counter_ns()
            await auth.principal(header)
            hits.append(time.perf_counter_ns() - started)
        misses = []
        for _ in range(MISSES):
            auth.keys.cache.clear()
            started = time.perf_counter_ns()
            await auth.principal(header)
            misses.append(time.perf_counter_ns() - started)
    hit, hit99 = _cuts(hits)
    miss, miss99 = _cuts(misses)
    print(f"1. API key, cached: p50 {hit:.1f} µs, p99 {hit99:.1f} µs (n={CALLS})")
    print(f"   API key, read from Postgres: p50 {miss:.0f} µs, p99 {miss99:.0f} µs (n={MISSES})")


async def request_cost(url: str) -> None:
    """One app: measured open (no key exists yet), then with a runner key."""
    async with scratch_database(url) as scratch, app_client(scratch) as client:
        made = await client.post("/v1/workflows", json=doubler())
        path = f"/v1/workflows/{made.json()['id']}"
        open_us = await _cpu_per_request(client, path, {})
        created = await services_of(client).keys.create(
            name="b", scopes=["runner"], project="default"
        )
        keyed_us = await _cpu_per_request(client, path, {"Authorization": f"Bearer {created.key}"})
    print(
        f"2. GET /v1/workflows/{{id}} in-process (client included), CPU per request: open "
        f"{open_us:.0f} µs, with a runner key {keyed_us:.0f} µs ({keyed_us - open_us:+.0f} µs, "
        f"{100 * (keyed_us / open_us - 1):+.1f} %)"
    )


async def _cpu_per_request(client: httpx.AsyncClient, path: str, headers: dict[str, str]) -> float:
    for _ in range(200):
        assert (await client.get(path, headers=headers)).status_code == 200
    started = time.process_time()
    for _ in range(REQUESTS):
        await client.get(path, headers=headers)
    return (time.process_time() - started) / REQUESTS * 1e6


async def revocation(url: str) -> None:
    async with AsyncExitStack() as stack:
        clients = [
            # Polling a revoked key fails authentication on purpose, hundreds of times.
            await stack.enter_async_context(
                app_client(url, shutdown_grace_s=1, auth_failures_per_min=1_000_000)
            )
            for _ in range(REPLICAS)
        ]
        keys = services_of(clients[0]).keys
        delays: list[float] = []
        for _ in range(REVOCATIONS):
            created = await keys.create(name="r", scopes=["viewer"], project="default")
            headers = {"Authorization": f"Bearer {created.key}"}
            for client in clients:  # every replica has it cached
                assert (await client.get("/v1/auth/whoami", headers=headers)).status_code == 200
            await keys.revoke(created.id)
            revoked = time.perf_counter()
            for client in clients[1:]:
                # Asked again until refused: the wait is what is measured.
                while (await client.get("/v1/auth/whoami", headers=headers)).status_code == 200:  # noqa: ASYNC110
                    await asyncio.sleep(0.001)
                delays.append(time.perf_counter() - revoked)
    cuts = statistics.quantiles(delays, n=100, method="inclusive")
    print(
        f"3. revocation → refused on the other {REPLICAS - 1} replicas (of {REPLICAS}): "
        f"p50 {cuts[49] * 1000:.1f} ms, p99 {cuts[98] * 1000:.1f} ms, "
        f"max {max(delays) * 1000:.1f} ms (n={len(delays)})"
    )


async def main() -> None:
    url = database_url()
    async with scratch_database(url) as scratch:
        await key_checks(scratch)
    await request_cost(url)
    async with scratch_database(url) as scratch:
        await revocation(scratch)


if __name__ == "__main__":
    asyncio.run(main())
