"""`oxify credentials rotate-key` on a real Postgres: encrypted under key A, rotated with
OXIFY_SECRET_KEYS=B,A, then readable with B alone; idempotent; moved or foreign rows reported
and left alone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, update

from app import cli
from app.auth.credentials import Keyring
from app.domain.credentials import NewCredential
from app.services.credentials import CredentialService
from app.settings import get_settings
from app.store import db
from app.store.tables import credentials

A, B = Fernet.generate_key().decode(), Fernet.generate_key().decode()
VALUES = {f"c{i}": f"canary-{i}-rotating-value" for i in range(5)}
Oxify = Callable[..., tuple[int, str, str]]
T = TypeVar("T")


@pytest.fixture
def oxify(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], pg_database_url: str
) -> Iterator[Oxify]:
    """``oxify(keys, *argv)``: the command with OXIFY_SECRET_KEYS=keys; (code, stdout, stderr)."""

    def run(keys: str | None, *argv: str) -> tuple[int, str, str]:
        monkeypatch.setenv("OXIFY_DATABASE_URL", pg_database_url)
        if keys is None:
            monkeypatch.delenv("OXIFY_SECRET_KEYS", raising=False)
        else:
            monkeypatch.setenv("OXIFY_SECRET_KEYS", keys)
        get_settings.cache_clear()
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    get_settings.cache_clear()


def service_call(url: str, keys: list[str], use: Callable[[CredentialService], Awaitable[T]]) -> T:
    """``use`` of a credential service on ``url`` with ``keys``, on a loop of its own."""

    async def go() -> T:
        engine = db.create_engine(url)
        try:
            return await use(CredentialService(engine, Keyring(keys)))
        finally:
            await engine.dispose()

    return asyncio.run(go())


async def _store(service: CredentialService) -> None:
    for name, value in VALUES.items():
        await service.create(NewCredential.model_validate({"name": name, "value": value}))


async def _read(service: CredentialService) -> dict[str, str]:
    return {name: (await service.resolve("default", name)).value for name in VALUES}


def test_rotate_then_the_new_key_alone_reads_everything(oxify: Oxify, pg_database_url: str) -> None:
    service_call(pg_database_url, [A], _store)

    code, out, _ = oxify(f"{B},{A}", "credentials", "rotate-key", "--batch-size", "2", "--json")
    assert code == 0
    assert json.loads(out) == {"rotated": 5, "unchanged": 0, "failed": []}
    assert service_call(pg_database_url, [B], _read) == VALUES

    code, out, _ = oxify(f"{B},{A}", "credentials", "rotate-key")
    assert code == 0
    assert out.strip() == "re-encrypted 0, already under the first key 5, unreadable 0"

    moved = _copy_ciphertext(pg_database_url, "c0", "c1")
    code, out, err = oxify(B, "credentials", "rotate-key", "--json")
    assert code == 1
    assert json.loads(out)["failed"] == [moved]
    assert moved in err and "left as they are" in err


def test_without_a_key_there_is_nothing_to_rotate_under(oxify: Oxify) -> None:
    code, _, err = oxify(None, "credentials", "rotate-key")
    assert code == 2
    assert "OXIFY_SECRET_KEYS is not set" in err


def _copy_ciphertext(url: str, source: str, target: str) -> str:
    """Put ``source``'s ciphertext on ``target``'s row (what a database writer could do); the
    target's id."""

    async def go() -> str:
        engine = db.create_engine(url)
        try:
            async with engine.begin() as conn:
                rows = {
                    row.name: row
                    for row in await conn.execute(
                        select(credentials.c.id, credentials.c.name, credentials.c.ciphertext)
                    )
                }
                await conn.execute(
                    update(credentials)
                    .where(credentials.c.id == rows[target].id)
                    .values(ciphertext=rows[source].ciphertext)
                )
            return str(rows[target].id)
        finally:
            await engine.dispose()

    return asyncio.run(go())
