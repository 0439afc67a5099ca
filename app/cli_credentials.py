"""``oxify credentials rotate-key``: re-encrypt every stored credential under the first key of
``OXIFY_SECRET_KEYS``, on the database directly.

Rotating a key: put the new key first (``OXIFY_SECRET_KEYS=new,old``) on every replica, run
this, then drop the old key. It is idempotent (rows already under the first key are left
alone) and works in batches, so it can be run again after an interruption.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from app import cli_database
from app.auth.credentials import Keyring
from app.cli_errors import EXIT_FAILED, EXIT_OK, CliError
from app.services.credentials import ROTATE_BATCH, CredentialService, Rotation
from app.store import db


def cmd_rotate_key(args: argparse.Namespace) -> int:
    settings = cli_database.load_settings()
    keys = settings.keyring()
    if keys is None:
        raise CliError(
            [
                "error: OXIFY_SECRET_KEYS is not set: there is no key to re-encrypt under",
                "set it to the new key first, then the old ones: OXIFY_SECRET_KEYS=new,old",
            ]
        )
    url = settings.resolved_database_url
    with cli_database.reaching(url):
        done = asyncio.run(_rotate(url, keys, args.batch_size))
    if args.json:
        print(json.dumps(_as_dict(done)))
    else:
        print(
            f"re-encrypted {done.rotated}, already under the first key {done.unchanged}, "
            f"unreadable {len(done.failed)}"
        )
    if done.failed:
        print(
            "error: no configured key opens these credentials (or they were copied from "
            f"another row); they were left as they are: {', '.join(done.failed)}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK


async def _rotate(url: str, keys: Keyring, batch_size: int) -> Rotation:
    engine = db.create_engine(url)
    try:
        return await CredentialService(engine, keys).rotate(batch_size)
    finally:
        await engine.dispose()


def _as_dict(done: Rotation) -> dict[str, Any]:
    return {"rotated": done.rotated, "unchanged": done.unchanged, "failed": done.failed}


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_credential_commands(commands: Any) -> None:
    p = commands.add_parser("credentials", help="manage stored credentials")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    rotate = actions.add_parser(
        "rotate-key", help="re-encrypt every stored credential under the first OXIFY_SECRET_KEYS"
    )
    rotate.add_argument(
        "--batch-size",
        type=_positive,
        default=ROTATE_BATCH,
        help=f"rows per transaction (default: {ROTATE_BATCH})",
    )
    rotate.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    rotate.set_defaults(handler=cmd_rotate_key)
