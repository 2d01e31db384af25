"""Canonical records: neutral field names, JSON-able values, one snapshot per side.

A snapshot is what one side holds for a record, expressed with the shared field names but in
that side's own vocabulary (a Click Maint status *name*, a mantenimiento estado *code*).  Keeping
per-side values (instead of forcing one neutral vocabulary) is what lets lossy mappings work:
Click Maint "open" and "on_hold" both become PROGRAMADA/ESPERA-ish values on the other side, and
only a change *on a side* relative to that side's base is ever propagated.

Fields starting with `_` are auxiliary (read, never merged): e.g. `_updated_at`, `_marker`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

Snapshot = dict[str, Any]


@dataclass(frozen=True)
class FieldSpec:
    """A merged field and whether each side offers a way to write it after creation."""

    name: str
    cm_writable: bool
    mt_writable: bool
    why_one_way: str = ""


#: Work-order fields that are merged.  docs/mapping.md explains every entry, including the ones
#: deliberately not mapped.
WORK_ORDER_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("title", cm_writable=True, mt_writable=True),
    FieldSpec("description", cm_writable=True, mt_writable=True),
    FieldSpec("status", cm_writable=True, mt_writable=True),
    FieldSpec("due", cm_writable=True, mt_writable=True),
    FieldSpec(
        "priority",
        cm_writable=True,
        mt_writable=False,
        why_one_way="mantenimiento has no endpoint that changes prioridad after creation",
    ),
    FieldSpec(
        "asset",
        cm_writable=True,
        mt_writable=False,
        why_one_way="mantenimiento has no documented endpoint that changes an OT's activos",
    ),
    FieldSpec(
        "location",
        cm_writable=True,
        mt_writable=False,
        why_one_way="Click Maint never shows a work order's location, so there is nothing to send",
    ),
    FieldSpec(
        "type",
        cm_writable=False,
        mt_writable=False,
        why_one_way="type/tipo is fixed at creation on both servers",
    ),
)

FIELDS_BY_NAME = {f.name: f for f in WORK_ORDER_FIELDS}


def merged_view(snapshot: Snapshot, fields: tuple[FieldSpec, ...] = WORK_ORDER_FIELDS) -> Snapshot:
    return {f.name: snapshot.get(f.name) for f in fields}


def snapshot_hash(snapshot: Snapshot, fields: tuple[FieldSpec, ...] = WORK_ORDER_FIELDS) -> str:
    blob = json.dumps(merged_view(snapshot, fields), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# -- outbox markers -------------------------------------------------------------------------
# A create carries a marker so that, after a crash, the record can be found and adopted
# instead of created twice; the marker also names the source record, so even a lost ledger can
# be re-linked.  Format: ⟦syncd cm:123 t:ab12cd34ef56⟧ (side and id of the *source* record);
# the requests stream writes ⟦syncd req cm:310 t:…⟧, because Click Maint copies a request's
# description into the work order it becomes, and that copy must not pass for a work order
# syncd created from OT 310.

_MARKER = re.compile(r"\s*⟦syncd (?:(req) )?(cm|mt):(\d+) t:([0-9a-f]{6,32})⟧")
WORK_ORDER = "wo"
REQUEST = "req"


@dataclass(frozen=True)
class Marker:
    source_side: str
    source_id: str
    token: str
    #: which kind of record the source is: WORK_ORDER (an OT / work order) or REQUEST
    kind: str = WORK_ORDER

    def text(self) -> str:
        tag = "" if self.kind == WORK_ORDER else f"{self.kind} "
        return f"⟦syncd {tag}{self.source_side}:{self.source_id} t:{self.token}⟧"


def find_marker(text: str | None) -> Marker | None:
    if not text:
        return None
    match = _MARKER.search(text)
    if match is None:
        return None
    kind, side, source_id, token = match.groups()
    return Marker(side, source_id, token, kind or WORK_ORDER)


def strip_marker(text: str) -> str:
    return _MARKER.sub("", text).rstrip()
