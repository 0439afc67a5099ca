"""Configuration, from ``OXIFY_*`` environment variables (and a ``.env`` file). Nothing else in
the code reads the environment."""

from __future__ import annotations

import os
import secrets
import socket
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from app.auth import credentials
from app.engine.compile.graph import Limits
from app.faults import FaultRule
from app.settings_ai import AiSettings
from app.settings_auth import AuthSettings
from app.settings_code import CodeSettings
from app.settings_limits import LimitSettings
from app.settings_mcp import McpSettings
from app.settings_net import NetSettings
from app.settings_oidc import OidcSettings
from app.settings_tracing import TracingSettings

DEFAULT_SQLITE_FILE = "oxify.db"
# How to write OXIFY_DATABASE_URL, for messages that say it was written wrong.
DATABASE_URL_FORMS = "postgresql://user:password@host:5432/database or sqlite:///path/to/oxify.db"
# The one async driver Oxify uses for each database it runs on.
ASYNC_DRIVERS = {"postgresql": "asyncpg", "sqlite": "aiosqlite"}


def async_database_url(url: str) -> str:
    """``url`` with the async driver Oxify runs on: ``postgres://`` and ``postgresql://`` become
    ``postgresql+asyncpg://`` (libpq's ``sslmode`` becomes asyncpg's ``ssl``), ``sqlite://``
    becomes ``sqlite+aiosqlite://``. Any other database or driver is a ValueError saying how to
    write the URL."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError(f"not a database URL; write {DATABASE_URL_FORMS}") from None
    backend, _, driver = parsed.drivername.partition("+")
    backend = "postgresql" if backend == "postgres" else backend
    wanted = ASYNC_DRIVERS.get(backend)
    if wanted is None:
        raise ValueError(
            f"unsupported database {backend!r}: Oxify runs on Postgres or SQLite; "
            f"write {DATABASE_URL_FORMS}"
        )
    if driver not in ("", wanted):
        raise ValueError(
            f"unsupported driver {driver!r}: Oxify reaches {backend} through {wanted}; "
            f"write {backend}://… or {backend}+{wanted}://…"
        )
    parsed = parsed.set(drivername=f"{backend}+{wanted}")
    if backend == "postgresql" and "sslmode" in parsed.query:
        query = dict(parsed.query)
        query["ssl"] = query.pop("sslmode")
        parsed = parsed.set(query=query)
    return parsed.render_as_string(hide_password=False)


class Settings(
    BaseSettings,
    AiSettings,
    NetSettings,
    McpSettings,
    CodeSettings,
    TracingSettings,
    AuthSettings,
    OidcSettings,
    LimitSettings,
):
    # Errors never repeat the input: it may be a key, a token or a URL with a password.
    model_config = SettingsConfigDict(
        env_prefix="OXIFY_",
        env_file=".env",
        extra="ignore",
        populate_by_name=True,
        hide_input_in_errors=True,
    )

    database_url: str | None = Field(
        default=None,
        description="postgresql://user:password@host:5432/database (postgres:// and "
        "postgresql+asyncpg:// too) or sqlite:///path; unset: SQLite file oxify.db in the "
        "working directory.",
    )
    max_concurrent_runs: int = Field(
        default=64, ge=1, description="Runs executing at once in this process; more wait queued."
    )
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, description="Request body cap.")
    max_workflow_nodes: int = Field(default=10_000, ge=1, description="Nodes per workflow, nested.")
    max_workflow_depth: int = Field(default=8, ge=1, description="Container nesting depth.")
    max_expression_length: int = Field(default=2000, ge=16, description="Characters.")
    max_expression_cpu_s: float = Field(
        default=2.0,
        gt=0,
        le=600,
        description="Seconds of CPU one evaluation of an expression or template may use (past "
        "a few milliseconds it runs in a worker thread, off the event loop); past it the node "
        "fails with expression_limit_exceeded.",
    )
    max_node_output_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Bytes (as compact JSON) a node's output may hold, and what one evaluation "
        "of an expression may build; past it the node fails with output_too_large. Above the "
        "http node's default max_response_bytes (10 MiB) so that a response it accepts fits.",
    )
    max_input_bytes: int = Field(
        default=10 * 1024 * 1024,
        ge=1024,
        description="Bytes (as compact JSON) of a run's inputs; more is refused with "
        "inputs_too_large. At most max_node_output_bytes: the start node outputs the inputs.",
    )
    sse_ping_s: float = Field(default=15.0, gt=0, description="Seconds between SSE keep-alives.")
    subscriber_queue: int = Field(
        default=1024, ge=16, description="Events buffered per stream subscriber before it re-reads."
    )
    shutdown_grace_s: float = Field(
        default=20.0, ge=0, description="Seconds running runs get to pause on SIGTERM."
    )
    replica_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="This replica's name in leases; unset: host, pid and a random suffix. A "
        "stable id (a StatefulSet pod name) lets a restarted replica recover its runs at once.",
    )
    lease_s: float = Field(
        default=10.0,
        ge=0.5,
        le=3600,
        description="Seconds a replica holds a run without renewing; a dead replica's runs are "
        "recovered about this long after it died.",
    )
    heartbeat_s: float | None = Field(
        default=None, gt=0, description="Seconds between lease renewals; unset: lease_s / 3."
    )
    poll_s: float | None = Field(
        default=None,
        gt=0,
        le=60,
        description="Seconds between looks for runs whose lease lapsed; unset: lease_s / 4, "
        "at most 1.",
    )
    max_queued_runs: int = Field(
        default=10_000,
        ge=1,
        description="Runs waiting to start across all replicas; beyond it new runs get 429.",
    )
    deadline_sweep_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Seconds between looks for forms and approvals past their deadline.",
    )
    cluster_gauges_s: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="Seconds between reads of the cluster-wide gauges /metrics shows (runs by "
        "status, queue depth, pending forms).",
    )
    metrics_max_workflows: int = Field(
        default=50,
        ge=1,
        le=10_000,
        description="Workflow names /metrics labels finished runs with, per process (the first "
        'ones met); runs of any later workflow count as workflow="other".',
    )
    metrics_max_models: int = Field(
        default=50,
        ge=1,
        le=10_000,
        description="Model names /metrics labels LLM tokens, cost and time to first token with, "
        'per process (the first ones met); later ones count as model="other".',
    )
    retention_days: float | None = Field(
        default=None,
        gt=0,
        description="Delete finished runs' events, checkpoints and node outputs after this "
        "many days; unset: keep them.",
    )
    retention_interval_s: float = Field(
        default=3600.0, gt=0, description="Seconds between retention sweeps (one replica each)."
    )
    db_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="Seconds any one database call may take (connect, statement, lock wait); "
        "the journal's writes and lease renewals take at most a third of lease_s.",
    )
    faults: list[FaultRule] = Field(
        default_factory=list,
        description="Fault injection, for tests and chaos runs only (JSON list of rules, see "
        "app/faults.py).",
    )
    faults_seed: int | None = Field(default=None, description="Seed of the faults' chances.")
    log_level: str = Field(
        default="info", description="Level of the server's log (debug, info, warning, error)."
    )
    log_format: Literal["json", "text"] = Field(
        default="json",
        description="The server's log lines: one JSON object a line, or text for a terminal.",
    )
    secret_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Fernet keys that encrypt stored credentials, comma-separated: the first "
        "encrypts, every one decrypts (`oxify credentials rotate-key` re-encrypts under the "
        "first). Unset: storing a credential is refused. Make one with `python -c 'from "
        "cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`.",
    )

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, url: str | None) -> str | None:
        return None if url is None else async_database_url(url)

    @field_validator("secret_keys", mode="before")
    @classmethod
    def _fernet_keys(cls, value: Any) -> Any:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            return credentials.parse_keys(value)
        return value

    @model_validator(mode="after")
    def _inputs_fit_an_output(self) -> Settings:
        if self.max_input_bytes > self.max_node_output_bytes:
            raise ValueError(
                "OXIFY_MAX_INPUT_BYTES must not exceed OXIFY_MAX_NODE_OUTPUT_BYTES "
                "(the start node outputs the inputs)"
            )
        return self

    def engine_limits(self) -> Limits:
        """What the engine bounds for each document and run (planning and evaluation)."""
        return Limits(
            max_nodes=self.max_workflow_nodes,
            max_depth=self.max_workflow_depth,
            max_expression_length=self.max_expression_length,
            max_node_output_bytes=self.max_node_output_bytes,
            max_expression_cpu_s=self.max_expression_cpu_s,
        )

    def keyring(self) -> credentials.Keyring | None:
        """The credentials' keys, or None when none is configured (storing is refused)."""
        keys = [key.get_secret_value() for key in self.secret_keys]
        return credentials.Keyring(keys) if keys else None

    @property
    def resolved_heartbeat_s(self) -> float:
        return self.heartbeat_s if self.heartbeat_s is not None else self.lease_s / 3

    @property
    def resolved_poll_s(self) -> float:
        return self.poll_s if self.poll_s is not None else min(1.0, self.lease_s / 4)

    @property
    def resolved_replica_id(self) -> str:
        if self.replica_id:
            return self.replica_id
        return f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(3)}"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{Path.cwd() / DEFAULT_SQLITE_FILE}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
