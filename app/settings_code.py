"""The settings of the ``code`` node: its worker processes and the caps on what a document may
ask for. A mixin of :class:`app.settings.Settings` (env prefix ``OXIFY_``)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class CodeSettings(BaseModel):
    """Fields mixed into Settings."""

    code_workers: int = Field(
        default=2,
        ge=0,
        le=256,
        description="Python processes kept started and waiting for a `code` node (each runs "
        "one script, then a fresh one replaces it); 0: every script starts its own.",
    )
    code_concurrency: int = Field(
        default=8,
        ge=1,
        le=1024,
        description="Python scripts and wasm modules running at once in this process; more wait.",
    )
    code_max_timeout_s: float = Field(
        default=60.0, gt=0, le=3600, description="The most `timeout_s` a code node may ask for."
    )
    code_max_memory_mb: int = Field(
        default=1024, ge=16, le=65_536, description="The most `memory_mb` a code node may ask for."
    )
    code_max_processes: int = Field(
        default=64,
        ge=1,
        le=100_000,
        description="RLIMIT_NPROC of a Python script: processes its user may have (a user of "
        "its own when the service runs as root, see `code_user`); contains fork bombs.",
    )
    code_user: str = Field(
        default="nobody",
        min_length=1,
        description="When the service runs as root, the user Python scripts run as (so they "
        "cannot read the service's files or /proc/<pid>/environ, and RLIMIT_NPROC applies).",
    )
