"""Which agents' caps a config edit changed, so a reload reconciles those
and no others: an operator's resume of an agent whose caps stayed stands,
and a million-agent file with one cap edited reconciles one agent.

Runs in the reload's worker thread; plain Python loops, so the interpreter
hands the GIL to the event loop every few milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .resolve import AgentBudget, Resolver
from .schema import GLOB_CHARS, Config, to_nanos

Window = tuple[str, str]  # (scope key, window): ("agent:a1", "daily"), ("group:team", "monthly")
#: For each window whose cap changed: (the cap before, the cap now) in nanodollars; None is uncapped.
Changes = dict[Window, tuple[int | None, int | None]]


@dataclass
class CapChanges:
    agents: dict[str, Changes] = field(default_factory=dict)  # agent id -> its windows whose caps changed
    groups: dict[str, Changes] = field(default_factory=dict)  # group name -> its windows whose caps changed
    # Patterns or defaults changed: agents they budget (not listed by id)
    # can have changed caps; only the active ones are looked at.
    fallback_changed: bool = False

    def __bool__(self) -> bool:
        return bool(self.agents or self.groups or self.fallback_changed)


def caps_of(budget: AgentBudget | None) -> dict[Window, int | None]:
    if budget is None:
        return {}
    agent = f"agent:{budget.agent_id}"
    caps = {(agent, "daily"): budget.daily_nanos, (agent, "monthly"): budget.monthly_nanos}
    for g in budget.groups:
        caps[(f"group:{g.name}", "daily")] = g.daily_nanos
        caps[(f"group:{g.name}", "monthly")] = g.monthly_nanos
    return caps


def changed_windows(old: AgentBudget | None, new: AgentBudget | None) -> Changes:
    """The windows of the agent (and of its groups) whose cap differs. A
    window absent on one side counts as uncapped there."""
    before, after = caps_of(old), caps_of(new)
    return {w: (before.get(w), after.get(w)) for w in before.keys() | after.keys() if before.get(w) != after.get(w)}


def _caps(entry) -> tuple:
    return (entry.daily_usd, entry.monthly_usd)


def _fallback(config: Config) -> tuple:
    patterns = tuple((k, _caps(v)) for k, v in config.agents.items() if GLOB_CHARS.search(k))
    return patterns, (None if config.defaults is None else _caps(config.defaults))


def diff(old: Resolver, new: Resolver) -> CapChanges:
    out = CapChanges()
    old_agents, new_agents = old.config.agents, new.config.agents
    for key, entry in new_agents.items():
        was = old_agents.get(key)
        if (was is None or _caps(was) != _caps(entry)) and not GLOB_CHARS.search(key):
            out.agents[key] = {}
    for key in old_agents:  # a loop, not keys() - keys(): one C call over a million keys holds the GIL
        if key not in new_agents and not GLOB_CHARS.search(key):  # dropped: a pattern, defaults or none now
            out.agents[key] = {}
    for agent_id in list(out.agents):
        changes = changed_windows(old.budget(agent_id), new.budget(agent_id))
        if changes:
            out.agents[agent_id] = changes
        else:
            del out.agents[agent_id]
    old_groups = {name: (g.daily_usd, g.monthly_usd) for name, g in old.config.groups.items()}
    for name, g in new.config.groups.items():
        before = old_groups.get(name, (None, None))
        changes = {(f"group:{name}", w): (to_nanos(b), to_nanos(a))
                   for w, b, a in (("daily", before[0], g.daily_usd), ("monthly", before[1], g.monthly_usd)) if b != a}
        if changes:
            out.groups[name] = changes
    out.fallback_changed = _fallback(old.config) != _fallback(new.config)
    return out


def diff_agents(old: Resolver, new: Resolver, agent_ids: Iterable[str]) -> dict[str, Changes]:
    """The same for agents named by the store (active today), for a change of
    patterns or defaults."""
    out = {}
    for agent_id in agent_ids:
        changes = changed_windows(old.budget(agent_id), new.budget(agent_id))
        if changes:
            out[agent_id] = changes
    return out


def a_member(resolver: Resolver, group: str, candidates: Iterable[str]) -> str | None:
    """An agent of the group under this config, to reconcile the group's
    windows through (a group's counters are shared by its members)."""
    members = resolver.config.groups[group].members
    for agent_id in [m for m in members if not GLOB_CHARS.search(m)] + list(candidates):
        budget = resolver.budget(agent_id)
        if budget is not None and any(g.name == group for g in budget.groups):
            return agent_id
    return None

