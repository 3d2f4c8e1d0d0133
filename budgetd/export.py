"""Cost events out of budgetd: the versioned record of one ledger row (the
JSON line and the CSV row of docs/export.md), its wire form, and the sink
that appends every settled or recorded call to a file (or standard output)
once the store has acknowledged it.

The sink never blocks nor fails a settle: a line is queued and a thread of
its own writes it; a write error is logged and counted
(``budgetd_export_errors``), and the settle's answer is long gone by then.
The file is reopened on SIGHUP (after logrotate, or Vector's own rotation,
moved it) and, past ``max_bytes``, renamed to ``PATH.1`` and opened anew.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import queue
import sys
import threading
from datetime import UTC, datetime
from decimal import Decimal
from typing import IO, Any

from budgetd_client.v1 import budget_pb2 as pb

from .metrics import Metrics
from .store import CostEvent

log = logging.getLogger("budgetd.export")

SCHEMA_VERSION = 1
# Every field of a record, in the order of the JSON line and the CSV header.
FIELDS = (
    "schema_version", "request_id", "kind", "time", "time_ms", "held_at", "held_ms", "day", "agent_id", "groups",
    "tags", "model_requested", "model", "provider", "input_tokens", "cached_input_tokens", "cache_write_tokens",
    "output_tokens", "reasoning_tokens", "cost_nanos", "cost_usd", "cost_source", "price_version", "latency_ms",
    "error_code",
)
QUEUE_LIMIT = 100_000  # lines waiting for the writer; past it a line is dropped and counted as an error


def rfc3339_ms(ms: int) -> str:
    """``2026-12-03T07:50:00.123Z``: UTC, to the millisecond."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def usd(nanos: int) -> str:
    """Nanodollars as a decimal string of dollars, nine places: ``0.000012345``."""
    return format(Decimal(nanos).scaleb(-9), "f")


def record(event: CostEvent) -> dict[str, Any]:
    """The versioned record of one cost event (schema_version 1)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "request_id": event.request_id,
        "kind": event.kind,
        "time": rfc3339_ms(event.at_ms),
        "time_ms": event.at_ms,
        "held_at": rfc3339_ms(event.held_ms) if event.held_ms is not None else None,
        "held_ms": event.held_ms,
        "day": event.day,
        "agent_id": event.agent_id,
        "groups": list(event.groups),
        "tags": dict(event.tags),
        "model_requested": event.model_requested,
        "model": event.model,
        "provider": event.provider,
        "input_tokens": event.input_tokens,
        "cached_input_tokens": event.cached_input_tokens,
        "cache_write_tokens": event.cache_write_tokens,
        "output_tokens": event.output_tokens,
        "reasoning_tokens": event.reasoning_tokens,
        "cost_nanos": event.cost_nanos,
        "cost_usd": usd(event.cost_nanos),
        "cost_source": event.cost_source,
        "price_version": event.price_version,
        "latency_ms": event.latency_ms,
        "error_code": event.error_code,
    }


def json_line(event: CostEvent) -> str:
    return json.dumps(record(event), separators=(",", ":"), ensure_ascii=False) + "\n"


def csv_header() -> str:
    return _csv_row(list(FIELDS))


def csv_line(event: CostEvent) -> str:
    """One CSV row: groups and tags as JSON in their cells, an absent value empty."""
    row = record(event)
    cells = [json.dumps(row[f], separators=(",", ":"), sort_keys=True) if f in ("groups", "tags")
             else "" if row[f] is None else str(row[f]) for f in FIELDS]
    return _csv_row(cells)


def _csv_row(cells: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(cells)
    return out.getvalue()


# -- the wire form ------------------------------------------------------------------------


def to_proto(event: CostEvent) -> pb.CostEvent:
    msg = pb.CostEvent(
        request_id=event.request_id, kind=event.kind, at_ms=event.at_ms, held_ms=event.held_ms or 0, day=event.day,
        agent_id=event.agent_id, groups=list(event.groups), tags=dict(event.tags),
        model_requested=event.model_requested, model=event.model, provider=event.provider,
        input_tokens=event.input_tokens, cached_input_tokens=event.cached_input_tokens,
        cache_write_tokens=event.cache_write_tokens, output_tokens=event.output_tokens,
        reasoning_tokens=event.reasoning_tokens, cost_nanos=event.cost_nanos, price_version=event.price_version,
        error_code=event.error_code, cost_source=event.cost_source)
    if event.latency_ms is not None:
        msg.latency_ms = event.latency_ms
    return msg


def from_proto(msg: pb.CostEvent) -> CostEvent:
    return CostEvent(
        request_id=msg.request_id, kind=msg.kind, at_ms=msg.at_ms, held_ms=msg.held_ms or None, day=msg.day,
        agent_id=msg.agent_id, groups=tuple(msg.groups), tags=dict(msg.tags), cost_nanos=msg.cost_nanos,
        cost_source=msg.cost_source, model_requested=msg.model_requested, model=msg.model, provider=msg.provider,
        input_tokens=msg.input_tokens, cached_input_tokens=msg.cached_input_tokens,
        cache_write_tokens=msg.cache_write_tokens, output_tokens=msg.output_tokens,
        reasoning_tokens=msg.reasoning_tokens, price_version=msg.price_version,
        latency_ms=msg.latency_ms if msg.HasField("latency_ms") else None, error_code=msg.error_code)


# -- the sink ---------------------------------------------------------------------------------

_REOPEN = object()  # queued by reopen(): the writer reopens the file before the next line
_STOP = object()


class EventSink:
    """Appends each event as a JSON line, from a thread of its own."""

    def __init__(self, path: str, max_bytes: int | None, metrics: Metrics) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.metrics = metrics
        self._queue: queue.Queue = queue.Queue(QUEUE_LIMIT)
        self._file: IO[str] | None = None
        self._size = 0
        self._thread = threading.Thread(target=self._run, name="budgetd-export", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def write(self, event: CostEvent) -> None:
        """Queue one event; never blocks, never raises."""
        try:
            self._queue.put_nowait(json_line(event))
        except queue.Full:
            self.metrics.export_errors.inc()
            log.error("export: %d lines wait for the writer; dropped the event of request %s",
                      QUEUE_LIMIT, event.request_id)
        except Exception as err:  # a record that cannot be encoded: never the settle's problem
            self.metrics.export_errors.inc()
            log.error("export: could not encode the event of request %s: %s", event.request_id, err)

    def reopen(self) -> None:
        """Reopen the file before the next line (SIGHUP: it was moved away)."""
        self._queue.put(_REOPEN)

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued (within ``timeout``), then close."""
        if not self._thread.is_alive():
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)

    # -- the writer thread --------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                self._close()
                return
            if item is _REOPEN:
                self._close()
                continue
            for attempt in (1, 2):  # a failed write is tried once more on a file opened anew
                try:
                    self._write(item)
                except OSError as err:
                    self._close()
                    if attempt == 2:
                        self.metrics.export_errors.inc()
                        log.error("export: could not write to %s: %s", self.path, err)
                    continue
                self.metrics.export_lines.inc()
                break

    def _write(self, line: str) -> None:
        if self.path == "-":
            sys.stdout.write(line)
            sys.stdout.flush()
            return
        data = line.encode()
        if self._file is not None and self.max_bytes is not None and self._size > 0 \
                and self._size + len(data) > self.max_bytes:
            self._rotate()
        if self._file is None:
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open between lines)
            self._size = self._file.seek(0, os.SEEK_END)
        self._file.write(line)
        self._file.flush()
        self._size += len(data)

    def _rotate(self) -> None:
        """Rename the file to PATH.1 (unless something moved it away
        already: then only open PATH anew)."""
        assert self._file is not None
        try:
            ours = os.path.samestat(os.fstat(self._file.fileno()), os.stat(self.path))
        except FileNotFoundError:
            ours = False
        self._close()
        if ours:
            os.replace(self.path, f"{self.path}.1")

    def _close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError as err:
                log.error("export: could not close %s: %s", self.path, err)
            self._file = None
