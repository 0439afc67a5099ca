"""The schema, as SQLAlchemy Core tables. Alembic migrations must match it (a test checks).

The hot append-only tables (events, node runs, checkpoints) are written by ``app.store.journal``
with one multi-row statement per batch; ORM objects are never used there. They hold plain JSON
(stored as text, nothing parses it into jsonb on the way in) and no foreign keys: each row
would otherwise cost a referential-integrity trigger on the hottest path, measured at ~20% of
the batch write. The journal only writes rows for executions it drives, and deleting an
execution deletes its rows explicitly. Other JSON columns are JSONB on Postgres.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

DEFAULT_PROJECT = "default"  # the project of rows made before projects, and of unbound callers

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Json = JSON().with_variant(JSONB(), "postgresql")


class Timestamp(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite stores them naive: read back as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(
        self,
        value: datetime | None,
        dialect: Dialect,  # noqa: ARG002 - TypeDecorator API
    ) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


workflows = Table(
    "workflows",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("latest_version", Integer, nullable=False),
    Column("created_at", Timestamp(), nullable=False),
    Column("updated_at", Timestamp(), nullable=False),
    Column("archived_at", Timestamp()),
    Column("project", String(64), nullable=False, server_default=DEFAULT_PROJECT),
    Index("ix_workflows_created", "created_at", "id"),
    Index("ix_workflows_project_created", "project", "created_at", "id"),
)

workflow_versions = Table(
    "workflow_versions",
    metadata,
    Column("workflow_id", String(64), ForeignKey("workflows.id"), primary_key=True),
    Column("version", Integer, primary_key=True),
    # Plain JSON, not JSONB: a document comes back exactly as it was sent (key order kept).
    Column("document", JSON, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("created_at", Timestamp(), nullable=False),
)

_WAITING_WITH_DEADLINE = text("status = 'waiting' AND deadline_at IS NOT NULL")
_QUEUED = text("status = 'queued'")

executions = Table(
    "executions",
    metadata,
    Column("id", String(64), primary_key=True),
    # Submission order: queued runs start in this order.
    # Identity on Postgres; SQLite (one writer at a time) gets MAX + 1 from the insert itself.
    Column("queue_seq", BigInteger, Identity(), nullable=False, unique=True),
    Column("workflow_id", String(64), nullable=False),
    Column("workflow_version", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("inputs", Json, nullable=False),
    Column("config", Json, nullable=False),
    Column("outputs", Json),
    Column("error", Json),
    Column("last_seq", Integer, nullable=False, server_default=text("0")),
    Column("completed_nodes", Integer, nullable=False, server_default=text("0")),
    Column("total_nodes", Integer, nullable=False, server_default=text("0")),
    # Why the next start is a resume (paused, shutdown, retry, …); null for a fresh run.
    Column("resume_reason", String(32)),
    Column("started_by", String(200)),
    Column("created_at", Timestamp(), nullable=False),
    Column("started_at", Timestamp()),
    Column("finished_at", Timestamp()),
    Column("updated_at", Timestamp(), nullable=False),
    # Ownership: the replica driving the run, until when, and a generation that every claim
    # increments; the journal refuses writes of an older generation (fencing).
    Column("owner", String(64)),
    Column("lease_expires_at", Timestamp()),
    Column("generation", Integer, nullable=False, server_default=text("0")),
    # Asked for on any replica; the owner reads it (NOTIFY, or its next heartbeat) and cancels.
    Column("cancel_requested", Boolean, nullable=False, server_default=false()),
    # When retention deleted the run's events, checkpoints and node outputs.
    Column("purged_at", Timestamp()),
    # Answers (or form deadlines) stored while the run was not waiting yet: the run must not
    # settle as `waiting` with any of these unread (it is queued again instead).
    Column("pending_answers", Integer, nullable=False, server_default=text("0")),
    # Seconds the run was driven, summed over its stretches (its timeout counts these).
    Column("active_s", Float, nullable=False, server_default=text("0")),
    # With timeout_includes_waiting: when the run times out, waiting or not.
    Column("deadline_at", Timestamp()),
    # The run's trace (a W3C traceparent): every segment of the run parents on it.
    Column("trace_context", String(55)),
    # The last recorded segment's span (a traceparent): the next segment links to it.
    Column("trace_segment", String(55)),
    # The project the run belongs to: its workflow's (a caller of another project sees 404).
    Column("project", String(64), nullable=False, server_default=DEFAULT_PROJECT),
    ForeignKeyConstraint(
        ["workflow_id", "workflow_version"],
        ["workflow_versions.workflow_id", "workflow_versions.version"],
    ),
    Index("ix_executions_workflow", "workflow_id", "queue_seq"),
    Index("ix_executions_project", "project", "queue_seq"),
    # Claims (status = 'queued' in queue order; running rows by lease) and list filters.
    Index("ix_executions_status", "status", "queue_seq"),
    Index("ix_executions_finished", "finished_at"),
    # The claim of queued runs, in queue order. Only queued rows are in it: the planner cannot
    # mistake a walk of the whole queue order (finished runs first) for a cheap one.
    Index("ix_executions_queued", "queue_seq", postgresql_where=_QUEUED, sqlite_where=_QUEUED),
    # The sweep for waiting runs past their deadline (every replica, every second): only the
    # few rows it can ever return are in it.
    Index(
        "ix_executions_waiting_deadline",
        "deadline_at",
        postgresql_where=_WAITING_WITH_DEADLINE,
        sqlite_where=_WAITING_WITH_DEADLINE,
    ),
)

replicas = Table(
    "replicas",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Timestamp(), nullable=False),
    Column("heartbeat_at", Timestamp(), nullable=False),
    Column("stopped_at", Timestamp()),
)

node_runs = Table(
    "node_runs",
    metadata,
    Column("execution_id", String(64), primary_key=True),
    Column("node_key", String(512), primary_key=True),
    Column("node_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("output", JSON),
    Column("error", JSON),
    Column("started_at", Timestamp()),
    Column("finished_at", Timestamp()),
    Column("duration_ms", Float),
    # The node's finished sub-steps, every attempt's, in the order they finished:
    # [{"name", "ok", "finished_at", "error"?}] (their results live in checkpoints only).
    Column("steps", JSON),
    # What the node spent over all its attempts, as its last checkpointed record says:
    # {"api_calls", "tokens", "cost_usd"}, each key only when nonzero; null: nothing (yet).
    Column("usage", JSON),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("execution_id", String(64), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("created_at", Timestamp(), nullable=False),
    Column("records", JSON, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("execution_id", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("type", String(32), nullable=False),
    Column("ts", Timestamp(), nullable=False),
    Column("node_id", String(512)),
    Column("level", Integer),
    Column("data", JSON, nullable=False),
)

forms = Table(
    "forms",
    metadata,
    # Derived from the run's form.requested event: the same id on every replay of the request.
    Column("id", String(64), primary_key=True),
    Column(
        "execution_id", String(64), ForeignKey("executions.id", ondelete="CASCADE"), nullable=False
    ),
    Column("workflow_id", String(64), nullable=False),
    Column("node_key", String(512), nullable=False),
    Column("kind", String(16), nullable=False),  # approval | form
    Column("status", String(16), nullable=False),  # pending | submitted | timed_out | cancelled
    Column("prompt", Text, nullable=False),
    Column("fields", JSON, nullable=False),
    Column("context", JSON),  # what the request is about (an agent's tool call)
    Column("approvers", JSON),
    Column("quorum", Integer, nullable=False, server_default=text("1")),
    Column("allow_self_approval", Boolean, nullable=False, server_default=false()),
    Column("on_timeout", String(16), nullable=False),
    Column("deadline", Timestamp()),
    Column("answer", JSON),
    Column("created_at", Timestamp(), nullable=False),
    Column("decided_at", Timestamp()),
    Column("project", String(64), nullable=False, server_default=DEFAULT_PROJECT),
    Index("ix_forms_status_created", "status", "created_at"),
    Index("ix_forms_project_created", "project", "created_at"),
    Index("ix_forms_deadline", "status", "deadline"),
    Index("ix_forms_execution", "execution_id"),
)

form_submissions = Table(
    "form_submissions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column(
        "execution_id", String(64), ForeignKey("executions.id", ondelete="CASCADE"), nullable=False
    ),
    Column("form_id", String(64), ForeignKey("forms.id", ondelete="CASCADE"), nullable=False),
    Column("node_key", String(512), nullable=False),
    Column("values", Json, nullable=False),
    Column("by", String(200)),
    Column("comment", Text),
    Column("created_at", Timestamp(), nullable=False),
    Index("ix_form_submissions_execution", "execution_id", "node_key"),
    # One answer per person and form (an approval's quorum counts people, not requests).
    Index("uq_form_submissions_form_by", "form_id", "by", unique=True),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("workflow_id", String(64), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column(
        "execution_id", String(64), ForeignKey("executions.id", ondelete="CASCADE"), nullable=False
    ),
    Column("created_at", Timestamp(), nullable=False),
)

# API keys: the digest of the secret (HMAC-SHA-256 under the server's pepper), never the key.
# Rows are never deleted (a revoked key stays, for the audit log and so that "a key exists"
# never turns false again and reopens the service).
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(12), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("digest", LargeBinary(32), nullable=False),
    Column("scopes", Json, nullable=False),
    Column("project", String(64), nullable=True),  # NULL: every project (admin keys only)
    Column("limits", Json, nullable=True),
    Column("created_at", Timestamp(), nullable=False),
    Column("expires_at", Timestamp(), nullable=True),
    Column("revoked_at", Timestamp(), nullable=True),
    Column("last_used_at", Timestamp(), nullable=True),
    Column("replaced_by", String(12), nullable=True),  # the key a rotation made
    Index("ix_api_keys_created", "created_at", "id"),
)

# Single-use tickets for browser streams (EventSource and WebSockets send no Authorization
# header): the SHA-256 of the ticket, the run it opens and the caller it stands for. Redeeming
# deletes the row, so a ticket works once, on whichever replica it reaches.
stream_tickets = Table(
    "stream_tickets",
    metadata,
    Column("digest", LargeBinary(32), primary_key=True),
    Column("execution_id", String(64), nullable=False),
    Column("key_id", String(12), nullable=True),
    Column("subject", String(200), nullable=True),
    Column("scopes", Json, nullable=False),
    Column("project", String(64), nullable=True),
    Column("expires_at", Timestamp(), nullable=False),
    Index("ix_stream_tickets_expires", "expires_at"),
)

# Who did what (issue 16). Append-only: triggers refuse UPDATE, DELETE (and TRUNCATE on
# Postgres); rows are never deleted, not even with their run. Ids come from ``audit_head``.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("at", Timestamp(), nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("project", Text, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("request_id", Text),
    Column("client_ip", Text),
    # Plain JSON: it comes back as written, so the chain's canonical bytes can be rebuilt.
    Column("detail", JSON),
    Column("prev_hash", LargeBinary, nullable=False),
    Column("hash", LargeBinary, nullable=False),
    Index("ix_audit_log_at", "at"),
)

# The chain's head, one row (id 1): the last row's id and hash. Every append updates it in
# the appending transaction, so appenders queue on its row lock and the chain never forks.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("last_id", BigInteger, nullable=False),
    Column("last_hash", LargeBinary, nullable=False),
    Column("prev_hash", LargeBinary, nullable=False),  # the hash before last_hash
)

# Secrets nodes use (issue 16). ``ciphertext`` is a Fernet token over the value bound to the
# row's id and project (app/auth/credentials.py): no value is ever stored in clear. ``params``
# holds what is not secret (a basic credential's username, an API key's header name).
credentials = Table(
    "credentials",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("project", String(200), nullable=False, server_default=text("'default'")),
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("params", JSON, nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("created_at", Timestamp(), nullable=False),
    Column("updated_at", Timestamp(), nullable=False),
    Index("uq_credentials_project_name", "project", "name", unique=True),
)

# Limits of a project (``app.domain.limits.Limits`` as JSON), set by admins.
project_limits = Table(
    "project_limits",
    metadata,
    Column("project", String(64), primary_key=True),
    Column("limits", Json, nullable=False),
    Column("updated_at", Timestamp(), nullable=False),
)

# Exact daily quotas: what a key (``key:<id>``) or a project (``project:<name>``) used of a
# quota (``runs``, ``tokens``) on a UTC day, counted by a conditional upsert in the
# transaction that uses it.
quota_usage = Table(
    "quota_usage",
    metadata,
    Column("scope", String(80), primary_key=True),
    Column("quota", String(16), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("used", BigInteger, nullable=False),
)

_ACTIVE_HOLD = text("active")
_PAUSED_HOLD = text("paused_on IS NOT NULL")
# Who a run counts against (written with the run): its project and key, for concurrent runs
# and tokens/day. ``active`` until housekeeping sees the run terminal (a retry sets it again);
# concurrent runs are counted over active rows joined to the runs' current status, so a run
# that just ended stops counting at once; ``paused_on``: the UTC day its tokens/day quota
# paused it (resumed once that day is over). No foreign key: see the module docstring.
run_quotas = Table(
    "run_quotas",
    metadata,
    Column("execution_id", String(64), primary_key=True),
    Column("project", String(64), nullable=False),
    Column("key_id", String(12), nullable=True),
    Column("active", Boolean, nullable=False),
    Column("paused_on", Date, nullable=True),
    Index(
        "ix_run_quotas_project", "project", postgresql_where=_ACTIVE_HOLD, sqlite_where=_ACTIVE_HOLD
    ),
    Index("ix_run_quotas_key", "key_id", postgresql_where=_ACTIVE_HOLD, sqlite_where=_ACTIVE_HOLD),
    Index(
        "ix_run_quotas_paused_on",
        "paused_on",
        postgresql_where=_PAUSED_HOLD,
        sqlite_where=_PAUSED_HOLD,
    ),
)
