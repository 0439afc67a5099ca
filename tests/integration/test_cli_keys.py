"""``oxify keys``: a key made from a secret file at startup (the Docker bootstrap), the pepper
from a file, and ``keys generate``."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import cli, cli_keys
from app.auth import keys as key_format
from app.auth.scopes import Scope
from app.cli_errors import CliError
from app.settings import Settings

PEPPER = "file-pepper-" + "f" * 40


def test_the_admin_key_file_becomes_an_admin_key_once(
    pg_database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["keys", "generate"]) == 0
    text = capsys.readouterr().out.strip()
    assert key_format.parse(text) is not None
    (tmp_path / "pepper").write_text(PEPPER + "\n")
    (tmp_path / "admin").write_text(text + "\n")
    settings = Settings(
        database_url=pg_database_url,
        key_pepper_file=tmp_path / "pepper",
        admin_key_file=tmp_path / "admin",
    )
    assert settings.pepper == PEPPER.encode()

    cli_keys.bootstrap_admin(settings)
    cli_keys.bootstrap_admin(settings)  # a restart: the key exists, nothing changes
    listed = cli_keys._run(settings, lambda keys: keys.listed())
    assert [(k.name, k.scopes, k.project) for k in listed] == [
        ("admin (bootstrap)", ["admin"], None)
    ]
    caller = cli_keys._run(settings, lambda keys: keys.principal(text))
    assert caller.scopes == {Scope.ADMIN}
    assert caller.project is None

    (tmp_path / "admin").write_text("not a key")
    with pytest.raises(CliError, match="holds no Oxify API key"):
        cli_keys.bootstrap_admin(settings)


def test_an_unreadable_pepper_file_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        Settings(key_pepper_file=tmp_path / "missing")
