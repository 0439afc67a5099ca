"""``oxify keys create --limit name=value``."""

from __future__ import annotations

import pytest

from app import cli_keys
from app.cli_errors import CliError
from app.domain.limits import Limits


def test_limits_from_the_command_line() -> None:
    given = cli_keys._limits(["runs_per_day=100", " requests_per_s = 2.5"])
    assert given == Limits(runs_per_day=100, requests_per_s=2.5)
    assert cli_keys._limits([]) is None


@pytest.mark.parametrize("bad", ["runs_per_day=-1", "runs=3", "tokens_per_day=lots"])
def test_a_bad_limit_is_a_usage_error(bad: str) -> None:
    with pytest.raises(CliError, match="--limit"):
        cli_keys._limits([bad])
