"""Prometheus and promtool for the tests: Debian's ``prometheus`` package, unpacked (never
installed) by ``scripts/prometheus-binaries`` into ``.cache/prometheus/bin``, or the folder
``$OXIFY_PROMETHEUS_BIN`` names; and a Prometheus on a free loopback port, with a temporary
data folder and a generated configuration, asked through its HTTP API."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
FETCH = ROOT / "scripts" / "prometheus-binaries"
FETCH_TIMEOUT_S = 300.0  # seconds; the package is about 19 MB
TOOL_TIMEOUT_S = 60.0  # seconds any one promtool command may take
WAIT_TIMEOUT_S = 20.0  # seconds for Prometheus to start, or a query to give the awaited answer
POLL_S = 0.1  # seconds between polls of Prometheus's API
STOP_TIMEOUT_S = 10.0
SCRAPE_INTERVAL = "1s"


def binaries() -> Path:
    """The folder holding ``prometheus`` and ``promtool`` (fetched first when missing).

    Raises ``RuntimeError`` saying why when there are none."""
    configured = os.environ.get("OXIFY_PROMETHEUS_BIN")
    if configured:
        folder = Path(configured)
    else:
        done = subprocess.run(
            [FETCH], capture_output=True, text=True, timeout=FETCH_TIMEOUT_S, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{FETCH.name} failed: {done.stderr.strip()}")
        folder = Path(done.stdout.strip())
    missing = [name for name in ("prometheus", "promtool") if not (folder / name).is_file()]
    if missing:
        raise RuntimeError(f"no {' or '.join(missing)} in {folder}")
    return folder


async def promtool(folder: Path, *args: str, stdin: bytes = b"") -> tuple[int, str]:
    """``promtool args…`` with ``stdin``: its exit code and its output (stdout and stderr)."""
    process = await asyncio.create_subprocess_exec(
        folder / "promtool",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(stdin), TOOL_TIMEOUT_S)
    assert process.returncode is not None
    return process.returncode, output.decode()


@dataclass
class Prometheus:
    http: httpx.AsyncClient
    log: Path

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector ``expr`` evaluates to now (fails on any query error)."""
        response = await self.http.get("/api/v1/query", params={"query": expr})
        body = response.json()
        assert body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def until(
        self, expr: str, accept: Callable[[list[dict[str, Any]]], bool]
    ) -> list[dict[str, Any]]:
        """The first answer to ``expr`` that ``accept`` takes, polled until a deadline."""
        return await self._poll(lambda: self.query(expr), accept, expr)

    async def rules(self) -> list[dict[str, Any]]:
        """The loaded rules, with their health (``unknown`` until first evaluated)."""
        body = (await self.http.get("/api/v1/rules")).json()
        assert body["status"] == "success", body
        return [rule for group in body["data"]["groups"] for rule in group["rules"]]

    async def rules_once(self, accept: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """The loaded rules once ``accept`` takes every one, polled until a deadline."""
        return await self._poll(self.rules, lambda rules: all(map(accept, rules)), "the rules")

    async def _poll(
        self,
        fetch: Callable[[], Awaitable[list[dict[str, Any]]]],
        accept: Callable[[list[dict[str, Any]]], bool],
        what: str,
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + WAIT_TIMEOUT_S
        while True:
            got = await fetch()
            if accept(got):
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: still {got}\n{self.log_tail()}")
            await asyncio.sleep(POLL_S)

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def scalar(result: list[dict[str, Any]]) -> float | None:
    """The value of a one-element answer (``None`` when empty)."""
    if not result:
        return None
    assert len(result) == 1, result
    return float(result[0]["value"][1])


@asynccontextmanager
async def serving(
    folder: Path, work: Path, targets: Sequence[str], rule_files: Sequence[Path] = ()
) -> AsyncIterator[Prometheus]:
    """A Prometheus scraping ``targets`` (``host:port``) as the job ``oxify`` every second,
    evaluating ``rule_files``; its data and log in ``work``. Yielded once it is ready."""
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{"job_name": "oxify", "static_configs": [{"targets": list(targets)}]}],
    }
    config_file = work / "prometheus.yml"
    config_file.write_text(json.dumps(config))  # JSON is YAML
    log = work / "prometheus.log"
    address = f"127.0.0.1:{free_port()}"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            folder / "prometheus",
            f"--config.file={config_file}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address={address}",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=output,
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://{address}", timeout=5.0) as http:
            server = Prometheus(http, log)
            await _ready(server, process)
            yield server
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _ready(server: Prometheus, process: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + WAIT_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise RuntimeError(f"prometheus exited:\n{server.log_tail()}")
        try:
            if (await server.http.get("/-/ready")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(POLL_S)
    raise RuntimeError(f"prometheus was not ready in {WAIT_TIMEOUT_S} s:\n{server.log_tail()}")
