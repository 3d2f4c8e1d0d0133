"""Token usage as providers report it, read from their response objects.

Counting follows OpenAI: ``input_tokens`` is the whole input (cached reads,
cache writes, audio and image tokens are parts of it) and ``output_tokens``
the whole output (reasoning and audio tokens are parts of it). Anthropic
reports input *without* its cache reads and writes; ``usage_from_response``
adds them so every provider is counted the same way. The daemon prices it.

Response objects are read by attribute or key (SDK models or plain dicts),
so this module needs no provider SDK.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from .v1 import budget_pb2 as pb

MAX_TOKENS = 10**10  # far past any context window; bigger is a unit mistake


@dataclass(frozen=True)
class Usage:
    model: str
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    input_audio_tokens: int = 0
    input_image_tokens: int = 0
    output_audio_tokens: int = 0
    provider: str = "openai"
    service_tier: str = ""
    batch: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not 0 < len(self.model) <= 200:
            raise ValueError("usage.model: must be a string of 1-200 characters")
        for name, value in vars(self).items():
            if name.endswith("_tokens") and (
                isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKENS
            ):
                raise ValueError(f"usage.{name}: must be an int from 0 to {MAX_TOKENS}, got {value!r}")
        # The details are parts of their totals: none may exceed its total.
        if self.cached_input_tokens + self.cache_write_tokens > self.input_tokens:
            raise ValueError("usage: cached_input_tokens + cache_write_tokens are part of input_tokens, "
                             "so cannot exceed them")
        for part, total in (("input_audio_tokens", "input_tokens"), ("input_image_tokens", "input_tokens"),
                            ("cache_write_1h_tokens", "cache_write_tokens"), ("reasoning_tokens", "output_tokens"),
                            ("output_audio_tokens", "output_tokens")):
            if getattr(self, part) > getattr(self, total):
                raise ValueError(f"usage.{part}: part of {total}, so cannot exceed it")

    def to_proto(self) -> pb.Usage:
        return pb.Usage(**vars(self))

    @classmethod
    def from_proto(cls, msg: pb.Usage) -> Usage:
        values = {f.name: getattr(msg, f.name) for f in fields(cls)}
        return cls(**{**values, "provider": values["provider"] or "openai"})


@dataclass(frozen=True)
class UsageEstimate:
    """Upper bounds on a call's tokens, for the daemon to price as the hold."""

    model: str
    input_tokens: int
    output_tokens: int | None = None  # None: the agent's configured estimate_output_tokens
    provider: str = "openai"
    service_tier: str = ""
    batch: bool = False

    def to_proto(self) -> pb.UsageEstimate:
        msg = pb.UsageEstimate(model=self.model, provider=self.provider, input_tokens=self.input_tokens,
                               service_tier=self.service_tier, batch=self.batch)
        if self.output_tokens is not None:
            msg.output_tokens = self.output_tokens
        return msg


def field(obj, name: str, default=None):
    """``obj.name`` or ``obj[name]``, whichever the object has."""
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        value = obj.get(name, default)
    else:
        value = getattr(obj, name, default)
    return default if value is None else value


def _tier(resp) -> str:
    tier = field(resp, "service_tier", "") or field(field(resp, "usage"), "service_tier", "")
    return tier if isinstance(tier, str) else ""


def usage_from_response(resp, *, provider: str | None = None) -> Usage:
    """Read the usage of a Chat Completions, Responses, Embeddings or Anthropic
    Messages response (or the final chunk/event of a stream that carries it)."""
    usage = field(resp, "usage")
    model = field(resp, "model", "")
    if usage is None:
        raise ValueError(f"the response has no usage to read (a {type(resp).__name__})")
    if field(usage, "cache_read_input_tokens") is not None or field(resp, "type") == "message":
        # Anthropic: input_tokens excludes cache reads and writes.
        reads = field(usage, "cache_read_input_tokens", 0)
        writes = field(usage, "cache_creation_input_tokens", 0)
        return Usage(
            model=model, provider=provider or "anthropic",
            input_tokens=field(usage, "input_tokens", 0) + reads + writes,
            cached_input_tokens=reads, cache_write_tokens=writes,
            cache_write_1h_tokens=field(field(usage, "cache_creation"), "ephemeral_1h_input_tokens", 0),
            output_tokens=field(usage, "output_tokens", 0), service_tier=_tier(resp),
        )
    if field(usage, "prompt_tokens") is not None:  # Chat Completions (and chunks), Embeddings
        prompt = field(usage, "prompt_tokens_details")
        completion = field(usage, "completion_tokens_details")
        return Usage(
            model=model, provider=provider or "openai",
            input_tokens=field(usage, "prompt_tokens", 0),
            cached_input_tokens=field(prompt, "cached_tokens", 0),
            cache_write_tokens=field(prompt, "cache_write_tokens", 0),
            input_audio_tokens=field(prompt, "audio_tokens", 0),
            input_image_tokens=field(prompt, "image_tokens", 0),
            # completion_tokens already counts reasoning and rejected prediction tokens.
            output_tokens=field(usage, "completion_tokens", 0),
            reasoning_tokens=field(completion, "reasoning_tokens", 0),
            output_audio_tokens=field(completion, "audio_tokens", 0),
            service_tier=_tier(resp),
        )
    if field(usage, "input_tokens") is not None:  # Responses API
        details_in = field(usage, "input_tokens_details")
        return Usage(
            model=model, provider=provider or "openai",
            input_tokens=field(usage, "input_tokens", 0),
            cached_input_tokens=field(details_in, "cached_tokens", 0),
            cache_write_tokens=field(details_in, "cache_write_tokens", 0),
            output_tokens=field(usage, "output_tokens", 0),
            reasoning_tokens=field(field(usage, "output_tokens_details"), "reasoning_tokens", 0),
            service_tier=_tier(resp),
        )
    raise ValueError(f"unrecognised usage shape on a {type(resp).__name__}")
