"""``oxify serve``, ``oxify migrate``, ``oxify openapi`` and ``oxify docs``: the service side of
the CLI."""

from __future__ import annotations

import argparse
import gc
import sys
from typing import Any

from app import cli_database, cli_keys
from app.cli_errors import EXIT_OK
from app.observability import logs
from app.settings import Settings
from app.store import db


def cmd_migrate(_args: argparse.Namespace) -> int:
    url = cli_database.load_settings().resolved_database_url
    cli_database.prepare(url, migrate=True)
    print(f"database at {db.head_revision()}", file=sys.stderr)
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    settings = cli_database.load_settings()
    # Resolved once: the leases and every log line name the same replica.
    settings = settings.model_copy(update={"replica_id": settings.resolved_replica_id})
    listener = logs.configure(
        log_format=settings.log_format,
        level=settings.log_level,
        secrets=logs.secret_values(settings),
        fields={"replica_id": settings.replica_id},
    )
    try:
        _serve(settings, args)
    finally:
        listener.stop()  # writes what is still queued
    return EXIT_OK


def _serve(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn
    from opentelemetry import trace

    from app.main import create_app
    from app.observability.tracing import Tracing

    url = settings.resolved_database_url
    # A database that cannot be reached is said here in two lines, not as a traceback from
    # the app's startup.
    cli_database.prepare(url, migrate=not args.no_migrate)
    cli_keys.bootstrap_admin(settings)
    cli_keys.check_serving(
        settings, args.host, allow_unauthenticated=args.insecure_allow_unauthenticated
    )
    tracing = Tracing.from_settings(settings, settings.resolved_replica_id)
    if tracing.provider is not None:
        # One app in this process: libraries that ask OpenTelemetry for its provider get ours.
        trace.set_tracer_provider(tracing.provider)
    app = create_app(settings, tracing=tracing)
    # Modules, schemas and the app live as long as the process: keep them out of the
    # collector's full passes (each would otherwise scan ~10^5 objects that never die).
    gc.freeze()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn's loggers write through ours (logs.configure)
        # Open event streams must not hold the process past the runs' pause-and-checkpoint.
        timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_s)),
    )


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
    p.add_argument(
        "--insecure-allow-unauthenticated",
        action="store_true",
        help="serve without authentication on a non-loopback address until a key exists",
    )
    p.set_defaults(handler=cmd_serve)
    p = commands.add_parser("migrate", help="upgrade the database to the latest schema")
    p.set_defaults(handler=cmd_migrate)
    p = commands.add_parser("openapi", help="write the OpenAPI document")
    p.add_argument("path", nargs="?", default="openapi/openapi.json")
    p.set_defaults(handler=cmd_openapi)
    p = commands.add_parser("docs", help="write the HTTP API reference (Markdown)")
    p.add_argument("path", nargs="?", default="docs/api.md")
    p.set_defaults(handler=cmd_docs)
