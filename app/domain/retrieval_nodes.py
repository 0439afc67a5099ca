"""Config of the retrieval node types: ``index`` (chunk, embed, upsert) and ``retriever``
(vector, keyword or hybrid search).

Names follow the API contract ("AI, tool and code node types"). Both share the store keys:
``backend`` and ``mode`` are used as written, the embedder is data; everything else may hold
templates (a collection per user: ``"docs-{{ inputs.user }}"``). A store's table and collection
names end up in SQL or in a Qdrant URL path, so they are checked here and again once rendered.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from app.domain.ai_nodes import EmbedderSpec
from app.domain.node_config import NodeConfig, TemplateStr

Backend = Literal["qdrant", "pgvector"]
SearchMode = Literal["vector", "keyword", "hybrid"]

DEFAULT_TABLE = "oxify_chunks"
DEFAULT_TOP_K = 5
MAX_TOP_K = 1000
DEFAULT_CHUNK_SIZE = 1000  # characters
DEFAULT_CHUNK_OVERLAP = 100  # characters
MAX_CHUNK_SIZE = 1_000_000  # characters
MAX_DOCUMENTS = 100_000  # in one index call
MAX_ID_CHARS = 512

TABLE_PATTERN = r"^[a-z_][a-z0-9_]{0,47}$"  # a plain Postgres identifier, room for suffixes
COLLECTION_PATTERN = r"^[A-Za-z0-9_.-]{1,255}$"
# The service's own tables (app/store/tables.py and alembic's; a test keeps the list whole): by
# default pgvector writes into the service's database, and must never write into these.
SERVICE_TABLES = frozenset(
    {
        "alembic_version",
        "api_keys",
        "audit_head",
        "audit_log",
        "checkpoints",
        "credentials",
        "events",
        "executions",
        "form_submissions",
        "forms",
        "idempotency_keys",
        "node_runs",
        "project_limits",
        "quota_usage",
        "replicas",
        "run_quotas",
        "stream_tickets",
        "workflow_versions",
        "workflows",
    }
)


def _templated(value: str) -> bool:
    return "{{" in value


def check_table(name: str) -> str:
    """``name`` when it is a table name the pgvector store may use (it is spliced into SQL)."""
    if not re.fullmatch(TABLE_PATTERN, name):
        raise ValueError(
            f"table {name!r} must be lower-case letters, digits and '_' (at most 48), "
            "not starting with a digit"
        )
    if name in SERVICE_TABLES:
        raise ValueError(f"table {name!r} is one of the service's own tables: choose another name")
    return name


def check_collection(name: str) -> str:
    """``name`` when it is a collection name both backends accept."""
    if not re.fullmatch(COLLECTION_PATTERN, name):
        raise ValueError(f"collection {name!r} must be 1-255 of letters, digits, '_', '.', '-'")
    if not name.strip("."):  # "." and ".." would be path segments in a Qdrant server's URL
        raise ValueError(f"collection {name!r} must hold more than dots")
    return name


class StoreConfig(NodeConfig):
    """Where the vectors live: the keys ``index`` and ``retriever`` share.

    Qdrant: ``url`` (a server) or ``path`` (local mode, a directory; ``":memory:"`` keeps the
    store in the process). pgvector: ``dsn`` (else the service's own database) and ``table``.
    """

    static = frozenset({"backend"})

    backend: Backend
    url: str | None = Field(default=None, max_length=2048, description="A Qdrant server.")
    path: str | None = Field(
        default=None,
        max_length=4096,
        description='Qdrant local mode: a directory, or ":memory:" (kept by the process).',
    )
    dsn: str | None = Field(
        default=None,
        max_length=4096,
        description="pgvector: a PostgreSQL URL; unset: the service's own database.",
    )
    table: str = Field(
        default=DEFAULT_TABLE,
        max_length=256,
        description="pgvector: the table of chunks (a `collection` column tells them apart).",
    )
    collection: str = Field(
        min_length=1, max_length=1024, description="Which set of chunks (letters, digits, _.-)."
    )
    embedder: EmbedderSpec | None = Field(
        default=None, description="Embedding model; unset: the OXIFY_EMBEDDER setting."
    )

    @model_validator(mode="after")
    def _one_store(self) -> StoreConfig:
        if self.backend == "qdrant":
            if (self.url is None) == (self.path is None):
                raise ValueError("qdrant needs exactly one of 'url' (a server) or 'path'")
            if self.dsn is not None or "table" in self.model_fields_set:
                raise ValueError("'dsn' and 'table' are pgvector keys")
        elif self.url is not None or self.path is not None:
            raise ValueError("'url' and 'path' are qdrant keys")
        if not _templated(self.table):
            check_table(self.table)
        if not _templated(self.collection):
            check_collection(self.collection)
        return self


class RetrieverConfig(StoreConfig):
    """Config of the ``retriever`` node: the best chunks for ``query``."""

    static = frozenset({"backend", "mode"})

    query: str = Field(min_length=1, max_length=100_000)
    top_k: Annotated[int, Field(ge=1, le=MAX_TOP_K)] | TemplateStr = DEFAULT_TOP_K
    filter: dict[str, Any] = Field(
        default_factory=dict,
        description="Metadata equality: every key must hold exactly this scalar value.",
    )
    score_threshold: float | TemplateStr | None = Field(
        default=None,
        description="The least score kept, in the mode's own score: cosine similarity "
        "(vector), BM25 (keyword), the RRF sum (hybrid).",
    )
    mode: SearchMode = Field(
        default="vector",
        description="vector (embeddings), keyword (BM25), or hybrid (both, fused by RRF, k=60).",
    )


class DocumentIn(NodeConfig):
    """One document to index; its chunks replace those indexed before under the same id."""

    id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class IndexConfig(StoreConfig):
    """Config of the ``index`` node: chunk ``documents``, embed the chunks, upsert them."""

    documents: list[DocumentIn] | TemplateStr = Field(
        description="[{id, text, metadata}], or a template giving that list."
    )
    chunk_size: Annotated[int, Field(ge=1, le=MAX_CHUNK_SIZE)] | TemplateStr = Field(
        default=DEFAULT_CHUNK_SIZE, description="Characters per chunk."
    )
    chunk_overlap: Annotated[int, Field(ge=0, le=MAX_CHUNK_SIZE)] | TemplateStr = Field(
        default=DEFAULT_CHUNK_OVERLAP, description="Characters a chunk repeats of the one before."
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> IndexConfig:
        size, overlap = self.chunk_size, self.chunk_overlap
        if isinstance(size, int) and isinstance(overlap, int) and overlap >= size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        if isinstance(self.documents, list) and len(self.documents) > MAX_DOCUMENTS:
            raise ValueError(f"at most {MAX_DOCUMENTS} documents at once")
        return self
