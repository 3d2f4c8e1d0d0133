"""The hold for a model call, from the request alone (no tokenizer needed).

Input: the UTF-8 byte length of the request's JSON (messages, instructions,
tools, response format), plus a few tokens of framing. Every token of a
byte-level BPE is at least one byte, so this never undercounts text; for
English it holds about 4x the real count. Each image counts IMAGE_TOKENS (a
high-detail image of the largest size costs less). Output:
``n x max_completion_tokens`` / ``max_tokens`` / ``max_output_tokens`` when the
request sets one (reasoning tokens count against it); otherwise the agent's
``estimate_output_tokens`` from the daemon's config, which is not a bound.
So a cap holds as a hard limit up to the error of one call's estimate, and
with a max-tokens limit on every request the estimate is an upper bound.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from .usage import UsageEstimate

IMAGE_TOKENS = 3_000
FRAMING_TOKENS = 16
_IMAGE_PARTS = {"image_url", "input_image", "image"}
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
    images: list[int] = []
    text = {k: _strip_images(request[k], images) for k in _TEXT_FIELDS if k in request}
    encoded = json.dumps(text, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return len(encoded) + FRAMING_TOKENS + IMAGE_TOKENS * len(images)


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _tier(request: Mapping) -> str:
    tier = request.get("service_tier")
    return tier if tier in ("flex", "priority") else ""


def estimate_chat(request: Mapping) -> UsageEstimate:
    limit = _int(request.get("max_completion_tokens")) or _int(request.get("max_tokens"))
    n = _int(request.get("n")) or 1
    return UsageEstimate(model=str(request.get("model", "")), input_tokens=input_token_bound(request),
                         output_tokens=limit * n if limit else None, service_tier=_tier(request))


def estimate_responses(request: Mapping) -> UsageEstimate:
    limit = _int(request.get("max_output_tokens"))
    return UsageEstimate(model=str(request.get("model", "")), input_tokens=input_token_bound(request),
                         output_tokens=limit, service_tier=_tier(request))


def estimate_embeddings(request: Mapping) -> UsageEstimate:
    return UsageEstimate(model=str(request.get("model", "")), input_tokens=input_token_bound(request),
                         output_tokens=0)
