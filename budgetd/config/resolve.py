"""Which budget applies to an agent id, and which groups it belongs to.

An exact id in ``agents:`` wins; otherwise the first pattern (in file order)
that matches; otherwise ``defaults:``; with no defaults the agent is unknown
and refused. Answers are cached per config: a config is immutable, and a
reload builds a new Resolver.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fnmatch import fnmatchcase

from budgetd_client.money import NANOS_PER_USD

from .schema import GLOB_CHARS, Budget, Config, to_nanos

#: The hold for a call with no estimate when neither the agent nor defaults
#: configure ``estimate_usd``.
DEFAULT_ESTIMATE_USD = Decimal("0.05")
#: Output tokens held for a request without max_tokens when nothing is configured.
DEFAULT_ESTIMATE_OUTPUT_TOKENS = 4096
_CACHE_LIMIT = 200_000


@dataclass(frozen=True)
class GroupBudget:
    name: str
    daily_nanos: int | None
    monthly_nanos: int | None
    required_tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class AgentBudget:
    agent_id: str
    daily_nanos: int | None
    monthly_nanos: int | None
    estimate_nanos: int
    estimate_output_tokens: int
    groups: tuple[GroupBudget, ...]
    # Fractions of each cap whose crossing raises a warning notice (the config's).
    warn_at: tuple[Decimal, ...] = ()
    # The tags its holds must carry: the top level's, its own and its groups', sorted.
    required_tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class TagBudget:
    """The caps of one tag value (``customer`` = ``acme``)."""

    key: str
    value: str
    daily_nanos: int | None
    monthly_nanos: int | None
    # "configured" (the exact value is listed), "pattern:GLOB" or "defaults".
    source: str

    @property
    def scope_key(self) -> str:
        return f"{self.key}:{self.value}"


class Resolver:
    def __init__(self, config: Config) -> None:
        self.config = config
        # Exact ids are looked up in config.agents itself: a copy of a
        # million-entry dict is built in resizes that hold the GIL for 100 ms
        # and more each (a reload builds this in a worker thread while the
        # loop answers calls). A pattern key never equals an agent id: ids
        # have no glob characters.
        self._exact = config.agents
        self._exact_ids = tuple(k for k in config.agents if not GLOB_CHARS.search(k))  # copied, not searched, per ask
        self._patterns = [(k, v) for k, v in config.agents.items() if GLOB_CHARS.search(k)]
        self._groups = [
            (GroupBudget(name, to_nanos(g.daily_usd), to_nanos(g.monthly_usd), tuple(g.require_tags)), g.members)
            for name, g in config.groups.items()
        ]
        defaults = config.defaults
        self._default_estimate = _first(defaults and defaults.estimate_usd, DEFAULT_ESTIMATE_USD)
        self._default_output = _first(defaults and defaults.estimate_output_tokens, DEFAULT_ESTIMATE_OUTPUT_TOKENS)
        self._cache: dict[str, AgentBudget | None] = {}
        self._warn_at = tuple(config.warn_at)  # one tuple, shared by every agent's budget
        #: The tags that have budgets, in config order: a call's other tags cost nothing.
        self.budgeted_tags = tuple(config.tag_budgets)
        self._tag_patterns = {key: [(v, caps) for v, caps in tb.values.items() if GLOB_CHARS.search(v)]
                              for key, tb in config.tag_budgets.items()}
        self._tag_cache: dict[tuple[str, str], TagBudget | None] = {}

    @property
    def group_budgets(self) -> tuple[GroupBudget, ...]:
        """Every group's caps, in config order."""
        return tuple(group for group, _ in self._groups)

    @property
    def exact_agent_ids(self) -> tuple[str, ...]:
        return self._exact_ids

    def budget(self, agent_id: str) -> AgentBudget | None:
        try:
            return self._cache[agent_id]
        except KeyError:
            pass
        found = self._lookup(agent_id)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()  # bounded: agent ids come from callers
        self._cache[agent_id] = found
        return found

    def tag_budget(self, key: str, value: str) -> TagBudget | None:
        """The caps of a tag value: its exact entry, else the first pattern
        that matches it, else the tag's defaults, else none ("uncapped": its
        spend is still counted). None when the tag has no ``tag_budgets``
        entry: its values cost nothing."""
        try:
            return self._tag_cache[(key, value)]
        except KeyError:
            pass
        found = self._tag_lookup(key, value)
        if len(self._tag_cache) >= _CACHE_LIMIT:
            self._tag_cache.clear()  # bounded: tag values come from callers
        self._tag_cache[(key, value)] = found
        return found

    def _tag_lookup(self, key: str, value: str) -> TagBudget | None:
        config = self.config.tag_budgets.get(key)
        if config is None or not value:
            return None
        source, caps = "configured", None if GLOB_CHARS.search(value) else config.values.get(value)
        if caps is None:
            source, caps = next(((f"pattern:{p}", c) for p, c in self._tag_patterns[key] if fnmatchcase(value, p)),
                                ("defaults", config.defaults))
        if caps is None:  # counted (status shows it, a pause stops it), never capped
            return TagBudget(key, value, None, None, "uncapped")
        return TagBudget(key, value, to_nanos(caps.daily_usd), to_nanos(caps.monthly_usd), source)

    def source(self, agent_id: str) -> str:
        """Where the agent's caps come from: "configured" (its exact id),
        "pattern:GLOB" (the first pattern that matches) or "defaults"."""
        return self._match(agent_id)[0]

    def _match(self, agent_id: str) -> tuple[str, Budget | None]:
        """The entry that budgets this agent, and where it stands: an exact id
        wins, then the first matching pattern, then defaults."""
        entry: Budget | None = None if GLOB_CHARS.search(agent_id) else self._exact.get(agent_id)
        if entry is not None:
            return "configured", entry
        for pattern, entry in self._patterns:
            if fnmatchcase(agent_id, pattern):
                return f"pattern:{pattern}", entry
        return "defaults", self.config.defaults

    def _lookup(self, agent_id: str) -> AgentBudget | None:
        entry = self._match(agent_id)[1]
        if entry is None:
            return None
        groups = tuple(g for g, members in self._groups if any(fnmatchcase(agent_id, m) for m in members))
        return AgentBudget(
            agent_id=agent_id,
            daily_nanos=to_nanos(entry.daily_usd),
            monthly_nanos=to_nanos(entry.monthly_usd),
            estimate_nanos=int(_first(entry.estimate_usd, self._default_estimate) * NANOS_PER_USD),  # always set
            estimate_output_tokens=_first(entry.estimate_output_tokens, self._default_output),
            groups=groups,
            warn_at=self._warn_at,
            required_tags=tuple(sorted({*self.config.require_tags, *entry.require_tags,
                                        *(t for g in groups for t in g.required_tags)})),
        )


def _first(value, fallback):
    return value if value is not None else fallback
