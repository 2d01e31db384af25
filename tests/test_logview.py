"""Filtering syncd's JSON log lines (as journald or a file hands them to `syncd logs`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from syncd.logview import LogFilter, filter_lines, parse_when, render_line


def line(event: str, level: str = "info", at: str = "2024-05-01T12:00:00.000000Z", **kw: Any):
    body = {"event": event, "level": level, "timestamp": at, "logger": "syncd.engine", **kw}
    return json.dumps(body)


LINES = [
    "<6>" + line("cycle.start", stream="work_orders", run_id="r1"),
    "-- Boot 1234 --",
    line("http.request", level="debug", at="2024-05-01T12:00:01Z", server="clickmaint", ms=5),
    "<4>" + line("record.quarantined", "warning", "2024-05-01T12:00:02Z", side="cm", record="5"),
    '{"truncated": ',
    "[1, 2, 3]",
    line("wo.updated", at="2024-05-01T12:00:03Z", stream="work_orders", cm_id=5, mt_id="1005"),
    line("ot.created", at="2024-05-01T12:00:04Z", stream="work_orders", mt_id="5", run_id="r2"),
    line("cycle.crashed", "error", "2024-05-01T12:00:05Z", stream="part_usage", tx_id="88"),
    "",
]


def events(**flt: Any) -> list[str]:
    return [e["event"] for e in filter_lines(LINES, LogFilter(**flt))]


def test_skips_junk_and_strips_priority_prefix() -> None:
    assert events() == [
        "cycle.start",
        "http.request",
        "record.quarantined",
        "wo.updated",
        "ot.created",
        "cycle.crashed",
    ]


def test_level_is_a_minimum() -> None:
    assert events(level="warning") == ["record.quarantined", "cycle.crashed"]
    assert events(level="error") == ["cycle.crashed"]
    assert len(events(level="debug")) == 6
    odd = [line("a", level="exception"), line("b", level="warn"), line("c", level="critical")]
    assert [e["event"] for e in filter_lines(odd, LogFilter(level="error"))] == ["a", "c"]


def test_stream_and_run() -> None:
    assert events(stream="part_usage") == ["cycle.crashed"]
    assert events(run_id="r2") == ["ot.created"]
    assert events(stream="work_orders", run_id="r1") == ["cycle.start"]


def test_record_forms() -> None:
    # a bare id: any record-naming key, numbers included
    assert events(record="5") == ["record.quarantined", "wo.updated", "ot.created"]
    assert events(record="clickmaint:5") == ["wo.updated"]
    assert events(record="cm:5") == ["wo.updated"]
    assert events(record="mantenimiento:5") == ["ot.created"]
    assert events(record="mantenimiento:1005") == ["wo.updated"]
    assert events(record="88") == ["cycle.crashed"]
    # a counter that happens to equal the id is not the record
    assert "http.request" not in events(record="5")


def test_time_window() -> None:
    since = datetime(2024, 5, 1, 12, 0, 2, tzinfo=UTC)
    until = datetime(2024, 5, 1, 12, 0, 4, tzinfo=UTC)
    assert events(since=since, until=until) == ["record.quarantined", "wo.updated", "ot.created"]
    no_time = [json.dumps({"event": "x", "level": "info"})]
    assert list(filter_lines(no_time, LogFilter(since=since))) == []
    assert [e["event"] for e in filter_lines(no_time, LogFilter())] == ["x"]


def test_parse_when_iso_and_relative() -> None:
    assert parse_when("2024-05-01T12:00:00Z") == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert parse_when("2024-05-01T12:00:00") == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert parse_when("2024-05-01") == datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_when("2024-05-01T14:00:00+02:00") == datetime(2024, 5, 1, 12, tzinfo=UTC)
    for text, delta in (("30s", 30), ("15m", 900), ("2h", 7200), ("1d", 86400)):
        before = datetime.now(UTC)
        parsed = parse_when(text)
        after = datetime.now(UTC)
        assert before - timedelta(seconds=delta) <= parsed <= after - timedelta(seconds=delta)


@pytest.mark.parametrize("text", ["yesterday", "15 minutes", "2024-13-01", "-5m", ""])
def test_parse_when_rejects_with_a_clear_message(text: str) -> None:
    with pytest.raises(ValueError, match=r"ISO 8601.*30s, 15m, 2h, 1d"):
        parse_when(text)


def test_render_line() -> None:
    event = json.loads(
        line(
            "wo.updated",
            at="2024-05-01T12:00:03.123456Z",
            stream="work_orders",
            run_id="r1",
            cm_id=5,
            fields=["title"],
            note="two words",
        )
    )
    text = render_line(event)
    assert text.startswith("2024-05-01 12:00:03 INFO    work_orders  wo.updated  ")
    assert 'run_id=r1 cm_id=5 fields=["title"] note="two words"' in text
    assert "logger=" not in text and "timestamp=" not in text
    bare = render_line({"event": "x"})
    assert bare.startswith("- ") and " x" in bare
    long = render_line({"event": "x", "error": "e" * 1000})
    assert long.endswith("…") and len(long) < 400
