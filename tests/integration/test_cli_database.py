"""`oxify migrate` and `oxify serve` against databases a newcomer gets wrong: two lines saying what
is wrong and how to fix it, exit code 2, no traceback; and the URLs people write just work."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from app import cli
from app.settings import get_settings
from tests.e2e.processes import ROOT, free_port

SERVE_TIMEOUT_S = 60.0  # seconds; `serve` must give up long before this
Oxify = Callable[..., tuple[int, str]]


@pytest.fixture
def oxify(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[Oxify]:
    """``oxify(url, *argv)``: run the command with OXIFY_DATABASE_URL=url; (code, stderr)."""

    def run(url: str, *argv: str) -> tuple[int, str]:
        monkeypatch.setenv("OXIFY_DATABASE_URL", url)
        get_settings.cache_clear()
        code = cli.main(list(argv))
        return code, capsys.readouterr().err

    yield run
    get_settings.cache_clear()


def pg(postgres_url: str, *, scheme: str | None = None, **parts: str) -> str:
    url = make_url(postgres_url).set(**parts)  # type: ignore[arg-type]
    text = url.render_as_string(hide_password=False)
    return text if scheme is None else scheme + text.partition("://")[2]


def assert_two_lines(code: int, err: str) -> list[str]:
    lines = err.splitlines()
    assert code == 2, err
    assert len(lines) == 2, err
    assert lines[0].startswith("error: "), err
    return lines


def test_a_database_that_does_not_exist(
    oxify: Oxify, postgres_url: str, postgres_template: str
) -> None:
    name = f"oxify_missing_{uuid.uuid4().hex[:8]}"
    code, err = oxify(pg(postgres_url, scheme="postgresql://", database=name), "migrate")
    first, second = assert_two_lines(code, err)
    assert f'the database "{name}" does not exist on the Postgres server at 127.0.0.1:5432' in first
    assert f"create it (createdb -h 127.0.0.1 -p 5432 -U postgres {name})" in second
    assert "OXIFY_DATABASE_URL=postgresql://user:password@host:5432/database" in second


def test_unknown_credentials(oxify: Oxify, postgres_url: str, postgres_template: str) -> None:
    url = pg(postgres_url, username=f"nobody_{uuid.uuid4().hex[:8]}", password="secret-pw")
    code, err = oxify(url, "migrate")
    first, _ = assert_two_lines(code, err)
    assert "the Postgres server at 127.0.0.1:5432 refused the credentials" in first
    assert "secret-pw" not in err


def test_a_refused_port(oxify: Oxify) -> None:
    port = free_port()  # nothing listens there
    code, err = oxify(f"postgres://postgres@127.0.0.1:{port}/oxify", "migrate")
    first, second = assert_two_lines(code, err)
    assert (
        first == f"error: cannot reach the Postgres server at 127.0.0.1:{port}: connection refused"
    )
    assert "OXIFY_DATABASE_URL=postgresql://" in second


def test_an_sqlite_file_in_a_missing_directory(oxify: Oxify, tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "oxify.db"
    code, err = oxify(f"sqlite:///{path}", "migrate")
    first, _ = assert_two_lines(code, err)
    assert first == f"error: cannot open the SQLite database {path}: unable to open database file"


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("mysql://root@127.0.0.1/oxify", "unsupported database 'mysql'"),
        ("localhost:5432", "not a database URL"),
    ],
)
def test_an_unknown_scheme(oxify: Oxify, url: str, complaint: str) -> None:
    code, err = oxify(url, "migrate")
    assert code == 2
    assert err.startswith(f"error: OXIFY_DATABASE_URL: {complaint}"), err
    assert len(err.splitlines()) == 1


def test_other_bad_settings_are_one_line(
    oxify: Oxify, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OXIFY_LEASE_S", "ten")
    code, err = oxify(f"sqlite:///{tmp_path / 'oxify.db'}", "migrate")
    assert code == 2
    assert err.splitlines() == [
        "error: OXIFY_LEASE_S: Input should be a valid number, unable to parse string as a number"
    ]


@pytest.mark.parametrize("scheme", ["postgres://", "postgresql://"])
def test_postgres_urls_as_people_write_them(oxify: Oxify, fresh_pg_url: str, scheme: str) -> None:
    code, err = oxify(pg(fresh_pg_url, scheme=scheme), "migrate")
    assert code == 0, err
    assert err.startswith("database at ")


def test_libpq_sslmode_is_understood(oxify: Oxify, fresh_pg_url: str) -> None:
    url = pg(fresh_pg_url, scheme="postgresql://") + "?sslmode=disable"
    code, err = oxify(url, "migrate")
    assert code == 0, err


def test_sqlite_urls_without_a_driver(oxify: Oxify, tmp_path: Path) -> None:
    code, err = oxify(f"sqlite:///{tmp_path / 'oxify.db'}", "migrate")
    assert code == 0, err
    assert (tmp_path / "oxify.db").exists()


@pytest.mark.parametrize("migrate", [True, False])
def test_serve_says_it_in_two_lines(
    migrate: bool, postgres_url: str, postgres_template: str
) -> None:
    """The whole command as a person runs it: no traceback on stderr, exit code 2."""
    name = f"oxify_missing_{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "OXIFY_DATABASE_URL": pg(postgres_url, scheme="postgres://", database=name),
    }
    argv = [sys.executable, "-m", "app.cli", "serve", "--port", str(free_port())]
    done = subprocess.run(
        [*argv, *(() if migrate else ("--no-migrate",))],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SERVE_TIMEOUT_S,
        check=False,
    )
    first, _ = assert_two_lines(done.returncode, done.stderr)
    assert f'the database "{name}" does not exist' in first
    assert done.stdout == ""
