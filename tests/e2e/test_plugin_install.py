"""The example plug-in installed with pip, as a user installs it, then used by ``oxify`` in a
process of its own: listed by ``oxify nodes``, run by ``oxify run``; a plug-in that breaks on
import is named on stderr and the rest still load.

pip installs into a directory of the test's own (``--target``), put on ``PYTHONPATH``: the
shared environment is never changed. The build runs in pip's isolated build environment, whose
setuptools comes from the package index (the environment's own may be too old to build a wheel).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.plugin_dists import BROKEN_ON_IMPORT, write_plugin

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "examples" / "plugins" / "hello"
PIP_TIMEOUT_S = 110.0  # seconds; the build environment's setuptools may have to be downloaded
CLI_TIMEOUT_S = 60.0  # seconds


@pytest.fixture(scope="module")
def hello_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory the example plug-in is installed into."""
    work = tmp_path_factory.mktemp("hello")
    source = work / "source"  # a copy: building leaves build/ and *.egg-info beside the sources
    shutil.copytree(HELLO, source)
    site = work / "site"
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    command += ["--no-deps", "--target", str(site), str(source)]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False
    )
    assert done.returncode == 0, done.stderr
    return site


def oxify(*args: str, path: list[Path]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in path)}
    env.pop("OXIFY_FAULTS", None)
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def test_oxify_nodes_lists_the_installed_plug_in(hello_site: Path) -> None:
    done = oxify("nodes", "--json", path=[hello_site])
    assert done.returncode == 0, done.stderr
    items = {item["type"]: item for item in json.loads(done.stdout)["items"]}
    greet = items["hello.greet"]
    assert (greet["source"], greet["version"]) == ("oxify-hello", "0.1.0")
    assert greet["config_schema"]["required"] == ["name"]
    assert items["http"]["source"] == "builtin"


def test_a_workflow_runs_with_the_plug_in(hello_site: Path) -> None:
    greet = str(HELLO / "greet.json")
    done = oxify("run", greet, "--input", "who=Ada", "--quiet", path=[hello_site])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"greeting": "Hello, Ada!"}


def test_a_plug_in_broken_on_import_is_named_and_the_rest_load(
    hello_site: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    write_plugin(broken, "oxify-broken", {"fragile": "definitions"}, source=BROKEN_ON_IMPORT)
    done = oxify("nodes", path=[broken, hello_site])
    assert done.returncode == 0, done.stderr
    assert (
        "node plug-in 'fragile' (distribution 'oxify-broken' 1.0.0): could not be imported; "
        "skipped: RuntimeError: module broken on purpose"
    ) in done.stderr
    rows = {line.split()[0]: line.split()[1:3] for line in done.stdout.splitlines()[1:]}
    assert rows["hello.greet"] == ["oxify-hello", "0.1.0"]
    assert {"start", "end", "http", "foreach"} <= set(rows)
    assert rows["http"][0] == "builtin"
