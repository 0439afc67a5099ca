"""Configuration, from ``OXIFY_*`` environment variables (and a ``.env`` file). Nothing else in
the code reads the environment."""

from __future__ import annotations

import os
import secrets
import socket
from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.engine.graph import Limits

DEFAULT_SQLITE_FILE = "oxify.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OXIFY_", env_file=".env", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="postgresql+asyncpg://… or sqlite+aiosqlite:///path; unset: SQLite file "
        "oxify.db in the working directory.",
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
    retention_days: float | None = Field(
        default=None,
        gt=0,
        description="Delete finished runs' events, checkpoints and node outputs after this "
        "many days; unset: keep them.",
    )
    retention_interval_s: float = Field(
        default=3600.0, gt=0, description="Seconds between retention sweeps (one replica each)."
    )
    log_level: str = Field(default="info")

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
