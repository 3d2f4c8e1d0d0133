"""The config in force and what is derived from it, replaced whole by a reload."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Config, Resolver
from ..plan import PlanCache
from ..pricing import PriceTable


@dataclass(frozen=True)
class ConfigInForce:
    config: Config
    resolver: Resolver
    prices: PriceTable
    plans: PlanCache

    @classmethod
    def of(cls, config: Config) -> ConfigInForce:
        resolver = Resolver(config)
        plans = PlanCache(resolver.budget, config.zone, tag_budget_of=resolver.tag_budget,
                          budgeted_tags=resolver.budgeted_tags)
        return cls(config, resolver, PriceTable(config), plans)
