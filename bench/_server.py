"""Harness for the service benchmarks: a scratch Postgres database, a real ``oxify serve`` in a
separate process (so the load generator's CPU is not the server's), and a fast SSE reader.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from sqlalchemy.engine import make_url

from tests.e2e.processes import ServerProcess

DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def database_url() -> str:
    return (
        os.environ.get("OXIFY_BENCH_DATABASE_URL")
        or os.environ.get("OXIFY_TEST_DATABASE_URL")
        or DEFAULT_URL
    )


@asynccontextmanager
async def scratch_database(url: str) -> AsyncIterator[str]:
    """A new empty database next to ``url``'s; dropped (connections forced off) on exit."""
    admin_dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"oxify_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield make_url(url).set(database=name).render_as_string(hide_password=False)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def raise_open_files_limit() -> int:
    """Soft open-files limit raised to the hard one (children inherit it); the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = 65536 if hard == resource.RLIM_INFINITY else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def process_cpu_s(pid: int, *, children: bool = False) -> float:
    """User + system CPU seconds of process ``pid`` so far (with ``children``: plus those of
    its children that exited and were waited for)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_cpu_s() -> float:
    """CPU seconds of the local ``postgres`` processes, those that exited included (the
    postmaster accounts for its reaped backends); 0 when Postgres is remote."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() == "postgres":
                total += process_cpu_s(int(proc.name), children=True)
        except (OSError, ValueError):
            continue  # gone meanwhile
    return total


async def database_stats(url: str) -> dict[str, int]:
    """Cumulative counters of ``url``'s database: sessions opened, commits, rollbacks."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("SELECT pg_stat_force_next_flush()")
        row = await connection.fetchrow(
            "SELECT sessions, xact_commit, xact_rollback FROM pg_stat_database "
            "WHERE datname = current_database()"
        )
    finally:
        await connection.close()
    assert row is not None
    return {
        "sessions": row["sessions"],
        "commits": row["xact_commit"],
        "rollbacks": row["xact_rollback"],
    }


class Server(ServerProcess):
    """``oxify serve`` in a child process, with what the benchmarks read of it."""

    def status_kb(self, key: str) -> int:
        """A ``kB`` field of /proc/<pid>/status (VmRSS, VmHWM, ...)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    def rss_mb(self) -> float:
        return self.status_kb("VmRSS") / 1024

    def cpu_s(self) -> float:
        """User + system CPU seconds the server process used so far."""
        return process_cpu_s(self.pid)


# Headers every request of a benchmark carries (an Authorization header with --auth).
REQUEST_HEADERS: dict[str, str] = {}
BENCH_PEPPER = "bench-pepper-" + "b" * 40


async def runner_key(database_url: str) -> str:
    """A runner key on the (migrated) database, made with ``oxify keys create``."""
    env = {**os.environ, "OXIFY_DATABASE_URL": database_url, "OXIFY_KEY_PEPPER": BENCH_PEPPER}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        "keys",
        "create",
        "--name",
        "bench",
        "--scope",
        "runner",
        "--json",
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    stdout, _ = await process.communicate()
    key: str = json.loads(stdout)["key"]
    return key


@asynccontextmanager
async def serve(database_url: str, **env: str) -> AsyncIterator[Server]:
    """Start ``oxify serve`` (migrating first) on a free port with ``OXIFY_DATABASE_URL`` (and
    ``OXIFY_*`` overrides from ``env``); ready once /readyz answers 200; SIGTERM on exit."""
    server = Server(database_url, migrate=True, settings=env)
    try:
        await server.start()
        yield server
    finally:
        await server.stop()
        server.close()


def parse_ts(text: str) -> float:
    """An event's RFC 3339 ``ts`` as a Unix time (same clock as ``time.time()``)."""
    return datetime.fromisoformat(text).timestamp()


@dataclass
class Frame:
    seq: int
    type: str
    ts: float  # the event's ts (Unix seconds)
    received: float  # time.time() when the client parsed it
    data: dict[str, Any]  # the event's own data


class SseTail(asyncio.Protocol):
    """Follows one ``text/event-stream`` over a raw socket (HTTP/1.1, chunked).

    While streaming it only keeps (arrival time, bytes) per read, so 1,000 of these in one
    process cost the load generator next to nothing per frame (an httpx stream per subscriber
    made the client, not the server, the bottleneck); frames are parsed once the stream ended.
    A frame's ``received`` is the arrival time of the read that completed it.
    """

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.connected = 0.0  # time.time() when the response head arrived
        self.status = 0
        self._reads: list[tuple[float, bytes]] = []
        self._done: asyncio.Future[None] | None = None
        self._seen: asyncio.Event | None = None
        self._seen_marker = b""
        self._tail = b""  # the end of the previous read: a marker may straddle two reads

    async def read(
        self, url: str, path: str, seen: asyncio.Event | None = None, seen_seq: int = 0
    ) -> None:
        """Follow the stream to its end; set ``seen`` once the event ``seen_seq`` arrived."""
        parts = httpx.URL(url)
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._seen = seen
        self._seen_marker = f"id: {seen_seq}\n".encode() if seen_seq else b"\r\n\r\n"
        transport, _ = await loop.create_connection(lambda: self, parts.host, parts.port or 80)
        extra = "".join(f"{name}: {value}\r\n" for name, value in REQUEST_HEADERS.items())
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {parts.host}\r\nAccept: text/event-stream\r\n{extra}\r\n"
        )
        transport.write(request.encode())
        try:
            await self._done
        finally:
            transport.close()
        self._parse()

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self._reads.append((now, data))
        if not self.connected:
            self.connected = now
            if not data.startswith(b"HTTP/1.1 200"):
                self._finish()  # 204 or an error: no stream follows
        window, self._tail = self._tail + data, data[-32:]
        if self._seen is not None and self._seen_marker in window:
            self._seen.set()
            self._seen = None
        if window.endswith(b"\r\n0\r\n\r\n"):
            self._finish()  # the last chunk of a chunked body

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 - Protocol API
        self._finish()

    def _finish(self) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    def _parse(self) -> None:
        stream = b"".join(data for _, data in self._reads)
        ends = []  # offset just past each read, to map a frame to the read that completed it
        offset = 0
        for _, data in self._reads:
            offset += len(data)
            ends.append(offset)
        head, _, rest = stream.partition(b"\r\n\r\n")
        if not head:
            return
        self.status = int(head.split(b" ", 2)[1])
        position, base, read = 0, len(head) + 4, 0
        body = bytearray()
        arrival: list[tuple[int, float]] = []  # body offset -> arrival of its chunk's end
        while position < len(rest):
            line_end = rest.find(b"\r\n", position)
            if line_end < 0:
                break
            size = int(rest[position:line_end].split(b";")[0], 16)
            if size == 0:
                break
            start = line_end + 2
            body += rest[start : start + size]
            chunk_end = base + start + size
            while ends[read] < chunk_end:
                read += 1
            arrival.append((len(body), self._reads[read][0]))
            position = start + size + 2
        offset, k = 0, 0
        for message in bytes(body).split(b"\n\n"):
            offset += len(message) + 2
            while k < len(arrival) - 1 and arrival[k][0] < offset:
                k += 1
            frame = _frame(message, arrival[k][1] if arrival else 0.0)
            if frame is not None:
                self.frames.append(frame)


def _frame(message: bytes, now: float) -> Frame | None:
    for line in message.split(b"\n"):
        if line.startswith(b"data:"):
            data: dict[str, Any] = orjson.loads(line[5:])
            return Frame(data["seq"], data["type"], parse_ts(data["ts"]), now, data["data"])
    return None


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def describe(values: list[float], unit: str, digits: int = 1) -> str:
    if not values:
        return "no samples"
    return (
        f"p50 {percentile(values, 50):.{digits}f} {unit}, p99 {percentile(values, 99):.{digits}f} "
        f"{unit}, max {max(values):.{digits}f} {unit} (n={len(values)})"
    )
