"""`oxify analyze FILE`: the four reports as text or JSON, and invalid documents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.engine.analysis.documents import unhealthy
from tests.unit.test_cli import INVALID, run, write


def test_analyze_json_holds_the_four_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "analyze", write(tmp_path, unhealthy()), "--json")
    assert (code, err) == (0, "")
    found = json.loads(out)
    assert set(found) == {"health", "complexity", "estimate", "batching"}
    assert found["health"]["score"] == 24
    assert found["complexity"]["nodes"] == 4
    (ask,) = found["estimate"]["nodes"]
    assert (ask["node_id"], ask["model"], ask["basis"]) == ("ask", "gpt-4o-mini", "static")
    assert ask["cost_usd"] is not None  # gpt-4o-mini is in the packaged price table
    assert found["estimate"]["tokenizer"] == "chars/4"
    assert found["batching"]["groups"] == []


def test_analyze_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "analyze", write(tmp_path, unhealthy()))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "health: 24/100 (1 error, 7 warning, 0 info)"
    assert "  error literal_secret /nodes/1/config/headers/Authorization: " in out
    assert any(line.startswith("complexity: ") for line in lines)
    assert any(line.startswith("  ask (llm openai/gpt-4o-mini): tokens ") for line in lines)
    assert lines[-1] == "batching: nothing to merge"


def test_analyze_an_invalid_document_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "analyze", write(tmp_path, INVALID))
    assert (code, out) == (1, "")
    assert "the workflow document is invalid" in err
    assert "/nodes/1/config/condition" in err
