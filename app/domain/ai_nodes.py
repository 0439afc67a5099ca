"""Config of the AI node types: ``llm`` (whose keys ``agent`` shares) and the embedder spec the
retrieval nodes share.

Names follow the API contract ("AI, tool and code node types"). Strings are templates, scalars
may be lone templates; ``provider``, ``response_format``, ``stream`` and ``cache`` are used as
written (a JSON Schema is data, not a template).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.domain.node_config import NodeConfig, TemplateStr

Provider = Literal["openai", "anthropic", "ollama"]
MAX_PROMPT_CHARS = 1_000_000  # of a document's prompt or message template, before rendering
MAX_MESSAGES = 1000
MAX_STOP_SEQUENCES = 4  # OpenAI's bound; the strictest of the three providers


class LlmMessage(NodeConfig):
    """One chat message; ``content`` is a template."""

    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=MAX_PROMPT_CHARS)


def check_json_schema(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` when it is a valid JSON Schema; else ValueError saying where it is not."""
    validator = jsonschema.validators.validator_for(value)
    try:
        validator.check_schema(value)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        raise ValueError(
            f"not a valid JSON Schema{f' at {where}' if where else ''}: {exc.message}"
        ) from None
    return value


class ModelCallConfig(NodeConfig):
    """The keys of a model call, shared by ``llm`` and ``agent``; ``prompt`` or ``messages``,
    not both."""

    static = frozenset({"provider", "response_format", "stream", "credential"})

    provider: Provider
    model: str = Field(min_length=1, max_length=256)
    base_url: str | None = Field(
        default=None,
        max_length=2048,
        description="The provider's API root; else the deployment's setting for the provider.",
    )
    system: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    messages: list[LlmMessage] | None = Field(default=None, min_length=1, max_length=MAX_MESSAGES)
    temperature: Annotated[float, Field(ge=0, le=2)] | TemplateStr | None = None
    max_tokens: Annotated[int, Field(ge=1, le=1_000_000)] | TemplateStr | None = None
    response_format: Literal["text", "json"] | dict[str, Any] = Field(
        default="text",
        description='"text", "json" (the answer must parse as JSON) or a JSON Schema the '
        "parsed answer must match; a mismatch fails the node (its retry policy may repeat it).",
    )
    stream: bool = Field(default=True, description="Send tokens as node.token events.")
    credential: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="A stored credential's name (`/v1/credentials`): its value is the "
        "provider's key for this node, instead of the deployment's (openai and anthropic).",
    )

    @field_validator("response_format")
    @classmethod
    def _a_valid_schema(cls, value: str | dict[str, Any]) -> str | dict[str, Any]:
        return check_json_schema(value) if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _one_input(self) -> ModelCallConfig:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give either 'prompt' or 'messages'")
        return self

    @property
    def wants_json(self) -> bool:
        return self.response_format != "text"


class LlmConfig(ModelCallConfig):
    """Config of the ``llm`` node: one model call."""

    static = ModelCallConfig.static | {"cache"}

    stop: list[str] | None = Field(default=None, min_length=1, max_length=MAX_STOP_SEQUENCES)
    cache: bool = Field(default=True, description="Answer identical requests from the cache.")


class EmbedderSpec(BaseModel):
    """Which embedding model turns texts into vectors (a node's ``embedder``, or
    ``OXIFY_EMBEDDER`` as the same JSON)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    provider: Literal["openai", "ollama"]
    model: str = Field(min_length=1, max_length=256)
    base_url: str | None = Field(default=None, max_length=2048)
    dimensions: int | None = Field(default=None, ge=1, le=65_536)
