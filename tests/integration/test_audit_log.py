"""The audit log on real databases: append and read back, refuse edits, keep one chain under
concurrent appenders, and let ``oxify audit verify`` find an edit made behind its back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from app import cli
from app.auth import context
from app.auth.audit import OK, AuditEntry, Filters
from app.auth.context import RequestContext
from app.auth.principal import Principal
from app.auth.scopes import Scope
from app.errors import CursorInvalid
from app.services import audit as service
from app.services.audit import AuditAction, AuditService
from app.settings import get_settings
from app.store import audit as store
from app.store.db import create_engine

T0 = datetime(2026, 12, 7, 21, 0, tzinfo=UTC)
Verify = Callable[..., tuple[int, str]]  # verify(url, *flags) -> (exit code, stdout)


def entry(n: int, **fields: str) -> AuditEntry:
    values = {
        "actor": f"key:k{n % 2}",
        "action": "run.start" if n % 3 else "run.cancel",
        "target": f"run-{n}",
        "project": "default",
        "outcome": OK,
        **fields,
    }
    return AuditEntry(at=T0 + timedelta(seconds=n), detail={"n": n}, **values)


async def append_all(engine: AsyncEngine, entries: list[AuditEntry]) -> None:
    for item in entries:
        async with engine.begin() as conn:
            await store.append(conn, item)


async def test_rows_read_back_newest_first_filtered_in_pages(engine: AsyncEngine) -> None:
    await append_all(engine, [entry(n) for n in range(1, 11)])
    reader = AuditService(engine)

    everything = await reader.page(Filters(), cursor=None, limit=100)
    assert [r.id for r in everything.items] == list(range(10, 0, -1))
    newest = everything.items[0]
    assert (newest.actor, newest.target, newest.detail, newest.at) == (
        "key:k0",
        "run-10",
        {"n": 10},
        T0 + timedelta(seconds=10),
    )

    seen, cursor = [], None
    while True:
        page = await reader.page(Filters(actor="key:k1"), cursor=cursor, limit=2)
        seen += [r.target for r in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ["run-9", "run-7", "run-5", "run-3", "run-1"]

    window = Filters(
        action="run.cancel", since=T0 + timedelta(seconds=4), until=T0 + timedelta(seconds=9)
    )
    assert [r.target for r in (await reader.page(window, cursor=None, limit=10)).items] == ["run-6"]
    with pytest.raises(CursorInvalid):
        await reader.page(Filters(), cursor="bm90IGEgY3Vyc29y", limit=10)

    assert await reader.verify() == service.Verification(rows=10, broken=None)


async def test_the_log_refuses_updates_and_deletes(engine: AsyncEngine) -> None:
    await append_all(engine, [entry(1)])
    statements = ["UPDATE audit_log SET outcome = 'denied'", "DELETE FROM audit_log"]
    if engine.dialect.name == "postgresql":
        statements.append("TRUNCATE audit_log")
    for statement in statements:
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(text(statement))
    assert (await AuditService(engine).verify()).rows == 1


async def test_a_rolled_back_transaction_leaves_no_row_and_no_gap(engine: AsyncEngine) -> None:
    await append_all(engine, [entry(1)])
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            await store.append(conn, entry(2))
            raise RuntimeError("the action failed after its audit row")
    await append_all(engine, [entry(3)])
    page = await AuditService(engine).page(Filters(), cursor=None, limit=10)
    assert [(r.id, r.target) for r in page.items] == [(2, "run-3"), (1, "run-1")]
    assert (await AuditService(engine).verify()).broken is None


async def test_record_takes_who_asked_from_the_request(engine: AsyncEngine) -> None:
    caller = Principal(scopes=frozenset({Scope.RUNNER}), project="blue", key_id="AbCdEf012345")
    token = context.bind(RequestContext(caller, request_id="req-1", client_ip="10.0.0.7"))
    try:
        await service.record_alone(engine, action=AuditAction.RUN_RETRY, target="run-1")
        await service.record_alone(
            engine, action=AuditAction.AUTH_FAILURE, target="key:AbCdEf012345", outcome="denied"
        )
    finally:
        context.reset(token)
    await service.record_alone(engine, action=AuditAction.RUN_DELETE, target="run-2", project="p")
    rows = (await AuditService(engine).page(Filters(), cursor=None, limit=10)).items
    assert [(r.actor, r.action, r.project, r.outcome, r.request_id, r.client_ip) for r in rows] == [
        ("anonymous", "run.delete", "p", "ok", None, None),
        ("key:AbCdEf012345", "auth.failure", "blue", "denied", "req-1", "10.0.0.7"),
        ("key:AbCdEf012345", "run.retry", "blue", "ok", "req-1", "10.0.0.7"),
    ]


APPENDERS = 50


async def test_concurrent_appenders_on_two_engines_keep_one_chain(database_url: str) -> None:
    engines = [create_engine(database_url), create_engine(database_url)]
    try:

        async def appender(n: int) -> int:
            async with engines[n % 2].begin() as conn:
                return await store.append(conn, entry(n))

        ids = await asyncio.gather(*(appender(n) for n in range(APPENDERS)))
        assert sorted(ids) == list(range(1, APPENDERS + 1))
        assert await AuditService(engines[0]).verify() == service.Verification(APPENDERS, None)
    finally:
        for engine in engines:
            await engine.dispose()


# -- oxify audit verify ------------------------------------------------------------------------


@pytest.fixture
def verify_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Verify]:
    def run(url: str, *flags: str) -> tuple[int, str]:
        monkeypatch.setenv("OXIFY_DATABASE_URL", url)
        get_settings.cache_clear()
        code = cli.main(["audit", "verify", *flags])
        return code, capsys.readouterr().out

    yield run
    get_settings.cache_clear()


async def _tamper(url: str, statement: str) -> None:
    """Change the log behind the triggers' back: disabled (Postgres, as the owner) or dropped
    (SQLite) for the one statement."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                await conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
                await conn.execute(text(statement))
                await conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER USER"))
            else:
                await conn.execute(text("DROP TRIGGER audit_log_no_update"))
                await conn.execute(text("DROP TRIGGER audit_log_no_delete"))
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def _fill(url: str, count: int) -> None:
    engine = create_engine(url)
    try:
        await append_all(engine, [entry(n) for n in range(1, count + 1)])
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("statement", "broken"),
    [
        ("UPDATE audit_log SET outcome = 'denied' WHERE id = 3", 3),
        ("DELETE FROM audit_log WHERE id = 2", 2),
        ("DELETE FROM audit_log WHERE id >= 4", 4),
    ],
)
def test_verify_finds_an_edit_made_behind_the_log(
    database_url: str, verify_cli: Verify, statement: str, broken: int
) -> None:
    run = verify_cli
    asyncio.run(_fill(database_url, 5))
    code, out = run(database_url)
    assert (code, out) == (0, "OK: 5 rows, the chain is intact\n")

    asyncio.run(_tamper(database_url, statement))
    code, out = run(database_url, "--json")
    assert code == 1
    assert json.loads(out) == {"ok": False, "rows": broken - 1, "broken": broken}
