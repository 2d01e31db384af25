"""Read-only presentation of the ledger for the operator commands (`status`, `history`, ...).

Everything here opens the ledger read-only (WAL lets it read while the daemon writes), except
`resolve_conflict`, the one operator decision that is stored.  Results are plain JSON-able
dicts so `--json` output and the text tables come from the same data.
"""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import click

from .config import Config
from .ledger.db import LedgerError, schema_version
from .ledger.models import Run, iso_ms
from .ledger.store import Ledger

STREAM_NAMES = ("work_orders", "part_usage", "requests")
SIDE_NAMES = {"cm": "clickmaint", "mt": "mantenimiento"}
#: run states that show the stream is moving (partial = budget ran out, progress was kept)
PROGRESS_STATES = ("ok", "partial")
CELL_WIDTH = 60


# -- helpers ----------------------------------------------------------------------------------
def _now() -> datetime:
    return datetime.now(UTC)


def _parse(ts: str | None) -> datetime | None:
    """Ledger and server stamps are ISO 8601; a naive one is UTC (our own clock writes UTC)."""
    if not ts:
        return None
    try:
        moment = datetime.fromisoformat(ts)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _age(ts: str | None, now: datetime) -> float | None:
    moment = _parse(ts)
    return None if moment is None else round((now - moment).total_seconds(), 1)


def _human_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


@contextmanager
def _reading(config: Config) -> Iterator[Ledger | None]:
    """The ledger, read-only; None when syncd has never run (an empty answer, not an error).

    A ledger with pending migrations cannot be read by this code; that becomes a one-line
    error instead of a traceback (the daemon's next start upgrades it).
    """
    if not config.ledger_path.exists():
        yield None
        return
    try:
        ledger = Ledger.open(config.ledger_path, readonly=True)
    except LedgerError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        yield ledger
    finally:
        ledger.close()


def _run_dict(run: Run | None) -> dict[str, Any] | None:
    """A run row for people: the stored summary is flattened to counts + request count."""
    if run is None:
        return None
    summary = run.counts if isinstance(run.counts, dict) else {}
    inner = summary.get("counts")
    # the engine stores its whole cycle summary; older or hand-made rows hold flat counts
    counts = (
        inner
        if isinstance(inner, dict)
        else {k: v for k, v in summary.items() if isinstance(v, int | float) and k != "cm_requests"}
    )
    return {
        "run_id": run.run_id,
        "kind": run.kind,
        "status": run.status,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "counts": counts,
        "cm_requests": summary.get("cm_requests"),
        "error": run.error,
    }


def _cm_requests(run: Run) -> int:
    summary = run.counts if isinstance(run.counts, dict) else {}
    value = summary.get("cm_requests")
    return int(value) if isinstance(value, int | float) else 0


def _watermark(cursors: dict[str, str]) -> str | None:
    """The Click Maint watermark: `cm_watermark`, else the first `cm_*` cursor that is a time."""
    if "cm_watermark" in cursors:
        return cursors["cm_watermark"]
    for name, value in sorted(cursors.items()):
        if name.startswith("cm") and _parse(value) is not None:
            return value
    return None


# -- status -----------------------------------------------------------------------------------
def _stream_status(ledger: Ledger, config: Config, name: str, now: datetime) -> dict[str, Any]:
    settings = getattr(config.streams, name)
    interval = float(settings.interval_seconds)
    allowed = config.syncd.unhealthy_after_intervals * interval
    cursors = {c["name"]: c["value"] for c in ledger.cursors(name)}
    watermark = _watermark(cursors)
    last_ok = ledger.last_run(name, status="ok")
    last_partial = ledger.last_run(name, status="partial")
    last_failed = ledger.last_run(name, status="failed")
    progress = max(
        (r for r in (last_ok, last_partial) if r is not None),
        key=lambda r: r.ended_at or r.started_at,
        default=None,
    )
    # consecutive failures, newest first, ignoring the cycle that is running right now
    recent = [
        r
        for r in ledger.recent_runs(config.syncd.unhealthy_after_intervals + 5, stream=name)
        if r.status != "running"
    ]
    failures = 0
    for run in recent:
        if run.status != "failed":
            break
        failures += 1
    intents = ledger.live_intents(name)
    oldest = min((i.created_at for i in intents), default=None)

    problems: list[str] = []
    notes: list[str] = []
    progress_age = _age(progress.ended_at or progress.started_at, now) if progress else None
    if progress is None:
        problems.append(f"{name}: no successful cycle yet")
    elif progress_age is not None and progress_age > allowed:
        problems.append(
            f"{name}: no successful cycle for {_human_age(progress_age)} "
            f"(limit {_human_age(allowed)} = {config.syncd.unhealthy_after_intervals} intervals)"
        )
    if failures >= config.syncd.unhealthy_after_intervals:
        error = recent[0].error or "no error recorded"
        problems.append(f"{name}: last {failures} cycles failed: {error}")
    if progress is not None and progress.status == "partial":
        notes.append(f"{name}: last progress was partial (rate budget ran out)")
    open_conflicts = ledger.count_conflicts("open", name)
    if open_conflicts:
        notes.append(f"{name}: {open_conflicts} open conflict(s) wait for `syncd conflicts`")
    quarantined = ledger.count_quarantine(name)
    if quarantined:
        notes.append(f"{name}: {quarantined} record(s) in quarantine")
    guard = ledger.get_meta(f"{name}_delete_guard")
    if guard:
        reason = guard.get("reason") if isinstance(guard, dict) else guard
        notes.append(f"{name}: delete guard tripped: {reason}")
    untouched = ledger.get_meta("part_touch_unreliable") if name == "part_usage" else None
    if isinstance(untouched, dict):
        mode = config.clickmaint.part_history_sweep
        notes.append(
            f"{name}: Click Maint added transaction {untouched.get('transaction')} without "
            f"moving part {untouched.get('part')}'s updated_at; "
            + (
                "new transactions are found by a sweep of every part's history "
                f"({config.clickmaint.part_sweep_per_cycle} parts per cycle)"
                if mode != "off"
                else "clickmaint.part_history_sweep = off: such transactions wait until "
                "their part changes"
            )
        )
    return {
        "healthy": not problems,
        "problems": problems,
        "notes": notes,
        "interval_seconds": interval,
        "cursors": cursors,
        "watermark": watermark,
        # age of the Click Maint watermark: how far back the next scan starts (on a quiet
        # server it grows although nothing is pending)
        "lag_seconds": _age(watermark, now),
        "last_run": _run_dict(ledger.last_run(name)),
        "last_success": _run_dict(last_ok),
        "last_partial": _run_dict(last_partial),
        "last_progress_age_seconds": progress_age,
        "last_error": None
        if last_failed is None
        else {
            "run_id": last_failed.run_id,
            "at": last_failed.ended_at or last_failed.started_at,
            "error": last_failed.error,
        },
        "consecutive_failures": failures,
        "links": ledger.count_links(name),
        "pending_intents": len(intents),
        "oldest_intent_age_seconds": _age(oldest, now),
        "open_conflicts": open_conflicts,
        "quarantined": quarantined,
        "delete_guard": guard,
    }


def _budget(ledger: Ledger, config: Config, now: datetime) -> dict[str, Any]:
    """Configured budget + what finished runs spent in the last window.

    The live budget belongs to the daemon process; the runs' stored request counts are the
    only view another process has of it (a cycle still running is not counted yet).
    """
    cm = config.clickmaint
    window = float(cm.rate_window_seconds)
    used = 0
    for run in ledger.recent_runs(1000):
        age = _age(run.ended_at, now)
        if age is not None and age <= window:
            used += _cm_requests(run)
    caps = ledger.get_meta("cm_capabilities")
    return {
        "limit": cm.rate_limit,
        "window_seconds": window,
        "reserve": cm.rate_reserve,
        "ceiling": cm.rate_limit_ceiling,
        "server_rate_limit": caps.get("rate_limit") if isinstance(caps, dict) else None,
        "cm_requests_in_window": used,
    }


def status_report(config: Config) -> dict[str, Any]:
    """Health per enabled stream, for people (`render_status`) and monitoring (`--json`)."""
    now = _now()
    enabled = [n for n in STREAM_NAMES if getattr(config.streams, n).enabled]
    report: dict[str, Any] = {
        "healthy": False,
        "problems": [],
        "notes": [],
        "streams": {},
        "disabled": [n for n in STREAM_NAMES if n not in enabled],
        "ledger": str(config.ledger_path),
        "schema": [],
        "budget": None,
        "generated_at": iso_ms(now),
    }
    if not config.ledger_path.exists():
        report["problems"].append(
            f"no ledger at {config.ledger_path}: syncd has not run yet with this config"
        )
        return report
    try:
        ledger = Ledger.open(config.ledger_path, readonly=True)
    except (LedgerError, OSError, sqlite3.DatabaseError) as exc:
        detail = str(exc) if isinstance(exc, LedgerError) else f"unreadable: {exc}"
        report["problems"].append(f"ledger {config.ledger_path}: {detail}")
        return report
    try:
        report["schema"] = schema_version(ledger.db)
        for name in enabled:
            stream = _stream_status(ledger, config, name, now)
            report["streams"][name] = stream
            report["problems"].extend(stream["problems"])
            report["notes"].extend(stream["notes"])
        stored = ledger.get_meta("mapping_fingerprint")
        current = config.mapping_fingerprint()
        if not config.fingerprint_matches(stored):
            report["problems"].append(
                f"mapping configuration changed (fingerprint {stored} -> {current}); "
                "sync refuses to run until `syncd resync --rebaseline`"
            )
        report["budget"] = _budget(ledger, config, now)
    finally:
        ledger.close()
    report["healthy"] = not report["problems"]
    return report


def render_status(report: dict[str, Any]) -> str:
    """One row per stream, then the budget line, problems and notes."""
    rows = []
    for name, s in report["streams"].items():
        last = s["last_run"] or {}
        rows.append(
            {
                "stream": name,
                "health": "ok" if s["healthy"] else "UNHEALTHY",
                "last progress": _human_age(s["last_progress_age_seconds"]) + " ago"
                if s["last_progress_age_seconds"] is not None
                else "never",
                "last run": last.get("status", "-"),
                "watermark": _human_age(s["lag_seconds"]) + " ago"
                if s["lag_seconds"] is not None
                else "-",
                "links": s["links"],
                "intents": s["pending_intents"],
                "conflicts": s["open_conflicts"],
                "quarantine": s["quarantined"],
                "guard": "tripped" if s["delete_guard"] else "",
            }
        )
    lines = [f"syncd status: {'healthy' if report['healthy'] else 'UNHEALTHY'}"]
    lines.append(f"ledger: {report['ledger']}")
    if rows:
        lines += ["", render_table(rows, list(rows[0]))]
    if report.get("disabled"):
        lines.append(f"disabled: {', '.join(report['disabled'])}")
    budget = report.get("budget")
    if budget:
        lines.append(
            f"Click Maint budget: {budget['cm_requests_in_window']} requests in the last "
            f"{budget['window_seconds']:.0f}s by finished cycles (limit {budget['limit']}, "
            f"reserve {budget['reserve']})"
        )
    if report["problems"]:
        lines += ["", "problems:"] + [f"  - {p}" for p in report["problems"]]
    if report.get("notes"):
        lines += ["", "notes:"] + [f"  - {n}" for n in report["notes"]]
    return "\n".join(lines)


# -- tables -----------------------------------------------------------------------------------
def _cell(value: Any, width: int) -> str:
    if value is None:
        text = ""
    elif isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    else:
        text = str(value)
    text = " ".join(text.split()) if "\n" in text or "\t" in text else text
    return text if len(text) <= width else text[: width - 1] + "…"


def render_table(rows: list[dict[str, Any]], columns: list[str], width: int = CELL_WIDTH) -> str:
    """Aligned text columns; long cells are cut with "…" (use --json for the whole value)."""
    cells = [[_cell(row.get(c), width) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    out = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    for r in cells:
        out.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(out)


# -- history and links ------------------------------------------------------------------------
def _links_of(ledger: Ledger, side: str, record_id: str, stream: str | None) -> list[Any]:
    streams = [stream] if stream else list(STREAM_NAMES)
    key = "cm_id" if side == "cm" else "mt_id"
    found = []
    for name in streams:
        link = ledger.get_link(name, **{key: record_id})
        if link is not None:
            found.append(link)
    return found


def history_rows(
    config: Config, side: str, record_id: str, *, stream: str | None = None
) -> list[dict[str, Any]]:
    """Every action on one record, including those logged only under its partner's id."""
    with _reading(config) as ledger:
        if ledger is None:
            return []
        entries = {
            e.id: e
            for e in (
                ledger.history(cm_id=record_id) if side == "cm" else ledger.history(mt_id=record_id)
            )
        }
        for link in _links_of(ledger, side, record_id, stream):
            for e in ledger.history(cm_id=link.cm_id, mt_id=link.mt_id):
                if e.stream == link.stream:
                    entries[e.id] = e
    return [asdict(e) for _, e in sorted(entries.items()) if stream is None or e.stream == stream]


def transaction_rows(config: Config, tx_id: str) -> list[dict[str, Any]]:
    """Every decision on one Click Maint part transaction, and its fact row first: mirrored,
    not mirrored with the reason, waiting or quarantined."""
    with _reading(config) as ledger:
        if ledger is None:
            return []
        rows = [asdict(e) for e in ledger.transaction_history(tx_id)]
        fact = ledger.get_fact("part_usage", "cm", tx_id)
    if fact is not None:
        rows.insert(
            0,
            {
                "at": fact.updated_at,
                "run_id": "",
                "stream": "part_usage",
                "action": f"fact: {fact.state}",
                "cm_id": fact.cm_wo_id,
                "mt_id": fact.mt_ot_id,
                "detail": {
                    k: v
                    for k, v in (
                        ("tx", fact.source_id),
                        ("kind", fact.kind),
                        ("part", fact.part_number),
                        ("quantity", fact.quantity),
                        ("reason", fact.reason),
                        ("material_record", fact.target_id),
                    )
                    if v not in (None, "")
                },
            },
        )
    return rows


def link_details(config: Config, side: str, record_id: str) -> dict[str, Any] | None:
    """The link row plus what is pending on it: conflicts and quarantine of either id."""
    with _reading(config) as ledger:
        if ledger is None:
            return None
        links = _links_of(ledger, side, record_id, None)
        if not links:
            return None
        link = links[0]
        details = asdict(link)
        details["conflicts"] = [
            asdict(c) for c in ledger.open_conflicts_for(link.stream, link.cm_id).values()
        ]
        details["quarantine"] = [
            asdict(q)
            for q in (
                ledger.get_quarantined(link.stream, "cm", link.cm_id),
                ledger.get_quarantined(link.stream, "mt", link.mt_id),
            )
            if q is not None
        ]
        if len(links) > 1:
            details["also_linked_in"] = [other.stream for other in links[1:]]
    return details


def find_links(config: Config, text: str) -> list[dict[str, Any]]:
    with _reading(config) as ledger:
        links = [] if ledger is None else ledger.find_links(text)
    return [
        {
            "stream": link.stream,
            "cm_id": link.cm_id,
            "mt_id": link.mt_id,
            "state": link.state,
            "title": link.cm_seen.get("title") or link.mt_seen.get("title") or "",
            "updated_at": link.updated_at,
        }
        for link in links
    ]


# -- conflicts --------------------------------------------------------------------------------
def conflict_rows(
    config: Config, *, status: str | None = "open", stream: str | None = None
) -> list[dict[str, Any]]:
    with _reading(config) as ledger:
        if ledger is None:
            return []
        return [asdict(c) for c in ledger.list_conflicts(status=status, stream=stream)]


def conflict_details(config: Config, conflict_id: int) -> dict[str, Any] | None:
    with _reading(config) as ledger:
        conflict = None if ledger is None else ledger.get_conflict(conflict_id)
    if conflict is None:
        return None
    details = asdict(conflict)
    if conflict.status == "open":
        details["how_to_resolve"] = (
            f"syncd conflicts resolve {conflict.id} --take clickmaint|mantenimiento "
            "(or --take value --value JSON)"
        )
    return details


def quarantine_rows(config: Config, *, stream: str | None = None) -> list[dict[str, Any]]:
    with _reading(config) as ledger:
        if ledger is None:
            return []
        return [asdict(q) for q in ledger.list_quarantine(stream)]


def retry_quarantined(
    config: Config,
    *,
    stream: str | None = None,
    side: str | None = None,
    record_id: str | None = None,
) -> int:
    """Make quarantined records due now; returns how many."""
    if not config.ledger_path.exists():
        raise KeyError(f"no ledger at {config.ledger_path} (has syncd run yet?)")
    ledger = Ledger.open(config.ledger_path)
    try:
        return ledger.make_due(stream, side, record_id)
    finally:
        ledger.close()


def _operator() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no passwd entry (containers)
        return os.environ.get("USER") or f"uid:{os.getuid()}"


def _resolution_value(config: Config, ledger: Ledger, conflict_id: int, value: str | None) -> Any:
    """The operator's --value as the field's Click Maint value, or ValueError (one line)."""
    from .engine.values import operator_value

    conflict = ledger.get_conflict(conflict_id)
    if conflict is None:
        raise KeyError(f"no conflict #{conflict_id}")
    if conflict.status != "open":
        raise ValueError(f"conflict #{conflict_id} is {conflict.status}, not open")
    if value is None:
        raise ValueError("--take value needs --value")
    try:
        return operator_value(config, conflict.stream, conflict.field, value)
    except ValueError as exc:
        raise ValueError(f"conflict #{conflict_id} not resolved: {exc}") from None


def resolve_conflict(config: Config, conflict_id: int, take: str, value: str | None) -> str:
    """Store the operator's decision; the daemon's next cycle writes it to both sides."""
    if not config.ledger_path.exists():
        raise KeyError(f"no ledger at {config.ledger_path} (has syncd run yet?)")
    parsed: Any = None
    ledger = Ledger.open(config.ledger_path)
    try:
        if take == "value":
            parsed = _resolution_value(config, ledger, conflict_id, value)
        ledger.resolve_conflict(conflict_id, resolution=take, value=parsed, by=_operator())
    finally:
        ledger.close()
    what = f"value {json.dumps(parsed, ensure_ascii=False)}" if take == "value" else take
    return f"conflict #{conflict_id} resolved ({what}); the next sync cycle writes it"
