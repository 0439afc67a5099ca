"""A model call as the providers' adapters see it: the request the ``llm`` or ``agent`` node
rendered, the answer they bring back, and the JSON checks of ``response_format``.

Messages are in one neutral form that each adapter writes in its provider's: ``{"role":
"system" | "user" | "assistant" | "tool", "content": str}``; an assistant message that called
tools adds ``"tool_calls": [{"id", "name", "arguments"}]`` and each result is a ``tool``
message with ``"tool_call_id"``, ``"name"`` and ``"is_error"``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import jsonschema
import orjson

from app.domain.ai_nodes import Provider
from app.nodes.ai.failures import LlmAnswerInvalid

OnText = Callable[[str], None]
Message = dict[str, Any]  # a chat message in the neutral form (see the module's docstring)
JSON_INSTRUCTION = "Answer with one JSON value and nothing else: no prose, no code fences."
# Anthropic has no JSON mode; a JSON Schema answer is asked for in the system prompt and checked.
SCHEMA_INSTRUCTION = "Answer with one JSON value, and nothing else, that matches this JSON Schema:"
DEFAULT_MAX_TOKENS = 4096  # Anthropic requires a bound; the others default to the model's own
ERROR_EXCERPT_CHARS = 200


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One rendered model call. Everything here shapes the answer, so all of it (and only it)
    keys the cache."""

    provider: Provider
    root: str  # the API root the call goes to
    model: str
    system: str | None
    messages: tuple[Message, ...]
    temperature: float | None
    max_tokens: int | None
    stop: tuple[str, ...] | None
    response_format: str | dict[str, Any]
    tools: tuple[ToolSpec, ...] = ()
    parallel_tool_calls: bool = True

    def identity(self) -> dict[str, Any]:
        return asdict(self)

    def system_head(self) -> list[dict[str, str]]:
        """The system prompt as a first message (OpenAI and Ollama), if there is one."""
        system = self.system_text(with_schema=False)
        return [{"role": "system", "content": system}] if system else []

    def system_text(self, *, with_schema: bool) -> str | None:
        """The system prompt, with what the answer must look like: "JSON only" when the node
        asks for JSON (OpenAI's JSON mode refuses a request that never says "JSON"), and with
        ``with_schema`` the schema itself (for a provider that cannot be given one)."""
        parts = [self.system] if self.system else []
        if with_schema and isinstance(self.response_format, dict):
            schema = orjson.dumps(self.response_format).decode()
            parts.append(f"{SCHEMA_INSTRUCTION} {schema}")
        elif self.response_format == "json":
            parts.append(JSON_INSTRUCTION)
        return "\n\n".join(parts) or None


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool as the model is told about it."""

    name: str
    description: str
    parameters: dict[str, Any]  # JSON Schema of the arguments (an object)

    def as_function(self) -> dict[str, Any]:
        """The OpenAI (and Ollama) form."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


@dataclass(frozen=True, slots=True)
class ChatAnswer:
    text: str
    model: str
    input_tokens: int
    output_tokens: int
    finish_reason: str | None
    # The calls the model asked for: {"id", "name", "arguments"}; arguments are the parsed JSON
    # object, or the text the model wrote when it is not one (the call then fails).
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    response_id: str | None = None  # the provider's id of the answer, when it gives one


def tool_call(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    """A requested call in the neutral form; ``arguments`` JSON text is parsed when it can be."""
    if isinstance(arguments, str):
        with contextlib.suppress(orjson.JSONDecodeError):
            arguments = orjson.loads(arguments) if arguments.strip() else {}
    return {"id": call_id, "name": name, "arguments": arguments}


def arguments_text(arguments: Any) -> str:
    """A call's arguments as JSON text (what the OpenAI API takes back)."""
    return arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()


def parse_answer(text: str, response_format: str | dict[str, Any]) -> Any:
    """The answer's JSON when the node asked for JSON; raises LlmAnswerInvalid (retryable:
    another attempt may answer better) when it does not parse or match the schema."""
    try:
        value = orjson.loads(_unfenced(text))
    except orjson.JSONDecodeError:
        excerpt = text[:ERROR_EXCERPT_CHARS]
        raise LlmAnswerInvalid(
            f"the model's answer is not JSON: {excerpt!r}", details={"reason": "not_json"}
        ) from None
    if isinstance(response_format, dict):
        validator = jsonschema.validators.validator_for(response_format)(response_format)
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if error is not None:
            where = "/" + "/".join(str(p) for p in error.absolute_path)
            raise LlmAnswerInvalid(
                f"the model's answer does not match the schema at {where}: {error.message}",
                details={"reason": "schema_mismatch", "pointer": where},
            )
    return value


def _unfenced(text: str) -> str:
    """Models asked for bare JSON still wrap it in a Markdown fence at times."""
    stripped = text.strip()
    if stripped.startswith("```") and stripped.endswith("```"):
        inner = stripped[3:-3]
        newline = inner.find("\n")
        return inner[newline + 1 :] if newline >= 0 else inner
    return stripped


def arguments_object(arguments: Any) -> dict[str, Any]:
    """A call's arguments for a provider that takes them as an object: arguments that were not
    a JSON object (the call was refused with an error the model sees) go back as ``{}``."""
    return arguments if isinstance(arguments, dict) else {}
