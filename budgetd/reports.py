"""Reports and per-tag hourly spend, computed in one place for every store.

A store does the part that needs its data: it groups the ledger of a day
range into ``ReportPart`` values (the calls under one report key that had
one same input-token count: how many, what they cost, the cached tokens
among their input). SQLite does that in SQL; the memory and Redis stores
hand their ledger rows to ``parts_of``. Everything after (per-row spend,
requests, average cost per request, cache-hit rate, p95 input tokens, the
order, the top N and the total over every row) is ``summarize``, here: no
I/O, integers throughout, so every backend answers the same to the
nanodollar.

Definitions:
- a call (a request) is an (agent, request id); a call whose ledger rows
  are several (a late settle after its hold expired) counts once, with the
  sum of its rows' cost and tokens;
- requests: the calls with a ledger row under the key in the day range;
- average cost per request: spend / requests, rounded half-even to the
  nanodollar;
- cache-hit rate: cached input tokens / input tokens, over the calls priced
  from token counts (the others carry none), half-even to 6 decimal places;
  None when those calls had no input tokens;
- p95 input tokens: nearest rank over the calls priced from token counts:
  sorted ascending, the value at rank ceil(0.95 x n) (1-based); None when
  no call carries token counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

MS_PER_HOUR = 3_600_000
RATE_PLACES = 6
RATE_QUANTUM = Decimal(1).scaleb(-RATE_PLACES)


@dataclass(frozen=True)
class ReportPart:
    """The calls under one report key with one same input-token count."""

    key: str
    input_tokens: int | None  # each call's input tokens; None: calls with no token counts
    calls: int
    cost_nanos: int
    cached_input_tokens: int = 0  # summed over these calls


@dataclass(frozen=True)
class LedgerEntry:
    """One ledger row as a store that aggregates in Python reads it."""

    keys: Sequence[str]  # the report keys it counts under (a group report: each of its groups)
    call: tuple[str, str]  # (agent id, request id)
    cost_nanos: int
    input_tokens: int | None = None
    cached_input_tokens: int | None = None


NO_MODEL = "(no model)"  # the key of calls priced by amount, in a report by model
NO_TAG = "(none)"  # the key of calls without the tag, in a report by a tag


def report_keys(by: str, agent_id: str, model: str, day: str, groups: Sequence[str],
                tags: Mapping[str, str]) -> Sequence[str]:
    """The keys a ledger row counts under in a report ``by`` (a row of a
    group report counts under each of its groups)."""
    if by == "group":
        return groups
    if by == "agent":
        return [agent_id]
    if by == "model":
        return [model or NO_MODEL]
    if by == "day":
        return [day]
    return [tags.get(by, NO_TAG)]


class PartsBuilder:
    """``parts_of`` a page at a time (a store that reads its ledger in pages)."""

    def __init__(self) -> None:
        self._calls: dict[tuple[str, tuple[str, str]], list] = {}  # (key, call) -> [cost, input, cached]

    def add(self, entry: LedgerEntry) -> None:
        for key in entry.keys:
            acc = self._calls.setdefault((key, entry.call), [0, None, None])
            acc[0] += entry.cost_nanos
            if entry.input_tokens is not None:
                acc[1] = (acc[1] or 0) + entry.input_tokens
                acc[2] = (acc[2] or 0) + (entry.cached_input_tokens or 0)

    def parts(self) -> list[ReportPart]:
        parts: dict[tuple[str, int | None], list[int]] = {}  # (key, input) -> [calls, cost, cached]
        for (key, _), (cost, input_tokens, cached) in self._calls.items():
            part = parts.setdefault((key, input_tokens), [0, 0, 0])
            part[0] += 1
            part[1] += cost
            part[2] += cached or 0
        return sorted((ReportPart(key, tokens, n, cost, cached) for (key, tokens), (n, cost, cached) in parts.items()),
                      key=_part_order)


def parts_of(entries: Iterable[LedgerEntry]) -> list[ReportPart]:
    """Ledger rows to the parts a report is summarized from: each call's rows
    summed, then the calls of a key grouped by their input tokens."""
    builder = PartsBuilder()
    for entry in entries:
        builder.add(entry)
    return builder.parts()


def _part_order(part: ReportPart) -> tuple:
    return part.key, part.input_tokens is None, part.input_tokens or 0


@dataclass(frozen=True)
class ReportLine:
    """One row of a report (or its total)."""

    key: str
    cost_nanos: int
    calls: int
    priced_calls: int = 0  # the calls that carry token counts
    input_tokens: int = 0  # summed over those calls
    cached_input_tokens: int = 0
    p95_input_tokens: int | None = None

    @property
    def avg_cost_nanos(self) -> int:
        return round(Fraction(self.cost_nanos, self.calls)) if self.calls else 0

    @property
    def cache_hit_rate(self) -> Decimal | None:
        if not self.input_tokens:
            return None
        scaled = round(Fraction(self.cached_input_tokens * 10**RATE_PLACES, self.input_tokens))
        return Decimal(scaled).scaleb(-RATE_PLACES).quantize(RATE_QUANTUM)  # "0.000000", never "0E-6"


@dataclass(frozen=True)
class Summary:
    rows: list[ReportLine]  # biggest spend first (then by key), at most ``top`` of them
    total: ReportLine  # over every row, shown or not
    rows_in_all: int = 0  # how many rows there are, shown or not


def p95(histogram: Mapping[int, int]) -> int | None:
    """The nearest-rank 95th percentile of values given as value -> how many."""
    n = sum(histogram.values())
    if n == 0:
        return None
    rank = (95 * n + 99) // 100  # ceil(0.95 n), in integers
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return value
    raise AssertionError("unreachable")


def _line(key: str, parts: Iterable[ReportPart]) -> ReportLine:
    cost = calls = priced = tokens = cached = 0
    histogram: dict[int, int] = {}
    for part in parts:
        cost += part.cost_nanos
        calls += part.calls
        if part.input_tokens is not None:
            priced += part.calls
            tokens += part.input_tokens * part.calls
            cached += part.cached_input_tokens
            histogram[part.input_tokens] = histogram.get(part.input_tokens, 0) + part.calls
    return ReportLine(key, cost, calls, priced, tokens, cached, p95(histogram))


def summarize(parts: Iterable[ReportPart], top: int = 0) -> Summary:
    """The report's rows, biggest spend first, the first ``top`` of them (0:
    all), and a total over every row: the sum of the rows' spend, requests
    and tokens, and the p95 over all their calls."""
    parts = list(parts)
    by_key: dict[str, list[ReportPart]] = {}
    for part in parts:
        by_key.setdefault(part.key, []).append(part)
    rows = sorted((_line(key, group) for key, group in by_key.items()), key=lambda r: (-r.cost_nanos, r.key))
    total = _line("TOTAL", parts)
    return Summary(rows[:top] if top > 0 else rows, total, len(rows))


# -- spend per tag value and hour, for the anomaly check ------------------------------------


@dataclass(frozen=True)
class TagHourSpend:
    tag: str
    value: str
    hour: int  # hours since the ``since_ms`` asked for: 0 is the first
    cost_nanos: int


def hourly_by_tag(rows: Iterable[tuple[Mapping[str, str], int, int]], tags: Sequence[str], since_ms: int,
                  until_ms: int) -> list[TagHourSpend]:
    """``rows``: (tags, settled ms, cost) of ledger rows. The cost settled in
    [since_ms, until_ms) per value of each tag in ``tags`` and per hour
    counted from ``since_ms`` (rows without the tag count under none)."""
    sums: dict[tuple[str, str, int], int] = {}
    for row_tags, settled_ms, cost in rows:
        if not since_ms <= settled_ms < until_ms:
            continue
        hour = (settled_ms - since_ms) // MS_PER_HOUR
        for tag in tags:
            value = row_tags.get(tag)
            if value:
                sums[(tag, value, hour)] = sums.get((tag, value, hour), 0) + cost
    return [TagHourSpend(tag, value, hour, cost) for (tag, value, hour), cost in sorted(sums.items())]


@dataclass(frozen=True)
class Spike:
    tag: str
    value: str
    spent_nanos: int  # in the current hour
    average_nanos: Fraction  # per hour over the history

    @property
    def ratio(self) -> str:
        """How many times the average, to one place ("5.0"); "∞" for a value with no history."""
        if not self.average_nanos:
            return "∞"
        tenths = round(Fraction(self.spent_nanos) * 10 / self.average_nanos)
        return f"{tenths // 10}.{tenths % 10}"


def spikes(spend: Iterable[TagHourSpend], history_hours: int, factor: Decimal, floor_nanos: int) -> list[Spike]:
    """From ``tag_spend_by_hour`` over ``history_hours`` hours and then the
    current one (hour index ``history_hours``): each tag value whose spend in
    the current hour is above ``floor_nanos`` and above ``factor`` x its
    average hourly spend over the history (an hour with none counts as 0)."""
    current: dict[tuple[str, str], int] = {}
    history: dict[tuple[str, str], int] = {}
    for s in spend:
        into = current if s.hour >= history_hours else history
        into[(s.tag, s.value)] = into.get((s.tag, s.value), 0) + s.cost_nanos
    found = []
    for (tag, value), spent in sorted(current.items()):
        average = Fraction(history.get((tag, value), 0), history_hours)
        if spent > floor_nanos and spent > Fraction(factor) * average:
            found.append(Spike(tag, value, spent, average))
    return found
