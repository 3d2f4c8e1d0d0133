"""The export record and sink on their own: the versioned record's units, the
sink's standard output, and a sink that cannot write, which logs and counts
and never raises into the settle that handed it an event."""

from __future__ import annotations

import csv
import io
import json
import time

from budgetd.export import EventSink, csv_header, csv_line, from_proto, json_line, record, rfc3339_ms, to_proto, usd
from budgetd.metrics import Metrics
from budgetd.store import CostEvent

EVENT = CostEvent("r1", "settle", 1_764_748_200_123, 1_764_748_200_001, "2025-12-03", "a1", ("team",),
                  {"feature": "chat, \"quoted\""}, 1_815_000, "usage", model_requested="o4-mini",
                  model="o4-mini-2025-04-16", provider="openai", input_tokens=1200, cached_input_tokens=1000,
                  output_tokens=300, reasoning_tokens=120, price_version="genai-prices-x", latency_ms=57)


def test_the_record_says_money_in_nanos_and_dollars_and_times_in_rfc3339_and_ms():
    line = json.loads(json_line(EVENT))
    assert line == record(EVENT)
    assert (line["schema_version"], line["cost_nanos"], line["cost_usd"]) == (1, 1_815_000, "0.001815000")
    assert (line["time"], line["time_ms"]) == ("2025-12-03T07:50:00.123Z", 1_764_748_200_123)
    assert line["held_at"] == "2025-12-03T07:50:00.001Z"
    assert usd(0) == "0.000000000" and usd(1) == "0.000000001" and usd(12_345_678_901) == "12.345678901"
    assert rfc3339_ms(0) == "1970-01-01T00:00:00.000Z"
    no_hold = json.loads(json_line(CostEvent("r2", "settle", 5, None, "d", "a", (), {}, 1, "caller")))
    assert (no_hold["held_at"], no_hold["held_ms"], no_hold["latency_ms"]) == (None, None, None)


def test_the_wire_form_and_csv_carry_the_same_record():
    assert from_proto(to_proto(EVENT)) == EVENT
    bare = CostEvent("r2", "release", 5, None, "d", "a", (), {}, 0, "caller", error_code="E:429")
    assert from_proto(to_proto(bare)) == bare
    header, row = csv_header().rstrip("\n").split(","), csv_line(EVENT)
    assert header[0] == "schema_version" and len(header) == len(record(EVENT))
    assert row.startswith("1,r1,settle,2025-12-03T07:50:00.123Z,1764748200123,")
    (parsed,) = list(csv.DictReader(io.StringIO(csv_header() + row)))  # tags: JSON in one quoted cell
    assert json.loads(parsed["tags"]) == EVENT.tags and json.loads(parsed["groups"]) == ["team"]
    assert (parsed["cost_usd"], parsed["latency_ms"], parsed["error_code"]) == ("0.001815000", "57", "")


def test_a_sink_on_standard_output_writes_one_line_an_event(capsys):
    sink = EventSink("-", None, Metrics())
    sink.start()
    sink.write(EVENT)
    sink.stop()
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == [record(EVENT)]


def test_a_sink_that_cannot_write_counts_and_logs_and_never_raises(tmp_path, caplog):
    metrics = Metrics()
    sink = EventSink(str(tmp_path / "no-such-dir" / "events.jsonl"), None, metrics)
    sink.start()
    sink.write(EVENT)  # returns at once; the writer thread fails
    sink.write(EVENT)
    deadline = time.monotonic() + 5
    while metrics.export_errors._value.get() < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    sink.stop()
    assert metrics.export_errors._value.get() == 2 and metrics.export_lines._value.get() == 0
    assert "export: could not write" in caplog.text
    # Once the directory exists, the next event is written: the sink recovers by itself.
    (tmp_path / "no-such-dir").mkdir()
    again = EventSink(str(tmp_path / "no-such-dir" / "events.jsonl"), None, metrics)
    again.start()
    again.write(EVENT)
    again.stop()
    assert (tmp_path / "no-such-dir" / "events.jsonl").read_text() == json_line(EVENT)


def test_what_a_caller_says_of_a_call_is_cleaned_never_a_reason_to_refuse_its_settle():
    from budgetd.app.service import _check_facts
    from budgetd.store import CallFacts

    assert _check_facts(None) is None
    assert _check_facts(CallFacts("m" * 300, -5, "Boom\n:500")) == CallFacts("m" * 200, None, "Boom?:500")
    assert _check_facts(CallFacts("gpt-4o", 2**40, "")) == CallFacts("gpt-4o", None, "")
    assert _check_facts(CallFacts("gpt-4o", 120, "RateLimitError:429")) == CallFacts("gpt-4o", 120,
                                                                                     "RateLimitError:429")
