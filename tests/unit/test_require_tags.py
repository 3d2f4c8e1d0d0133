"""require_tags: the tags a hold must carry, from the top level, the agent's
budget and its groups; a hold without one is refused before anything is
touched, naming the tag."""

from __future__ import annotations

import pytest

from budgetd.app import BudgetService, ConfigInForce
from budgetd.config import ConfigError, Resolver, load_config_text
from budgetd.metrics import Metrics
from budgetd.store.memory import MemoryStore

BODY = """
require_tags: [feature]
defaults: {daily_usd: 1}
agents:
  billing: {daily_usd: 1, require_tags: [customer]}
  "cron-*": {daily_usd: 1, require_tags: []}
groups:
  support: {members: ["support-*"], require_tags: [route]}
"""


def test_the_required_tags_are_the_union_of_the_top_level_the_agent_and_its_groups():
    resolver = Resolver(load_config_text(BODY))
    assert resolver.budget("billing").required_tags == ("customer", "feature")
    assert resolver.budget("support-bot").required_tags == ("feature", "route")
    assert resolver.budget("cron-nightly").required_tags == ("feature",)  # the top level's still applies
    assert Resolver(load_config_text("defaults: {daily_usd: 1}\n")).budget("a").required_tags == ()


@pytest.mark.parametrize("body, where", [
    ("require_tags: ['bad key!']\n", "require_tags"),
    ("agents:\n  a: {require_tag: [customer]}\n", "require_tag"),  # a typo of the key is refused, not ignored
    ("groups:\n  g: {members: [a], require_tags: customer}\n", "require_tags"),
])
def test_bad_require_tags_are_refused_with_where(body, where):
    with pytest.raises(ConfigError, match=where):
        load_config_text(body)


@pytest.fixture
async def service():
    config = load_config_text('server: {listen: "127.0.0.1:0"}\nstore: {url: "memory://"}\n' + BODY)
    store = MemoryStore()
    await store.open()
    return BudgetService(ConfigInForce.of(config), store, lambda: 1_795_000_000_000, Metrics())


async def test_a_hold_without_a_required_tag_is_refused_naming_it_and_changes_nothing(service):
    with pytest.raises(ValueError, match=r"^missing tag 'customer': set it in guard\(\.\.\., tags=\.\.\.\) "
                                         r"or in wrap\(\.\.\., tags=\.\.\.\)"):
        await service.hold("billing", "r1", {"feature": "invoices"}, 1000)
    with pytest.raises(ValueError, match="missing tags 'customer' and 'feature'"):
        await service.hold("billing", "r2", {}, 1000)
    with pytest.raises(ValueError, match="missing tag 'customer'"):  # an empty value attributes nothing
        await service.hold("billing", "r3", {"feature": "invoices", "customer": ""}, 1000)
    state = (await service.status("billing")).state
    assert all(b.reserved_nanos == 0 and b.spent_nanos == 0 for b in state.balances.values())
    assert (await service.hold("billing", "r4", {"feature": "invoices", "customer": "acme"}, 1000)).allowed


async def test_a_background_job_names_itself_with_the_tags_it_must_carry(service):
    with pytest.raises(ValueError, match="missing tag 'feature'"):
        await service.hold("cron-nightly", "r1", {}, 1000)
    assert (await service.hold("cron-nightly", "r2", {"feature": "cron:nightly-summarize"}, 1000)).allowed
