"""The settings of the AI nodes (model providers, embedders, limits, cache, prices).

A mixin of :class:`app.settings.Settings`. The providers' keys are read under the names the
providers' own tools use (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``; the ``OXIFY_`` spellings work
too) and held as secrets: they print as ``**********`` and go nowhere but the provider.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator

from app.domain.ai_nodes import EmbedderSpec, Provider

DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434"
DEFAULT_PROVIDER_CONCURRENCY = 16


class ProviderLimits(BaseModel):
    """How hard one process may drive one provider, shared by all its runs."""

    model_config = ConfigDict(extra="forbid")

    concurrency: int = Field(
        default=DEFAULT_PROVIDER_CONCURRENCY, ge=1, le=10_000, description="Calls at once."
    )
    rpm: float | None = Field(
        default=None, gt=0, le=1_000_000, description="Requests per minute; unset: no cap."
    )


class AiSettings(BaseModel):
    """Fields mixed into Settings (env prefix ``OXIFY_`` unless an alias says otherwise)."""

    openai_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("OPENAI_API_KEY", "OXIFY_OPENAI_API_KEY"),
        description="Key for OpenAI and OpenAI-compatible servers (OPENAI_API_KEY).",
    )
    anthropic_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("ANTHROPIC_API_KEY", "OXIFY_ANTHROPIC_API_KEY"),
        description="Key for Anthropic (ANTHROPIC_API_KEY).",
    )
    openai_base_url: str | None = Field(
        default=None, description="OpenAI API root; unset: https://api.openai.com/v1."
    )
    anthropic_base_url: str | None = Field(
        default=None, description="Anthropic API root; unset: https://api.anthropic.com."
    )
    ollama_url: str = Field(default=DEFAULT_OLLAMA_URL, description="Ollama server root.")
    llm_timeout_s: float = Field(
        default=300.0, gt=0, le=3600, description="Seconds one model call may take."
    )
    llm_limits: dict[Provider, ProviderLimits] = Field(
        default_factory=dict,
        description='Per provider, JSON: {"openai": {"concurrency": 16, "rpm": 500}}; a provider '
        f"left out gets {DEFAULT_PROVIDER_CONCURRENCY} calls at once and no rate cap.",
    )
    llm_cache_ttl_s: float = Field(
        default=3600.0, ge=0, description="Seconds a cached answer or embedding is reused."
    )
    llm_cache_size: int = Field(
        default=1000, ge=0, description="Cached answers (and embeddings) kept; 0: no cache."
    )
    llm_pricing_file: Path | None = Field(
        default=None,
        description="A JSON price table merged over the packaged one (see the README).",
    )
    embedder: EmbedderSpec | None = Field(
        default=None,
        description='The default embedder, JSON: {"provider": "openai", "model": "…"}.',
    )
    qdrant_local_root: Path = Field(
        default=Path("qdrant"),
        description="The directory Qdrant local mode's `path`s live in: a relative `path` is "
        "taken from it, any other must be inside it; relative: from the working directory.",
    )
    pgvector_timeout_s: float = Field(
        default=300.0,
        gt=0,
        le=86_400,
        description="Seconds one pgvector statement, or the wait for a connection, may take (its "
        "own pool and bound, apart from OXIFY_DB_TIMEOUT_S, also in the service's database).",
    )
    keyword_max_chunks: int = Field(
        default=100_000,
        ge=1,
        description="Chunks a keyword or hybrid search may load (the collection's chunks passing "
        "the filter); more fails with retrieval_too_many_chunks.",
    )
    keyword_cache_chunks: int = Field(
        default=200_000,
        ge=0,
        description="Chunks of all the BM25 indexes a process keeps, together; 0: none kept.",
    )
    trace_content: bool = Field(
        default=False,
        validation_alias=AliasChoices(
            "OXIFY_TRACE_CONTENT", "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
        ),
        description="Put content on the spans of model and tool calls (messages, system "
        "instructions, tool arguments and results, retrieval queries), cut and with secrets "
        "scrubbed. OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT (true, span_only, "
        "span_and_event) opts in too.",
    )

    @field_validator("trace_content", mode="before")
    @classmethod
    def _content_mode(cls, value: object) -> object:
        """The GenAI instrumentations' content modes: content on spans, or not (Oxify emits
        no GenAI events)."""
        if isinstance(value, str):
            mode = value.strip().lower()
            if mode in ("span_only", "span_and_event"):
                return True
            if mode in ("no_content", "event_only"):
                return False
        return value

    def provider_limits(self, provider: Provider) -> ProviderLimits:
        return self.llm_limits.get(provider) or ProviderLimits()
