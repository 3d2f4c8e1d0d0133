"""A loopback copy of the providers' admin APIs: OpenAI's Costs and Usage
reports and Anthropic's Cost and Messages Usage reports, in their JSON shapes,
built from the calls a test adds and priced from ``prices``.

It honours the filters and ``group_by`` the client sends, buckets by UTC day,
pages ``page_size`` results at a time (a bucket may go on over pages), checks
the admin key (none: 401; another: 403) and can fail requests, single pages,
cut a report off, or answer slowly. Every request is recorded in ``requests``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

ADMIN_KEY = "sk-admin-budgetd-test"
MILLION = Decimal(1_000_000)
DAY = timedelta(days=1)

OPENAI_COSTS = "/v1/organization/costs"
OPENAI_COMPLETIONS = "/v1/organization/usage/completions"
OPENAI_EMBEDDINGS = "/v1/organization/usage/embeddings"
ANTHROPIC_COSTS = "/v1/organizations/cost_report"
ANTHROPIC_USAGE = "/v1/organizations/usage_report/messages"

# OpenAI's line item kinds and Anthropic's token types: (label, Call field, price kind).
_OPENAI_KINDS = (("input", "input", "input"), ("cached input", "cached_input", "cached_input"),
                 ("cache writes", "cache_write", "cache_write"), ("output", "output", "output"))
_ANTHROPIC_KINDS = (("uncached_input_tokens", "input", "input"),
                    ("cache_read_input_tokens", "cached_input", "cached_input"),
                    ("cache_creation.ephemeral_5m_input_tokens", "cache_write", "cache_write"),
                    ("cache_creation.ephemeral_1h_input_tokens", "cache_write_1h", "cache_write_1h"),
                    ("output_tokens", "output", "output"))
_DECIMAL_MARK = re.compile(r'"@@decimal:(-?[0-9.]+)@@"')


@dataclass(frozen=True)
class Call:
    provider: str
    at_ms: int
    model: str
    input: int  # uncached input
    cached_input: int
    cache_write: int  # Anthropic: the 5-minute writes
    cache_write_1h: int
    output: int
    project_id: str
    workspace_id: str
    api_key_id: str
    requests: int
    endpoint: str  # OpenAI's usage report that counts it: "completions" or "embeddings"


@dataclass(frozen=True)
class OtherCost:
    """A cost line naming no model (web search, storage)."""

    provider: str
    at_ms: int
    line_item: str
    usd: Decimal
    project_id: str
    workspace_id: str


class FakeAdminApi:
    def __init__(self, prices: dict[str, dict[str, Decimal]] | None = None,
                 admin_keys: set[str] | None = None, page_size: int = 100, port: int = 0) -> None:
        # Dollars per million tokens, by model and kind (input, cached_input,
        # cache_write, cache_write_1h, output); a kind not priced costs 0.
        self.prices: dict[str, dict[str, Decimal]] = prices or {}
        self.admin_keys: set[str] = admin_keys if admin_keys is not None else {ADMIN_KEY}
        self.page_size = page_size  # results per page
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self.headers: list[dict[str, str]] = []  # each request's, names lowercased, in the order of requests
        self.calls: list[Call] = []
        self.other_costs: list[OtherCost] = []
        self._failures: list[dict[str, Any]] = []  # {"suffix", "status", "times", "retry_after", "page", "body"}
        self._delays: list[dict[str, Any]] = []  # {"suffix", "seconds", "times"}
        self._truncated: dict[str, int] = {}  # path suffix -> the page answered with has_more, no next_page
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._server.daemon_threads = True
        # A short poll: shutdown() waits for it, once per test.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeAdminApi:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- what the reports are built from -----------------------------------------
    def add_call(self, provider: str, at_ms: int, model: str, *, input: int = 0, cached_input: int = 0,
                 cache_write: int = 0, cache_write_1h: int = 0, output: int = 0,
                 project_id: str = "proj_budgetd", workspace_id: str = "wrkspc_budgetd",
                 api_key_id: str = "key_budgetd", requests: int = 1, endpoint: str | None = None) -> None:
        """One or more calls (``requests``) at ``at_ms``. ``input`` is the
        uncached input. ``endpoint`` (OpenAI): "embeddings" for an embedding
        model (the default when the model's name says "embedding")."""
        endpoint = endpoint or ("embeddings" if "embedding" in model else "completions")
        with self._lock:
            self.calls.append(Call(provider, at_ms, model, input, cached_input, cache_write, cache_write_1h, output,
                                   project_id, workspace_id, api_key_id, requests, endpoint))

    def add_other_cost(self, provider: str, at_ms: int, line_item: str, usd: Decimal, *,
                       project_id: str = "proj_budgetd", workspace_id: str = "wrkspc_budgetd") -> None:
        """A cost line that names no model (e.g. "web search tool calls")."""
        with self._lock:
            self.other_costs.append(OtherCost(provider, at_ms, line_item, usd, project_id, workspace_id))

    # -- faults --------------------------------------------------------------------
    def fail(self, path_suffix: str, status: int, times: int = 1, retry_after: float | None = None,
             body: str | None = None) -> None:
        """The next ``times`` requests to a path ending so are answered
        ``status``: with the provider's error JSON, or ``body`` as it is (say,
        a proxy's HTML page)."""
        with self._lock:
            self._failures.append({"suffix": path_suffix, "status": status, "times": times,
                                   "retry_after": retry_after, "page": None, "body": body})

    def slow(self, path_suffix: str, seconds: float, times: int = 1) -> None:
        """The next ``times`` requests to a path ending so wait ``seconds`` before their answer."""
        with self._lock:
            self._delays.append({"suffix": path_suffix, "seconds": seconds, "times": times})

    def fail_page(self, path_suffix: str, page_number: int, status: int) -> None:
        """Page ``page_number`` (1: the first) of that report fails, every time it is asked for."""
        with self._lock:
            self._failures.append({"suffix": path_suffix, "status": status, "times": None,
                                   "retry_after": None, "page": page_number, "body": None})

    def truncate(self, path_suffix: str, page_number: int = 1) -> None:
        """Page ``page_number`` of that report says has_more but gives no next_page."""
        with self._lock:
            self._truncated[path_suffix] = page_number

    def heal(self, path_suffix: str) -> None:
        """Drop every fault set for a path ending so (it answers normally again)."""
        with self._lock:
            self._failures = [rule for rule in self._failures if not path_suffix.endswith(rule["suffix"])
                              and not rule["suffix"].endswith(path_suffix)]
            self._truncated = {s: p for s, p in self._truncated.items() if not s.endswith(path_suffix)}

    @staticmethod
    def day_of(query: dict[str, list[str]]) -> str | None:
        """The UTC day a report request starts at (OpenAI's start_time, Anthropic's starting_at)."""
        if query.get("start_time"):
            return datetime.fromtimestamp(int(query["start_time"][-1]), UTC).date().isoformat()
        if query.get("starting_at"):
            return _parse_rfc3339(query["starting_at"][-1]).date().isoformat()
        return None

    def requests_to(self, path_suffix: str) -> list[dict[str, list[str]]]:
        with self._lock:
            return [query for path, query in self.requests if path.endswith(path_suffix)]

    # -- answering -------------------------------------------------------------------
    def _fault(self, path: str, page: int) -> dict[str, Any] | None:
        with self._lock:
            for rule in self._failures:
                if not path.endswith(rule["suffix"]):
                    continue
                if rule["page"] is not None:
                    if rule["page"] == page:
                        return rule
                elif rule["times"] > 0:
                    rule["times"] -= 1
                    return rule
        return None

    def _delay(self, path: str) -> float:
        with self._lock:
            for rule in self._delays:
                if path.endswith(rule["suffix"]) and rule["times"] > 0:
                    rule["times"] -= 1
                    return float(rule["seconds"])
        return 0.0

    def _truncated_at(self, path: str) -> int | None:
        with self._lock:
            return next((page for suffix, page in self._truncated.items() if path.endswith(suffix)), None)

    def _price(self, model: str, kind: str) -> Decimal:
        return self.prices.get(model, {}).get(kind, Decimal(0))

    def _cost(self, model: str, kind: str, tokens: int) -> Decimal:
        return tokens * self._price(model, kind) / MILLION


# -- the reports ---------------------------------------------------------------------

def _values(query: dict[str, list[str]], name: str) -> list[str]:
    """A list parameter, sent as ``name=a&name=b`` or ``name[]=a&name[]=b``."""
    return query.get(name, []) + query.get(f"{name}[]", [])


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _day_buckets(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    first = start.replace(hour=0, minute=0, second=0, microsecond=0)
    buckets = []
    while first < end:
        buckets.append((max(first, start), min(first + DAY, end)))
        first += DAY
    return buckets


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_rfc3339(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _money(amount: Decimal) -> str:
    """A JSON number literal of the Decimal's digits (see _dumps)."""
    return f"@@decimal:{format(amount, 'f')}@@"


def _dumps(payload: Any) -> bytes:
    # json has no way to write a Decimal as a number: marked strings are unquoted after.
    return _DECIMAL_MARK.sub(r"\1", json.dumps(payload)).encode()


class BadRequest(Exception):
    pass


def _in_bucket(at_ms: int, bucket: tuple[datetime, datetime]) -> bool:
    return _ms(bucket[0]) <= at_ms < _ms(bucket[1])


def _openai_window(query: dict[str, list[str]]) -> tuple[datetime, datetime]:
    start_time = _one(query, "start_time")
    if start_time is None:
        raise BadRequest("start_time is required")
    start = datetime.fromtimestamp(int(start_time), UTC)
    end_time = _one(query, "end_time")
    end = datetime.fromtimestamp(int(end_time), UTC) if end_time else start + 7 * DAY
    if (_one(query, "bucket_width") or "1d") != "1d":
        raise BadRequest("this fake answers bucket_width=1d only")
    return start, end


def _anthropic_window(query: dict[str, list[str]]) -> tuple[datetime, datetime]:
    starting_at = _one(query, "starting_at")
    if starting_at is None:
        raise BadRequest("starting_at is required")
    start = _parse_rfc3339(starting_at)
    ending_at = _one(query, "ending_at")
    end = _parse_rfc3339(ending_at) if ending_at else start + 7 * DAY
    if (_one(query, "bucket_width") or "1d") != "1d":
        raise BadRequest("this fake answers bucket_width=1d only")
    return start, end


def _group_key(item: Any, fields: list[str], group_by: list[str]) -> tuple:
    return tuple(getattr(item, f) if f in group_by else None for f in fields)


def openai_costs(api: FakeAdminApi, query: dict[str, list[str]]) -> list[tuple[dict, list[dict]]]:
    group_by = _values(query, "group_by")
    projects, keys = _values(query, "project_ids"), _values(query, "api_key_ids")
    buckets = []
    for bucket in _day_buckets(*_openai_window(query)):
        amounts: dict[tuple[str | None, str | None, str | None], Decimal] = defaultdict(Decimal)
        for call in api.calls:
            if call.provider != "openai" or not _in_bucket(call.at_ms, bucket):
                continue
            if (projects and call.project_id not in projects) or (keys and call.api_key_id not in keys):
                continue
            project = call.project_id if "project_id" in group_by else None
            key = call.api_key_id if "api_key_id" in group_by else None
            for label, field_name, price_kind in _OPENAI_KINDS:
                tokens = getattr(call, field_name) + (call.cache_write_1h if field_name == "cache_write" else 0)
                if tokens:
                    line_item = f"{call.model}, {label}" if "line_item" in group_by else None
                    amounts[(line_item, project, key)] += api._cost(call.model, price_kind, tokens)
        for other in api.other_costs:  # a tool's cost is no key's (a key filter leaves it out)
            if other.provider == "openai" and _in_bucket(other.at_ms, bucket) and not keys and \
                    (not projects or other.project_id in projects):
                line_item = other.line_item if "line_item" in group_by else None
                amounts[(line_item, other.project_id if "project_id" in group_by else None, None)] += other.usd
        results = [{"object": "organization.costs.result", "amount": {"value": _money(usd), "currency": "usd"},
                    "line_item": line_item, "project_id": project, "api_key_id": key}
                   for (line_item, project, key), usd in sorted(amounts.items(), key=lambda kv: str(kv[0]))]
        buckets.append(({"object": "bucket", "start_time": int(bucket[0].timestamp()),
                         "end_time": int(bucket[1].timestamp())}, results))
    return buckets


def openai_usage(api: FakeAdminApi, query: dict[str, list[str]], endpoint: str) -> list[tuple[dict, list[dict]]]:
    group_by = _values(query, "group_by")
    projects, keys, models = (_values(query, n) for n in ("project_ids", "api_key_ids", "models"))
    fields = ["model", "project_id", "api_key_id"]
    buckets = []
    for bucket in _day_buckets(*_openai_window(query)):
        groups: dict[tuple, list[Call]] = defaultdict(list)
        for call in api.calls:
            if call.provider != "openai" or call.endpoint != endpoint or not _in_bucket(call.at_ms, bucket):
                continue
            if (projects and call.project_id not in projects) or (keys and call.api_key_id not in keys) or \
                    (models and call.model not in models):
                continue
            groups[_group_key(call, fields, group_by)].append(call)
        results = []
        for key, calls in sorted(groups.items(), key=lambda kv: str(kv[0])):
            named = dict(zip(fields, key, strict=True))
            requests = sum(c.requests for c in calls)
            if endpoint == "embeddings":
                results.append({"object": "organization.usage.embeddings.result",
                                "input_tokens": sum(c.input for c in calls), "num_model_requests": requests,
                                **named, "user_id": None})
                continue
            cached = sum(c.cached_input for c in calls)
            written = sum(c.cache_write + c.cache_write_1h for c in calls)
            results.append({"object": "organization.usage.completions.result",
                            # input_tokens counts the cached (and cache-written) input too
                            "input_tokens": sum(c.input for c in calls) + cached + written,
                            "input_cached_tokens": cached, "output_tokens": sum(c.output for c in calls),
                            "input_audio_tokens": 0, "output_audio_tokens": 0, "num_model_requests": requests,
                            **named, "user_id": None, "batch": None})
        buckets.append(({"object": "bucket", "start_time": int(bucket[0].timestamp()),
                         "end_time": int(bucket[1].timestamp())}, results))
    return buckets


def anthropic_costs(api: FakeAdminApi, query: dict[str, list[str]]) -> list[tuple[dict, list[dict]]]:
    group_by = _values(query, "group_by")
    by_description = "description" in group_by
    buckets = []
    for bucket in _day_buckets(*_anthropic_window(query)):
        amounts: dict[tuple, Decimal] = defaultdict(Decimal)  # (workspace, model, token_type, description, cost_type)
        for call in api.calls:
            if call.provider != "anthropic" or not _in_bucket(call.at_ms, bucket):
                continue
            workspace = call.workspace_id if "workspace_id" in group_by else None
            for token_type, field_name, price_kind in _ANTHROPIC_KINDS:
                tokens = getattr(call, field_name)
                if not tokens:
                    continue
                key = (workspace, call.model, token_type, f"{call.model} Usage - {token_type}", "tokens") \
                    if by_description else (workspace, None, None, None, None)
                amounts[key] += api._cost(call.model, price_kind, tokens)
        for other in api.other_costs:
            if other.provider == "anthropic" and _in_bucket(other.at_ms, bucket):
                workspace = other.workspace_id if "workspace_id" in group_by else None
                key = (workspace, None, None, other.line_item, "web_search") if by_description \
                    else (workspace, None, None, None, None)
                amounts[key] += other.usd
        results = [{"currency": "USD", "amount": format(usd * 100, "f"), "workspace_id": workspace,
                    "description": description, "cost_type": cost_type,
                    "context_window": "0-200k" if model else None, "model": model,
                    "service_tier": "standard" if model else None, "token_type": token_type,
                    "inference_geo": None}
                   for (workspace, model, token_type, description, cost_type), usd
                   in sorted(amounts.items(), key=lambda kv: str(kv[0]))]
        buckets.append(({"starting_at": _rfc3339(bucket[0]), "ending_at": _rfc3339(bucket[1])}, results))
    return buckets


def anthropic_usage(api: FakeAdminApi, query: dict[str, list[str]]) -> list[tuple[dict, list[dict]]]:
    group_by = _values(query, "group_by")
    workspaces, keys, models = (_values(query, n) for n in ("workspace_ids", "api_key_ids", "models"))
    fields = ["model", "workspace_id", "api_key_id"]
    buckets = []
    for bucket in _day_buckets(*_anthropic_window(query)):
        groups: dict[tuple, list[Call]] = defaultdict(list)
        for call in api.calls:
            if call.provider != "anthropic" or not _in_bucket(call.at_ms, bucket):
                continue
            if (workspaces and call.workspace_id not in workspaces) or (keys and call.api_key_id not in keys) or \
                    (models and call.model not in models):
                continue
            groups[_group_key(call, fields, group_by)].append(call)
        results = [{"uncached_input_tokens": sum(c.input for c in calls),
                    "cache_creation": {"ephemeral_5m_input_tokens": sum(c.cache_write for c in calls),
                                       "ephemeral_1h_input_tokens": sum(c.cache_write_1h for c in calls)},
                    "cache_read_input_tokens": sum(c.cached_input for c in calls),
                    "output_tokens": sum(c.output for c in calls),
                    "server_tool_use": {"web_search_requests": 0},
                    **dict(zip(fields, key, strict=True)), "service_tier": None, "context_window": None}
                   for key, calls in sorted(groups.items(), key=lambda kv: str(kv[0]))]
        buckets.append(({"starting_at": _rfc3339(bucket[0]), "ending_at": _rfc3339(bucket[1])}, results))
    return buckets


def paginate(buckets: list[tuple[dict, list[dict]]], page_size: int) -> list[list[dict]]:
    """Pages of at most ``page_size`` results; a bucket whose results do not
    fit goes on, with the rest of them, on the next page."""
    pages: list[list[dict]] = [[]]
    room = page_size
    for head, results in buckets:
        if not results:
            pages[-1].append({**head, "results": []})
            continue
        taken = 0
        while taken < len(results):
            if room == 0:
                pages.append([])
                room = page_size
            chunk = results[taken:taken + room]
            pages[-1].append({**head, "results": chunk})
            taken += len(chunk)
            room -= len(chunk)
    return pages


def _page_number(token: str | None) -> int:
    """1 for the first page (no token); the page a ``next_page`` token names; 0 for a token not ours."""
    if not token:
        return 1
    number = token.removeprefix("page_")
    return int(number) if number.isdigit() else 0


def _handler(api: FakeAdminApi):
    routes = {
        OPENAI_COSTS: ("openai", openai_costs),
        OPENAI_COMPLETIONS: ("openai", lambda a, q: openai_usage(a, q, "completions")),
        OPENAI_EMBEDDINGS: ("openai", lambda a, q: openai_usage(a, q, "embeddings")),
        ANTHROPIC_COSTS: ("anthropic", anthropic_costs),
        ANTHROPIC_USAGE: ("anthropic", anthropic_usage),
    }

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            path, query = parts.path, parse_qs(parts.query, keep_blank_values=True)
            with api._lock:
                api.requests.append((path, query))
                api.headers.append({name.lower(): value for name, value in self.headers.items()})
            route = routes.get(path)
            if route is None:
                return self._error("openai" if "/organization/" in path else "anthropic", 404, f"no route {path}")
            provider, build = route
            page_token = _one(query, "page")
            page = _page_number(page_token)
            delay = api._delay(path)
            if delay:
                time.sleep(delay)  # in this request's own thread
            fault = api._fault(path, page)
            if fault is not None and fault["body"] is not None:
                return self._send(fault["status"], fault["body"].encode(), content_type="text/html")
            if fault is not None:
                return self._error(provider, fault["status"], "injected failure", fault["retry_after"])
            refusal = self._refused(provider)
            if refusal is not None:
                return self._error(provider, *refusal)
            try:
                with api._lock:
                    pages = paginate(build(api, query), api.page_size)
            except (BadRequest, ValueError) as exc:
                return self._error(provider, 400, str(exc))
            if not 1 <= page <= len(pages):
                return self._error(provider, 400, f"no page {page_token}")
            has_more = page < len(pages)
            next_page = f"page_{page + 1}" if has_more else None
            if api._truncated_at(path) == page:
                has_more, next_page = True, None
            body: dict[str, Any] = {"data": pages[page - 1], "has_more": has_more, "next_page": next_page}
            if provider == "openai":
                body = {"object": "page", **body}
            self._send(200, _dumps(body))

        def _refused(self, provider: str) -> tuple[int, str] | None:
            if provider == "openai":
                auth = self.headers.get("Authorization", "")
                key = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
            else:
                key = self.headers.get("x-api-key", "")
                if key and not self.headers.get("anthropic-version"):
                    return 400, "anthropic-version: header is required"
            if not key:
                return 401, "You didn't provide an API key." if provider == "openai" else \
                    "x-api-key header is required"
            if key not in api.admin_keys:
                return 403, "You have insufficient permissions for this operation." if provider == "openai" else \
                    "This endpoint requires an Admin API key."
            return None

        def _error(self, provider: str, status: int, message: str, retry_after: float | None = None) -> None:
            if provider == "openai":
                kind = {401: "invalid_request_error", 403: "invalid_request_error", 429: "requests"}.get(
                    status, "server_error" if status >= 500 else "invalid_request_error")
                body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
            else:
                kind = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                        404: "not_found_error", 429: "rate_limit_error", 529: "overloaded_error"}.get(
                    status, "api_error")
                body = {"type": "error", "error": {"type": kind, "message": message}}
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            self._send(status, json.dumps(body).encode(), headers)

        def _send(self, status: int, data: bytes, headers: dict[str, str] | None = None,
                  content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            try:
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped waiting (its timeout)

    return Handler
