"""The shape of budgets.yaml. Unknown keys are errors everywhere."""

from __future__ import annotations

import functools
import ipaddress
import re
from decimal import Decimal
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from budgetd_client.money import NANOS_PER_USD, plain
from budgetd_client.validation import AGENT_ID_PATTERN, MAX_ID_LENGTH

# int64 nanodollars hold $9.2 billion; a cap needs headroom for spend past it.
MAX_CAP_USD = Decimal(1_000_000_000)
GLOB_CHARS = re.compile(r"[*?\[]")
_PATTERN_SYNTAX = re.compile(r"[A-Za-z0-9._:/@+=*?\[\]!-]+")


@functools.lru_cache(maxsize=4096)  # a big config repeats its amounts
def _usd(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("must be a finite number")
    if value < 0:
        raise ValueError(f"must not be negative, got {plain(value)}")
    if value > MAX_CAP_USD:
        raise ValueError(f"{plain(value)} is over the limit of {plain(MAX_CAP_USD)}")
    if (value * NANOS_PER_USD) % 1:
        raise ValueError(f"{plain(value)} has more than 9 decimal places (a nanodollar is the smallest unit)")
    return value


Usd = Annotated[Decimal, AfterValidator(_usd)]


def to_nanos(usd: Decimal | None) -> int | None:
    return None if usd is None else int(usd * NANOS_PER_USD)


def check_agent_key(key: str) -> str:
    """An agent id, or a glob pattern over agent ids (``research-*``)."""
    if len(key) > MAX_ID_LENGTH:
        raise ValueError(f"{key!r}: at most {MAX_ID_LENGTH} characters")
    if GLOB_CHARS.search(key):
        if not _PATTERN_SYNTAX.fullmatch(key):
            raise ValueError(f"{key!r} is not a valid agent pattern")
    elif not AGENT_ID_PATTERN.fullmatch(key):
        raise ValueError(f"{key!r} is not a valid agent id (letters, digits and . _ : / @ + = -)")
    return key


def _check_group_name(name: str) -> str:
    if not AGENT_ID_PATTERN.fullmatch(name) or len(name) > MAX_ID_LENGTH:
        raise ValueError(f"{name!r} is not a valid group name (letters, digits and . _ : / @ + = -)")
    return name


AgentKey = Annotated[str, AfterValidator(check_agent_key)]
GroupName = Annotated[str, AfterValidator(_check_group_name)]
# A tag a hold must carry (require_tags): a tag key as the client checks it.
TagKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


# Underscores too: container names (docker compose) are used as host names.
_HOSTNAME_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def check_host_port(value: str) -> str:
    """HOST:PORT as gRPC binds it: an IPv4 address, a hostname, or [IPv6]."""
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{value!r} is not HOST:PORT")
    if not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{value!r}: the port must be a number from 0 to 65535, got {port!r}")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"{value!r}: {host} is not an IPv6 address") from None
    elif re.fullmatch(r"[0-9.]+", host):  # all digits and dots: meant as IPv4, so it must be one
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"{value!r}: {host} is not an IPv4 address") from None
    elif ":" in host:
        raise ValueError(f"{value!r}: an IPv6 address goes in brackets, e.g. [::1]:50051")
    elif len(host) > 253 or not all(_HOSTNAME_LABEL.fullmatch(label) for label in host.split(".")):
        raise ValueError(f"{value!r}: {host!r} is not a host name, an IPv4 address or an [IPv6] address")
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsConfig(Strict):
    cert_file: str
    key_file: str
    # Set: clients must present a certificate signed by this CA (mutual TLS).
    client_ca_file: str | None = None


class ServerConfig(Strict):
    listen: str = "127.0.0.1:50051"
    metrics_listen: str | None = None
    # The web dashboard and its JSON API (docs/dashboard.md); None: not served.
    dashboard_listen: str | None = None
    # How long in-flight calls get to finish after SIGTERM.
    shutdown_grace_seconds: Annotated[float, Field(ge=0, le=300)] = 10.0
    # Without an auth section budgetd listens only on loopback, unless this says so.
    allow_unauthenticated: bool = False
    tls: TlsConfig | None = None
    # A connection with no call open this long is closed; the client reconnects
    # when it next calls. Idle connections of clients that went away would
    # otherwise hold file descriptors until budgetd runs out of them.
    connection_idle_seconds: Annotated[float, Field(gt=0, le=86400)] = 300.0

    @field_validator("listen", "metrics_listen", "dashboard_listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        return None if value is None else check_host_port(value)


class StoreConfig(Strict):
    url: str = "sqlite:///var/lib/budgetd/budgetd.db"

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if value.startswith("sqlite://"):
            if not value[len("sqlite://") :]:
                raise ValueError("sqlite:// needs a file path, e.g. sqlite:///var/lib/budgetd/budgetd.db")
            return value
        if value.startswith(("redis://", "rediss://")) or value == "memory://":  # memory: for tests, trying out
            return value
        raise ValueError(f"{value!r}: the store URL must start with sqlite://, redis:// or rediss://, or be memory://")


class Budget(Strict):
    daily_usd: Usd | None = None
    monthly_usd: Usd | None = None
    estimate_usd: Usd | None = None  # the hold when a call gives no estimate
    # Output tokens held for a request that sets no max_tokens (priced by model).
    estimate_output_tokens: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    require_tags: list[TagKey] = []  # besides the top level's and the agent's groups'


class GroupConfig(Strict):
    members: Annotated[list[AgentKey], Field(min_length=1)]
    daily_usd: Usd | None = None
    monthly_usd: Usd | None = None
    require_tags: list[TagKey] = []  # every member's holds must carry these


# Tag keys a tag budget may not take: scope keys "agent:NAME" and "group:NAME"
# are the agents' and groups' own.
RESERVED_TAG_KEYS = frozenset({"agent", "group"})
# A tag value as the client allows it (no control characters, at most 256
# characters), or a glob pattern over values ("big-*").
_TAG_VALUE = re.compile(r"[^\x00-\x1f\x7f-\x9f]{1,256}")


def _check_tag_value_key(key: str) -> str:
    if not _TAG_VALUE.fullmatch(key):
        raise ValueError(f"{key!r} is not a tag value (1-256 characters, no control characters) or a pattern")
    return key


TagValueKey = Annotated[str, AfterValidator(_check_tag_value_key)]


class TagCaps(Strict):
    daily_usd: Usd | None = None
    monthly_usd: Usd | None = None


class TagBudgetConfig(Strict):
    """Caps for the values of one tag: ``values`` by exact value or glob
    pattern (an exact value wins, then the first pattern in file order),
    ``defaults`` for every other value; with no defaults an unlisted value
    has no cap of its own."""

    defaults: TagCaps | None = None
    values: dict[TagValueKey, TagCaps] = {}


def _check_tag_budget_key(key: str) -> str:
    if key in RESERVED_TAG_KEYS:
        raise ValueError(f"{key!r} cannot be budgeted as a tag: agents and groups have their own sections")
    return key


TagBudgetKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$"), AfterValidator(_check_tag_budget_key)]


class SlackConfig(Strict):
    webhook_url: str | None = None
    bot_token: str | None = None
    channel: str | None = None
    api_url: str = "https://slack.com/api/"  # for bot_token; a Slack-compatible endpoint
    # Slack takes about one message per second per channel.
    min_interval_seconds: Annotated[float, Field(ge=0, le=60)] = 1.0
    # Backoff between delivery attempts doubles up to this.
    retry_max_seconds: Annotated[float, Field(ge=1, le=3600)] = 300.0

    @model_validator(mode="after")
    def _one_way(self) -> SlackConfig:
        if bool(self.webhook_url) == bool(self.bot_token):
            raise ValueError("give either webhook_url, or bot_token with channel")
        if self.bot_token and not self.channel:
            raise ValueError("bot_token needs a channel")
        return self


class DigestConfig(Strict):
    at: Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")] = "09:00"  # local time, HH:MM
    top: Annotated[int, Field(ge=1, le=100)] = 10


class AnomalyConfig(Strict):
    # Last hour's spend above factor x the trailing 7-day hourly average...
    factor: Annotated[Decimal, Field(gt=1, le=1000)] = Decimal(3)
    # ...and above this many dollars.
    floor_usd: Usd = Decimal(5)
    # The same check per value of each of these tags (feature, customer, ...),
    # from the ledger: one notice per tag value and hour.
    tags: Annotated[list[TagKey], Field(max_length=20)] = []


class TokenConfig(Strict):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")]
    role: Literal["admin", "agent"] = "agent"
    agents: list[AgentKey] = []


class AuthConfig(Strict):
    tokens: Annotated[list[TokenConfig], Field(min_length=1)]


class PriceOverride(Strict):
    """Per-model prices in dollars per million tokens (used by pricing)."""

    input_usd_per_mtok: Usd
    cached_input_usd_per_mtok: Usd | None = None  # default: the input price
    cache_write_usd_per_mtok: Usd | None = None  # default: the input price
    output_usd_per_mtok: Usd


class ExportConfig(Strict):
    """The cost-event sink: every settled or recorded call as one JSON line
    (docs/export.md). Read at start; a change takes effect at the next restart."""

    # A file appended to, or "-" for standard output.
    path: Annotated[str, Field(min_length=1)]
    # Past this size the file is renamed to PATH.1 and a new one opened (None: never).
    max_bytes: Annotated[int, Field(ge=1024)] | None = None


class ReconcileProvider(Strict):
    """One provider's admin API, read for reconciliation (docs/reconciliation.md)."""

    # An admin key (OpenAI: an Admin API key; Anthropic: an Admin API key,
    # sk-ant-admin...). Empty: the provider is listed with the status "no admin key".
    admin_key: str = ""
    # The API's root, e.g. https://api.openai.com (a proxy, or a test's fake). None: the provider's own.
    base_url: Annotated[str, Field(pattern=r"^https?://[^\s]+$")] | None = None
    # Only the usage of these (the projects / workspaces and API keys budgetd's
    # agents use); empty: the whole organization.
    project_ids: Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=100)] = []
    workspace_ids: Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=100)] = []
    api_key_ids: Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=100)] = []


class ReconcileConfig(Strict):
    """Compare the ledger with the providers' cost reports per UTC day and model."""

    openai: ReconcileProvider | None = None
    anthropic: ReconcileProvider | None = None
    # A difference is past tolerance when it is more than both of these:
    # this percent of the provider's cost, and this many dollars.
    tolerance_percent: Annotated[Decimal, Field(ge=0, le=100)] = Decimal(1)
    tolerance_usd: Usd = Decimal(1)
    # UTC, HH:MM: a day is compared once it has closed, at this time the
    # next day, and again at this time the day after (late usage).
    at: Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")] = "02:00"
    # Today's usage so far is compared this often (0: never).
    today_every_minutes: Annotated[int, Field(ge=0, le=1440)] = 60
    # Calls this close to a UTC midnight may be counted on the other day by
    # the provider (timing).
    near_midnight_minutes: Annotated[int, Field(ge=0, le=120)] = 10

    @model_validator(mode="after")
    def _some_provider(self) -> ReconcileConfig:
        if self.openai is None and self.anthropic is None:
            raise ValueError("name at least one provider (openai, anthropic)")
        if self.openai is not None and self.openai.workspace_ids:
            raise ValueError("openai: workspace_ids are Anthropic's; OpenAI filters by project_ids")
        if self.anthropic is not None and self.anthropic.project_ids:
            raise ValueError("anthropic: project_ids are OpenAI's; Anthropic filters by workspace_ids")
        return self

    def providers(self) -> dict[str, ReconcileProvider]:
        """The providers named, in a fixed order."""
        named = {"openai": self.openai, "anthropic": self.anthropic}
        return {name: settings for name, settings in named.items() if settings is not None}


class Config(Strict):
    server: ServerConfig = ServerConfig()
    store: StoreConfig = StoreConfig()
    timezone: str = "UTC"
    reservation_ttl_seconds: Annotated[int, Field(ge=1, le=7 * 86400)] = 600
    # How long a hold refused only by other calls' reservations may wait for
    # them to settle (never longer than its caller's deadline); 0: refuse at once.
    max_wait_ms: Annotated[int, Field(ge=0, le=600_000)] = 10_000
    # When budgetd cannot know what a call cost (its settle never came), it
    # errs toward the cap: an expired hold is counted as spent.
    on_reservation_expiry: Literal["release", "charge"] = "charge"
    # Ledger rows older than this are dropped (reports look back at most this far).
    ledger_retention_days: Annotated[int, Field(ge=1, le=3650)] = 400
    warn_at: list[Annotated[Decimal, Field(gt=0, lt=1)]] = [Decimal("0.5"), Decimal("0.8"), Decimal("0.9")]
    # Tags every hold must carry (with a non-empty value): missing attribution
    # is refused, never counted in an "unknown" bucket.
    require_tags: list[TagKey] = []
    defaults: Budget | None = None  # None: unknown agents are refused
    agents: dict[AgentKey, Budget] = {}
    groups: dict[GroupName, GroupConfig] = {}
    # Caps per tag value (customer, feature, ...), checked in the same atomic
    # step as the agent's and its groups' windows.
    tag_budgets: dict[TagBudgetKey, TagBudgetConfig] = {}
    slack: SlackConfig | None = None
    digest: DigestConfig | None = None  # omit for no daily digest
    anomaly: AnomalyConfig = AnomalyConfig()
    auth: AuthConfig | None = None
    prices: dict[Annotated[str, Field(min_length=1, max_length=200)], PriceOverride] = {}
    unknown_model: Literal["deny", "fallback"] = "deny"
    fallback_price: PriceOverride | None = None
    export: ExportConfig | None = None  # omit for no sink (budgetctl export reads the ledger)
    reconcile: ReconcileConfig | None = None  # omit for no reconciliation

    @model_validator(mode="after")
    def _fallback_needs_a_price(self) -> Config:
        if self.unknown_model == "fallback" and self.fallback_price is None:
            raise ValueError("unknown_model: fallback needs fallback_price")
        return self

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {name!r} (an IANA name such as 'America/New_York')") from None
        return name

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
