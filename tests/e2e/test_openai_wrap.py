"""budget.wrap(OpenAI()) end to end: the real openai SDK against a loopback
provider, a real budgetd, exact settles, no holds left behind."""

from __future__ import annotations

from decimal import Decimal

import anthropic
import openai
import pytest
from budgetd_client import AsyncBudget, Budget

from fake_provider import FakeProvider

D = Decimal
# gpt-4o: $2.50 input, $1.25 cached input, $10 output per million tokens.
GPT4O_COST = D("0.00475")  # 200 x 2.5 + 1000 x 1.25 + 300 x 10, per million
MESSAGES = [{"role": "user", "content": "Say hello."}]


@pytest.fixture
def provider():
    with FakeProvider() as p:
        yield p


@pytest.fixture
def budget(start_daemon):
    b = Budget(start_daemon("agents:\n  bot: {daily_usd: 100}\n").address)
    yield b
    b.close()


def openai_client(provider, cls=openai.OpenAI):
    return cls(api_key="test-key", base_url=provider.base_url, max_retries=0)


def assert_settled(budget, spent: Decimal) -> None:
    st = budget.status("bot")
    assert (st.daily.spent_usd, st.daily.reserved_usd) == (spent, 0)


def test_plain_chat_call_settles_the_priced_usage(provider, budget):
    client = budget.wrap(openai_client(provider), agent_id="bot", tags={"feature": "hello"})
    resp = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=50)
    assert resp.choices[0].message.content == "Hello there."
    assert_settled(budget, GPT4O_COST)


def test_streaming_chat_asks_for_usage_settles_it_and_hides_the_usage_chunk(provider, budget):
    client = budget.wrap(openai_client(provider), agent_id="bot")
    stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    assert text == "Hello there."  # every chunk had a choice: the usage chunk we asked for was not shown
    assert provider.requests[-1][1]["stream_options"] == {"include_usage": True}
    assert_settled(budget, GPT4O_COST)


def test_a_caller_who_asked_for_usage_sees_the_usage_chunk(provider, budget):
    client = budget.wrap(openai_client(provider), agent_id="bot")
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 1200
    assert_settled(budget, GPT4O_COST)


@pytest.mark.parametrize("status", [429, 500])
def test_api_errors_release_the_hold(provider, budget, status):
    client = budget.wrap(openai_client(provider), agent_id="bot")
    provider.fail_with = status
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=50)
    assert_settled(budget, D(0))


def test_a_timeout_releases_the_hold(budget):
    client = budget.wrap(openai.OpenAI(api_key="k", base_url="http://127.0.0.1:9/v1", max_retries=0, timeout=1),
                         agent_id="bot")
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=50)
    assert_settled(budget, D(0))


def test_an_abandoned_stream_settles_the_amount_held(provider, budget):
    client = budget.wrap(openai_client(provider), agent_id="bot")
    stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True, max_tokens=100)
    assert budget.status("bot").daily.reserved_usd > 0
    first = next(iter(stream))
    assert first.choices[0].delta.content == "Hello"
    stream.close()  # abandoned before the usage chunk
    st = budget.status("bot")
    # The documented rule: no usage seen, so the hold (the upper bound) is settled.
    held = st.daily.spent_usd
    # "Say hello." is 3 tokens in o200k; OpenAI's framing adds 3 for the message,
    # 1 for the role and 3 for the reply: the exact count the hold was made of.
    expected_input = 3 + 3 + 1 + 3
    assert held == (D(expected_input) * D("2.5") + 100 * 10) / 1_000_000
    assert st.daily.reserved_usd == 0


def test_a_stream_left_by_a_with_block_settles_once(provider, budget):
    client = budget.wrap(openai_client(provider), agent_id="bot")
    with client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True) as stream:
        for _ in stream:
            pass
    assert_settled(budget, GPT4O_COST)


def test_responses_api_plain_and_streaming_are_priced(provider, budget):
    client = budget.wrap(openai_client(provider), agent_id="bot")
    provider.usage = {"input": 500, "cached": 0, "output": 1000, "reasoning": 400}
    resp = client.responses.create(model="o4-mini", input="Say hello.", max_output_tokens=2000)
    assert resp.output_text == "Hello there."
    assert_settled(budget, D("0.00495"))
    events = [e.type for e in client.responses.create(model="o4-mini", input="Say hello.", stream=True)]
    assert events[-1] == "response.completed"
    assert_settled(budget, D("0.00990"))


def test_embeddings_are_priced(provider, budget):
    client = budget.wrap(openai_client(provider), agent_id="bot")
    provider.usage = {"input": 10_000, "cached": 0, "output": 0, "reasoning": 0}
    client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert_settled(budget, D("0.0002"))  # $0.02 per million tokens


def test_everything_else_passes_through_untouched(provider, budget):
    raw = openai_client(provider)
    client = budget.wrap(raw, agent_id="bot")
    assert client.api_key == "test-key" and client.base_url == raw.base_url
    assert client.models is raw.models and client.chat.completions.with_raw_response is not None
    resp = client.with_options(timeout=5).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert resp.usage.prompt_tokens == 1200
    assert_settled(budget, GPT4O_COST)  # with_options() stays guarded
    with pytest.raises(TypeError, match="AsyncBudget"):
        budget.wrap(openai_client(provider, openai.AsyncOpenAI), agent_id="bot")


def test_record_reads_an_anthropic_message(provider, budget):
    client = anthropic.Anthropic(api_key="k", base_url=provider.base_url.removesuffix("/v1"), max_retries=0)
    with budget.guard("bot", estimate_usd="0.05") as call:
        msg = client.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=MESSAGES)
        call.record(msg)
    # 200 uncached x $1 + 1000 cache reads x $0.10 + 300 output x $5, per million
    assert_settled(budget, D("0.0018"))


async def test_async_openai_plain_streaming_errors_and_abandon(provider, start_daemon):
    daemon = start_daemon("agents:\n  bot: {daily_usd: 100}\n")
    async with AsyncBudget(daemon.address) as budget:
        client = budget.wrap(openai_client(provider, openai.AsyncOpenAI), agent_id="bot")
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=50)
        assert (await budget.status("bot")).daily.spent_usd == GPT4O_COST

        stream = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
        assert "".join([c.choices[0].delta.content or "" async for c in stream]) == "Hello there."
        assert (await budget.status("bot")).daily.spent_usd == 2 * GPT4O_COST

        provider.fail_with = 500
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        st = await budget.status("bot")
        assert (st.daily.spent_usd, st.daily.reserved_usd) == (2 * GPT4O_COST, 0)

        stream = await client.responses.create(model="gpt-4o", input="hi", stream=True, max_output_tokens=10)
        async for event in stream:
            break
        await stream.close()
        st = await budget.status("bot")
        assert st.daily.reserved_usd == 0 and st.daily.spent_usd > 2 * GPT4O_COST

        with pytest.raises(TypeError, match="Budget"):
            budget.wrap(openai_client(provider), agent_id="bot")
