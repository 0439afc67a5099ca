"""What a model call cost, from a price table: the packaged ``prices.json`` with the file named
by ``OXIFY_LLM_PRICING_FILE`` merged over it (same shape).

A model the table does not know costs ``None`` (shown as ``null``) and is logged once: a made-up
number would be worse than none. ``"*"`` prices every model of a provider (Ollama runs locally:
free).
"""

from __future__ import annotations

import json
import logging
import re
from importlib import resources as package_files
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.nodes.resources import NodeResources

PER_TOKENS = 1_000_000  # prices are per million tokens
WILDCARD = "*"
SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(ge=0)


class PriceFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    about: str = ""
    providers: dict[str, dict[str, Price]]


class PriceTable:
    """Prices by provider and model; :meth:`cost` in US dollars."""

    def __init__(self, prices: dict[str, dict[str, Price]], logger: logging.Logger) -> None:
        self._prices = prices
        self._logger = logger
        self._unknown: set[tuple[str, str]] = set()

    def price(self, provider: str, model: str) -> Price | None:
        """The model's price: by its exact name, or its name less a date suffix (a snapshot:
        ``gpt-4o-2024-08-06``, ``claude-3-5-haiku-20241022``); never by a mere prefix, which
        would price ``gpt-5-pro`` as ``gpt-5``."""
        models = self._prices.get(provider, {})
        found = models.get(model) or models.get(SNAPSHOT.sub("", model))
        return found if found is not None else models.get(WILDCARD)

    def rates(self, provider: str, model: str) -> tuple[float, float] | None:
        """The model's (input, output) dollars per million tokens, or None: what cost
        estimates take (``app.engine.analysis.estimate.Pricing``)."""
        price = self.price(provider, model)
        return None if price is None else (price.input, price.output)

    def cost(
        self, provider: str, model: str, input_tokens: int, output_tokens: int
    ) -> float | None:
        price = self.price(provider, model)
        if price is None:
            if (provider, model) not in self._unknown:
                self._unknown.add((provider, model))
                self._logger.warning(
                    "no price for %s model %r: its calls cost null (add it with "
                    "OXIFY_LLM_PRICING_FILE)",
                    provider,
                    model,
                )
            return None
        dollars = (input_tokens * price.input + output_tokens * price.output) / PER_TOKENS
        return round(dollars, 10)


def load_prices(override: Path | None) -> dict[str, dict[str, Price]]:
    """The packaged table with ``override`` merged over it, model by model."""
    packaged = package_files.files(__package__).joinpath("prices.json").read_text()
    merged = PriceFile.model_validate_json(packaged).providers
    if override is not None:
        try:
            extra = PriceFile.model_validate(json.loads(override.read_text()))
        except (OSError, ValueError, ValidationError) as exc:
            raise ValueError(f"OXIFY_LLM_PRICING_FILE {str(override)!r}: {exc}") from None
        for provider, models in extra.providers.items():
            merged.setdefault(provider, {}).update(models)
    return merged


def price_table(resources: NodeResources) -> PriceTable:
    """The process's price table (read on first use)."""
    return resources.client(
        "prices",
        lambda: PriceTable(load_prices(resources.settings.llm_pricing_file), resources.logger),
    )
