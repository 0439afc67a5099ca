"""What the model-calling nodes report for the metrics (tokens, dollars, time to first token),
through :class:`NodeResources`: nodes never import the metrics themselves, the composition root
hands them a meter that records into its registry."""

from __future__ import annotations

from typing import Protocol

# ruff: noqa: ARG002 (the unmetered meter takes what every meter is told, and ignores it)


class LlmMeter(Protocol):
    """Model calls as the metrics see them; implementations never raise."""

    def llm_call(
        self,
        provider: str,
        model: str,
        *,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float | None,
    ) -> None:
        """A call answered: its tokens, and its price (None: the model has no price)."""
        ...

    def first_token(self, provider: str, model: str, seconds: float) -> None:
        """A streamed answer's first text came ``seconds`` after the request was sent."""
        ...


class _Unmetered:
    __slots__ = ()

    def llm_call(
        self,
        provider: str,
        model: str,
        *,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float | None,
    ) -> None:
        return None

    def first_token(self, provider: str, model: str, seconds: float) -> None:
        return None


UNMETERED: LlmMeter = _Unmetered()  # `oxify run`, tests: nothing records
