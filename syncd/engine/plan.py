"""Pure decisions that do not need the network: scope, record origin, the mass-delete guard.

`run.py` asks these questions about each record and carries out the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from ..config import DeletesSection, ScopeSection
from .mapping import iso_z, parse_iso
from .records import WORK_ORDER, Marker, Snapshot


class Origin(Enum):
    NEW = "new"  # a record nobody has mirrored yet
    OURS = "ours"  # created by syncd from the other side (carries our marker)


def origin_of(
    snapshot: Snapshot, *, this_side: str, kind: str = WORK_ORDER
) -> tuple[Origin, Marker | None]:
    """Did syncd create this record?  Our marker names the *other* side's record."""
    raw = snapshot.get("_marker")
    if not raw:
        return Origin.NEW, None
    marker = Marker(**raw)
    if marker.source_side == this_side:
        return Origin.NEW, None  # a marker pointing at ourselves is a copy-paste, not ours
    if marker.kind != kind:
        # e.g. a work order Click Maint made from a request, description (and marker) copied
        return Origin.NEW, None
    return Origin.OURS, marker


@dataclass(frozen=True)
class ScopeDecision:
    in_scope: bool
    reason: str = ""
    #: when a record out of scope for now should be looked at again (ISO, our clock)
    recheck_at: str | None = None


def cm_scope(snapshot: Snapshot, scope: ScopeSection) -> ScopeDecision:
    if snapshot.get("type") not in scope.cm_types:
        return ScopeDecision(False, f"type {snapshot.get('type')} not in scope.cm_types")
    if scope.not_before and (snapshot.get("_updated_at") or "") < (
        iso_z(parse_iso(scope.not_before, "scope.not_before")) or ""
    ):
        return ScopeDecision(False, "last changed before scope.not_before")
    return ScopeDecision(True)


def mt_scope(snapshot: Snapshot, scope: ScopeSection, now: datetime) -> ScopeDecision:
    tipo = snapshot.get("type")
    if tipo not in scope.mt_tipos:
        return ScopeDecision(False, f"tipo {tipo} not in scope.mt_tipos")
    if scope.mt_ubicaciones and snapshot.get("location") not in scope.mt_ubicaciones:
        return ScopeDecision(False, "ubicacion not in scope.mt_ubicaciones")
    if tipo == "PREVENTIVA" and scope.preventive_horizon_days and snapshot.get("_start"):
        start = parse_iso(snapshot["_start"], "inicio")
        horizon = timedelta(days=scope.preventive_horizon_days)
        if start is not None and start > now + horizon:
            return ScopeDecision(
                False,
                f"preventive OT starts beyond the {scope.preventive_horizon_days}-day horizon",
                recheck_at=iso_z(start - horizon),
            )
    if scope.not_before and snapshot.get("_start"):
        # mantenimiento exposes no modification time; the planned start is the closest proxy
        not_before = parse_iso(scope.not_before, "scope.not_before")
        start = parse_iso(snapshot["_start"], "inicio")
        if (
            start
            and not_before
            and start < not_before
            and snapshot.get("status")
            in (
                "REALIZADA",
                "CANCELADA",
            )
        ):
            return ScopeDecision(False, "closed and planned before scope.not_before")
    return ScopeDecision(True)


@dataclass(frozen=True)
class GuardVerdict:
    allowed: bool
    reason: str = ""


def deletion_guard(
    missing: int, total: int, reads_ok: int, settings: DeletesSection
) -> GuardVerdict:
    """Refuse to act on deletions that look like an outage or a misconfiguration.

    An empty or failing listing, a wrong base URL or a permission change all look like "every
    record vanished"; acting on that would cancel everything on the other side.
    """
    if missing == 0:
        return GuardVerdict(True)
    if missing > settings.max_count:
        return GuardVerdict(
            False,
            f"{missing} records vanished in one pass "
            f"(limit deletes.max_count={settings.max_count})",
        )
    if total >= 10 and missing / total > settings.max_fraction:
        return GuardVerdict(
            False,
            f"{missing} of {total} linked records vanished (limit deletes.max_fraction="
            f"{settings.max_fraction})",
        )
    if reads_ok == 0 and missing > 1:
        return GuardVerdict(False, "no record could be read in the same pass; not trusting 404s")
    return GuardVerdict(True)
