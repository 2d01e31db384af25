"""Rows of the ledger as plain dataclasses (the engine reads these; only the store writes SQL)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def iso_ms(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utcnow() -> str:
    """Our own clock, for our own bookkeeping only (never compared with a server's)."""
    return iso_ms(datetime.now(UTC))


@dataclass
class Link:
    stream: str
    cm_id: str
    mt_id: str
    #: the base snapshot, per side: each side's mapped fields as of the last agreement
    base_cm: dict[str, Any] = field(default_factory=dict)
    base_mt: dict[str, Any] = field(default_factory=dict)
    #: the latest snapshot observed on each side (the merge input when we do not re-read)
    cm_seen: dict[str, Any] = field(default_factory=dict)
    mt_seen: dict[str, Any] = field(default_factory=dict)
    cm_hash: str = ""
    mt_hash: str = ""
    cm_updated_at: str | None = None
    #: when we last read the OT (our clock): bounds when an observed change happened
    mt_read_at: str | None = None
    state: str = "active"
    mt_open: bool = True
    #: needs a merge pass even if neither side shows a new change (fresh link, resolved conflict)
    dirty: bool = False
    #: how many times the row had been marked dirty from outside the cycle when it was read
    #: (`Ledger.resolve_conflict`); a save of an older read keeps the row dirty
    dirty_seq: int = 0
    origin: str = ""
    #: the marker text of the create behind this link (kept in the created record)
    marker: str = ""
    created_at: str = ""
    updated_at: str = ""


@dataclass
class Intent:
    id: int
    token: str
    stream: str
    op: str
    source_side: str
    source_id: str
    target_side: str
    payload: dict[str, Any]
    state: str
    attempts: int
    result_id: str | None
    high_water: str | None
    last_error: str | None
    created_at: str
    updated_at: str


@dataclass
class Conflict:
    id: int
    stream: str
    cm_id: str
    mt_id: str
    field: str
    base: Any
    cm_value: Any
    mt_value: Any
    policy: str
    status: str
    resolution: str | None
    resolved_value: Any
    resolved_by: str | None
    resolved_at: str | None
    applied_at: str | None
    run_id: str | None
    created_at: str
    updated_at: str


@dataclass
class Quarantined:
    stream: str
    side: str
    record_id: str
    reason: str
    detail: str
    attempts: int
    first_seen: str
    last_seen: str
    next_retry_at: str


@dataclass
class HistoryEntry:
    id: int
    at: str
    run_id: str | None
    stream: str
    cm_id: str | None
    mt_id: str | None
    action: str
    detail: dict[str, Any]


@dataclass
class Run:
    run_id: str
    stream: str
    kind: str
    started_at: str
    ended_at: str | None
    status: str
    counts: dict[str, Any]
    error: str | None
    pid: int | None


@dataclass
class Fact:
    stream: str
    source_side: str
    source_id: str
    kind: str
    state: str
    part_id: str | None = None
    part_number: str | None = None
    quantity: str | None = None
    cm_wo_id: str | None = None
    mt_ot_id: str | None = None
    target_id: str | None = None
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    first_seen: str = ""
    updated_at: str = ""


#: `next_retry_at` of a quarantine entry that waits for `syncd quarantine retry`
OPERATOR_HOLD = "9999-12-31T00:00:00.000Z"
