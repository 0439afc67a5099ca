"""`oxify` on the command line: reading files, reporting problems, exit codes, stdout vs stderr."""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app import cli, cli_display
from app.domain.node_types import CORE_NODE_TYPES
from app.settings import get_settings
from tests.support import edge, node, probe_registry, workflow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write(tmp_path: Path, document: Any, name: str = "doc.json") -> str:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return str(path)


ECHO = workflow([node("start", "start"), node("end", "end")], [edge("start", "end")])
INVALID = {
    "name": "broken",
    "nodes": [
        {"id": "a", "type": "nope"},
        {"id": "a", "type": "if", "config": {"condition": "1 +"}},
    ],
    "edges": [{"from": "a", "to": "ghost"}],
}
INVALID_POINTERS = ["/nodes/1/id", "/nodes/0/type", "/nodes/1/config/condition", "/edges/0/to"]


# -- reading files -------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "validate", "graph"])
def test_bad_json_says_where(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, '{"name": "x",\n  "nodes": [}\n')
    code, out, err = run(capsys, command, path)
    assert code == 2
    assert f"{path}:2:13: invalid JSON" in err
    assert out == ""


@pytest.mark.parametrize("command", ["run", "validate", "graph"])
def test_missing_file(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "nowhere.json")
    code, out, err = run(capsys, command, missing)
    assert code == 2
    assert f"{missing}: no such file" in err
    assert out == ""


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run(
            capsys,
        )[0]
        == 2
    )
    assert run(capsys, "graph", str(EXAMPLES / "if.json"), "--format", "png")[0] == 2
    assert run(capsys, "--help")[0] == 0


# -- invalid documents ---------------------------------------------------------------------------


def test_validate_lists_every_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "validate", write(tmp_path, INVALID))
    assert code == 1
    assert out == ""
    assert "invalid: 4 problems" in err
    for pointer in INVALID_POINTERS:
        assert f"  {pointer}: " in err
    assert "(duplicate_id)" in err
    assert "(unknown_type)" in err


def test_validate_valid_document_lists_levels(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", str(EXAMPLES / "foreach.json"))
    assert code == 0
    assert out.splitlines() == [
        "valid: 3 nodes (+2 nested), 3 levels",
        "  0: start",
        "  1: score_all",
        "  2: end",
    ]


def test_run_invalid_document_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "run", write(tmp_path, INVALID))
    assert code == 2
    assert out == ""
    assert "the workflow document is invalid (4 problems)" in err
    for pointer in INVALID_POINTERS:
        assert f"  {pointer}: " in err


def test_graph_invalid_document_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "graph", write(tmp_path, INVALID), "--format", "mermaid")
    assert code == 1
    assert out == ""
    assert "/edges/0/to: no node 'ghost'" in err


def test_validate_names_a_cycle_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cyclic = workflow([node("a"), node("b")], [edge("a", "b"), edge("b", "a")])
    code, _, err = run(capsys, "validate", write(tmp_path, cyclic))
    assert code == 1
    assert err.splitlines()[1:] == ["  /edges/1: cycle: a → b → a"]


def test_validate_refuses_what_can_only_fail_at_run_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = workflow(
        [
            node("start", "start"),
            node("pow", value="{{ 9**9**9 }}"),
            node("ref", value="{{ nosuchnode.output }}"),
        ],
        [edge("start", "pow"), edge("pow", "ref")],
    )
    code, out, err = run(capsys, "validate", write(tmp_path, doc))
    assert code == 1
    assert out == ""
    lines = err.splitlines()
    assert lines[0] == "invalid: 2 problems"
    assert lines[1].startswith("  /nodes/1/config/value: template part 1 {{ 9**9**9 }}: 9 ** ")
    assert lines[1].endswith("too large (limit 10000 bits) (in 9 ** 9 ** 9) (invalid_template)")
    assert lines[2].startswith("  /nodes/2/config/value: '{{ nosuchnode.output }}' refers to ")
    assert lines[2].endswith("(unknown_reference)")


def test_document_must_be_an_object(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "validate", write(tmp_path, "[1, 2]"))
    assert code == 1
    assert "/: expected a JSON object" in err


# -- inputs and config ---------------------------------------------------------------------------


def test_inputs_are_json_when_they_parse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = write(tmp_path, {"n": 1, "keep": "me"}, "inputs.json")
    argv = ["run", write(tmp_path, ECHO), "--inputs-json", base, "-q"]
    for pair in ("n=3", "s=hello", "flag=true", "xs=[1, 2]", "eq=a=b", "empty="):
        argv += ["--input", pair]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert json.loads(out) == {
        "n": 3,
        "keep": "me",
        "s": "hello",
        "flag": True,
        "xs": [1, 2],
        "eq": "a=b",
        "empty": "",
    }


def test_string_typed_inputs_stay_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "run", str(EXAMPLES / "try.json"), "--input", "raw_price=12.5", "-q"
    )
    assert code == 0, err
    assert json.loads(out)["result"] == {"price": 12.5, "parsed": True}


@pytest.mark.parametrize("pair", ["novalue", "=3", " =3"])
def test_bad_input_option(pair: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "run", write(tmp_path, ECHO), "--input", pair)
    assert code == 2
    assert out == ""
    assert "expected KEY=VALUE" in err


def test_inputs_json_must_be_an_object(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inputs = write(tmp_path, [1], "inputs.json")
    code, _, err = run(capsys, "run", write(tmp_path, ECHO), "--inputs-json", inputs)
    assert code == 2
    assert "the inputs must be a JSON object" in err


def test_inputs_failing_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", str(EXAMPLES / "start_end.json"), "--input", "name=", "--input", "extra=1"]
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert "the inputs do not match the document's schema (2 problems)" in err
    assert "  /name: '' should be non-empty" in err
    assert "  /: Additional properties are not allowed ('extra' was unexpected)" in err


@pytest.fixture
def max_input_bytes(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setenv("OXIFY_MAX_INPUT_BYTES", "1024")
    get_settings.cache_clear()
    yield 1024
    get_settings.cache_clear()


def test_inputs_over_the_limit_are_refused(
    max_input_bytes: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = write(tmp_path, {"text": "x" * max_input_bytes}, "inputs.json")
    code, out, err = run(capsys, "run", write(tmp_path, ECHO), "--inputs-json", inputs)
    assert code == 2
    assert out == ""
    assert f"error: the inputs are larger than {max_input_bytes} bytes" in err
    assert "limit OXIFY_MAX_INPUT_BYTES" in err


def test_inputs_that_cannot_be_stored_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "run", write(tmp_path, ECHO), "--input", f"n={2**70}")
    assert code == 2
    assert "error: the inputs cannot be stored (1 problem)" in err
    assert f"  /inputs/n: cannot be stored as JSON: the integer {2**70} does not fit" in err


def test_schema_defaults_fill_missing_inputs(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "run", str(EXAMPLES / "set_var.json"), "--input", "vip=false", "-q")
    assert code == 0
    assert json.loads(out) == {"discount_percent": 5, "final_price": 190}


def test_bad_run_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "run", write(tmp_path, ECHO), "--max-concurrency", "0")
    assert (code, out) == (2, "")
    assert err == "error: --max-concurrency 0: Input should be greater than or equal to 1\n"
    config = {"checkpoint": "sometimes", "limits": {"max_nodes": 0, "max_tokens": 0}}
    path = write(tmp_path, config, "config.json")
    code, out, err = run(capsys, "run", write(tmp_path, ECHO), "--config-json", path)
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"error: {path}: /checkpoint: expected {cli.CHECKPOINT_POLICIES} (N ≥ 1)",
        f"error: {path}: /limits/max_nodes: Input should be greater than or equal to 1",
        f"error: {path}: /limits/max_tokens: Input should be greater than or equal to 1",
    ]


@pytest.mark.parametrize("policy", ["sometimes", '{"every_n_levels": 0}', "[1]", "3"])
def test_bad_checkpoint_option_is_one_clear_line(
    policy: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A union's alternatives each fail in pydantic; the person sees one line of what works."""
    code, out, err = run(capsys, "run", write(tmp_path, ECHO), "--checkpoint", policy)
    assert (code, out) == (2, "")
    assert err == (
        f"error: --checkpoint {policy!r}: expected every_node, every_level, never, "
        '{"every_n_levels": N} or {"every_n_nodes": N} (N ≥ 1)\n'
    )


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out == f"oxify {importlib.metadata.version('oxify')}\n"


def test_run_config_options_are_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path, {"max_concurrency": 2, "dependency_strategy": "skip"}, "config.json")
    argv = ["run", str(EXAMPLES / "foreach.json"), "--config-json", config, "-q"]
    argv += ["--checkpoint", '{"every_n_levels": 2}', "--timeout", "30"]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert json.loads(out)["positive"] == 3


# -- how runs end --------------------------------------------------------------------------------


def test_failed_run_exits_1_with_the_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = workflow(
        [node("start", "start"), node("boom", "fail", message="disk full on {{ 'db' }}")],
        [edge("start", "boom")],
    )
    code, out, err = run(capsys, "run", write(tmp_path, document))
    assert code == 1
    assert out == ""
    assert "✗ boom disk full on db" in err
    assert "error: the run failed at boom: disk full on db" in err


def test_timed_out_run_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = workflow([node("nap", "delay", seconds=30)], [])
    code, out, err = run(capsys, "run", write(tmp_path, document), "--timeout", "0.05", "-q")
    assert code == 1
    assert out == ""
    assert "error: the run timed out" in err


def test_waiting_run_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, _ = probe_registry()
    monkeypatch.setattr(cli, "load_registry", lambda _resources: registry)
    document = workflow([node("ask", "probe", suspend=True)], [])
    code, out, err = run(capsys, "run", write(tmp_path, document))
    assert code == 3
    assert out == ""
    assert "… ask waiting: needs input" in err
    assert "waiting for a person at: ask" in err
    assert "human input is not available in-process" in err


def test_outputs_on_stdout_progress_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "run", str(EXAMPLES / "if.json"))
    assert code == 0
    assert json.loads(out) == {"route": "manual review", "amount": 1500, "notify": "finance"}
    lines = err.splitlines()
    assert lines[0] == "▶ expense-approval: 5 nodes"
    assert "↷ approve skipped" in lines
    assert any(line.startswith("✓ large (") for line in lines)
    assert lines[-1].startswith("■ completed: 5/5 nodes in ")


def test_nested_nodes_are_indented(capsys: pytest.CaptureFixture[str]) -> None:
    _, _, err = run(capsys, "run", str(EXAMPLES / "retry_timeout.json"))
    lines = err.splitlines()
    assert any(line.startswith("↻   guarded.try.slow_call retry 1 in ") for line in lines)
    assert any(line.startswith("✗   guarded.try.slow_call node timed out") for line in lines)
    assert any(line.startswith("✓   guarded.catch.cached (") for line in lines)


def test_quiet_prints_only_the_outputs(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "run", str(EXAMPLES / "switch.json"), "--quiet")
    assert code == 0
    assert err == ""
    assert json.loads(out)["queue"] == "team"


class TerminalIO(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_live_display_on_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stderr = TerminalIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    code = cli.main(["run", str(EXAMPLES / "foreach.json")])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["positive"] == 3
    shown = stderr.getvalue()
    assert "review-scoring" in shown
    assert "score_all[4].score" in shown
    assert "3/3" in shown
    assert "\x1b[" in shown  # styled for a terminal


def test_display_choice() -> None:
    assert isinstance(
        cli_display.make_display("x", quiet=False, stream=TerminalIO()), cli_display.LiveDisplay
    )
    assert isinstance(
        cli_display.make_display("x", quiet=False, stream=io.StringIO()), cli_display.PlainDisplay
    )
    assert isinstance(
        cli_display.make_display("x", quiet=True, stream=TerminalIO()), cli_display.NullDisplay
    )


def test_ctrl_c_cancels_the_run_and_exits_130(tmp_path: Path) -> None:
    document = write(
        tmp_path,
        workflow([node("nap", "delay", seconds=60), node("after")], [edge("nap", "after")]),
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "run", document],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    try:
        assert proc.stderr is not None
        assert proc.stderr.readline().startswith("▶ test: 2 nodes")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130
    assert out == ""
    assert "interrupted: cancelling the run" in err
    assert "⊘ nap cancelled" in err
    assert "cancelled (interrupted)" in err


def test_nodes_lists_every_type_with_source_and_version(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "nodes")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["type", "source", "version", "description"]
    listed = {row.split()[0]: row for row in rows}
    assert set(CORE_NODE_TYPES) <= set(listed)
    version = cli.installed_version()
    assert listed["http"].split()[1:3] == ["builtin", version]
    assert listed["http"].endswith(CORE_NODE_TYPES["http"].description)
