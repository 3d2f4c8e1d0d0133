"""The I/O-free half of ``budget.wrap(client)``, shared by the sync and async
wrappers: which methods are guarded, how each estimates its hold, and what a
stream's chunks say about usage."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from . import estimate
from .usage import Usage, UsageEstimate, field, usage_from_response

_FINAL_RESPONSE_EVENTS = {"response.completed", "response.incomplete", "response.failed"}


class Proxy:
    """Everything passes through to ``target`` except the names in ``overrides``."""

    __slots__ = ("_target", "_overrides")

    def __init__(self, target, overrides: Mapping[str, object]) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_overrides", dict(overrides))

    def __getattr__(self, name: str):
        overrides = object.__getattribute__(self, "_overrides")
        if name in overrides:
            return overrides[name]
        return getattr(object.__getattribute__(self, "_target"), name)

    def __setattr__(self, name: str, value) -> None:
        setattr(object.__getattribute__(self, "_target"), name, value)

    def __repr__(self) -> str:
        return f"<budget-guarded {object.__getattribute__(self, '_target')!r}>"


@dataclass(frozen=True)
class Endpoint:
    """A guarded method: where it lives on the client and how it estimates."""

    path: tuple[str, ...]
    estimate: Callable[[Mapping], UsageEstimate]
    streams: bool

    def prepare(self, kwargs: dict) -> tuple[dict, bool]:
        """Ask a chat stream for its usage when the caller did not; returns
        the new kwargs and whether we asked (then the usage chunk is ours)."""
        if not (self.streams and self.path[0] == "chat" and kwargs.get("stream")):
            return kwargs, False
        options = dict(kwargs.get("stream_options") or {})
        if options.get("include_usage"):
            return kwargs, False
        options["include_usage"] = True
        return {**kwargs, "stream_options": options}, True


ENDPOINTS = (
    Endpoint(("chat", "completions"), estimate.estimate_chat, streams=True),
    Endpoint(("responses",), estimate.estimate_responses, streams=True),
    Endpoint(("embeddings",), estimate.estimate_embeddings, streams=False),
)


def require_client(client, *, is_async: bool) -> None:
    create = getattr(getattr(getattr(client, "chat", None), "completions", None), "create", None)
    if create is None:
        raise TypeError(f"wrap() takes an OpenAI or AsyncOpenAI client, got {type(client).__name__}")
    # The SDK decorates create(); the coroutine function is underneath.
    if inspect.iscoroutinefunction(inspect.unwrap(create)) != is_async:
        raise TypeError("wrap AsyncOpenAI with AsyncBudget, and OpenAI with Budget")


def build_proxy(client, guarded: Callable[[Endpoint, Callable], Callable], rewrap: Callable) -> Proxy:
    """A Proxy of ``client`` whose endpoint methods are ``guarded(endpoint, create)``."""

    def layer(target, depth_paths: list[tuple[tuple[str, ...], Endpoint]]) -> Proxy:
        overrides: dict[str, object] = {}
        children: dict[str, list] = {}
        for path, endpoint in depth_paths:
            if not path:
                overrides["create"] = guarded(endpoint, target.create)
            else:
                children.setdefault(path[0], []).append((path[1:], endpoint))
        for name, sub in children.items():
            overrides[name] = layer(getattr(target, name), sub)
        return Proxy(target, overrides)

    proxy = layer(client, [(e.path, e) for e in ENDPOINTS])
    object.__getattribute__(proxy, "_overrides")["with_options"] = lambda **kw: rewrap(client.with_options(**kw))
    return proxy


class StreamWatcher:
    """Reads usage off a stream's chunks or events as they pass."""

    def __init__(self, asked_for_usage: bool) -> None:
        self.asked_for_usage = asked_for_usage
        self.usage: Usage | None = None

    def passes(self, item) -> bool:
        """Note any usage ``item`` carries; False for the usage-only chunk we
        asked for on the caller's behalf (they did not ask to see it)."""
        kind = field(item, "type")
        if kind in _FINAL_RESPONSE_EVENTS:
            self.usage = usage_from_response(field(item, "response"))
            return True
        if field(item, "usage") is not None:
            self.usage = usage_from_response(item)
            return not (self.asked_for_usage and not field(item, "choices"))
        return True
