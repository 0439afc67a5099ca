"""``oxify serve``, ``oxify migrate``, ``oxify openapi`` and ``oxify docs``: the service side of
the CLI."""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from typing import Any

from app import cli_database
from app.cli_errors import EXIT_OK
from app.store import db


def cmd_migrate(_args: argparse.Namespace) -> int:
    url = cli_database.load_settings().resolved_database_url
    cli_database.prepare(url, migrate=True)
    print(f"database at {db.head_revision()}", file=sys.stderr)
    return EXIT_OK


QUIET_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2")


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.main import create_app

    settings = cli_database.load_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    # The HTTP clients log every request's full URL at INFO: a query string or userinfo may hold
    # a secret (an http node's API key in the query, credentials in OXIFY_OLLAMA_URL).
    for chatty in QUIET_LOGGERS:
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.root.level))
    url = settings.resolved_database_url
    # A database that cannot be reached is said here in two lines, not as a traceback from
    # the app's startup.
    cli_database.prepare(url, migrate=not args.no_migrate)
    app = create_app(settings)
    # Modules, schemas and the app live as long as the process: keep them out of the
    # collector's full passes (each would otherwise scan ~10^5 objects that never die).
    gc.freeze()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=settings.log_level.lower(),
        # Open event streams must not hold the process past the runs' pause-and-checkpoint.
        timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_s)),
    )
    return EXIT_OK


def cmd_openapi(args: argparse.Namespace) -> int:
    from app.cli_docs import write_openapi

    write_openapi(args.path)
    print(f"wrote {args.path}", file=sys.stderr)
    return EXIT_OK


def cmd_docs(args: argparse.Namespace) -> int:
    from app.cli_docs import write_docs

    write_docs(args.path)
    print(f"wrote {args.path}", file=sys.stderr)
    return EXIT_OK


def add_server_commands(commands: Any) -> None:
    p = commands.add_parser("serve", help="migrate the database and serve the HTTP API")
    p.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="default: 8000")
    p.add_argument("--no-migrate", action="store_true", help="do not run migrations first")
    p.set_defaults(handler=cmd_serve)
    p = commands.add_parser("migrate", help="upgrade the database to the latest schema")
    p.set_defaults(handler=cmd_migrate)
    p = commands.add_parser("openapi", help="write the OpenAPI document")
    p.add_argument("path", nargs="?", default="openapi/openapi.json")
    p.set_defaults(handler=cmd_openapi)
    p = commands.add_parser("docs", help="write the HTTP API reference (Markdown)")
    p.add_argument("path", nargs="?", default="docs/api.md")
    p.set_defaults(handler=cmd_docs)
