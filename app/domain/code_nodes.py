"""Config of the ``code`` node: an expression, a Python function or a WebAssembly module.

Names follow the API contract ("AI, tool and code node types"). ``language``, ``source`` and
``module`` are used as written: Python source may well contain ``{{`` and a module is data.
``source`` is compiled as an expression (at validation, like a condition) only when
``language`` is ``expression``. The limits may be lone templates; the deployment's caps
(``OXIFY_CODE_MAX_*``) are checked when the node runs.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from app.domain.node_config import NodeConfig, TemplateStr

Language = Literal["expression", "python", "wasm"]

MAX_SOURCE_CHARS = 1_000_000  # of Python source (an expression has the engine's own bound)
MAX_MODULE_CHARS = 14_000_000  # of base64: a module of about 10 MiB
DEFAULT_TIMEOUT_S = 10.0  # seconds of wall clock (and of CPU) one run of the code may take
DEFAULT_MEMORY_MB = 256  # MiB: a Python process's address space, a module's linear memory
DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024  # bytes of JSON the code may give back
DEFAULT_FUEL = 1_000_000_000  # wasm instructions, roughly (wasmtime's fuel units)


class CodeConfig(NodeConfig):
    """Config of the ``code`` node; ``source`` for ``expression`` and ``python``, ``module``
    (base64) for ``wasm``."""

    expressions = frozenset({"source"})
    static = frozenset({"language", "module"})

    language: Language
    source: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SOURCE_CHARS,
        description="The expression, or Python source defining `def main(inputs): ...`.",
    )
    module: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_MODULE_CHARS,
        description="Base64 of a WebAssembly module (WASI): JSON in on stdin, out on stdout.",
    )
    inputs: dict[str, Any] | None = Field(
        default=None,
        description="Name → template: the code's `inputs`. Unset: the run's context (`inputs`, "
        "`vars` and the results of the nodes in scope).",
    )
    timeout_s: Annotated[float, Field(gt=0, le=3600)] | TemplateStr = Field(
        default=DEFAULT_TIMEOUT_S, description="Seconds of wall clock (and CPU) one run may take."
    )
    memory_mb: Annotated[int, Field(ge=1, le=65_536)] | TemplateStr = Field(
        default=DEFAULT_MEMORY_MB,
        description="MiB: a Python process's address space, a module's linear memory.",
    )
    max_output_bytes: Annotated[int, Field(ge=1, le=1024**3)] | TemplateStr = Field(
        default=DEFAULT_MAX_OUTPUT_BYTES, description="Bytes of JSON the code may give back."
    )
    fuel: Annotated[int, Field(ge=1, le=10**15)] | TemplateStr | None = Field(
        default=None,
        description=f"wasm only: about how many instructions the module may run (default "
        f"{DEFAULT_FUEL}).",
    )

    @model_validator(mode="after")
    def _one_program(self) -> CodeConfig:
        wasm = self.language == "wasm"
        if wasm and (self.module is None or self.source is not None):
            raise ValueError("a wasm node gives 'module' (base64 of a .wasm binary), not 'source'")
        if not wasm and (self.source is None or self.module is not None):
            raise ValueError(f"a {self.language} node gives 'source', not 'module'")
        if self.fuel is not None and not wasm:
            raise ValueError("'fuel' applies to wasm only")
        if self.module is not None:
            module_bytes(self.module)
        return self

    @classmethod
    def expression_fields(cls, raw: Mapping[str, Any]) -> frozenset[str]:
        """``source`` is an expression only in ``language: expression``; else it is Python."""
        return cls.expressions if raw.get("language") == "expression" else frozenset()


def module_bytes(module: str) -> bytes:
    """The module's bytes; ValueError when ``module`` is not base64."""
    try:
        return base64.b64decode(module, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("'module' is not valid base64") from None
