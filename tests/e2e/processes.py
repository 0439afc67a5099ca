"""``oxify serve`` in child processes: replicas that tests and benchmarks start, kill -9, freeze
and restart (a real process each, so a kill loses exactly what a crash would)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import httpx

ROOT = Path(__file__).resolve().parents[2]
READY_POLL_S = 0.05  # seconds between /readyz polls while a server starts
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """One ``oxify serve`` child on a fixed loopback port, with ``OXIFY_<name>`` settings from
    ``settings`` and other variables from ``env``; its output goes to a temporary file
    (``log_tail`` shows it)."""

    def __init__(
        self,
        database_url: str,
        *,
        port: int | None = None,
        migrate: bool = False,
        settings: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.database_url = database_url
        self.port = port or free_port()
        self.migrate = migrate
        self.env = {
            **os.environ,
            "OXIFY_DATABASE_URL": database_url,
            "OXIFY_LOG_LEVEL": "warning",  # no access log: it would cost the server CPU
            "OXIFY_SHUTDOWN_GRACE_S": "5",
            **{f"OXIFY_{k.upper()}": v for k, v in (settings or {}).items()},
            **(env or {}),  # variables of other names (OTEL_*)
        }
        # Lives as long as this object (the process may be restarted): closed by close().
        self.log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self.process: asyncio.subprocess.Process | None = None
        self.ready = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        """Started, ready, and not dead since."""
        return self.ready and self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        """Start and wait until /readyz answers 200."""
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app.cli",
            "serve",
            *(() if self.migrate else ("--no-migrate",)),
            "--port",
            str(self.port),
            env=self.env,
            cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
        )
        await self._wait_ready()
        self.ready = True

    async def kill(self) -> None:
        """SIGKILL: the process dies at once, as in a crash or an OOM kill."""
        if self.process is not None and self.process.returncode is None:
            self.ready = False
            self.process.kill()
            await self.process.wait()

    def freeze(self) -> None:
        """SIGSTOP: the process stops without dying (a long GC pause, a partitioned host)."""
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    async def stop(self) -> None:
        """SIGTERM (graceful: runs are paused and queued again), SIGKILL if that takes long."""
        if self.process is None or self.process.returncode is not None:
            return
        self.ready = False
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()

    def close(self) -> None:
        self.log.close()

    def log_tail(self, lines: int = 30) -> str:
        self.log.flush()
        self.log.seek(0)
        return b"\n".join(self.log.read().splitlines()[-lines:]).decode(errors="replace")

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        async with httpx.AsyncClient(base_url=self.url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process is None or self.process.returncode is not None:
                    raise RuntimeError(f"the server exited:\n{self.log_tail()}")
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(READY_POLL_S)
        raise RuntimeError(f"the server was not ready in {READY_TIMEOUT_S} s:\n{self.log_tail()}")
