"""Fixtures of the end-to-end tests that several modules share."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import prometheus


@pytest.fixture(scope="session")
def prometheus_bin() -> Path:
    """The folder holding ``prometheus`` and ``promtool`` (tests/prometheus.py). Without them
    the tests skip, except under CI=true, where that is a failure."""
    try:
        return prometheus.binaries()
    except (OSError, RuntimeError) as exc:
        message = f"no prometheus and promtool (scripts/prometheus-binaries): {exc}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
