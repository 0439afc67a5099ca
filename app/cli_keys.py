"""``oxify keys create|list|revoke|rotate``: API keys, straight on the database (the first
admin key of a deployment is made this way), and the check ``oxify serve`` makes before it
listens: no unauthenticated service on an address other machines reach.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import ValidationError

from app import cli_database
from app.auth import keys as key_format
from app.cli_errors import EXIT_OK, CliError
from app.domain.access import MAX_KEY_DAYS, ApiKey
from app.domain.limits import Limits
from app.errors import OxifyError
from app.services.keys import KeyService
from app.settings import Settings
from app.store import db

log = logging.getLogger("oxify")
T = TypeVar("T")
CLI_SENDER = "cli"  # the notification sender name of changes made here


def _run(settings: Settings, work: Callable[[KeyService], Awaitable[T]]) -> T:
    async def go() -> T:
        engine = db.create_engine(settings.resolved_database_url)
        try:
            keys = KeyService(
                engine, pepper=settings.pepper, sender=CLI_SENDER, cache_s=settings.key_cache_s
            )
            return await work(keys)
        finally:
            await engine.dispose()

    url = settings.resolved_database_url
    cli_database.prepare(url, migrate=False)
    try:
        with cli_database.reaching(url):
            return asyncio.run(go())
    except OxifyError as exc:
        raise CliError(f"error: {exc.message}") from None


def _show(key: ApiKey, as_json: bool, secret: str | None = None) -> None:
    data: dict[str, Any] = key.model_dump(mode="json")
    if secret is not None:
        data["key"] = secret
    if as_json:
        print(json.dumps(data))
        return
    project = key.project or "(every project)"
    state = "revoked" if key.revoked_at else f"expires {key.expires_at}" if key.expires_at else ""
    print(f"{key.id}  {key.name}  {','.join(key.scopes)}  {project}  {state}".rstrip())
    if secret is not None:
        print(f"key (shown once, store it now): {secret}", file=sys.stderr)


def _limits(pairs: list[str]) -> Limits | None:
    """``--limit name=value`` options as the key's limits (SystemExit on a bad one)."""
    if not pairs:
        return None
    given = {name.strip(): value.strip() for name, _, value in (p.partition("=") for p in pairs)}
    try:
        return Limits.model_validate(given)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CliError(f"--limit {first['loc'][0]}: {first['msg']}") from None


def cmd_create(args: argparse.Namespace) -> int:
    settings = cli_database.load_settings()
    project = None if args.all_projects else args.project
    created = _run(
        settings,
        lambda keys: keys.create(
            name=args.name,
            scopes=args.scope,
            project=project,
            expires_in_days=args.expires_in_days,
            limits=_limits(args.limit),
        ),
    )
    _show(created, args.json, created.key)
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    for key in _run(cli_database.load_settings(), lambda keys: keys.listed()):
        _show(key, args.json)
    return EXIT_OK


def cmd_revoke(args: argparse.Namespace) -> int:
    _show(_run(cli_database.load_settings(), lambda keys: keys.revoke(args.id)), as_json=False)
    return EXIT_OK


def cmd_rotate(args: argparse.Namespace) -> int:
    created = _run(
        cli_database.load_settings(), lambda keys: keys.rotate(args.id, grace_s=args.grace_s)
    )
    _show(created, args.json, created.key)
    return EXIT_OK


def cmd_generate(_args: argparse.Namespace) -> int:
    """A new key's text, stored nowhere: for a secret file that ``OXIFY_ADMIN_KEY_FILE``
    names (``oxify serve`` adds it as an admin key)."""
    print(key_format.new_key()[0])
    return EXIT_OK


def bootstrap_admin(settings: Settings) -> None:
    """Make the key in ``OXIFY_ADMIN_KEY_FILE`` an admin key of every project, unless a key
    with its id exists already (a restart); a file that holds no valid key is an error."""
    path = settings.admin_key_file
    if path is None:
        return
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise CliError(f"error: OXIFY_ADMIN_KEY_FILE: cannot read {path}: {exc}") from None
    if key_format.parse(text) is None:
        raise CliError(
            f"error: OXIFY_ADMIN_KEY_FILE: {path} holds no Oxify API key; write one with "
            "`oxify keys generate`"
        )
    if _run(settings, lambda keys: keys.import_key(text, name="admin (bootstrap)")):
        log.info("added the admin key from %s", path)


def check_serving(settings: Settings, host: str, *, allow_unauthenticated: bool) -> None:
    """Refuse to serve without authentication on an address other machines reach (Redis'
    protected mode); warn about it on loopback. An identity provider protects it too."""
    if settings.oidc_enabled:
        return
    exists = _run(settings, lambda keys: keys.any_exist())
    if exists:
        if settings.pepper is None:
            raise CliError(
                [
                    "error: API keys exist but OXIFY_KEY_PEPPER is not set: no key could be "
                    "checked.",
                    "Set OXIFY_KEY_PEPPER to the secret the keys were created with.",
                ]
            )
        return
    if _loopback(host):
        log.warning(
            "serving WITHOUT authentication on %s (no API key exists yet): anyone on this "
            "machine can use the API; create one with `oxify keys create --name admin "
            "--scope admin`",
            host,
        )
        return
    if not allow_unauthenticated:
        raise CliError(
            [
                f"error: refusing to serve without authentication on {host}: no API key "
                "exists yet, so anyone reaching this address could start, cancel and approve "
                "runs.",
                "Create a key first (`oxify keys create --name admin --scope admin`), serve "
                "on 127.0.0.1, or pass --insecure-allow-unauthenticated.",
            ]
        )
    log.warning("serving WITHOUT authentication on %s (--insecure-allow-unauthenticated)", host)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def add_key_commands(commands: Any) -> None:
    keys = commands.add_parser("keys", help="create, list, revoke and rotate API keys")
    sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    p = sub.add_parser("create", help="create a key; its secret is printed once")
    p.add_argument("--name", required=True)
    p.add_argument(
        "--scope",
        action="append",
        required=True,
        choices=["viewer", "runner", "reviewer", "admin"],
        help="repeatable; admin implies all",
    )
    p.add_argument("--project", default="default", help="the project it sees (default: default)")
    p.add_argument("--all-projects", action="store_true", help="an admin key for every project")
    p.add_argument("--expires-in-days", type=int, choices=range(1, MAX_KEY_DAYS + 1), metavar="N")
    p.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a limit of the key: requests_per_s, concurrent_runs, runs_per_day, tokens_per_day",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object, key included")
    p.set_defaults(handler=cmd_create)
    p = sub.add_parser("generate", help="print a new key for a secret file; stores nothing")
    p.set_defaults(handler=cmd_generate)
    p = sub.add_parser("list", help="list keys (never their secrets)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(handler=cmd_list)
    p = sub.add_parser("revoke", help="revoke a key (every replica refuses it within 1 s)")
    p.add_argument("id")
    p.set_defaults(handler=cmd_revoke)
    p = sub.add_parser("rotate", help="a new key replacing ID; ID works for --grace-s more")
    p.add_argument("id")
    p.add_argument("--grace-s", type=int, default=3600, help="default: 3600")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_rotate)
