"""The README's tour, pasted as a newcomer would: its bash block runs with bash, curl and jq
against a real ``oxify serve`` (SQLite, then Postgres through a plain ``postgresql://`` URL), and
every command prints exactly what its comment says.

The tour needs curl and jq (Debian's ``jq`` package); without them this test skips, except under
CI=true, where that fails the run.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.e2e import tour
from tests.e2e.processes import ROOT, ServerProcess

README = ROOT / "README.md"
TOUR_URL_LINE = "OXIFY=http://127.0.0.1:8000"
TOUR_TIMEOUT_S = 90.0  # seconds for the whole tour (its run sleeps about 12 s)
CURL_MAX_TIME_S = 60  # seconds any one curl may take
MIN_CHECKED = 10  # the tour states this many outputs at least: none may go unchecked


@pytest.fixture(scope="module")
def tools() -> None:
    missing = [name for name in ("bash", "curl", "jq") if shutil.which(name) is None]
    if missing:
        message = f"the README tour needs {', '.join(missing)} (apt-get install jq curl)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)


def test_the_tour_is_parsed_as_intended() -> None:
    """Guards the parser the tour test relies on: commands, expectations, here-documents."""
    found = tour.commands(tour.tour_block(README.read_text(encoding="utf-8")))
    assert found[0].text == TOUR_URL_LINE
    assert found[1].text.startswith("cat > greet.json <<'JSON'\n{")
    assert found[1].text.endswith("\nJSON")
    expected = [c.expected for c in found if c.expected is not None]
    assert len(expected) >= MIN_CHECKED
    assert '"paused"' in expected


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database as a newcomer writes its URL (no driver in the scheme)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'oxify.db'}"
    url: str = request.getfixturevalue("pg_database_url")
    return "postgresql://" + url.partition("://")[2]


async def test_the_readme_tour(tools: None, database_url: str, tmp_path: Path) -> None:
    block = tour.tour_block(README.read_text(encoding="utf-8"))
    assert block.count(TOUR_URL_LINE) == 1, "the tour sets OXIFY= once, at the top"
    found = tour.commands(block)
    server = ServerProcess(database_url, migrate=True)
    workdir = tmp_path / "clone"
    workdir.mkdir()
    (workdir / "examples").symlink_to(ROOT / "examples")
    (tmp_path / ".curlrc").write_text(f"max-time = {CURL_MAX_TIME_S}\n")
    script = tour.script(found).replace(TOUR_URL_LINE, f"OXIFY={server.url}")
    try:
        await server.start()
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            script,
            cwd=workdir,
            env={**os.environ, "CURL_HOME": str(tmp_path)},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), TOUR_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            out, err = await process.communicate()
        stdout = out.decode()
        printed = tour.outputs(stdout, len(found))
        why = f"stdout:\n{stdout[-3000:]}\nstderr:\n{err.decode()}\nserver:\n{server.log_tail()}"
        assert process.returncode == 0, why
    finally:
        await server.stop()
        server.close()

    checked = 0
    for command, output in zip(found, printed, strict=True):
        if "curl -sN" in command.text:
            check_stream(command.text, output)
        if command.expected is not None:
            assert tour.matches(command.expected, output), (
                f"{command.text}\n  the README says: {command.expected}\n  it printed: {output}"
            )
            checked += 1
    assert checked >= MIN_CHECKED


def check_stream(command: str, printed: str) -> None:
    """What the tour says of its event streams: one event per seq, without gaps, from the
    first (or after the Last-Event-ID sent), closing after workflow.completed."""
    events = tour.sse_events(printed)
    assert events, f"{command}: no events"
    last_seen = re.search(r"Last-Event-ID: (\d+)", command)
    first = int(last_seen.group(1)) + 1 if last_seen else 1
    assert [e.id for e in events] == list(range(first, first + len(events))), command
    assert all(e.data["seq"] == e.id and e.data["type"] == e.event for e in events), command
    assert events[-1].event == "workflow.completed", command
