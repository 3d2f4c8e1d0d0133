"""The hold for a model call, from the request alone.

Input, with the tokenizer (the ``tokens`` extra, for OpenAI models; see
``tokens``): the request's token count by OpenAI's published rule (the
cookbook "How to count tokens with tiktoken"): 3 tokens per message, the
tokens of each of its string fields (a ``name`` 1 more), 3 to prime the reply.
That equals the provider's count to the extent the provider follows its
published rule, so it is a bound only to that extent. The parts it cannot
count exactly stay bounds: each image counts IMAGE_TOKENS (a high-detail image
of the largest size costs less), and audio or file parts, tool calls and other
structured message fields, tools, functions and response formats count the
UTF-8 byte length of their JSON. The first estimate for a model loads its
encoding, once per process and in the caller's thread (an event loop's, for
AsyncBudget): call ``tokens.preload()`` at start-up to pay that there.

Input, without the tokenizer (not installed, or a model whose tokenizer is not
bundled: claude-*, unknown names): the UTF-8 byte length of the request's JSON
(messages, instructions, tools, response format), plus a few tokens of
framing. Every token of a byte-level BPE is at least one byte, so this never
undercounts text; for English it holds about 4x the real count.

Output: ``n x max_completion_tokens`` / ``max_tokens`` / ``max_output_tokens``
when the request sets one (reasoning tokens count against it), and then it is
a bound; otherwise the agent's ``estimate_output_tokens`` from the daemon's
config, which is not a bound. So a cap holds as a hard limit up to the error
of one call's estimate, and with a max-tokens limit on every request the
estimate is an upper bound (with the tokenizer, up to the provider's keeping
to its published count).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from .tokens import Encoding, count, encoding_for
from .usage import UsageEstimate

IMAGE_TOKENS = 3_000
FRAMING_TOKENS = 16
# OpenAI's published chat framing (the cookbook's gpt-4o / gpt-4 rule).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3
_IMAGE_PARTS = {"image_url", "input_image", "image"}
_TEXT_PARTS = {"text", "input_text", "output_text"}
_TEXT_FIELDS = ("messages", "input", "instructions", "tools", "functions", "response_format", "text", "prompt")


def _strip_images(value, images: list[int]):
    """The request with image payloads replaced (they are priced per image,
    not by the length of a base64 data URL)."""
    if isinstance(value, Mapping):
        if value.get("type") in _IMAGE_PARTS:
            images.append(1)
            return {"type": value.get("type")}
        return {k: _strip_images(v, images) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strip_images(v, images) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "model_dump"):  # pydantic models (SDK params objects)
        return _strip_images(value.model_dump(), images)
    return str(value)


def input_token_bound(request: Mapping) -> int:
    """The byte bound of the whole request: its text fields' JSON, plus framing."""
    return _json_bound({k: request[k] for k in _TEXT_FIELDS if k in request}) + FRAMING_TOKENS


def _json_bound(value) -> int:
    """The byte bound of one value the tokenizer does not count: its JSON's
    UTF-8 length, images at IMAGE_TOKENS each."""
    images: list[int] = []
    stripped = _strip_images(value, images)
    # surrogatepass: a lone surrogate (not valid UTF-8) counts its 3 bytes rather than raising.
    encoded = json.dumps(stripped, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    return len(encoded) + IMAGE_TOKENS * len(images)


def _other_fields_bound(request: Mapping, counted: Iterable[str]) -> int:
    """The byte bound of the request's text fields not counted exactly
    (tools, functions, response_format, ...), as input_token_bound counts them."""
    others = {k: request[k] for k in _TEXT_FIELDS if k in request and k not in counted}
    return _json_bound(others) if others else 0


def _as_mapping(item) -> Mapping | None:
    if isinstance(item, Mapping):
        return item
    if hasattr(item, "model_dump"):  # e.g. a response's message passed back as history
        dumped = item.model_dump()
        return dumped if isinstance(dumped, Mapping) else None
    return None


def _content_parts_tokens(encoding: Encoding, parts: list | tuple) -> int:
    tokens = 0
    for part in parts:
        mapping = _as_mapping(part)
        if mapping is not None and mapping.get("type") in _TEXT_PARTS and isinstance(mapping.get("text"), str):
            tokens += count(encoding, mapping["text"])
        elif mapping is not None and mapping.get("type") in _IMAGE_PARTS:
            tokens += IMAGE_TOKENS
        else:  # audio, files, refusals, anything new: bounded by its bytes
            tokens += _json_bound(part)
    return tokens


def _message_tokens(encoding: Encoding, message) -> int:
    mapping = _as_mapping(message)
    if mapping is None:
        return TOKENS_PER_MESSAGE + _json_bound(message)
    tokens = TOKENS_PER_MESSAGE
    for key, value in mapping.items():
        if isinstance(value, str):
            tokens += count(encoding, value)
            if key == "name":
                tokens += TOKENS_PER_NAME
        elif value is None:
            continue  # an unset field (content of a tool-calling reply): nothing is rendered
        elif key == "content" and isinstance(value, (list, tuple)):
            tokens += _content_parts_tokens(encoding, value)
        else:  # tool_calls, function_call, audio, ...: bounded by their bytes
            tokens += _json_bound(value)
    return tokens


def _chat_input_tokens(request: Mapping) -> int:
    encoding = encoding_for(str(request.get("model", "")))
    messages = request.get("messages")
    # Any other iterable is left alone: counting it could consume a generator.
    if encoding is None or not isinstance(messages, (list, tuple)):
        return input_token_bound(request)
    tokens = REPLY_PRIMING_TOKENS + sum(_message_tokens(encoding, m) for m in messages)
    return tokens + _other_fields_bound(request, counted=("messages",))


def _is_message_item(item) -> bool:
    mapping = _as_mapping(item)
    return (mapping is not None and mapping.get("type", "message") == "message"
            and "role" in mapping and "content" in mapping)


def _responses_input_tokens(request: Mapping) -> int:
    encoding = encoding_for(str(request.get("model", "")))
    instructions, input_ = request.get("instructions"), request.get("input")
    if encoding is None or not (instructions is None or isinstance(instructions, str)) or not (
            input_ is None or isinstance(input_, (str, list, tuple))):
        return input_token_bound(request)
    tokens = REPLY_PRIMING_TOKENS
    if instructions is not None:
        tokens += _message_tokens(encoding, {"role": "system", "content": instructions})
    if isinstance(input_, str):
        tokens += _message_tokens(encoding, {"role": "user", "content": input_})
    elif input_ is not None:
        for item in input_:
            # Function calls and their outputs, reasoning items, references: bounded by their bytes.
            tokens += _message_tokens(encoding, item) if _is_message_item(item) else _json_bound(item)
    return tokens + _other_fields_bound(request, counted=("instructions", "input"))


def _embedding_input_tokens(request: Mapping) -> int:
    encoding = encoding_for(str(request.get("model", "")))
    input_ = request.get("input")
    if encoding is None:
        return input_token_bound(request)
    if isinstance(input_, str):
        return count(encoding, input_)
    if not isinstance(input_, (list, tuple)):
        return input_token_bound(request)
    tokens = 0
    for item in input_:  # strings, or token ids: one list of ints, or a list of such lists
        if isinstance(item, str):
            tokens += count(encoding, item)
        elif isinstance(item, int):
            tokens += 1
        elif isinstance(item, (list, tuple)):
            tokens += len(item)
        else:
            tokens += _json_bound(item)
    return tokens


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _tier(request: Mapping) -> str:
    tier = request.get("service_tier")
    return tier if tier in ("flex", "priority") else ""


def estimate_chat(request: Mapping) -> UsageEstimate:
    limit = _int(request.get("max_completion_tokens")) or _int(request.get("max_tokens"))
    n = _int(request.get("n")) or 1
    return UsageEstimate(model=str(request.get("model", "")), input_tokens=_chat_input_tokens(request),
                         output_tokens=limit * n if limit else None, service_tier=_tier(request))


def estimate_responses(request: Mapping) -> UsageEstimate:
    limit = _int(request.get("max_output_tokens"))
    return UsageEstimate(model=str(request.get("model", "")), input_tokens=_responses_input_tokens(request),
                         output_tokens=limit, service_tier=_tier(request))


def estimate_embeddings(request: Mapping) -> UsageEstimate:
    return UsageEstimate(model=str(request.get("model", "")), input_tokens=_embedding_input_tokens(request),
                         output_tokens=0)
