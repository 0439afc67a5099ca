"""The API keeps its OpenAPI contract: schemathesis runs every phase configured in
schemathesis.toml (examples, coverage, fuzzing, stateful over the document's links) against a
real ``oxify serve`` on a fresh Postgres database, and fails on any server error, any answer the
document does not describe, and any request the schema forbids that the server accepts."""

from __future__ import annotations

import asyncio
import re
import sys
import tempfile

import pytest
from cryptography.fernet import Fernet

from tests.e2e.processes import ROOT, ServerProcess

CONFIG = ROOT / "schemathesis.toml"
MIN_CASES = 5_000
RUN_TIMEOUT_S = 900.0  # seconds; the run takes about two minutes on two cores
SERVER = {
    # Runs started by the stateful phase execute, but few at once: the cases are the point.
    "max_concurrent_runs": "4",
    "shutdown_grace_s": "2",
    # Credentials are stored (the route's real path), not refused for want of a key.
    "secret_keys": Fernet.generate_key().decode(),
}


@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
async def test_the_api_keeps_its_openapi_contract(fresh_pg_url: str) -> None:
    server = ServerProcess(fresh_pg_url, settings=SERVER)
    try:
        await server.start()
        returncode, output = await _schemathesis(f"{server.url}/openapi.json")
    finally:
        await server.stop()
        server_log = server.log_tail(60)
        server.close()
    report = f"{output[-20_000:]}\n--- server log ---\n{server_log}"
    assert returncode == 0, report
    cases = re.search(r"(\d+) generated", output)
    assert cases is not None, report
    assert int(cases.group(1)) >= MIN_CASES, report


async def _schemathesis(schema_url: str) -> tuple[int, str]:
    """Run the CLI from the repository root (the config names its hooks file from there)."""
    with tempfile.TemporaryFile() as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--no-color",
            "--config-file",
            str(CONFIG),
            "run",
            schema_url,
            cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=output,
        )
        try:
            returncode = await asyncio.wait_for(process.wait(), RUN_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()
            returncode = -1
        output.seek(0)
        return returncode, output.read().decode(errors="replace")
