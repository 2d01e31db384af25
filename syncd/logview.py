"""`syncd logs`: filter syncd's JSON log lines by level, stream, record, run and time.

Input is whatever the operator pipes in (`journalctl -u syncd -o cat`, a file), so anything
that is not one of our JSON objects is skipped silently, and the sd-daemon `<N>` priority
prefix that syncd writes when it is not under journald is stripped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
#: spellings other loggers (and structlog's `exception`) use for the same ranks
LEVEL_ALIASES = {"warn": "warning", "exception": "error", "fatal": "critical"}
_PREFIX = re.compile(r"^<\d+>")
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: keys that name a record; their values are compared with --record
RECORD_KEYS = ("cm_id", "mt_id", "record", "tx_id")
SIDE_KEYS = {"clickmaint": "cm_id", "cm": "cm_id", "mantenimiento": "mt_id", "mt": "mt_id"}
#: shown in fixed columns by render_line, not repeated as key=value
_COLUMNS = ("timestamp", "level", "stream", "event", "logger")
_MAX_VALUE = 300


def parse_when(text: str) -> datetime:
    """An instant: ISO 8601 (a zone-less one is UTC, as our logs are), or `30m` meaning ago."""
    raw = text.strip()
    match = _RELATIVE.match(raw)
    if match:
        seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
        return datetime.now(UTC) - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(
            f"cannot read {text!r} as a time: use ISO 8601 (2024-05-01T12:00:00Z, 2024-05-01) "
            "or an age such as 30s, 15m, 2h, 1d"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class LogFilter:
    level: str | None = None
    stream: str | None = None
    record: str | None = None
    run_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _rank(level: Any) -> int:
    name = str(level or "info").lower()
    return LEVELS.get(LEVEL_ALIASES.get(name, name), LEVELS["info"])


def _record_matcher(record: str) -> Any:
    """`clickmaint:12` matches cm_id only; a bare `12` matches any record-naming key.

    A bare id is also compared with every other string value and with numbers under keys
    ending in `id` (`ot_id`, `wo_id`), but not with counters such as `attempt=12`, which
    would drown the record's lines in unrelated ones.
    """
    side, sep, ident = record.partition(":")
    if sep and side.lower() in SIDE_KEYS and ident:
        key = SIDE_KEYS[side.lower()]
        return lambda event: str(event.get(key)) == ident and event.get(key) is not None

    def matches(event: dict[str, Any]) -> bool:
        for key, value in event.items():
            if value is None or isinstance(value, dict | list | bool):
                continue
            named = key in RECORD_KEYS or key == "id" or key.endswith("_id")
            if (named or isinstance(value, str)) and str(value) == record:
                return True
        return False

    return matches


def _when(event: dict[str, Any]) -> datetime | None:
    try:
        return parse_when(str(event["timestamp"]))
    except (KeyError, ValueError):
        return None


def filter_lines(lines: Iterable[str], flt: LogFilter) -> Iterator[dict[str, Any]]:
    """Parsed events that pass every filter given; lines that are not our JSON are skipped."""
    minimum = _rank(flt.level) if flt.level else None
    record = _record_matcher(flt.record) if flt.record else None
    for line in lines:
        text = _PREFIX.sub("", line.strip(), count=1)
        if not text.startswith("{"):
            continue
        try:
            event = json.loads(text)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        if minimum is not None and _rank(event.get("level")) < minimum:
            continue
        if flt.stream and event.get("stream") != flt.stream:
            continue
        if flt.run_id and event.get("run_id") != flt.run_id:
            continue
        if record is not None and not record(event):
            continue
        if flt.since or flt.until:
            moment = _when(event)
            if moment is None:
                continue  # cannot be placed in the window
            if flt.since and moment < flt.since:
                continue
            if flt.until and moment > flt.until:
                continue
        yield event


def _value(value: Any) -> str:
    if isinstance(value, str):
        text = value if value and not any(c.isspace() for c in value) else json.dumps(value)
    else:
        text = json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 1] + "…"


def render_line(event: dict[str, Any]) -> str:
    """`2024-05-01 12:00:03 INFO    work_orders  cycle.end  status=ok ...` (UTC; --json for all)."""
    moment = _when(event)
    if moment is not None:
        when = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    else:
        when = str(event.get("timestamp", "-"))
    level = str(event.get("level", "-")).upper()
    stream = str(event.get("stream") or "-")
    extras = " ".join(f"{k}={_value(v)}" for k, v in event.items() if k not in _COLUMNS)
    return f"{when} {level:<7} {stream:<12} {event.get('event', '')}  {extras}".rstrip()
