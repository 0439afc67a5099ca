"""``oxify audit verify``: recompute the audit log's hash chain over every row, on the database
directly (no server needed), and say whether a row was changed behind the log's back."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from app import cli_database
from app.cli_errors import EXIT_FAILED, EXIT_OK
from app.services.audit import AuditService, Verification
from app.store import db


def cmd_audit_verify(args: argparse.Namespace) -> int:
    url = cli_database.load_settings().resolved_database_url
    with cli_database.reaching(url):
        result = asyncio.run(_verify(url))
    if args.json:
        print(
            json.dumps({"ok": result.broken is None, "rows": result.rows, "broken": result.broken})
        )
    elif result.broken is None:
        print(f"OK: {result.rows} rows, the chain is intact")
    else:
        print(f"BROKEN at row {result.broken} ({result.rows} rows before it are intact)")
    return EXIT_OK if result.broken is None else EXIT_FAILED


async def _verify(url: str) -> Verification:
    engine = db.create_engine(url)
    try:
        return await AuditService(engine).verify()
    finally:
        await engine.dispose()


def add_audit_commands(commands: Any) -> None:
    audit = commands.add_parser("audit", help="the audit log")
    actions = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    p = actions.add_parser(
        "verify", help="recompute the hash chain; exit 1 at the first row that breaks it"
    )
    p.add_argument("--json", action="store_true", help='print {"ok", "rows", "broken"}')
    p.set_defaults(handler=cmd_audit_verify)
