"""The admin-API readers against the loopback fake of both providers: a day
read exactly (tokens by kind, requests, cost to the last digit), pages,
filters, retries, and every failure an AdminApiError (never a partial day)."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime
from decimal import Decimal

import aiohttp
import pytest
from fake_admin_api import (
    ADMIN_KEY,
    ANTHROPIC_COSTS,
    ANTHROPIC_USAGE,
    OPENAI_COMPLETIONS,
    OPENAI_COSTS,
    OPENAI_EMBEDDINGS,
    FakeAdminApi,
)

from budgetd.config.schema import ReconcileProvider
from budgetd.reconcile.anthropic_admin import fetch_anthropic_day
from budgetd.reconcile.http import RetryPolicy, aiohttp_attempt, get_pages
from budgetd.reconcile.model import ProviderModelDay, Tokens
from budgetd.reconcile.openai_admin import fetch_openai_day, parse_line_item
from budgetd.reconcile.providers import AdminApiError, cents_to_usd, fetch_day

FAST = RetryPolicy(attempts=4, base_seconds=0.001, max_seconds=0.05, timeout_seconds=5)
DAY = "2026-03-10"
DAY_START_MS = int(datetime(2026, 3, 10, tzinfo=UTC).timestamp() * 1000)
DAY_END_MS = DAY_START_MS + 86_400_000
AT = DAY_START_MS + 5 * 3_600_000  # 05:00 UTC
NOW_DURING = DAY_START_MS + 12 * 3_600_000
NOW_AFTER = DAY_END_MS + 1

PRICES = {
    # dollars per million tokens
    "gpt-4o-2024-08-06": {"input": Decimal("2.5"), "cached_input": Decimal("1.25"), "output": Decimal(10)},
    "gpt-4o-mini-2024-07-18": {"input": Decimal("0.15"), "cached_input": Decimal("0.075"),
                               "output": Decimal("0.6")},
    "text-embedding-3-small": {"input": Decimal("0.02")},
    # $0.001 per million: one token costs $0.000000001
    "tiny-model": {"input": Decimal("0.001"), "output": Decimal("0.001")},
    "claude-sonnet-4-20250514": {"input": Decimal(3), "cached_input": Decimal("0.3"),
                                 "cache_write": Decimal("3.75"), "cache_write_1h": Decimal(6),
                                 "output": Decimal(15)},
    "claude-3-5-haiku-20241022": {"input": Decimal("0.8"), "cached_input": Decimal("0.08"),
                                  "cache_write": Decimal(1), "cache_write_1h": Decimal("1.6"),
                                  "output": Decimal(4)},
}


@pytest.fixture
def api():
    with FakeAdminApi(prices=PRICES) as fake:
        yield fake


def plain(query: dict[str, list[str]]) -> dict[str, list[str]]:
    """A query's parameters by name, ``name[]`` (the SDK's lists) as ``name``."""
    return {name.removesuffix("[]"): values for name, values in query.items()}


def settings(api: FakeAdminApi, **overrides) -> ReconcileProvider:
    return ReconcileProvider(**{"admin_key": ADMIN_KEY, "base_url": api.base_url, **overrides})


def usd(tokens: int, per_million: str) -> Decimal:
    return tokens * Decimal(per_million) / 1_000_000


def add_openai_day(api: FakeAdminApi) -> None:
    api.add_call("openai", AT, "gpt-4o-2024-08-06", input=1200, cached_input=800, output=333, requests=4)
    # the same model in another project and key: summed into one model
    api.add_call("openai", AT + 60_000, "gpt-4o-2024-08-06", input=7, cached_input=0, output=5,
                 project_id="proj_other", api_key_id="key_other")
    api.add_call("openai", AT, "gpt-4o-mini-2024-07-18", input=10_001, cached_input=3, output=1, requests=2)
    api.add_call("openai", AT, "text-embedding-3-small", input=4321, requests=3)
    api.add_call("openai", AT, "tiny-model", input=1)
    api.add_other_cost("openai", AT, "web search tool calls", Decimal("0.025"))


# -- OpenAI ---------------------------------------------------------------------------------

async def test_openai_day_read_exactly(api):
    add_openai_day(api)
    day = await fetch_openai_day(settings(api), DAY, NOW_AFTER, retry=FAST)

    assert day.provider == "openai" and day.day == DAY and day.complete
    assert set(day.models) == {"gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18", "text-embedding-3-small",
                               "tiny-model"}
    gpt4o = day.models["gpt-4o-2024-08-06"]
    # input_tokens (2007, cached included) less the cached 800
    assert gpt4o.tokens == Tokens(input=1207, cached_input=800, output=338)
    assert gpt4o.requests == 5
    assert gpt4o.cost_by_kind_usd == {"input": usd(1207, "2.5"), "cached_input": usd(800, "1.25"),
                                      "output": usd(338, "10")}
    assert gpt4o.cost_usd == Decimal("0.0030175") + Decimal("0.001") + Decimal("0.00338")
    mini = day.models["gpt-4o-mini-2024-07-18"]
    assert (mini.requests, mini.tokens) == (2, Tokens(input=10_001, cached_input=3, output=1))
    assert mini.cost_usd == Decimal("0.00150015") + Decimal("0.000000225") + Decimal("0.0000006")
    embedding = day.models["text-embedding-3-small"]
    assert embedding == ProviderModelDay(model="text-embedding-3-small", requests=3, tokens=Tokens(input=4321),
                                         cost_usd=Decimal("0.00008642"),
                                         cost_by_kind_usd={"input": Decimal("0.00008642")})
    # a billionth of a dollar survives the JSON number it came in
    assert day.models["tiny-model"].cost_usd == Decimal("0.000000001")
    assert day.unattributed_cost_usd == Decimal("0.025")


async def test_openai_requests_say_the_day_and_the_grouping(api):
    await fetch_openai_day(settings(api), DAY, NOW_AFTER, retry=FAST)
    start, end = str(DAY_START_MS // 1000), str(DAY_END_MS // 1000)
    costs, = api.requests_to(OPENAI_COSTS)
    assert plain(costs) == {"start_time": [start], "end_time": [end], "bucket_width": ["1d"],
                            "group_by": ["line_item"]}
    for path in (OPENAI_COMPLETIONS, OPENAI_EMBEDDINGS):
        usage, = api.requests_to(path)
        assert plain(usage) == {"start_time": [start], "end_time": [end], "bucket_width": ["1d"],
                                "group_by": ["model"]}


async def test_a_day_not_over_is_not_complete_and_other_days_do_not_count(api):
    api.add_call("openai", AT, "gpt-4o-2024-08-06", input=10)
    api.add_call("openai", DAY_START_MS - 1, "gpt-4o-2024-08-06", input=1000)  # the day before, 23:59:59.999
    api.add_call("openai", DAY_END_MS, "gpt-4o-2024-08-06", input=1000)  # the next day, 00:00
    day = await fetch_openai_day(settings(api), DAY, NOW_DURING, retry=FAST)
    assert not day.complete
    assert day.models["gpt-4o-2024-08-06"].tokens == Tokens(input=10)
    assert (await fetch_openai_day(settings(api), DAY, DAY_END_MS, retry=FAST)).complete


async def test_openai_pages_add_up_to_the_same_day(api):
    add_openai_day(api)
    whole = await fetch_openai_day(settings(api), DAY, NOW_AFTER, retry=FAST)
    api.requests.clear()
    api.page_size = 1  # every result on a page of its own: buckets go on over pages
    paged = await fetch_openai_day(settings(api), DAY, NOW_AFTER, retry=FAST)
    assert paged == whole
    pages = [q.get("page") for q in api.requests_to(OPENAI_COSTS)]
    assert pages == [None, ["page_2"], ["page_3"], ["page_4"], ["page_5"], ["page_6"], ["page_7"], ["page_8"],
                     ["page_9"]]  # 9 cost lines


async def test_openai_filters_by_project_and_key(api):
    add_openai_day(api)
    day = await fetch_openai_day(settings(api, project_ids=["proj_other"], api_key_ids=["key_other"]),
                                 DAY, NOW_AFTER, retry=FAST)
    assert list(day.models) == ["gpt-4o-2024-08-06"]
    assert day.models["gpt-4o-2024-08-06"].tokens == Tokens(input=7, output=5)
    assert day.models["gpt-4o-2024-08-06"].requests == 1
    assert day.unattributed_cost_usd == 0  # the web search was in proj_budgetd
    costs = plain(api.requests_to(OPENAI_COSTS)[0])
    assert costs["group_by"] == ["line_item", "project_id", "api_key_id"]
    assert (costs["project_ids"], costs["api_key_ids"]) == (["proj_other"], ["key_other"])
    assert day.models["gpt-4o-2024-08-06"].cost_usd == usd(7, "2.5") + usd(5, "10")  # the key's cost alone
    usage = plain(api.requests_to(OPENAI_COMPLETIONS)[0])
    assert usage["group_by"] == ["model", "project_id", "api_key_id"]
    assert (usage["project_ids"], usage["api_key_ids"]) == (["proj_other"], ["key_other"])


async def test_a_base_url_with_v1_still_works(api):
    api.add_call("openai", AT, "gpt-4o-2024-08-06", input=10)
    day = await fetch_openai_day(settings(api, base_url=api.base_url + "/v1/"), DAY, NOW_AFTER, retry=FAST)
    assert day.models["gpt-4o-2024-08-06"].tokens == Tokens(input=10)


async def test_openai_is_read_through_its_sdk_with_the_admin_key(api):
    await fetch_openai_day(settings(api), DAY, NOW_AFTER, retry=FAST)
    assert {headers["authorization"] for headers in api.headers} == {f"Bearer {ADMIN_KEY}"}
    assert all(headers["user-agent"].startswith("AsyncOpenAI/Python") for headers in api.headers)


@pytest.mark.parametrize(("line_item", "expected"), [
    ("gpt-4o-2024-08-06, input", ("gpt-4o-2024-08-06", "input")),
    ("gpt-4o-2024-08-06, cached input", ("gpt-4o-2024-08-06", "cached_input")),
    ("gpt-6.2-astra, input_tokens", ("gpt-6.2-astra", "input")),  # the SDK's docstring's example
    ("gpt-6.2-astra, cached_input_tokens", ("gpt-6.2-astra", "cached_input")),
    ("gpt-4o-2024-08-06, output", ("gpt-4o-2024-08-06", "output")),
    ("gpt-5, cache writes", ("gpt-5", "cache_write")),
    ("priority | gpt-5-2025-08-07, output, long context", ("gpt-5-2025-08-07", "output")),
    ("gpt-audio-mini-2025-12-15 audio, input", ("gpt-audio-mini-2025-12-15", "input")),
    ("whisper-1, audio", ("whisper-1", "other")),
    ("web search tool calls", (None, "other")),
    (None, (None, "other")),
])
def test_line_items(line_item, expected):
    assert parse_line_item(line_item) == expected


# -- Anthropic ----------------------------------------------------------------------------------

def add_anthropic_day(api: FakeAdminApi) -> None:
    api.add_call("anthropic", AT, "claude-sonnet-4-20250514", input=1001, cached_input=20_000, cache_write=3,
                 cache_write_1h=7, output=555, requests=3)
    api.add_call("anthropic", AT, "claude-sonnet-4-20250514", input=9, output=1,
                 workspace_id="wrkspc_other", api_key_id="key_other")
    api.add_call("anthropic", AT, "claude-3-5-haiku-20241022", input=1, cached_input=1, output=1)
    api.add_other_cost("anthropic", AT, "Web Search", Decimal("0.01"))


async def test_anthropic_day_read_exactly(api):
    add_anthropic_day(api)
    day = await fetch_anthropic_day(settings(api), DAY, NOW_AFTER, retry=FAST)

    assert day.provider == "anthropic" and day.complete
    sonnet = day.models["claude-sonnet-4-20250514"]
    assert sonnet.tokens == Tokens(input=1010, cached_input=20_000, cache_write=10, output=556)
    assert sonnet.requests == 0  # the usage report has no request count
    # per workspace lines, summed; cents strings turned into dollars exactly
    assert sonnet.cost_by_kind_usd == {
        "input": usd(1010, "3"), "cached_input": usd(20_000, "0.3"),
        "cache_write": usd(3, "3.75") + usd(7, "6"), "output": usd(556, "15")}
    assert sonnet.cost_usd == Decimal("0.00303") + Decimal("0.006") + Decimal("0.00005325") + Decimal("0.00834")
    haiku = day.models["claude-3-5-haiku-20241022"]
    assert haiku.tokens == Tokens(input=1, cached_input=1, output=1)
    assert haiku.cost_usd == Decimal("0.0000008") + Decimal("0.00000008") + Decimal("0.000004")
    assert day.unattributed_cost_usd == Decimal("0.01")


async def test_anthropic_requests_say_the_day_the_grouping_and_the_headers(api):
    await fetch_anthropic_day(settings(api), DAY, NOW_AFTER, retry=FAST)
    costs, = api.requests_to(ANTHROPIC_COSTS)
    window = {"starting_at": ["2026-03-10T00:00:00Z"], "ending_at": ["2026-03-11T00:00:00Z"], "bucket_width": ["1d"]}
    assert costs == {**window, "group_by[]": ["workspace_id", "description"]}
    usage, = api.requests_to(ANTHROPIC_USAGE)
    assert usage == {**window, "group_by[]": ["model"]}


async def test_anthropic_pages_add_up_to_the_same_day(api):
    add_anthropic_day(api)
    whole = await fetch_anthropic_day(settings(api), DAY, NOW_AFTER, retry=FAST)
    api.page_size = 2
    paged = await fetch_anthropic_day(settings(api), DAY, NOW_AFTER, retry=FAST)
    assert paged == whole
    assert len(api.requests_to(ANTHROPIC_COSTS)) == 1 + 6  # 11 cost lines, 2 a page


async def test_anthropic_filters_by_workspace_and_key(api):
    add_anthropic_day(api)
    day = await fetch_anthropic_day(settings(api, workspace_ids=["wrkspc_other"], api_key_ids=["key_other"]),
                                    DAY, NOW_AFTER, retry=FAST)
    assert list(day.models) == ["claude-sonnet-4-20250514"]
    sonnet = day.models["claude-sonnet-4-20250514"]
    assert sonnet.tokens == Tokens(input=9, output=1)
    assert sonnet.cost_usd == usd(9, "3") + usd(1, "15")  # the cost lines of the workspace only
    assert day.unattributed_cost_usd == 0
    usage, = api.requests_to(ANTHROPIC_USAGE)
    assert usage["group_by[]"] == ["model", "workspace_id", "api_key_id"]
    assert (usage["workspace_ids[]"], usage["api_key_ids[]"]) == (["wrkspc_other"], ["key_other"])


async def test_fetch_day_dispatches_by_name(api):
    api.add_call("anthropic", AT, "claude-3-5-haiku-20241022", output=2)
    api.add_call("openai", AT, "gpt-4o-mini-2024-07-18", output=3)
    anthropic = await fetch_day("anthropic", settings(api), DAY, NOW_AFTER, retry=FAST)
    openai = await fetch_day("openai", settings(api), DAY, NOW_AFTER, retry=FAST)
    assert list(anthropic.models) == ["claude-3-5-haiku-20241022"]
    assert list(openai.models) == ["gpt-4o-mini-2024-07-18"]
    with pytest.raises(AdminApiError, match="not a provider"):
        await fetch_day("mistral", settings(api), DAY, NOW_AFTER, retry=FAST)


# -- the fake's reports, grouped and not --------------------------------------------------------

async def test_buckets_without_group_by_hold_one_result_with_no_model(api):
    add_openai_day(api)
    add_anthropic_day(api)
    api.add_call("openai", DAY_END_MS + 1, "gpt-4o-2024-08-06", input=1)  # the next day
    openai_window = [("start_time", str(DAY_START_MS // 1000)), ("end_time", str(DAY_END_MS // 1000 + 86_400))]
    async with aiohttp.ClientSession() as session:
        def pages(path: str, window, headers):
            url = api.base_url + path
            return get_pages(aiohttp_attempt(session, url, window, headers, FAST), url, FAST)

        costs = await pages(OPENAI_COSTS, openai_window, {"Authorization": f"Bearer {ADMIN_KEY}"})
        usage = await pages(OPENAI_COMPLETIONS, openai_window, {"Authorization": f"Bearer {ADMIN_KEY}"})
        anthropic = await pages(ANTHROPIC_USAGE, [("starting_at", "2026-03-10T00:00:00Z"),
                                                  ("ending_at", "2026-03-11T00:00:00Z")],
                                {"x-api-key": ADMIN_KEY, "anthropic-version": "2023-06-01"})
    assert [b["start_time"] for b in costs] == [DAY_START_MS // 1000, DAY_END_MS // 1000]
    first_day, = costs[0]["results"]
    assert first_day["line_item"] is None and first_day["project_id"] is None
    assert first_day["amount"]["value"] == sum(
        (day.cost_usd for day in (await fetch_openai_day(settings(api), DAY, NOW_AFTER, retry=FAST)).models.values()),
        Decimal("0.025"))
    total, = usage[0]["results"]
    assert total["model"] is None and total["num_model_requests"] == 1 + 4 + 2 + 1
    assert total["input_tokens"] == 2000 + 7 + 10_004 + 1
    anthropic_total, = anthropic[0]["results"]
    assert anthropic_total["model"] is None and anthropic_total["uncached_input_tokens"] == 1011


# -- retries and failures -----------------------------------------------------------------------

async def test_rate_limited_then_answered(api):
    api.add_call("openai", AT, "gpt-4o-2024-08-06", input=10)
    api.fail(OPENAI_COSTS, 429, times=2, retry_after=0.2)
    started = time.monotonic()
    day = await fetch_openai_day(settings(api), DAY, NOW_AFTER,
                                 retry=RetryPolicy(base_seconds=0.001, max_seconds=1.0, timeout_seconds=5))
    assert time.monotonic() - started >= 0.4  # Retry-After honoured, twice
    assert day.models["gpt-4o-2024-08-06"].tokens == Tokens(input=10)
    assert len(api.requests_to(OPENAI_COSTS)) == 3


async def test_retry_after_is_capped(api):
    api.fail(ANTHROPIC_USAGE, 429, times=1, retry_after=3600)
    started = time.monotonic()
    await fetch_anthropic_day(settings(api), DAY, NOW_AFTER, retry=FAST)
    assert time.monotonic() - started < 5


async def test_server_errors_are_retried(api):
    api.add_call("anthropic", AT, "claude-3-5-haiku-20241022", output=2)
    api.fail(ANTHROPIC_COSTS, 529, times=3)
    day = await fetch_anthropic_day(settings(api), DAY, NOW_AFTER, retry=FAST)
    assert day.models["claude-3-5-haiku-20241022"].cost_usd == usd(2, "4")
    assert len(api.requests_to(ANTHROPIC_COSTS)) == 4


async def test_server_errors_past_the_attempts_fail(api):
    api.fail(OPENAI_COMPLETIONS, 502, times=4)
    with pytest.raises(AdminApiError) as caught:
        await fetch_openai_day(settings(api), DAY, NOW_AFTER, retry=FAST)
    assert caught.value.provider == "openai" and caught.value.status == 502
    assert str(caught.value).startswith("OpenAI: 502 — ")
    assert "gave up after 4 attempts" in str(caught.value)
    assert len(api.requests_to(OPENAI_COMPLETIONS)) == 4


async def test_rate_limited_past_the_attempts_fails(api):
    api.fail(OPENAI_COSTS, 429, times=10)
    with pytest.raises(AdminApiError) as caught:
        await fetch_openai_day(settings(api), DAY, NOW_AFTER, retry=FAST)
    assert str(caught.value).startswith("OpenAI: 429 — rate limited, gave up after 4 attempts")
    assert caught.value.status == 429


async def test_not_an_admin_key_is_not_retried(api):
    with pytest.raises(AdminApiError) as caught:
        await fetch_openai_day(settings(api, admin_key="sk-proj-ordinary"), DAY, NOW_AFTER, retry=FAST)
    assert caught.value.status == 403
    assert str(caught.value).startswith(
        "OpenAI: 403 — the key is not an admin key (an Admin API key from the organization settings is needed)")
    assert "insufficient permissions" in str(caught.value)  # OpenAI's own words
    assert len(api.requests) == 1


async def test_a_refused_admin_key_is_not_retried(api):
    api.fail(ANTHROPIC_COSTS, 401, times=5)
    with pytest.raises(AdminApiError) as caught:
        await fetch_anthropic_day(settings(api), DAY, NOW_AFTER, retry=FAST)
    assert (caught.value.provider, caught.value.status) == ("anthropic", 401)
    assert str(caught.value).startswith("Anthropic: 401 — the admin key was refused")
    assert len(api.requests) == 1


async def test_anthropic_without_an_admin_key_is_a_403(api):
    with pytest.raises(AdminApiError, match=r"^Anthropic: 403 — the key is not an admin key"):
        await fetch_anthropic_day(settings(api, admin_key="sk-ant-api03-ordinary"), DAY, NOW_AFTER, retry=FAST)


async def test_a_page_failing_half_way_fails_the_read(api):
    add_openai_day(api)
    api.page_size = 1
    api.fail_page(OPENAI_COMPLETIONS, 3, 500)
    with pytest.raises(AdminApiError) as caught:
        await fetch_openai_day(settings(api), DAY, NOW_AFTER, retry=FAST)
    assert caught.value.status == 500
    pages = [q.get("page") for q in api.requests_to(OPENAI_COMPLETIONS)]
    assert pages == [None, ["page_2"]] + [["page_3"]] * 4  # page 3 asked four times, then given up
    assert not api.requests_to(OPENAI_EMBEDDINGS)


async def test_a_page_refused_half_way_fails_at_once(api):
    add_anthropic_day(api)
    api.page_size = 1
    api.fail_page(ANTHROPIC_COSTS, 2, 404)
    with pytest.raises(AdminApiError, match=r"^Anthropic: 404 — no such endpoint"):
        await fetch_anthropic_day(settings(api), DAY, NOW_AFTER, retry=FAST)
    assert len(api.requests_to(ANTHROPIC_COSTS)) == 2


async def test_a_cut_off_report_is_an_error(api):
    add_openai_day(api)
    api.page_size = 1
    api.truncate(OPENAI_COSTS, page_number=3)
    with pytest.raises(AdminApiError) as caught:
        await fetch_openai_day(settings(api), DAY, NOW_AFTER, retry=FAST)
    assert str(caught.value) == "OpenAI: the report was cut off at page 3 (has_more without next_page)"
    assert caught.value.status is None


async def test_a_page_without_data_is_an_error(api):
    api.fail(ANTHROPIC_USAGE, 200)  # a 200 whose body is an error, no data
    with pytest.raises(AdminApiError, match=r"^Anthropic: the report was cut off at page 1"):
        await fetch_anthropic_day(settings(api), DAY, NOW_AFTER, retry=FAST)


@pytest.mark.parametrize(("provider", "name"), [("openai", "OpenAI"), ("anthropic", "Anthropic")])
async def test_no_admin_key_sends_nothing(api, provider, name):
    with pytest.raises(AdminApiError) as caught:
        await fetch_day(provider, settings(api, admin_key=""), DAY, NOW_AFTER, retry=FAST)
    assert str(caught.value) == f"{name}: no admin key set (reconcile.{provider}.admin_key)"
    assert api.requests == []


async def test_connection_refused_is_an_error():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    unreachable = ReconcileProvider(admin_key=ADMIN_KEY, base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(AdminApiError) as caught:
        await fetch_openai_day(unreachable, DAY, NOW_AFTER, retry=FAST)
    assert str(caught.value).startswith(f"OpenAI: cannot connect to http://127.0.0.1:{port}/v1/organization/costs: ")
    assert caught.value.status is None


async def test_a_slow_answer_is_asked_again(api):
    api.add_call("openai", AT, "gpt-4o-2024-08-06", input=10)
    api.slow(OPENAI_EMBEDDINGS, 1.0, times=1)
    quick = RetryPolicy(base_seconds=0.001, max_seconds=0.05, timeout_seconds=0.2)
    day = await fetch_openai_day(settings(api), DAY, NOW_AFTER, retry=quick)
    assert day.models["gpt-4o-2024-08-06"].tokens == Tokens(input=10)
    assert len(api.requests_to(OPENAI_EMBEDDINGS)) == 2


async def test_no_answer_in_time_fails(api):
    api.slow(ANTHROPIC_COSTS, 1.0, times=2)
    quick = RetryPolicy(attempts=2, base_seconds=0.001, max_seconds=0.05, timeout_seconds=0.2)
    with pytest.raises(AdminApiError) as caught:
        await fetch_anthropic_day(settings(api), DAY, NOW_AFTER, retry=quick)
    assert str(caught.value) == (f"Anthropic: no answer from {api.base_url}{ANTHROPIC_COSTS} in time "
                                 "(gave up after 2 attempts)")


async def test_a_body_that_is_not_json_is_an_error(api):
    api.fail(OPENAI_COSTS, 200, body="<html>Sign in to the proxy</html>")
    with pytest.raises(AdminApiError, match=r"^OpenAI: the report at .*/v1/organization/costs was not JSON"):
        await fetch_openai_day(settings(api), DAY, NOW_AFTER, retry=FAST)


async def test_a_gateway_error_page_is_retried_and_reported_without_its_html(api):
    api.fail(OPENAI_COSTS, 502, times=4, body="<html>Bad Gateway</html>")
    with pytest.raises(AdminApiError) as caught:
        await fetch_openai_day(settings(api), DAY, NOW_AFTER, retry=FAST)
    assert str(caught.value) == "OpenAI: 502 — the provider failed (server error), gave up after 4 attempts"


async def test_a_report_of_another_shape_is_an_error(api):
    api.fail(ANTHROPIC_USAGE, 200, body='{"data": [{"starting_at": "2026-03-10T00:00:00Z"}], "has_more": false}')
    with pytest.raises(AdminApiError, match=r"^Anthropic: the report had an unexpected shape \(KeyError"):
        await fetch_anthropic_day(settings(api), DAY, NOW_AFTER, retry=FAST)


def test_cents_become_dollars_exactly_however_many_digits():
    cents = Decimal("1234567890123456789012345678901234.5678901")  # more digits than a Decimal context keeps
    assert cents_to_usd(cents) == Decimal("12345678901234567890123456789012.345678901")
    assert cents_to_usd(Decimal("0.0000001")) == Decimal("0.000000001")
