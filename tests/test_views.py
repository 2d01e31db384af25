"""The read-only views behind `status`, `history`, `ledger` and `conflicts`, on real ledgers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import syncd.views as views
from syncd.config import Config, load_config
from syncd.ledger.db import connect, migrate
from syncd.ledger.models import Link
from syncd.ledger.store import Ledger
from syncd.sandbox.launch import config_text

ALL_STREAMS = ("work_orders", "part_usage", "requests")


# -- shared helpers (also imported by the CLI tests) -----------------------------------------
def write_credentials(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "clickmaint-api-key").write_text("cm-sandbox-key\n")
    (directory / "mantenimiento-password").write_text("syncd-sandbox-pass\n")
    return directory


def write_config_file(
    directory: Path,
    *,
    cm_url: str = "http://127.0.0.1:9/api/v1",
    mt_url: str = "http://127.0.0.1:9",
    extra: str = "",
) -> Path:
    path = directory / "config.toml"
    path.write_text(config_text(cm_url, mt_url, directory / "state", extra))
    return path


@pytest.fixture
def creds(tmp_path: Path) -> Path:
    return write_credentials(tmp_path / "credentials")


@pytest.fixture
def make_config(tmp_path: Path, creds: Path) -> Callable[..., Config]:
    def make(extra: str = "", **env: str) -> Config:
        path = write_config_file(tmp_path, extra=extra)
        return load_config(path, env={"CREDENTIALS_DIRECTORY": str(creds), **env})

    return make


@pytest.fixture
def config(make_config: Callable[..., Config]) -> Config:
    return make_config()


@pytest.fixture
def ledger(config: Config) -> Iterator[Ledger]:
    led = Ledger.open(config.ledger_path)
    yield led
    led.close()


def ok_run(ledger: Ledger, stream: str, status: str = "ok", cm_requests: int = 0, **counts: int):
    """A finished run stored the way the engine stores it (its cycle summary)."""
    run_id = ledger.start_run(stream, "cycle")
    summary = {"stream": stream, "status": status, "counts": counts, "cm_requests": cm_requests}
    ledger.finish_run(run_id, status, summary, "boom" if status == "failed" else None)
    return run_id


def make_link(ledger: Ledger, cm_id: str = "5", mt_id: str = "1005", title: str = "Bomba P-3"):
    return ledger.save_link(
        Link(
            stream="work_orders",
            cm_id=cm_id,
            mt_id=mt_id,
            base_cm={"title": title, "status": "open"},
            base_mt={"title": title, "status": "PROGRAMADA"},
            cm_seen={"title": title, "status": "open"},
            mt_seen={"title": title, "status": "PROGRAMADA"},
            cm_updated_at="2024-05-01T10:00:00Z",
            origin="clickmaint",
        )
    )


def conflict(ledger: Ledger, cm_id: str = "5", mt_id: str = "1005", field: str = "title"):
    return ledger.record_conflict(
        stream="work_orders",
        cm_id=cm_id,
        mt_id=mt_id,
        field=field,
        base="Bomba",
        cm_value="Bomba P-3 (CM)",
        mt_value="Bomba P-3 (MT)",
        policy="manual",
        status="open",
    )


def connect_memory():
    from syncd.ledger.db import connect

    return connect(":memory:")


# -- status -----------------------------------------------------------------------------------
def test_status_without_ledger_is_unhealthy_not_an_error(config: Config) -> None:
    report = views.status_report(config)
    assert report["healthy"] is False
    assert "no ledger" in report["problems"][0]
    assert report["streams"] == {}
    text = views.render_status(report)
    assert "UNHEALTHY" in text and "no ledger" in text


def test_status_healthy_with_recent_runs(config: Config, ledger: Ledger) -> None:
    for stream in ALL_STREAMS:
        ok_run(ledger, stream, cm_requests=7, created_cm=1)
    make_link(ledger)
    ledger.set_cursor("work_orders", "cm_watermark", "2024-05-01T10:00:00Z")
    report = views.status_report(config)
    assert report["healthy"] is True, report["problems"]
    from syncd.ledger.migrations import MIGRATIONS

    assert report["schema"] == [m.name for m in MIGRATIONS.pending(connect_memory())]
    wo = report["streams"]["work_orders"]
    assert wo["links"] == 1
    assert wo["watermark"] == "2024-05-01T10:00:00Z"
    assert wo["lag_seconds"] > 86400  # long ago
    assert wo["last_success"]["counts"] == {"created_cm": 1}
    assert wo["last_run"]["cm_requests"] == 7
    assert report["budget"]["cm_requests_in_window"] == 21
    assert report["budget"]["limit"] == 300
    text = views.render_status(report)
    assert "syncd status: healthy" in text
    assert "work_orders" in text and "21 requests" in text


def test_status_stream_without_success_is_unhealthy(config: Config, ledger: Ledger) -> None:
    ok_run(ledger, "work_orders")
    report = views.status_report(config)
    assert report["healthy"] is False
    assert report["streams"]["work_orders"]["healthy"] is True
    assert "part_usage: no successful cycle yet" in report["problems"]


def test_status_disabled_streams_are_not_judged(make_config: Callable[..., Config]) -> None:
    config = make_config(
        SYNCD_STREAMS__PART_USAGE__ENABLED="false", SYNCD_STREAMS__REQUESTS__ENABLED="false"
    )
    led = Ledger.open(config.ledger_path)
    ok_run(led, "work_orders")
    led.close()
    report = views.status_report(config)
    assert report["healthy"] is True
    assert list(report["streams"]) == ["work_orders"]
    assert report["disabled"] == ["part_usage", "requests"]
    assert "disabled: part_usage, requests" in views.render_status(report)


def test_status_stale_success_is_unhealthy(
    config: Config, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    for stream in ALL_STREAMS:
        ok_run(ledger, stream)
    # work_orders: 3 intervals of 15 s = 45 s; pretend a minute has passed
    later = datetime.now(UTC) + timedelta(minutes=1)
    monkeypatch.setattr(views, "_now", lambda: later)
    report = views.status_report(config)
    assert report["healthy"] is False
    (problem,) = [p for p in report["problems"] if p.startswith("work_orders")]
    assert "no successful cycle for 1m" in problem and "3 intervals" in problem
    assert report["streams"]["part_usage"]["healthy"] is True  # 3 x 30 s > 1 min


def test_status_repeated_failures_are_unhealthy(config: Config, ledger: Ledger) -> None:
    for stream in ALL_STREAMS:
        ok_run(ledger, stream)
    for _ in range(3):
        ok_run(ledger, "work_orders", status="failed")
    report = views.status_report(config)
    wo = report["streams"]["work_orders"]
    assert wo["consecutive_failures"] == 3
    assert wo["last_error"]["error"] == "boom"
    assert "work_orders: last 3 cycles failed: boom" in report["problems"]
    assert report["healthy"] is False


def test_status_two_failures_are_still_healthy(config: Config, ledger: Ledger) -> None:
    for stream in ALL_STREAMS:
        ok_run(ledger, stream)
    for _ in range(2):
        ok_run(ledger, "work_orders", status="failed")
    report = views.status_report(config)
    assert report["healthy"] is True
    assert report["streams"]["work_orders"]["last_run"]["status"] == "failed"


def test_status_partial_counts_as_progress_and_is_reported(config: Config, ledger: Ledger) -> None:
    for stream in ALL_STREAMS:
        ok_run(ledger, stream, status="partial")
    report = views.status_report(config)
    assert report["healthy"] is True
    wo = report["streams"]["work_orders"]
    assert wo["last_success"] is None and wo["last_partial"]["status"] == "partial"
    assert "work_orders: last progress was partial (rate budget ran out)" in report["notes"]


def test_status_reports_backlog(config: Config, ledger: Ledger) -> None:
    for stream in ALL_STREAMS:
        ok_run(ledger, stream)
    make_link(ledger)
    conflict(ledger)
    ledger.quarantine("work_orders", "cm", "77", "mapping", "status 'x' unknown")
    ledger.add_intent(
        stream="work_orders", op="create", source_side="cm", source_id="9", target_side="mt"
    )
    ledger.set_meta("work_orders_delete_guard", {"at": "2024-05-01T00:00:00Z", "reason": "60%"})
    report = views.status_report(config)
    wo = report["streams"]["work_orders"]
    assert (wo["open_conflicts"], wo["quarantined"], wo["pending_intents"]) == (1, 1, 1)
    assert wo["oldest_intent_age_seconds"] >= 0
    assert wo["delete_guard"]["reason"] == "60%"
    assert report["healthy"] is True  # a backlog is reported, it is not an outage
    text = views.render_status(report)
    assert "tripped" in text and "delete guard tripped: 60%" in text
    assert "1 open conflict(s)" in text


def test_status_says_when_click_maint_does_not_touch_parts(config: Config, ledger: Ledger) -> None:
    for stream in ALL_STREAMS:
        ok_run(ledger, stream)
    assert not any("updated_at" in n for n in views.status_report(config)["notes"])
    ledger.set_meta("part_touch_unreliable", {"part": 4, "transaction": 99, "at": "x"})
    report = views.status_report(config)
    assert report["healthy"] is True
    (note,) = [n for n in report["notes"] if "updated_at" in n]
    assert note.startswith("part_usage: Click Maint added transaction 99 without moving part 4")
    assert "sweep of every part's history (10 parts per cycle)" in note


def test_status_mapping_change_is_a_problem(config: Config, ledger: Ledger) -> None:
    for stream in ALL_STREAMS:
        ok_run(ledger, stream)
    ledger.set_meta("mapping_fingerprint", "0000000000000000")
    report = views.status_report(config)
    assert report["healthy"] is False
    assert "resync --rebaseline" in report["problems"][0]


def test_status_old_schema_is_a_problem_not_a_crash(config: Config) -> None:
    config.ledger_path.parent.mkdir(parents=True)
    db = connect(config.ledger_path)
    migrate(db, config.ledger_path, stop_before="m001_core")
    db.conn.close()
    report = views.status_report(config)
    assert report["healthy"] is False
    assert "older schema" in report["problems"][0]


# -- tables -----------------------------------------------------------------------------------
def test_render_table_aligns_truncates_and_encodes() -> None:
    rows = [
        {"a": 1, "b": "x" * 100, "c": {"k": [1, 2]}},
        {"a": 22, "b": "short\nline", "c": None},
    ]
    lines = views.render_table(rows, ["a", "b", "c"]).splitlines()
    assert lines[0].split() == ["A", "B", "C"]
    assert lines[1].startswith("1 ")
    assert "x" * 59 + "…" in lines[1]
    assert '{"k": [1, 2]}' in lines[1]
    assert "short line" in lines[2]
    assert lines[1].index("x") == lines[2].index("short") == lines[0].index("B")


# -- history and links -----------------------------------------------------------------------
def test_history_follows_the_link(config: Config, ledger: Ledger) -> None:
    make_link(ledger)
    ledger.record("work_orders", "created_mt", cm_id="5", mt_id="1005", run_id="r1", codigo="X")
    ledger.record("work_orders", "updated_cm", cm_id="5", run_id="r2", fields=["title"])
    ledger.record("work_orders", "mt_changed", mt_id="1005", run_id="r3")
    ledger.record("part_usage", "mirrored", cm_id="5", run_id="r4")
    ledger.record("work_orders", "created_mt", cm_id="6", mt_id="1006", run_id="r5")
    rows = views.history_rows(config, "cm", "5", stream=None)
    assert [r["action"] for r in rows] == ["created_mt", "updated_cm", "mt_changed", "mirrored"]
    assert rows[0]["detail"] == {"codigo": "X"}
    from_mt = views.history_rows(config, "mt", "1005", stream="work_orders")
    assert [r["run_id"] for r in from_mt] == ["r1", "r2", "r3"]
    assert views.history_rows(config, "cm", "404", stream=None) == []


def test_history_without_ledger_is_empty(config: Config) -> None:
    assert views.history_rows(config, "cm", "5", stream=None) == []
    assert views.find_links(config, "x") == []
    assert views.link_details(config, "cm", "5") is None
    assert views.conflict_rows(config, status="open", stream=None) == []
    assert views.conflict_details(config, 1) is None


def test_link_details(config: Config, ledger: Ledger) -> None:
    make_link(ledger)
    conflict(ledger)
    ledger.quarantine("work_orders", "mt", "1005", "rejected", "HTTP 400")
    details = views.link_details(config, "mt", "1005")
    assert details is not None
    assert (details["cm_id"], details["mt_id"], details["state"]) == ("5", "1005", "active")
    assert details["base_cm"]["title"] == "Bomba P-3"
    assert details["cm_seen"]["status"] == "open"
    assert details["cm_updated_at"] == "2024-05-01T10:00:00Z"
    assert details["origin"] == "clickmaint" and details["dirty"] is False
    assert [c["field"] for c in details["conflicts"]] == ["title"]
    assert [(q["side"], q["reason"]) for q in details["quarantine"]] == [("mt", "rejected")]
    assert views.link_details(config, "cm", "1005") is None


def test_find_links(config: Config, ledger: Ledger) -> None:
    make_link(ledger)
    make_link(ledger, cm_id="6", mt_id="1006", title="Compresor C-1")
    rows = views.find_links(config, "Compresor")
    assert rows == [
        {
            "stream": "work_orders",
            "cm_id": "6",
            "mt_id": "1006",
            "state": "active",
            "title": "Compresor C-1",
            "updated_at": rows[0]["updated_at"],
        }
    ]
    assert [r["cm_id"] for r in views.find_links(config, "1005")] == ["5"]


# -- conflicts ---------------------------------------------------------------------------------
def test_conflict_rows_and_details(config: Config, ledger: Ledger) -> None:
    first = conflict(ledger)
    ledger.record_conflict(
        stream="work_orders",
        cm_id="6",
        mt_id="1006",
        field="status",
        base="open",
        cm_value="completed",
        mt_value="CANCELADA",
        policy="newest",
        status="auto",
        resolution="clickmaint",
    )
    open_rows = views.conflict_rows(config, status="open", stream=None)
    assert [(r["id"], r["field"], r["cm_value"]) for r in open_rows] == [
        (first.id, "title", "Bomba P-3 (CM)")
    ]
    assert len(views.conflict_rows(config, status=None, stream=None)) == 2
    assert views.conflict_rows(config, status=None, stream="requests") == []
    details = views.conflict_details(config, first.id)
    assert details is not None and details["mt_value"] == "Bomba P-3 (MT)"
    assert f"syncd conflicts resolve {first.id}" in details["how_to_resolve"]
    assert views.conflict_details(config, 999) is None


@pytest.mark.parametrize(
    ("raw", "stored"),
    [("42", "42"), ('"null"', "null"), ('"quoted"', "quoted"), ("Pump room", "Pump room")],
)
def test_resolve_with_value_stores_text_for_a_title(
    config: Config, ledger: Ledger, raw: str, stored: object
) -> None:
    make_link(ledger)
    item = conflict(ledger)
    message = views.resolve_conflict(config, item.id, "value", raw)
    assert f"conflict #{item.id} resolved" in message and "next sync cycle" in message
    after = ledger.get_conflict(item.id)
    assert after is not None
    assert (after.status, after.resolution, after.resolved_value) == ("resolved", "value", stored)
    assert after.resolved_by
    link = ledger.get_link("work_orders", cm_id="5")
    assert link is not None and link.dirty is True


def test_resolve_taking_a_side_and_errors(config: Config, ledger: Ledger) -> None:
    item = conflict(ledger)
    assert "(mantenimiento)" in views.resolve_conflict(config, item.id, "mantenimiento", None)
    resolved = ledger.get_conflict(item.id)
    assert resolved is not None and resolved.resolution == "mantenimiento"
    with pytest.raises(ValueError, match="not open"):
        views.resolve_conflict(config, item.id, "clickmaint", None)
    with pytest.raises(KeyError, match="no conflict #999"):
        views.resolve_conflict(config, 999, "clickmaint", None)


def test_resolve_without_ledger_does_not_create_one(config: Config) -> None:
    with pytest.raises(KeyError, match="no ledger"):
        views.resolve_conflict(config, 1, "clickmaint", None)
    assert not config.ledger_path.exists()


@pytest.mark.parametrize(
    ("field", "raw", "stored"),
    [
        ("status", "completed", "completed"),
        ("status", '"on_hold"', "on_hold"),
        ("priority", "high", "high"),
        ("description", "", ""),
        ("due", "2026-03-01T10:00:00-06:00", "2026-03-01T16:00:00Z"),
        ("due", "null", None),
        ("asset", "12", 12),
        ("location", "null", None),
    ],
)
def test_resolve_value_is_converted_to_the_fields_click_maint_value(
    config: Config, ledger: Ledger, field: str, raw: str, stored: object
) -> None:
    make_link(ledger)
    item = conflict(ledger, field=field)
    views.resolve_conflict(config, item.id, "value", raw)
    after = ledger.get_conflict(item.id)
    assert after is not None and (after.status, after.resolved_value) == ("resolved", stored)


@pytest.mark.parametrize(
    ("stream", "field", "raw", "reason"),
    [
        ("work_orders", "status", "7", "'7' is not a Click Maint status; expected one of: "),
        ("work_orders", "status", "EJECUCION", "is not a Click Maint status"),
        ("work_orders", "status", "null", "is not a Click Maint status"),
        ("work_orders", "priority", "urgent", "is not a Click Maint priority"),
        ("work_orders", "title", "null", "title is text, not null"),
        ("work_orders", "title", "  ", "title cannot be empty"),
        ("work_orders", "description", "null", "description is text, not null"),
        ("work_orders", "due", "2026-03-01", "is not an ISO-8601 timestamp with a zone"),
        ("work_orders", "due", "next week", "is not an ISO-8601 timestamp with a zone"),
        ("work_orders", "asset", "pump", "is not a Click Maint asset id"),
        ("work_orders", "type", "preventive", "type cannot be given a value"),
        ("requests", "status", "completed", "is not a request status"),
        ("requests", "priority", "CRITICA", "is not a Click Maint priority"),
    ],
)
def test_resolve_refuses_a_value_the_field_cannot_take(
    config: Config, ledger: Ledger, stream: str, field: str, raw: str, reason: str
) -> None:
    """Found in review: `--value 7` for a status was stored as the int 7, and every later
    cycle of the stream then failed with KeyError writing it to Click Maint."""
    make_link(ledger)
    item = ledger.record_conflict(
        stream=stream,
        cm_id="5",
        mt_id="1005",
        field=field,
        base="a",
        cm_value="b",
        mt_value="c",
        policy="manual",
        status="open",
    )
    with pytest.raises(ValueError, match="not resolved") as caught:
        views.resolve_conflict(config, item.id, "value", raw)
    message = str(caught.value)
    assert reason in message and "\n" not in message
    after = ledger.get_conflict(item.id)
    assert after is not None and (after.status, after.resolved_value) == ("open", None)
    link = ledger.get_link("work_orders", cm_id="5")
    assert link is not None and link.dirty is False


def test_resolve_refusal_is_one_line_and_a_failing_exit(tmp_path: Path, config: Config) -> None:
    import sys

    from click.testing import CliRunner

    from syncd.cli import cli
    from syncd.logging import configure_logging

    ledger = Ledger.open(config.ledger_path)
    try:
        make_link(ledger)
        item = conflict(ledger, field="status")
    finally:
        ledger.close()
    env = {
        "SYNCD_CONFIG": str(tmp_path / "config.toml"),
        "CREDENTIALS_DIRECTORY": str(tmp_path / "credentials"),
    }
    try:
        result = CliRunner().invoke(
            cli, ["conflicts", "resolve", str(item.id), "--take", "value", "--value", "7"], env=env
        )
    finally:
        configure_logging(level="debug", fmt="json", stream=sys.stderr, journal_prefix=False)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"syncd: conflict #{item.id} not resolved: status: '7' is not a Click Maint status; "
        "expected one of: open, on_hold, in_progress, completed, cancelled, waiting_for_parts"
    ]
