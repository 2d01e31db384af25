"""Ids the mantenimiento probe walked past while they were missing.

mantenimiento has no list endpoint: new OTs are found by probing ids above a high-water id.
Ids are handed out before their row is committed, so OT n can become visible after OT n+1
(two users saving at once, or one slow transaction).  A probe that missed n and then found
n+1 moves the high-water id past n, and n would never be probed again.  Every id passed over
is therefore kept here and probed again each cycle for `RECHECK_FOR`; an id still missing
then is a deleted OT (or one never committed), and is dropped.

Pure bookkeeping over a JSON text (kept in the ledger's cursors table); no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta

from .mapping import MappingError, parse_iso

#: how long a passed-over id stays worth probing; commits land within seconds, so this is
#: generous, while a deleted OT costs one request per cycle for at most this long
RECHECK_FOR = timedelta(minutes=15)


def load(text: str | None) -> dict[int, str]:
    """{id: when it was first passed over (ISO, our clock)} from the stored text."""
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except ValueError:
        return {}  # a damaged value costs at most a missed recheck, never a crash
    return {int(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


def dump(gaps: dict[int, str]) -> str:
    return json.dumps({str(k): v for k, v in sorted(gaps.items())}, separators=(",", ":"))


def add(gaps: dict[int, str], ids: Iterable[int], now: str) -> dict[int, str]:
    """Remember newly passed-over ids; an id already known keeps its first time."""
    merged = dict(gaps)
    for ot_id in ids:
        merged.setdefault(ot_id, now)
    return merged


def split_due(gaps: dict[int, str], now: datetime) -> tuple[list[int], list[int]]:
    """(ids still worth probing, ids whose recheck period is over)."""
    due, expired = [], []
    for ot_id, since in sorted(gaps.items()):
        try:
            first = parse_iso(since, "probe gap")
        except MappingError:
            first = None
        (due if first is not None and now - first < RECHECK_FOR else expired).append(ot_id)
    return due, expired


def passed_over(misses: Iterable[int], *, found: int, floor: int) -> list[int]:
    """The misses below a found id that are worth rechecking: those above `floor`, the
    high-water id of the previous cycles (ids at or below it were probed before).  A
    first-ever probe has no such floor; the caller keeps only the gaps near the final top
    once the probe ends, so a long history of deleted OTs is not rechecked."""
    return [ot_id for ot_id in misses if floor < ot_id < found]


def near_top(gaps: dict[int, str], *, top: int, window: int) -> dict[int, str]:
    """After a first-ever probe, which walked the whole history: its gaps are deleted OTs,
    except perhaps those within `window` ids of the top, where commits may still land."""
    return {k: v for k, v in gaps.items() if k > top - window}


def without(gaps: dict[int, str], ids: Iterable[int]) -> dict[int, str]:
    gone = set(ids)
    return {k: v for k, v in gaps.items() if k not in gone}
