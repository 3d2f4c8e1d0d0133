"""Turning token usage into nanodollars.

The daemon owns pricing, so every client computes cost the same way. Prices
come from the bundled ``genai-prices`` data (offline; its online updater is
never called), with ``prices:`` overrides from YAML on top. The version of
the table (package version plus a hash of the overrides) goes on every
ledger row. A model found in neither is refused (``unknown_model: deny``)
or priced at ``fallback_price`` (``unknown_model: fallback``): never $0.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from dataclasses import dataclass
from decimal import Decimal

import genai_prices

from budgetd_client.money import ceil_nanos
from budgetd_client.usage import Usage

from .config.schema import Config, PriceOverride

_DATE_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|\d{4})$")
_MILLION = Decimal(1_000_000)


class UnknownModel(Exception):
    pass


@dataclass(frozen=True)
class Price:
    nanos: int
    version: str
    source: str  # "override", "genai-prices" or "fallback"


def usd_to_nanos_ceil(usd: Decimal) -> int:
    return ceil_nanos(usd)  # exact at any number of digits


def base_model(model: str) -> str:
    """``gpt-4o-2024-08-06`` -> ``gpt-4o``: overrides name the model, not each snapshot."""
    return _DATE_SUFFIX.sub("", model)


def _override_cost(p: PriceOverride, u: Usage) -> Decimal:
    cached = p.cached_input_usd_per_mtok if p.cached_input_usd_per_mtok is not None else p.input_usd_per_mtok
    write = p.cache_write_usd_per_mtok if p.cache_write_usd_per_mtok is not None else p.input_usd_per_mtok
    uncached = u.input_tokens - u.cached_input_tokens - u.cache_write_tokens
    return (
        uncached * p.input_usd_per_mtok
        + u.cached_input_tokens * cached
        + u.cache_write_tokens * write
        + u.output_tokens * p.output_usd_per_mtok
    ) / _MILLION


class PriceTable:
    def __init__(self, config: Config) -> None:
        self._overrides = dict(config.prices)
        self._unknown = config.unknown_model
        self._fallback = config.fallback_price
        digest = hashlib.sha256(
            json.dumps(
                {"prices": {k: v.model_dump(mode="json") for k, v in sorted(self._overrides.items())},
                 "unknown_model": self._unknown,
                 "fallback": self._fallback.model_dump(mode="json") if self._fallback else None},
                sort_keys=True,
            ).encode()
        ).hexdigest()[:12]
        self.version = f"genai-prices-{genai_prices.__version__}+{digest}"

    def price(self, usage: Usage) -> Price:
        override = self._overrides.get(usage.model) or self._overrides.get(base_model(usage.model))
        if override is not None:
            return Price(usd_to_nanos_ceil(_override_cost(override, usage)), self.version, "override")
        try:
            cost = self._from_table(usage)
        except LookupError:
            if self._unknown == "fallback":
                assert self._fallback is not None  # the config requires it with unknown_model: fallback
                return Price(usd_to_nanos_ceil(_override_cost(self._fallback, usage)), self.version, "fallback")
            raise UnknownModel(
                f"no price for model {usage.model!r} (provider {usage.provider}): add it under prices:, "
                "or set unknown_model: fallback with a fallback_price"
            ) from None
        return Price(usd_to_nanos_ceil(cost), self.version, "genai-prices")

    @staticmethod
    def _from_table(u: Usage) -> Decimal:
        counts = {
            "input_tokens": u.input_tokens,
            "cache_read_tokens": u.cached_input_tokens,
            "cache_write_tokens": u.cache_write_tokens,
            "cache_write_1h_tokens": u.cache_write_1h_tokens,
            "input_audio_tokens": u.input_audio_tokens,
            "input_image_tokens": u.input_image_tokens,
            "output_tokens": u.output_tokens,
            "output_reasoning_tokens": u.reasoning_tokens,
            "output_audio_tokens": u.output_audio_tokens,
        }
        context = {"processing": "batch"} if u.batch else {}
        if u.service_tier and u.service_tier not in ("default", "auto", "standard"):
            context["service_tier"] = u.service_tier
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # genai-prices warns about keys a model has no price for
            result = genai_prices.calc_price(
                genai_prices.Usage(**{k: v for k, v in counts.items() if v}),
                u.model,
                provider_id=u.provider or "openai",
                price_context=context or None,
            )
        return result.total_price
