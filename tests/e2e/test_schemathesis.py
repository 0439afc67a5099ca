"""The API keeps its OpenAPI contract: schemathesis runs every phase configured in
schemathesis.toml (examples, coverage, fuzzing, stateful over the document's links) against a
real ``oxify serve`` on a fresh Postgres database, with a runner key, and fails on any server
error, any answer the document does not describe, any request the schema forbids that the
server accepts, and any secured operation that answers without the key (``ignored_auth``). A
second, shorter run sends no credentials at all: every answer must still be one the document
describes (401 on every secured operation)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import tempfile

import pytest
from cryptography.fernet import Fernet

from tests.e2e.processes import ROOT, ServerProcess

CONFIG = ROOT / "schemathesis.toml"
MIN_CASES = 5_000
UNAUTHENTICATED_EXAMPLES = "5"  # cases per operation of the run without credentials
PEPPER = "schemathesis-pepper-" + "p" * 32
RUN_TIMEOUT_S = 900.0  # seconds; the run takes about two minutes on two cores
SERVER = {
    # Runs started by the stateful phase execute, but few at once: the cases are the point.
    "max_concurrent_runs": "4",
    "shutdown_grace_s": "2",
    "key_pepper": PEPPER,
    # Credentials are stored (the route's real path), not refused for want of a key.
    "secret_keys": Fernet.generate_key().decode(),
}


@pytest.mark.timeout(2 * RUN_TIMEOUT_S + 60)
async def test_the_api_keeps_its_openapi_contract(fresh_pg_url: str) -> None:
    key = await _runner_key(fresh_pg_url)
    server = ServerProcess(fresh_pg_url, settings=SERVER)
    try:
        await server.start()
        schema = f"{server.url}/openapi.json"
        returncode, output = await _schemathesis(schema, "-H", f"Authorization: Bearer {key}")
        anonymous_code, anonymous = await _schemathesis(
            schema, "--max-examples", UNAUTHENTICATED_EXAMPLES, "--phases", "examples,fuzzing"
        )
    finally:
        await server.stop()
        server_log = server.log_tail(60)
        server.close()
    report = f"{output[-20_000:]}\n--- server log ---\n{server_log}"
    assert returncode == 0, report
    cases = re.search(r"(\d+) generated", output)
    assert cases is not None, report
    assert int(cases.group(1)) >= MIN_CASES, report
    assert anonymous_code == 0, f"{anonymous[-20_000:]}\n--- server log ---\n{server_log}"


async def _runner_key(database_url: str) -> str:
    """A runner key made with ``oxify keys create`` on the migrated database."""
    env = {**os.environ, "OXIFY_DATABASE_URL": database_url, "OXIFY_KEY_PEPPER": PEPPER}
    for command in (
        ["migrate"],
        ["keys", "create", "--name", "contract", "--scope", "runner", "--json"],
    ):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app.cli",
            *command,
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await process.communicate()
        assert process.returncode == 0, stderr.decode()
    key: str = json.loads(stdout)["key"]
    return key


async def _schemathesis(schema_url: str, *options: str) -> tuple[int, str]:
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
            *options,
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
