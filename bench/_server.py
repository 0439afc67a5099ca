"""Harness for the service benchmarks: a scratch Postgres database, a real ``oxify serve`` in a
separate process (so the load generator's CPU is not the server's), and a fast SSE reader.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import asyncpg
import httpx
import orjson
from sqlalchemy.engine import make_url

DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
ROOT = Path(__file__).resolve().parent.parent
READY_POLL_S = 0.05  # seconds between /readyz polls while the server starts
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """``oxify serve`` in a child process."""

    process: asyncio.subprocess.Process
    port: int
    log: IO[bytes]
    database_url: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

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

    def log_tail(self, lines: int = 30) -> str:
        self.log.flush()
        self.log.seek(0)
        return b"\n".join(self.log.read().splitlines()[-lines:]).decode(errors="replace")


@asynccontextmanager
async def serve(database_url: str, **env: str) -> AsyncIterator[Server]:
    """Start ``oxify serve`` on a free port with ``OXIFY_DATABASE_URL`` (and ``OXIFY_*``
    overrides from ``env``); ready once /readyz answers 200; SIGTERM and wait on exit."""
    port = free_port()
    child_env = {
        **os.environ,
        "OXIFY_DATABASE_URL": database_url,
        "OXIFY_LOG_LEVEL": "warning",  # no access log: it would cost the server CPU
        "OXIFY_SHUTDOWN_GRACE_S": "5",
        **{f"OXIFY_{k.upper()}": v for k, v in env.items()},
    }
    with tempfile.TemporaryFile() as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app.cli",
            "serve",
            "--port",
            str(port),
            env=child_env,
            cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        server = Server(process, port, log, database_url)
        try:
            await _wait_ready(server)
            yield server
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
                except TimeoutError:
                    process.kill()
                    await process.wait()


async def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with httpx.AsyncClient(base_url=server.url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.process.returncode is not None:
                raise RuntimeError(f"the server exited:\n{server.log_tail()}")
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(READY_POLL_S)
    raise RuntimeError(f"the server was not ready in {READY_TIMEOUT_S} s:\n{server.log_tail()}")


def parse_ts(text: str) -> float:
    """An event's RFC 3339 ``ts`` as a Unix time (same clock as ``time.time()``)."""
    return datetime.fromisoformat(text).timestamp()


@dataclass
class Frame:
    seq: int
    type: str
    ts: float  # the event's ts (Unix seconds)
    received: float  # time.time() when the client parsed it


@dataclass
class SseTail:
    """Reads a ``text/event-stream`` body: raw bytes split on blank lines, one ``json.loads``
    per event (cheap enough for the load generator to keep up with many streams)."""

    frames: list[Frame] = field(default_factory=list)
    connected: float = 0.0  # time.time() when the response headers arrived
    status: int = 0

    async def read(
        self,
        client: httpx.AsyncClient,
        path: str,
        seen: asyncio.Event | None = None,
        seen_seq: int = 0,
    ) -> None:
        """Follow the stream to its end; set ``seen`` once the event ``seen_seq`` arrived."""
        async with client.stream("GET", path) as response:
            self.connected = time.time()
            self.status = response.status_code
            if response.status_code != 200:
                return
            if seen is not None and seen_seq == 0:
                seen.set()
            buffer = b""
            async for chunk in response.aiter_raw():
                buffer += chunk
                *messages, buffer = buffer.split(b"\n\n")
                now = time.time()
                for message in messages:
                    frame = _frame(message, now)
                    if frame is None:
                        continue
                    self.frames.append(frame)
                    if seen is not None and frame.seq == seen_seq:
                        seen.set()


def _frame(message: bytes, now: float) -> Frame | None:
    for line in message.split(b"\n"):
        if line.startswith(b"data:"):
            data: dict[str, Any] = orjson.loads(line[5:])
            return Frame(data["seq"], data["type"], parse_ts(data["ts"]), now)
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
