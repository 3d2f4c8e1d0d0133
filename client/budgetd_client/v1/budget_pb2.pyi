import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Window(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WINDOW_UNSPECIFIED: _ClassVar[Window]
    WINDOW_DAILY: _ClassVar[Window]
    WINDOW_MONTHLY: _ClassVar[Window]

class ScopeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCOPE_KIND_UNSPECIFIED: _ClassVar[ScopeKind]
    SCOPE_KIND_AGENT: _ClassVar[ScopeKind]
    SCOPE_KIND_GROUP: _ClassVar[ScopeKind]
    SCOPE_KIND_TAG: _ClassVar[ScopeKind]

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    DECISION_ALLOWED: _ClassVar[Decision]
    DECISION_DENIED_CAP: _ClassVar[Decision]
    DECISION_DENIED_PAUSED: _ClassVar[Decision]

class PauseKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAUSE_KIND_UNSPECIFIED: _ClassVar[PauseKind]
    PAUSE_KIND_MANUAL: _ClassVar[PauseKind]
    PAUSE_KIND_CAP: _ClassVar[PauseKind]
WINDOW_UNSPECIFIED: Window
WINDOW_DAILY: Window
WINDOW_MONTHLY: Window
SCOPE_KIND_UNSPECIFIED: ScopeKind
SCOPE_KIND_AGENT: ScopeKind
SCOPE_KIND_GROUP: ScopeKind
SCOPE_KIND_TAG: ScopeKind
DECISION_UNSPECIFIED: Decision
DECISION_ALLOWED: Decision
DECISION_DENIED_CAP: Decision
DECISION_DENIED_PAUSED: Decision
PAUSE_KIND_UNSPECIFIED: PauseKind
PAUSE_KIND_MANUAL: PauseKind
PAUSE_KIND_CAP: PauseKind

class Scope(_message.Message):
    __slots__ = ("kind", "name", "tag")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    kind: ScopeKind
    name: str
    tag: str
    def __init__(self, kind: _Optional[_Union[ScopeKind, str]] = ..., name: _Optional[str] = ..., tag: _Optional[str] = ...) -> None: ...

class TagValue(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class AuthorizeRequest(_message.Message):
    __slots__ = ("agent_id", "request_id", "estimate_nanos", "estimate_usage", "tags")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_NANOS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_USAGE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    request_id: str
    estimate_nanos: int
    estimate_usage: UsageEstimate
    tags: _containers.ScalarMap[str, str]
    def __init__(self, agent_id: _Optional[str] = ..., request_id: _Optional[str] = ..., estimate_nanos: _Optional[int] = ..., estimate_usage: _Optional[_Union[UsageEstimate, _Mapping]] = ..., tags: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("model", "provider", "input_tokens", "cached_input_tokens", "cache_write_tokens", "input_audio_tokens", "input_image_tokens", "output_tokens", "reasoning_tokens", "output_audio_tokens", "service_tier", "batch", "cache_write_1h_tokens")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    INPUT_AUDIO_TOKENS_FIELD_NUMBER: _ClassVar[int]
    INPUT_IMAGE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REASONING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_AUDIO_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SERVICE_TIER_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_1H_TOKENS_FIELD_NUMBER: _ClassVar[int]
    model: str
    provider: str
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    input_audio_tokens: int
    input_image_tokens: int
    output_tokens: int
    reasoning_tokens: int
    output_audio_tokens: int
    service_tier: str
    batch: bool
    cache_write_1h_tokens: int
    def __init__(self, model: _Optional[str] = ..., provider: _Optional[str] = ..., input_tokens: _Optional[int] = ..., cached_input_tokens: _Optional[int] = ..., cache_write_tokens: _Optional[int] = ..., input_audio_tokens: _Optional[int] = ..., input_image_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., reasoning_tokens: _Optional[int] = ..., output_audio_tokens: _Optional[int] = ..., service_tier: _Optional[str] = ..., batch: _Optional[bool] = ..., cache_write_1h_tokens: _Optional[int] = ...) -> None: ...

class UsageEstimate(_message.Message):
    __slots__ = ("model", "provider", "input_tokens", "output_tokens", "service_tier", "batch")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SERVICE_TIER_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    model: str
    provider: str
    input_tokens: int
    output_tokens: int
    service_tier: str
    batch: bool
    def __init__(self, model: _Optional[str] = ..., provider: _Optional[str] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., service_tier: _Optional[str] = ..., batch: _Optional[bool] = ...) -> None: ...

class Denial(_message.Message):
    __slots__ = ("scope", "window", "cap_nanos", "remaining_nanos", "resets_at", "pause_kind", "pause_reason", "waited_ms")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    CAP_NANOS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_NANOS_FIELD_NUMBER: _ClassVar[int]
    RESETS_AT_FIELD_NUMBER: _ClassVar[int]
    PAUSE_KIND_FIELD_NUMBER: _ClassVar[int]
    PAUSE_REASON_FIELD_NUMBER: _ClassVar[int]
    WAITED_MS_FIELD_NUMBER: _ClassVar[int]
    scope: Scope
    window: Window
    cap_nanos: int
    remaining_nanos: int
    resets_at: _timestamp_pb2.Timestamp
    pause_kind: PauseKind
    pause_reason: str
    waited_ms: int
    def __init__(self, scope: _Optional[_Union[Scope, _Mapping]] = ..., window: _Optional[_Union[Window, str]] = ..., cap_nanos: _Optional[int] = ..., remaining_nanos: _Optional[int] = ..., resets_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., pause_kind: _Optional[_Union[PauseKind, str]] = ..., pause_reason: _Optional[str] = ..., waited_ms: _Optional[int] = ...) -> None: ...

class AuthorizeResponse(_message.Message):
    __slots__ = ("decision", "held_nanos", "hold_expires_at", "denial")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    HELD_NANOS_FIELD_NUMBER: _ClassVar[int]
    HOLD_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    DENIAL_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    held_nanos: int
    hold_expires_at: _timestamp_pb2.Timestamp
    denial: Denial
    def __init__(self, decision: _Optional[_Union[Decision, str]] = ..., held_nanos: _Optional[int] = ..., hold_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., denial: _Optional[_Union[Denial, _Mapping]] = ...) -> None: ...

class CommitRequest(_message.Message):
    __slots__ = ("request_id", "agent_id", "actual_nanos", "usage", "tags", "model_requested", "latency_ms")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_NANOS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    MODEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    agent_id: str
    actual_nanos: int
    usage: Usage
    tags: _containers.ScalarMap[str, str]
    model_requested: str
    latency_ms: int
    def __init__(self, request_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., actual_nanos: _Optional[int] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., tags: _Optional[_Mapping[str, str]] = ..., model_requested: _Optional[str] = ..., latency_ms: _Optional[int] = ...) -> None: ...

class CommitResponse(_message.Message):
    __slots__ = ("counted_nanos", "duplicate", "paused", "price_version")
    COUNTED_NANOS_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    PRICE_VERSION_FIELD_NUMBER: _ClassVar[int]
    counted_nanos: int
    duplicate: bool
    paused: bool
    price_version: str
    def __init__(self, counted_nanos: _Optional[int] = ..., duplicate: _Optional[bool] = ..., paused: _Optional[bool] = ..., price_version: _Optional[str] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("request_id", "agent_id", "error_code", "latency_ms", "model_requested")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    MODEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    agent_id: str
    error_code: str
    latency_ms: int
    model_requested: str
    def __init__(self, request_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., error_code: _Optional[str] = ..., latency_ms: _Optional[int] = ..., model_requested: _Optional[str] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ("released",)
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    released: bool
    def __init__(self, released: _Optional[bool] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ("agent_id", "known_only", "tag")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    KNOWN_ONLY_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    known_only: bool
    tag: TagValue
    def __init__(self, agent_id: _Optional[str] = ..., known_only: _Optional[bool] = ..., tag: _Optional[_Union[TagValue, _Mapping]] = ...) -> None: ...

class WindowStatus(_message.Message):
    __slots__ = ("window", "period", "spent_nanos", "reserved_nanos", "cap_nanos", "remaining_nanos", "starts_at", "resets_at")
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    SPENT_NANOS_FIELD_NUMBER: _ClassVar[int]
    RESERVED_NANOS_FIELD_NUMBER: _ClassVar[int]
    CAP_NANOS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_NANOS_FIELD_NUMBER: _ClassVar[int]
    STARTS_AT_FIELD_NUMBER: _ClassVar[int]
    RESETS_AT_FIELD_NUMBER: _ClassVar[int]
    window: Window
    period: str
    spent_nanos: int
    reserved_nanos: int
    cap_nanos: int
    remaining_nanos: int
    starts_at: _timestamp_pb2.Timestamp
    resets_at: _timestamp_pb2.Timestamp
    def __init__(self, window: _Optional[_Union[Window, str]] = ..., period: _Optional[str] = ..., spent_nanos: _Optional[int] = ..., reserved_nanos: _Optional[int] = ..., cap_nanos: _Optional[int] = ..., remaining_nanos: _Optional[int] = ..., starts_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resets_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ScopeStatus(_message.Message):
    __slots__ = ("scope", "daily", "monthly")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    DAILY_FIELD_NUMBER: _ClassVar[int]
    MONTHLY_FIELD_NUMBER: _ClassVar[int]
    scope: Scope
    daily: WindowStatus
    monthly: WindowStatus
    def __init__(self, scope: _Optional[_Union[Scope, _Mapping]] = ..., daily: _Optional[_Union[WindowStatus, _Mapping]] = ..., monthly: _Optional[_Union[WindowStatus, _Mapping]] = ...) -> None: ...

class AgentStatus(_message.Message):
    __slots__ = ("agent_id", "paused", "pause_kind", "pause_reason", "paused_scope", "resumes_at", "daily", "monthly", "groups", "budget_source", "scope")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    PAUSE_KIND_FIELD_NUMBER: _ClassVar[int]
    PAUSE_REASON_FIELD_NUMBER: _ClassVar[int]
    PAUSED_SCOPE_FIELD_NUMBER: _ClassVar[int]
    RESUMES_AT_FIELD_NUMBER: _ClassVar[int]
    DAILY_FIELD_NUMBER: _ClassVar[int]
    MONTHLY_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_SOURCE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    paused: bool
    pause_kind: PauseKind
    pause_reason: str
    paused_scope: Scope
    resumes_at: _timestamp_pb2.Timestamp
    daily: WindowStatus
    monthly: WindowStatus
    groups: _containers.RepeatedCompositeFieldContainer[ScopeStatus]
    budget_source: str
    scope: Scope
    def __init__(self, agent_id: _Optional[str] = ..., paused: _Optional[bool] = ..., pause_kind: _Optional[_Union[PauseKind, str]] = ..., pause_reason: _Optional[str] = ..., paused_scope: _Optional[_Union[Scope, _Mapping]] = ..., resumes_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., daily: _Optional[_Union[WindowStatus, _Mapping]] = ..., monthly: _Optional[_Union[WindowStatus, _Mapping]] = ..., groups: _Optional[_Iterable[_Union[ScopeStatus, _Mapping]]] = ..., budget_source: _Optional[str] = ..., scope: _Optional[_Union[Scope, _Mapping]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("agent_id",)
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    def __init__(self, agent_id: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("kind", "agent_id", "scope", "window", "period", "spent_nanos", "cap_nanos", "reason", "at")
    KIND_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    SPENT_NANOS_FIELD_NUMBER: _ClassVar[int]
    CAP_NANOS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    kind: str
    agent_id: str
    scope: str
    window: str
    period: str
    spent_nanos: int
    cap_nanos: int
    reason: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, kind: _Optional[str] = ..., agent_id: _Optional[str] = ..., scope: _Optional[str] = ..., window: _Optional[str] = ..., period: _Optional[str] = ..., spent_nanos: _Optional[int] = ..., cap_nanos: _Optional[int] = ..., reason: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PauseRequest(_message.Message):
    __slots__ = ("agent_id", "reason", "tag")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    reason: str
    tag: TagValue
    def __init__(self, agent_id: _Optional[str] = ..., reason: _Optional[str] = ..., tag: _Optional[_Union[TagValue, _Mapping]] = ...) -> None: ...

class ResumeRequest(_message.Message):
    __slots__ = ("agent_id", "tag")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    tag: TagValue
    def __init__(self, agent_id: _Optional[str] = ..., tag: _Optional[_Union[TagValue, _Mapping]] = ...) -> None: ...

class ListStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetConfigRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ConfigInfo(_message.Message):
    __slots__ = ("generation", "loaded_at", "source", "last_error", "last_error_at")
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_AT_FIELD_NUMBER: _ClassVar[int]
    generation: int
    loaded_at: _timestamp_pb2.Timestamp
    source: str
    last_error: str
    last_error_at: _timestamp_pb2.Timestamp
    def __init__(self, generation: _Optional[int] = ..., loaded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source: _Optional[str] = ..., last_error: _Optional[str] = ..., last_error_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReportRequest(_message.Message):
    __slots__ = ("by", "since", "until", "top")
    BY_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    by: str
    since: str
    until: str
    top: int
    def __init__(self, by: _Optional[str] = ..., since: _Optional[str] = ..., until: _Optional[str] = ..., top: _Optional[int] = ...) -> None: ...

class ReportRow(_message.Message):
    __slots__ = ("key", "cost_nanos", "calls", "avg_cost_nanos", "priced_calls", "input_tokens", "cached_input_tokens", "cache_hit_rate", "p95_input_tokens")
    KEY_FIELD_NUMBER: _ClassVar[int]
    COST_NANOS_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    AVG_COST_NANOS_FIELD_NUMBER: _ClassVar[int]
    PRICED_CALLS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_RATE_FIELD_NUMBER: _ClassVar[int]
    P95_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    key: str
    cost_nanos: int
    calls: int
    avg_cost_nanos: int
    priced_calls: int
    input_tokens: int
    cached_input_tokens: int
    cache_hit_rate: str
    p95_input_tokens: int
    def __init__(self, key: _Optional[str] = ..., cost_nanos: _Optional[int] = ..., calls: _Optional[int] = ..., avg_cost_nanos: _Optional[int] = ..., priced_calls: _Optional[int] = ..., input_tokens: _Optional[int] = ..., cached_input_tokens: _Optional[int] = ..., cache_hit_rate: _Optional[str] = ..., p95_input_tokens: _Optional[int] = ...) -> None: ...

class ReportResponse(_message.Message):
    __slots__ = ("rows", "total_nanos", "since", "until", "total", "rows_in_all")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_NANOS_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    ROWS_IN_ALL_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[ReportRow]
    total_nanos: int
    since: str
    until: str
    total: ReportRow
    rows_in_all: int
    def __init__(self, rows: _Optional[_Iterable[_Union[ReportRow, _Mapping]]] = ..., total_nanos: _Optional[int] = ..., since: _Optional[str] = ..., until: _Optional[str] = ..., total: _Optional[_Union[ReportRow, _Mapping]] = ..., rows_in_all: _Optional[int] = ...) -> None: ...

class ListStatusResponse(_message.Message):
    __slots__ = ("agents",)
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[AgentStatus]
    def __init__(self, agents: _Optional[_Iterable[_Union[AgentStatus, _Mapping]]] = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ("since", "until")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    since: str
    until: str
    def __init__(self, since: _Optional[str] = ..., until: _Optional[str] = ...) -> None: ...

class CostEvent(_message.Message):
    __slots__ = ("request_id", "kind", "at_ms", "held_ms", "day", "agent_id", "groups", "tags", "model_requested", "model", "provider", "input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens", "cost_nanos", "price_version", "latency_ms", "error_code", "cost_source")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    HELD_MS_FIELD_NUMBER: _ClassVar[int]
    DAY_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    MODEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REASONING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_NANOS_FIELD_NUMBER: _ClassVar[int]
    PRICE_VERSION_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    COST_SOURCE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    kind: str
    at_ms: int
    held_ms: int
    day: str
    agent_id: str
    groups: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.ScalarMap[str, str]
    model_requested: str
    model: str
    provider: str
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_nanos: int
    price_version: str
    latency_ms: int
    error_code: str
    cost_source: str
    def __init__(self, request_id: _Optional[str] = ..., kind: _Optional[str] = ..., at_ms: _Optional[int] = ..., held_ms: _Optional[int] = ..., day: _Optional[str] = ..., agent_id: _Optional[str] = ..., groups: _Optional[_Iterable[str]] = ..., tags: _Optional[_Mapping[str, str]] = ..., model_requested: _Optional[str] = ..., model: _Optional[str] = ..., provider: _Optional[str] = ..., input_tokens: _Optional[int] = ..., cached_input_tokens: _Optional[int] = ..., cache_write_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., reasoning_tokens: _Optional[int] = ..., cost_nanos: _Optional[int] = ..., price_version: _Optional[str] = ..., latency_ms: _Optional[int] = ..., error_code: _Optional[str] = ..., cost_source: _Optional[str] = ...) -> None: ...

class ReconcileRequest(_message.Message):
    __slots__ = ("since", "until", "provider", "run")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    since: str
    until: str
    provider: str
    run: bool
    def __init__(self, since: _Optional[str] = ..., until: _Optional[str] = ..., provider: _Optional[str] = ..., run: _Optional[bool] = ...) -> None: ...

class ReconcileTokens(_message.Message):
    __slots__ = ("input", "cached_input", "cache_write", "output")
    INPUT_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    input: int
    cached_input: int
    cache_write: int
    output: int
    def __init__(self, input: _Optional[int] = ..., cached_input: _Optional[int] = ..., cache_write: _Optional[int] = ..., output: _Optional[int] = ...) -> None: ...

class ReconcileRow(_message.Message):
    __slots__ = ("model", "classification", "provider_requests", "ledger_requests", "provider_tokens", "ledger_tokens", "provider_cost_nanos", "ledger_cost_nanos", "drift_nanos", "estimate_nanos", "estimate_requests", "near_midnight_requests", "near_midnight_nanos", "past_tolerance", "explanation", "suggestion")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    LEDGER_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_TOKENS_FIELD_NUMBER: _ClassVar[int]
    LEDGER_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_COST_NANOS_FIELD_NUMBER: _ClassVar[int]
    LEDGER_COST_NANOS_FIELD_NUMBER: _ClassVar[int]
    DRIFT_NANOS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_NANOS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    NEAR_MIDNIGHT_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    NEAR_MIDNIGHT_NANOS_FIELD_NUMBER: _ClassVar[int]
    PAST_TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    SUGGESTION_FIELD_NUMBER: _ClassVar[int]
    model: str
    classification: str
    provider_requests: int
    ledger_requests: int
    provider_tokens: ReconcileTokens
    ledger_tokens: ReconcileTokens
    provider_cost_nanos: int
    ledger_cost_nanos: int
    drift_nanos: int
    estimate_nanos: int
    estimate_requests: int
    near_midnight_requests: int
    near_midnight_nanos: int
    past_tolerance: bool
    explanation: str
    suggestion: str
    def __init__(self, model: _Optional[str] = ..., classification: _Optional[str] = ..., provider_requests: _Optional[int] = ..., ledger_requests: _Optional[int] = ..., provider_tokens: _Optional[_Union[ReconcileTokens, _Mapping]] = ..., ledger_tokens: _Optional[_Union[ReconcileTokens, _Mapping]] = ..., provider_cost_nanos: _Optional[int] = ..., ledger_cost_nanos: _Optional[int] = ..., drift_nanos: _Optional[int] = ..., estimate_nanos: _Optional[int] = ..., estimate_requests: _Optional[int] = ..., near_midnight_requests: _Optional[int] = ..., near_midnight_nanos: _Optional[int] = ..., past_tolerance: _Optional[bool] = ..., explanation: _Optional[str] = ..., suggestion: _Optional[str] = ...) -> None: ...

class ReconcileDay(_message.Message):
    __slots__ = ("provider", "day", "state", "detail", "checked_at", "last_success_at", "rows", "passes")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    DAY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    CHECKED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_SUCCESS_AT_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    PASSES_FIELD_NUMBER: _ClassVar[int]
    provider: str
    day: str
    state: str
    detail: str
    checked_at: _timestamp_pb2.Timestamp
    last_success_at: _timestamp_pb2.Timestamp
    rows: _containers.RepeatedCompositeFieldContainer[ReconcileRow]
    passes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, provider: _Optional[str] = ..., day: _Optional[str] = ..., state: _Optional[str] = ..., detail: _Optional[str] = ..., checked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_success_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rows: _Optional[_Iterable[_Union[ReconcileRow, _Mapping]]] = ..., passes: _Optional[_Iterable[str]] = ...) -> None: ...

class ReconcileProviderStatus(_message.Message):
    __slots__ = ("provider", "state", "detail", "last_attempt_at", "last_success_at")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    LAST_ATTEMPT_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_SUCCESS_AT_FIELD_NUMBER: _ClassVar[int]
    provider: str
    state: str
    detail: str
    last_attempt_at: _timestamp_pb2.Timestamp
    last_success_at: _timestamp_pb2.Timestamp
    def __init__(self, provider: _Optional[str] = ..., state: _Optional[str] = ..., detail: _Optional[str] = ..., last_attempt_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_success_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReconcileResponse(_message.Message):
    __slots__ = ("since", "until", "days", "providers")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    DAYS_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    since: str
    until: str
    days: _containers.RepeatedCompositeFieldContainer[ReconcileDay]
    providers: _containers.RepeatedCompositeFieldContainer[ReconcileProviderStatus]
    def __init__(self, since: _Optional[str] = ..., until: _Optional[str] = ..., days: _Optional[_Iterable[_Union[ReconcileDay, _Mapping]]] = ..., providers: _Optional[_Iterable[_Union[ReconcileProviderStatus, _Mapping]]] = ...) -> None: ...
