"""The `work_orders` stream: Click Maint work orders ⇄ mantenimiento OTs.

One cycle, in order (each step commits per record, so a stop or crash between records loses
nothing):

1. resume the outbox: every create that may have happened is adopted (found by its marker)
   before anything could create it again;
2. read Click Maint changes since the watermark (`cursor.py`), merging each with a fresh read of
   its OT; new work orders are created in mantenimiento through the outbox;
3. discover new OTs by probing ids above the high-water id; new OTs are created in Click Maint;
4. re-read linked OTs (open ones every cycle, closed ones every N cycles) and merge changes
   with the last Click Maint snapshot (no extra Click Maint read);
5. links marked dirty (fresh links, resolved conflicts) and quarantined records that are due;
6. now and then, a full id reconciliation of Click Maint to find deleted work orders.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from ..faultpoints import crashpoint
from ..ledger.models import Intent, Link, utcnow
from ..systems.clickmaint import Capabilities
from ..systems.errors import (
    BadResponse,
    BudgetExhausted,
    NotFound,
    RateLimited,
    ServerError,
    Unavailable,
)
from . import probe_gaps
from .fingerprint import check_mapping_fingerprint
from .mapping import MappingError, WorkOrderMapping, iso_z, parse_iso, with_marker
from .merge import (
    MANTENIMIENTO,
    Resolution,
    advance_base,
    base_after_write,
    edited_during_write,
    merge,
)
from .plan import Origin, cm_scope, deletion_guard, mt_scope, origin_of
from .records import (
    WORK_ORDER_FIELDS,
    Marker,
    Snapshot,
    find_marker,
    merged_view,
    snapshot_hash,
)
from .run import (
    FATAL_REMOTE,
    RECORD_ERRORS,
    CycleReport,
    Runtime,
    Stream,
    reason_of,
)

CLOSED_ESTADOS = ("REALIZADA", "CANCELADA")


#: cursor name prefix of an interrupted resync's Click Maint checkpoint
RESYNC_PROGRESS = "resync_cm_progress"


class WorkOrderSync(Stream):
    name = "work_orders"

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self.mapping = WorkOrderMapping(rt.config)
        self._touched: set[str] = set()
        #: partners found gone this cycle, by side, keyed by work order id (see _partner_missing)
        self._vanished: dict[str, dict[str, Link]] = {"cm": {}, "mt": {}}
        #: records read successfully this cycle, by side (the guard's "the server answers")
        self._reads_ok: dict[str, int] = {"cm": 0, "mt": 0}
        self._mt_reads = rt.mt_reads  # mt_id -> wall time of the last read (shared by cycles)
        self._failures = 0
        self._retrying = False
        self._prefer: str | None = None
        self._resync = False
        self._cm_start = 0

    # ======================================================================================
    # cycle
    # ======================================================================================
    def cycle_body(
        self,
        report: CycleReport,
        *,
        full: bool = False,
        since: str | None = None,
        prefer: str | None = None,
        rebaseline: bool = False,
        include_closed: bool = False,
    ) -> None:
        """One cycle; with `full`/`since`/`prefer` it is the manual resync (DESIGN §4).

        A resync re-reads more than a cycle (everything, or Click Maint since a date, every
        linked OT including closed ones) and compares every pair even without a detected
        change; `prefer` settles any difference found in favour of one side.  Its Click Maint
        and discovery progress is checkpointed separately, so an interrupted resync continues
        where it stopped, and it never deletes anything.
        """
        self._touched = set()
        self._vanished = {"cm": {}, "mt": {}}
        self._reads_ok = {"cm": 0, "mt": 0}
        self._prefer = prefer
        self._resync = full or since is not None or prefer is not None
        check_mapping_fingerprint(self, rebaseline=rebaseline)
        cycle_no = int(self.ledger.get_meta("wo_cycle_no", 0) or 0) + 1
        if not self.rt.dry_run:
            self.ledger.set_meta("wo_cycle_no", cycle_no)
        self._resume_outbox()
        caps = self.cm_capabilities()
        if self._ledger_is_new() and not self.rt.dry_run:
            self._relink(caps)
        self._scan_clickmaint(caps, full=full, since=since)
        self._discover_mantenimiento(full=full)
        mt_cfg = self.config.mantenimiento
        include_closed = (
            self._resync or include_closed or cycle_no % mt_cfg.closed_reread_every == 0
        )
        if include_closed or cycle_no % mt_cfg.open_reread_every == 0:
            self._reread_mantenimiento(include_closed=include_closed)
        self._process_dirty()
        self._retry_quarantine()
        if not self._resync:
            self._reconcile_deletions(force=False)
        self._settle_vanished()

    def _ledger_is_new(self) -> bool:
        return (
            self.ledger.count_links(self.name) == 0
            and self.ledger.get_cursor(self.name, "cm_watermark") is None
            and self.ledger.get_cursor(self.name, "mt_high_water") is None
        )

    def _relink(self, caps: Capabilities) -> None:
        """A new (or lost, or replaced) ledger: first link what syncd created earlier.

        Every record syncd ever created still carries the marker naming its source (in the
        OT's notas, or the work order's description).  Before anything can be created, both
        sides are read once and every marked record is linked to its source, so a lost ledger
        costs one extra full read, never a duplicate.  On a genuinely first run this pass finds
        nothing and only costs the reads.
        """
        assert self.report is not None
        marked_ots: dict[str, dict[str, Any]] = {}  # cm id -> the OT created from it
        misses, ot_id = 0, self.config.mantenimiento.first_ot_id
        while misses < self.config.mantenimiento.probe_gap:
            self.rt.check_stop()
            try:
                ot = self.mt.get_ot(ot_id)
            except RECORD_ERRORS:  # exists but unreadable: the normal pass quarantines it
                misses, ot_id = 0, ot_id + 1
                continue
            if ot is None:
                misses += 1
            else:
                misses = 0
                marker = _marker_of(self.mapping, ot, "mt")
                if marker is not None and marker.source_side == "cm":
                    marked_ots[marker.source_id] = ot
            ot_id += 1
        scan = self.clickmaint_scan("/work_orders", None, caps=caps, lookback=0)
        for batch in scan:
            for raw in batch.items:
                self.rt.check_stop()
                cm_id = str(raw.get("id"))
                marker = _marker_of(self.mapping, raw, "cm")
                try:
                    if marker is not None and marker.source_side == "mt":
                        if self.ledger.get_link(self.name, mt_id=marker.source_id) is None:
                            self._claim_ours(marker, cm=self.mapping.from_cm(raw))
                    elif (
                        cm_id in marked_ots and self.ledger.get_link(self.name, cm_id=cm_id) is None
                    ):
                        ot = marked_ots[cm_id]
                        marker = _marker_of(self.mapping, ot, "mt")
                        assert marker is not None
                        intent = self.ledger.add_intent(
                            stream=self.name,
                            op="create",
                            source_side="cm",
                            source_id=cm_id,
                            target_side="mt",
                            token=marker.token,
                        )
                        self._adopt(intent, cm_raw=raw, mt_raw=ot)
                except RECORD_ERRORS as exc:
                    self._record_failure("cm", cm_id, exc)
        self.report.counts["relink_pages"] += scan.report.pages

    def _policy(self, field: str) -> str:
        if self._prefer:
            return self._prefer
        conflicts = self.config.conflicts
        return conflicts.fields.get(field, conflicts.default_policy)

    # ======================================================================================
    # 1. outbox
    # ======================================================================================
    def _resume_outbox(self) -> None:
        self.resume_outbox(self._resume)

    def _resume(self, intent: Intent) -> None:
        if intent.op != "create":
            return
        if intent.target_side == "mt":
            self._resume_mt_create(intent)
        else:
            self._resume_cm_create(intent)

    def _resume_mt_create(self, intent: Intent) -> None:
        cm_snapshot: Snapshot = intent.payload.get("snapshot") or {}
        if intent.state != "pending":
            found = self._find_mt_by_token(intent)
            if found is not None:
                self._adopt(intent, cm_id=intent.source_id, mt_raw=found, cm=cm_snapshot)
                return
        if intent.state == "unknown" and intent.attempts >= 3:
            self.ledger.mark_intent(intent.token, "abandoned", error="not found after 3 attempts")
            self.quarantine(
                "cm", intent.source_id, "create in mantenimiento could not be confirmed"
            )
            return
        if self.ledger.get_link(self.name, cm_id=intent.source_id) is None and cm_snapshot:
            self._create_in_mt(cm_snapshot, intent)

    def _resume_cm_create(self, intent: Intent) -> None:
        mt_snapshot: Snapshot = intent.payload.get("snapshot") or {}
        if intent.state != "pending":
            found = self._find_cm_by_token(intent)
            if found is not None:
                self._adopt(intent, mt_id=intent.source_id, cm_raw=found, mt=mt_snapshot)
                return
        if intent.state == "unknown" and intent.attempts >= 3:
            self.ledger.mark_intent(intent.token, "abandoned", error="not found after 3 attempts")
            self.quarantine("mt", intent.source_id, "create in Click Maint could not be confirmed")
            return
        if self.ledger.get_link(self.name, mt_id=intent.source_id) is None and mt_snapshot:
            self._create_in_cm(mt_snapshot, intent)

    def _find_mt_by_token(self, intent: Intent) -> dict[str, Any] | None:
        """Search by the marker text, then probe ids created after the intent was journaled.

        An OT created from an aviso carries no marker: the aviso itself is the key (it has at
        most one OT), so its current OT is what the create produced.
        """
        aviso_id = intent.payload.get("aviso_id")
        if aviso_id is not None:
            ot_id = self._aviso_ot(int(aviso_id))
            return self.mt.get_ot(ot_id) if ot_id is not None else None
        for hit in self.mt.search_ots(intent.token):
            ot = self.mt.get_ot(int(hit["id"]))
            if ot and intent.token in str(ot.get("descripcion") or ""):
                return ot
        start = int(intent.high_water or 0) + 1
        misses = 0
        ot_id = start
        while misses < self.config.mantenimiento.probe_gap:
            if self.ledger.get_link(self.name, mt_id=str(ot_id)) is not None:
                # linked to another record: not the lost create, and no request needed (in a
                # busy plant most ids above an old high-water mark are linked already)
                misses, ot_id = 0, ot_id + 1
                continue
            ot = self.mt.get_ot(ot_id)
            if ot is None:
                misses += 1
            else:
                misses = 0
                if intent.token in str(ot.get("descripcion") or ""):
                    return ot
            ot_id += 1
        return None

    def _find_cm_by_token(self, intent: Intent) -> dict[str, Any] | None:
        return self.find_in_clickmaint("/work_orders", intent.token)

    def _adopt(
        self,
        intent: Intent,
        *,
        cm_id: str | None = None,
        mt_id: str | None = None,
        cm_raw: dict[str, Any] | None = None,
        mt_raw: dict[str, Any] | None = None,
        cm: Snapshot | None = None,
        mt: Snapshot | None = None,
    ) -> None:
        """A create that did happen: link it (never create it again)."""
        cm_snap = self.mapping.from_cm(cm_raw) if cm_raw is not None else (cm or {})
        mt_snap = self.mapping.from_mt(mt_raw) if mt_raw is not None else (mt or {})
        cm_key = str(cm_snap["_id"]) if cm_raw is not None else str(cm_id)
        mt_key = str(mt_snap["_id"]) if mt_raw is not None else str(mt_id)
        if not cm_snap:  # an intent journaled without a snapshot: read the record itself
            cm_snap = self.mapping.from_cm(self.cm.get_work_order(int(cm_key)))
        if not mt_snap:
            ot = self.mt.get_ot(int(mt_key))
            if ot is None:
                return
            mt_snap = self.mapping.from_mt(ot)
        if self.rt.dry_run:
            self.plan("adopt", "link", f"cm:{cm_key}", mt=mt_key)
            return
        if self._taken(intent, cm_key, mt_key):
            return
        target_is_mt = intent.target_side == "mt"
        link = self._new_link(
            cm_snap,
            mt_snap,
            ids=(cm_key, mt_key),
            still_to_send=intent.source_side,
            origin=f"adopted-{intent.source_side}",
            marker=Marker(intent.source_side, intent.source_id, intent.token).text(),
        )
        with self.ledger.transaction():
            self.ledger.save_link(link)
            self.ledger.mark_intent(
                intent.token, "done", result_id=mt_key if target_is_mt else cm_key
            )
            self.history("adopted", cm_id=cm_key, mt_id=mt_key, outbox=intent.token)
        assert self.report is not None
        self.report.counts["adopted"] += 1
        self.log.info("record.adopted", cm_id=cm_key, mt_id=mt_key, outbox=intent.token)

    def _new_link(
        self,
        cm: Snapshot,
        mt: Snapshot,
        *,
        still_to_send: str | None,
        origin: str,
        marker: str = "",
        ids: tuple[str, str] | None = None,
    ) -> Link:
        """A new link, dirty so that it is merged at once.  `still_to_send` names the side
        whose values have yet to reach the other: its base starts empty, so every one of its
        values is a change (None: the two records start agreed)."""
        cm_id, mt_id = ids or (str(cm["_id"]), str(mt["_id"]))
        return Link(
            stream=self.name,
            cm_id=cm_id,
            mt_id=mt_id,
            base_cm={} if still_to_send == "cm" else merged_view(cm),
            base_mt={} if still_to_send == "mt" else merged_view(mt),
            cm_seen=cm,
            mt_seen=mt,
            cm_hash=snapshot_hash(cm),
            mt_hash=snapshot_hash(mt),
            cm_updated_at=cm.get("_updated_at"),
            mt_open=mt.get("status") not in CLOSED_ESTADOS,
            dirty=True,
            origin=origin,
            marker=marker,
        )

    def _taken(self, intent: Intent, cm_key: str, mt_key: str) -> bool:
        """Either record already in another link: this create cannot be adopted by linking.

        It must not crash the cycle (the same intent would crash every cycle after it), and
        it must not be sent again (its result may be the record the other link holds, so a
        second create could be a duplicate): the intent is abandoned and the source record
        quarantined for a person to look at, with both ids in its history.
        """
        by_cm = self.ledger.get_link(self.name, cm_id=cm_key)
        by_mt = self.ledger.get_link(self.name, mt_id=mt_key)
        if by_cm is None and by_mt is None:
            return False
        if by_cm is not None and by_cm.mt_id == mt_key:
            done = mt_key if intent.target_side == "mt" else cm_key
            self.ledger.mark_intent(intent.token, "done", result_id=done)  # already linked
            return True
        other = by_mt or by_cm
        assert other is not None
        reason = (
            f"its create may have produced {'OT' if intent.target_side == 'mt' else 'work order'}"
            f" {mt_key if intent.target_side == 'mt' else cm_key}, which is already linked "
            f"(cm {other.cm_id} <-> mt {other.mt_id}): check for a duplicate"
        )
        with self.ledger.transaction():
            self.ledger.mark_intent(intent.token, "abandoned", error=reason)
            self.history(
                "adopt_refused",
                cm_id=cm_key,
                mt_id=mt_key,
                outbox=intent.token,
                linked_cm=other.cm_id,
                linked_mt=other.mt_id,
            )
        self.quarantine(intent.source_side, intent.source_id, reason, hold=True)
        return True

    # ======================================================================================
    # 2. Click Maint changes
    # ======================================================================================
    def _scan_clickmaint(self, caps: Capabilities, *, full: bool, since: str | None) -> None:
        resync = full or since is not None
        start = iso_z(parse_iso(since, "--since")) if since and not full else None
        # one checkpoint per resync question: a --full run must not resume an interrupted
        # --since run (it would skip everything older), nor one --since run another's
        progress_key = f"{RESYNC_PROGRESS} " + (f"since {start}" if start else "full")
        if resync:
            # continue an interrupted resync, else start at --since (or the beginning)
            resumed = self.ledger.get_cursor(self.name, progress_key)
            watermark = resumed or start
        else:
            watermark = self.ledger.get_cursor(self.name, "cm_watermark")
        scan = self.clickmaint_scan(
            "/work_orders", watermark, caps=caps, before_fetch=self._cap_requests
        )
        assert self.report is not None
        for batch in scan:
            for raw in batch.items:
                self.rt.check_stop()
                self._on_cm(raw)
            crashpoint("scan.batch")
            if batch.checkpoint and not self.rt.dry_run:
                self.ledger.set_cursor(
                    self.name, progress_key if resync else "cm_watermark", batch.checkpoint
                )
            self.rt.progress("clickmaint pages", scan.report.pages, None)
        self.report.counts["cm_pages"] += scan.report.pages
        if resync and scan.report.complete and not self.rt.dry_run:
            for row in self.ledger.cursors(self.name):
                # a complete --full pass answers every interrupted resync's question too
                if row["name"] == progress_key or (
                    start is None and row["name"].startswith(RESYNC_PROGRESS)
                ):
                    self.ledger.delete_cursor(self.name, row["name"])
            final = scan.report.final_watermark
            current = self.ledger.get_cursor(self.name, "cm_watermark")
            if final and (current is None or final > current):
                self.ledger.set_cursor(self.name, "cm_watermark", final)
        if not scan.report.stable:
            self.report.notes.append(
                f"Click Maint listing shifted during the scan ({scan.report.strategy}); "
                "the watermark was kept and the window is read again next cycle"
            )
            if any("ignored" in n for n in scan.report.notes) and not self.rt.dry_run:
                self.ledger.set_meta("cm_capabilities", None)  # re-detect next cycle

    def _cap_requests(self) -> None:
        cap = self.settings.max_requests_per_cycle
        assert self.report is not None
        if cap is not None and self.rt.cm_request_count() - self._cm_start >= cap:
            raise BudgetExhausted("clickmaint", 0.0)

    def run(self, kind: str = "cycle", **options: Any) -> CycleReport:
        self._cm_start = self.rt.cm_request_count()
        return super().run(kind, **options)

    def _on_cm(self, raw: dict[str, Any]) -> None:
        """One work order from the scan (or a quarantine retry).

        Duplicates are expected (the scan re-reads a lookback window); a record is skipped only
        if both its `updated_at` and its content hash are what the ledger holds: Click Maint
        stamps whole seconds, so an edit in the same second as our own write keeps the stamp.
        """
        assert self.report is not None
        cm_id = str(raw.get("id"))
        self._reads_ok["cm"] += 1
        link = self.ledger.get_link(self.name, cm_id=cm_id)
        stamp = _norm_ts(raw.get("updated_at"))
        try:
            cm = self.mapping.from_cm(raw)
        except MappingError as exc:
            held = self.ledger.get_quarantined(self.name, "cm", cm_id)
            if held is not None and held.reason == str(exc) and not self._retrying:
                self.report.counts["skipped_quarantined"] += 1
                return
            self.quarantine("cm", cm_id, str(exc))
            return
        if (
            link is not None
            and not link.dirty
            and link.cm_updated_at == stamp
            and link.cm_hash == snapshot_hash(cm)
        ):
            self.report.counts["unchanged"] += 1
            return
        if self.on_hold("cm", cm_id):
            self.report.counts["skipped_quarantined"] += 1
            return
        self.release("cm", cm_id)
        try:
            if link is None:
                self._on_unlinked_cm(cm)
            elif link.state != "active":
                self.report.counts["partner_deleted"] += 1
            elif link.cm_hash == snapshot_hash(cm) and not link.dirty and not self._resync:
                # same content, newer stamp (our own write echoed, or a no-op save)
                if not self.rt.dry_run:
                    link.cm_updated_at = cm["_updated_at"]
                    link.cm_seen = cm
                    self.ledger.save_link(link)
                self.report.counts["echo"] += 1
            else:
                previous_read = self._previous_read(link)
                mt_raw = self.mt.get_ot(int(link.mt_id))
                self._mt_reads[link.mt_id] = time.time()
                if mt_raw is None:
                    self._partner_missing(link, "mt")
                    return
                self._reads_ok["mt"] += 1
                mt = self._read_mt(mt_raw)
                if mt is None:
                    # the OT is quarantined, and the scan's watermark moves on past this
                    # edit: keep it on the link (dirty), so the pair is merged with *this*
                    # work order when the OT reads cleanly again
                    self._keep_for_later(link, cm)
                    return
                self._sync_pair(link, cm, mt, mt_previous_read=previous_read)
            self._failures = 0
        except FATAL_REMOTE:
            raise
        except RECORD_ERRORS as exc:
            self._record_failure("cm", cm_id, exc)

    def _on_unlinked_cm(self, cm: Snapshot) -> None:
        assert self.report is not None
        origin, marker = origin_of(cm, this_side="cm")
        if origin is Origin.OURS and marker is not None and self._claim_ours(marker, cm=cm):
            return
        _aviso, ot = self._aviso_of_request(cm.get("_request_id"))
        if ot is not None:
            self._pair_with_aviso_ot(cm, ot)
            return
        decision = cm_scope(cm, self.config.scope)
        if not decision.in_scope:
            self.report.counts["out_of_scope"] += 1
            return
        self._create_in_mt(cm, None)

    def _pair_with_aviso_ot(self, cm: Snapshot, ot_id: int) -> None:
        """A work order Click Maint made from an approved request whose aviso already has an
        OT: both are the same job, so they are linked, never copied into a second OT.

        The OT existed first (the work order is Click Maint's copy of the request), so the
        pair starts with the OT's values: its base is empty and every difference flows to
        Click Maint.  An OT already linked to another work order makes this one a duplicate
        inside Click Maint; it is held for a person, with both ids in its reason.
        """
        assert self.report is not None
        cm_id = str(cm["_id"])
        taken = self.ledger.get_link(self.name, mt_id=str(ot_id))
        if taken is not None:
            self.quarantine(
                "cm",
                cm_id,
                f"made from request {cm.get('_request_id')}, whose aviso's OT {ot_id} is "
                f"already linked to work order {taken.cm_id}: a duplicate in Click Maint",
                hold=True,
            )
            return
        raw = self.mt.get_ot(ot_id)
        mt = self._read_mt(raw) if raw is not None else None
        if mt is None:
            return  # gone or quarantined: seen again next cycle
        if self.rt.dry_run:
            self.plan("pair", "link", f"cm:{cm_id}", mt=str(ot_id), reason="request -> aviso")
            return
        link = self._new_link(cm, mt, still_to_send="mt", origin="request")
        with self.ledger.transaction():
            self.ledger.save_link(link)
            self.history(
                "paired", cm_id=cm_id, mt_id=ot_id, request=cm.get("_request_id"), reason="aviso"
            )
        self.report.counts["paired"] += 1
        self.log.info("record.paired", cm_id=cm_id, mt_id=ot_id, request=cm.get("_request_id"))
        self._sync_pair(link, cm, mt)

    def _claim_ours(
        self, marker: Marker, *, cm: Snapshot | None = None, mt: Snapshot | None = None
    ) -> bool:
        """A record carrying our marker but not linked: a create whose link was never committed.

        False when the marker is not this stream's after all (a request marker in the old,
        untagged format, copied into a work order by Click Maint): the record is a user's.
        """
        intent = self.ledger.intent_by_token(marker.token)
        if intent is not None and intent.stream != self.name:
            return False
        source_link = (
            self.ledger.get_link(self.name, mt_id=marker.source_id)
            if marker.source_side == "mt"
            else self.ledger.get_link(self.name, cm_id=marker.source_id)
        )
        assert self.report is not None
        if source_link is not None:
            # the source is already linked to another record: this one is a stray duplicate
            side, rid = ("cm", cm["_id"]) if cm is not None else ("mt", mt["_id"])  # type: ignore[index]
            self.history("duplicate_detected", **{f"{side}_id": rid}, marker=marker.text())
            self.report.counts["duplicates_detected"] += 1
            self.log.error("record.duplicate", side=side, record=str(rid), marker=marker.text())
            return True
        if intent is None:
            # ledger lost or replaced: the marker still names the source record; re-link it
            intent = self.ledger.add_intent(
                stream=self.name,
                op="create",
                source_side=marker.source_side,
                source_id=marker.source_id,
                target_side="cm" if cm is not None else "mt",
                token=marker.token,
            )
        if cm is not None:
            mt_raw = self.mt.get_ot(int(marker.source_id))
            if mt_raw is None:
                self.report.counts["orphans"] += 1
                return True
            self._adopt(intent, cm_id=str(cm["_id"]), cm=cm, mt_raw=mt_raw)
        elif mt is not None:
            try:
                cm_raw = self.cm.get_work_order(int(marker.source_id))
            except NotFound:
                self.report.counts["orphans"] += 1
                return True
            self._adopt(intent, mt_id=str(mt["_id"]), mt=mt, cm_raw=cm_raw)
        return True

    # ======================================================================================
    # 3. new OTs
    # ======================================================================================
    def _discover_mantenimiento(self, *, full: bool) -> None:
        """Probe ids above the high-water id (mantenimiento has no list endpoint).

        Ids are sequential and never reused; deleted OTs leave gaps, so probing stops only
        after `probe_gap` consecutive misses.  A full resync probes from `first_ot_id`, with
        its own resumable cursor.
        """
        first = self.config.mantenimiento.first_ot_id
        key = "resync_mt_probe" if full else "mt_high_water"
        stored = self.ledger.get_cursor(self.name, key)
        high_water = first - 1 if stored is None else int(stored)
        gap = self.config.mantenimiento.probe_gap
        known_high = self.ledger.get_cursor(self.name, "mt_high_water")
        gaps = self._recheck_passed_over()
        missed: list[int] = []
        misses = 0
        ot_id = high_water + 1
        while misses < gap:
            ot = self._probe_ot(ot_id)
            if ot is None:
                misses += 1
                missed.append(ot_id)
                ot_id += 1
                continue
            # ids missed below this one may still appear (committed out of order): they are
            # recorded before the high-water id moves past them
            floor = int(known_high) if known_high is not None else ot_id - gap
            passed = probe_gaps.passed_over(missed, found=ot_id, floor=floor)
            missed, misses = [], 0
            high_water = max(high_water, ot_id)
            if passed and not self.rt.dry_run:
                gaps = probe_gaps.add(gaps, passed, utcnow())
                self.ledger.set_cursor(self.name, "mt_probe_gaps", probe_gaps.dump(gaps))
            if not ot.get("_unusable"):
                self._on_new_mt(ot)
                if not self.rt.dry_run:
                    self.ledger.set_cursor(self.name, key, str(high_water))
            ot_id += 1
            if full and ot_id % 100 == 0:
                self.rt.progress("mantenimiento ids", ot_id - first, None)
        if known_high is None and gaps:
            near_top = probe_gaps.near_top(gaps, top=high_water, window=gap)
            if near_top != gaps and not self.rt.dry_run:
                self.ledger.set_cursor(self.name, "mt_probe_gaps", probe_gaps.dump(near_top))
        if not self.rt.dry_run:
            if full:
                self.ledger.delete_cursor(self.name, key)
            current = int(self.ledger.get_cursor(self.name, "mt_high_water") or 0)
            self.ledger.set_cursor(self.name, "mt_high_water", str(max(current, high_water)))
        # out-of-scope OTs whose time has come (e.g. a preventive OT entering the horizon)
        for due_id in self.ledger.mt_index_due(utcnow()):
            self._recheck_out_of_scope(due_id)

    def _recheck_out_of_scope(self, ot_id: int) -> None:
        """Read an out-of-scope OT whose check is due, and take it off the due list.

        The due list is read oldest first and in bounded batches, so a row left due would be
        read every cycle and, once enough piled up, keep newly due OTs from ever being read:
        the row ends linked, gone, out of scope until a later check, or (unreadable) due again
        in an hour.
        """
        ot = self._probe_ot(ot_id)
        if ot is not None and not ot.get("_unusable"):
            self._on_new_mt(ot)
        if self.rt.dry_run:
            return
        if ot is None:
            self.ledger.mt_index_set(ot_id, "gone", "not in mantenimiento any more")
        elif self.ledger.get_link(self.name, mt_id=str(ot_id)) is not None:
            self.ledger.mt_index_set(ot_id, "linked", "in scope")
        else:
            row = self.ledger.mt_index_get(ot_id) or {}
            if row.get("status") == "out_of_scope" and (row.get("next_check_at") or "") <= utcnow():
                later = iso_z(datetime.now(UTC) + timedelta(hours=1))
                self.ledger.mt_index_set(ot_id, "out_of_scope", row.get("reason") or "", later)

    def _probe_ot(self, ot_id: int) -> dict[str, Any] | None:
        """One OT read by id while discovering: None if there is none.  An OT whose detail
        is unusable exists all the same: it is set aside (quarantined with the reason) and
        comes back as `{"id": …, "_unusable": True}` so that discovery goes on past it."""
        self.rt.check_stop()
        try:
            return self.mt.get_ot(ot_id)
        except FATAL_REMOTE:
            raise
        except RECORD_ERRORS as exc:
            self._record_failure("mt", ot_id, exc)
            return {"id": ot_id, "_unusable": True}

    def _recheck_passed_over(self) -> dict[int, str]:
        """Probe again the ids an earlier probe walked past (see `probe_gaps`); an id that
        has appeared is handled as a new OT, one missing for too long is forgotten."""
        gaps = probe_gaps.load(self.ledger.get_cursor(self.name, "mt_probe_gaps"))
        if not gaps:
            return gaps
        due, expired = probe_gaps.split_due(gaps, datetime.now(UTC))
        found: list[int] = []
        for ot_id in due:
            ot = self._probe_ot(ot_id)
            if ot is None:
                continue
            found.append(ot_id)
            if not ot.get("_unusable"):
                self.log.info("ot.found_late", mt_id=str(ot_id))
                self._on_new_mt(ot)
        remaining = probe_gaps.without(gaps, found + expired)
        if remaining != gaps and not self.rt.dry_run:
            self.ledger.set_cursor(self.name, "mt_probe_gaps", probe_gaps.dump(remaining))
        return remaining

    def _on_new_mt(self, ot: dict[str, Any]) -> None:
        assert self.report is not None
        mt_id = str(ot.get("id"))
        if self.ledger.get_link(self.name, mt_id=mt_id) is not None:
            return
        if self.ledger.get_quarantined(self.name, "mt", mt_id) is not None and not self._retrying:
            self.report.counts["skipped_quarantined"] += 1
            return
        mt = self._read_mt(ot)
        if mt is None:
            return
        self.release("mt", mt_id)
        try:
            origin, marker = origin_of(mt, this_side="mt")
            if origin is Origin.OURS and marker is not None and self._claim_ours(marker, mt=mt):
                return
            if self._ours_from_aviso(ot, mt):
                return
            decision = mt_scope(mt, self.config.scope, datetime.now(UTC))
            if not decision.in_scope:
                self.report.counts["out_of_scope"] += 1
                if not self.rt.dry_run:
                    self.ledger.mt_index_set(
                        int(mt_id), "out_of_scope", decision.reason, decision.recheck_at
                    )
                return
            self._create_in_cm(mt, None)
            self._failures = 0
        except FATAL_REMOTE:
            raise
        except RECORD_ERRORS as exc:
            self._record_failure("mt", mt_id, exc)

    def _ours_from_aviso(self, ot: dict[str, Any], mt: Snapshot) -> bool:
        """An OT made from an aviso carries no marker; if a create of ours from that aviso is
        still unresolved (its answer lost), this OT is its result, not a user's OT to copy to
        Click Maint (the chaos soak saw exactly that duplicate)."""
        aviso = mt.get("_aviso_id")
        if aviso is None:
            return False
        for intent in self.ledger.live_intents(self.name):
            if intent.target_side == "mt" and intent.payload.get("aviso_id") == aviso:
                self._adopt(
                    intent,
                    cm_id=intent.source_id,
                    mt_raw=ot,
                    cm=intent.payload.get("snapshot") or {},
                )
                return True
        return False

    # ======================================================================================
    # 4. re-read linked OTs
    # ======================================================================================
    def _reread_mantenimiento(self, *, include_closed: bool) -> None:
        assert self.report is not None
        total = self.ledger.count_links(self.name, "active")
        for index, link in enumerate(self.ledger.iter_links(self.name, state="active")):
            if link.mt_id in self._touched:
                continue
            if not link.mt_open and not include_closed and not link.dirty:
                continue
            if self.ledger.get_quarantined(self.name, "mt", link.mt_id) is not None:
                continue  # retried on its own backoff by _retry_quarantine
            self.rt.check_stop()
            try:
                ot = self.mt.get_ot(int(link.mt_id))
            except FATAL_REMOTE:
                raise
            except RECORD_ERRORS as exc:
                self._record_failure("mt", link.mt_id, exc)
                continue
            previous_read = self._previous_read(link)
            self._mt_reads[link.mt_id] = time.time()
            if ot is None:
                self._partner_missing(link, "mt")
                continue
            self._reads_ok["mt"] += 1
            mt = self._read_mt(ot)
            if mt is None:
                continue
            if snapshot_hash(mt) == link.mt_hash and not link.dirty and not self._resync:
                continue
            try:
                self._sync_pair(link, link.cm_seen, mt, mt_previous_read=previous_read)
                self._failures = 0
            except FATAL_REMOTE:
                raise
            except RECORD_ERRORS as exc:
                self._record_failure("mt", link.mt_id, exc)
            if index % 50 == 0:
                self.rt.progress("mantenimiento OTs", index, total)

    # ======================================================================================
    # 5. dirty links and quarantine
    # ======================================================================================
    def _process_dirty(self) -> None:
        for link in self.ledger.iter_links(self.name, state="active", dirty=True):
            if link.mt_id in self._touched:
                continue
            self.rt.check_stop()
            try:
                ot = self.mt.get_ot(int(link.mt_id))
                if ot is None:
                    continue  # the missing-partner logic of the re-read pass handles it
                mt = self._read_mt(ot)
                if mt is not None:
                    self._sync_pair(link, link.cm_seen, mt)
            except FATAL_REMOTE:
                raise
            except RECORD_ERRORS as exc:
                self._record_failure("mt", link.mt_id, exc)

    def _retry_quarantine(self) -> None:
        due = self.ledger.due_quarantine(self.name)
        if not due:
            return
        self._retrying = True
        try:
            for item in due[:50]:
                self.rt.check_stop()
                try:
                    if item.side == "cm":
                        raw = self.cm.get_work_order(int(item.record_id))
                        link = self.ledger.get_link(self.name, cm_id=item.record_id)
                        if link is not None and not self.rt.dry_run:
                            link.dirty = True
                            self.ledger.save_link(link)
                        self._on_cm(raw)
                    else:
                        ot = self.mt.get_ot(int(item.record_id))
                        if ot is None:
                            self.release("mt", item.record_id)
                            continue
                        link = self.ledger.get_link(self.name, mt_id=item.record_id)
                        if link is None:
                            self._on_new_mt(ot)
                        else:
                            mt = self._read_mt(ot)
                            if mt is not None:
                                self._sync_pair(link, link.cm_seen, mt)
                                self.release("mt", item.record_id)
                except NotFound:
                    self.release(item.side, item.record_id)
                except FATAL_REMOTE:
                    raise
                except RECORD_ERRORS as exc:
                    self._record_failure(item.side, item.record_id, exc)
        finally:
            self._retrying = False

    def _keep_for_later(self, link: Link, cm: Snapshot) -> None:
        if self.rt.dry_run:
            return
        link.cm_seen = cm
        link.dirty = True
        self.ledger.save_link(link)

    def _record_failure(self, side: str, record_id: Any, exc: Exception) -> None:
        self.quarantine(side, record_id, reason_of(exc))
        if isinstance(exc, ServerError | BadResponse | RateLimited):
            self._failures += 1
            if self._failures >= 5:
                raise Unavailable("5 records in a row failed with server errors") from exc

    def _read_mt(self, ot: dict[str, Any]) -> Snapshot | None:
        try:
            return self.mapping.from_mt(ot)
        except MappingError as exc:
            self.quarantine("mt", ot.get("id"), str(exc))
            return None

    # ======================================================================================
    # the merge of one pair
    # ======================================================================================
    def _sync_pair(
        self,
        link: Link,
        cm: Snapshot,
        mt: Snapshot,
        *,
        mt_previous_read: float | None = None,
        depth: int = 0,
    ) -> None:
        assert self.report is not None
        self._touched.add(link.mt_id)
        conflicts_here = self.ledger.open_conflicts_for(self.name, link.cm_id)
        resolutions = {
            f: Resolution(c.id, c.resolution or MANTENIMIENTO, c.resolved_value)
            for f, c in conflicts_here.items()
            if c.status == "resolved"
        }
        open_ids = {f: c.id for f, c in conflicts_here.items() if c.status == "open"}
        plan = merge(
            WORK_ORDER_FIELDS,
            base_cm=link.base_cm,
            base_mt=link.base_mt,
            cm=cm,
            mt=mt,
            translator=self.mapping,
            policy_for=self._policy,
            resolutions=resolutions,
            open_conflicts=open_ids,
            ages=self._ages(cm, mt_previous_read),
            force=self._prefer if self._resync else None,
        )
        if mt.get("_title_marker") and "title" not in plan.hold:
            # right after a create: move the marker out of the title and into notas
            plan.to_mt.setdefault(
                "title", self.mapping.to_mt("title", cm.get("title", mt["title"]))
            )
            if "description" not in plan.hold:
                plan.to_mt.setdefault("description", cm.get("description", mt["description"]))
        # the values as each side will read them back (the marker is for the wire only)
        intended_cm, intended_mt = dict(plan.to_cm), dict(plan.to_mt)
        keeper = find_marker(link.marker)
        if keeper is not None and keeper.source_side == "cm" and "description" in plan.to_mt:
            plan.to_mt["description"] = with_marker(plan.to_mt["description"], link.marker)
        if keeper is not None and keeper.source_side == "mt" and "description" in plan.to_cm:
            plan.to_cm["description"] = with_marker(plan.to_cm["description"], link.marker)
        ids = {"cm_id": link.cm_id, "mt_id": link.mt_id}

        if self.rt.dry_run:
            for c in plan.conflicts:
                self.plan("conflict", c.field, f"cm:{link.cm_id}", policy=c.policy, winner=c.winner)
            if plan.to_mt:
                self.plan("update", "mantenimiento", f"ot:{link.mt_id}", **plan.to_mt)
            if plan.to_cm:
                self.plan("update", "clickmaint", f"wo:{link.cm_id}", **plan.to_cm)
            return

        cm_after, mt_after = cm, mt
        if plan.to_mt:
            mt_after = self._write_mt(link, mt, plan.to_mt, cm)
            crashpoint("pair.written_mt")
            if mt_after is None:
                return
        if plan.to_cm:
            try:
                response = self.cm.update_work_order(
                    int(link.cm_id), self.mapping.cm_fields(plan.to_cm)
                )
            except NotFound:
                self._partner_missing(link, "cm")
                return
            cm_after = self.mapping.from_cm(response)
            crashpoint("pair.written_cm")

        # new bases: what was written, or merged with, never what a write's answer shows, so
        # an edit that lands meanwhile is still a change (merge.base_after_write); fields
        # held by an open conflict keep their old base
        cm_for_base = base_after_write(cm, cm_after, intended_cm)
        mt_for_base = base_after_write(mt, mt_after, intended_mt)
        raced = edited_during_write((cm_after, intended_cm), (mt_after, intended_mt))
        if raced:
            self.log.info("pair.edited_during_write", **ids, fields=raced)
        new_base_cm = advance_base(WORK_ORDER_FIELDS, link.base_cm, cm_for_base, plan.hold)
        new_base_mt = advance_base(WORK_ORDER_FIELDS, link.base_mt, mt_for_base, plan.hold)
        concurrent = merged_view(cm_after) != merged_view(cm_for_base) or merged_view(
            mt_after
        ) != merged_view(mt_for_base)

        with self.ledger.transaction():
            for c in plan.conflicts:
                self.ledger.record_conflict(
                    stream=self.name,
                    cm_id=link.cm_id,
                    mt_id=link.mt_id,
                    field=c.field,
                    base=c.base,
                    cm_value=c.cm_value,
                    mt_value=c.mt_value,
                    policy=c.policy,
                    status="open" if c.winner is None else "auto",
                    resolution=None if c.winner is None else c.winner,
                    run_id=self.report.run_id,
                )
                self.history("conflict", **ids, field=c.field, policy=c.policy, winner=c.winner)
            for conflict_id in plan.applied:
                self.ledger.mark_conflict_applied(conflict_id)
                self.history("conflict_applied", **ids, conflict=conflict_id)
            for conflict_id in plan.moot:
                self.ledger.close_conflict(conflict_id, "sides agree")
            for field, direction, reason in plan.not_mirrorable:
                # reported once: the source side's base advances, so it is not seen again
                self.history(
                    "not_mirrorable", **ids, field=field, direction=direction, reason=reason
                )
            link.base_cm, link.base_mt = new_base_cm, new_base_mt
            link.cm_seen, link.mt_seen = cm_after, mt_after
            link.cm_hash, link.mt_hash = snapshot_hash(cm_after), snapshot_hash(mt_after)
            link.cm_updated_at = cm_after.get("_updated_at") or link.cm_updated_at
            link.mt_read_at = utcnow()
            link.mt_open = mt_after.get("status") not in CLOSED_ESTADOS
            link.dirty = concurrent
            self.ledger.save_link(link)
            if plan.to_mt:
                self.history("updated_mt", **ids, fields=sorted(plan.to_mt))
            if plan.to_cm:
                self.history("updated_cm", **ids, fields=sorted(plan.to_cm))
        counts = self.report.counts
        counts["conflicts"] += sum(1 for c in plan.conflicts if c.winner is None)
        counts["conflicts_auto"] += sum(1 for c in plan.conflicts if c.winner is not None)
        counts["updated_mt"] += 1 if plan.to_mt else 0
        counts["updated_cm"] += 1 if plan.to_cm else 0
        counts["not_mirrorable"] += len(plan.not_mirrorable)
        if plan.has_writes:
            self.log.info(
                "record.synced", **ids, to_cm=sorted(plan.to_cm), to_mt=sorted(plan.to_mt)
            )
        if concurrent and depth < 2:
            self._sync_pair(link, cm_after, mt_after, depth=depth + 1)

    def _previous_read(self, link: Link) -> float | None:
        if link.mt_id in self._mt_reads:
            return self._mt_reads[link.mt_id]
        if link.mt_read_at:
            moment = parse_iso(link.mt_read_at, "mt_read_at")
            return moment.timestamp() if moment else None
        return None

    def _ages(
        self, cm: Snapshot, mt_previous_read: float | None
    ) -> tuple[float | None, float | None]:
        """`newest` policy inputs, each measured on its own side's clock.

        Click Maint: server now minus `updated_at` (both Click Maint's clock).  mantenimiento
        exposes no modification time, so its change is placed halfway between our previous read
        (when it was not there) and now (our clock).
        """
        cm_age = None
        updated = parse_iso(cm.get("_updated_at"), "updated_at") if cm.get("_updated_at") else None
        if updated is not None:
            cm_age = max(0.0, (self.cm_now() - updated).total_seconds())
        mt_age = None
        if mt_previous_read is not None:
            mt_age = max(0.0, (time.time() - mt_previous_read) / 2)
        return cm_age, mt_age

    def _write_mt(
        self, link: Link, mt: Snapshot, changes: dict[str, Any], cm: Snapshot
    ) -> Snapshot | None:
        ot_id = int(link.mt_id)
        try:
            form = self.mapping.mt_field_form(changes, mt)
            if form:
                self.mt.update_ot_fields(ot_id, form)
            estado = changes.get("status")
            notas = changes.get("description")
            if estado == "REALIZADA" and mt.get("status") != "REALIZADA":
                start, end = self.mapping.mt_close_dates(cm, mt)
                crashpoint("close.before")
                closed = self.mt.close_ot(
                    ot_id,
                    fecha_inicio=start,
                    fecha_fin=end,
                    comentarios=f"Cerrada desde Click Maint (WO #{link.cm_id})",
                )
                if closed:
                    estado = None
            if estado is not None or notas is not None:
                self.mt.update_status_notes(ot_id, estado=estado, notas=notas)
        except NotFound:
            self._partner_missing(link, "mt")
            return None
        ot = self.mt.get_ot(ot_id)
        if ot is None:
            self._partner_missing(link, "mt")
            return None
        return self.mapping.from_mt(ot)

    # ======================================================================================
    # creates (through the outbox)
    # ======================================================================================
    def _request_of_aviso(self, aviso_id: Any) -> int | None:
        if aviso_id is None:
            return None
        link = self.ledger.get_link("requests", mt_id=str(aviso_id))
        return int(link.cm_id) if link is not None and link.state == "active" else None

    def _aviso_of_request(self, request_id: Any) -> tuple[int | None, int | None]:
        """The aviso linked to a request, and that aviso's OT (each None if there is none)."""
        if request_id is None:
            return None, None
        link = self.ledger.get_link("requests", cm_id=str(request_id))
        if link is None or link.state != "active":
            return None, None
        aviso_id = int(link.mt_id)
        return aviso_id, self._aviso_ot(aviso_id)

    def _unlinked_work_order_of_request(self, aviso_id: Any) -> Snapshot | None:
        """The work order Click Maint made from the request linked to this aviso, if it has
        one that is not linked yet (one GET, only for OTs made from a linked aviso)."""
        request = self._request_of_aviso(aviso_id)
        if request is None:
            return None
        made = self.cm.get_request(request).get("work_order_id")
        if not isinstance(made, int) or self.ledger.get_link(self.name, cm_id=str(made)):
            return None
        return self.mapping.from_cm(self.cm.get_work_order(made))

    def _aviso_without_ot(self, cm: Snapshot) -> int | None:
        """The aviso linked to this work order's request, if it has no OT yet."""
        aviso_id, ot = self._aviso_of_request(cm.get("_request_id"))
        return aviso_id if ot is None else None

    def _aviso_ot(self, aviso_id: int) -> int | None:
        for aviso in self.mt.iter_avisos():
            if aviso.get("id") == aviso_id:
                ot = aviso.get("ot_id")
                return int(ot) if isinstance(ot, int) else None
        return None

    def _mt_high_water(self) -> str:
        return self.ledger.get_cursor(self.name, "mt_high_water") or str(
            self.config.mantenimiento.first_ot_id - 1
        )

    def _create_in_mt(self, cm: Snapshot, intent: Intent | None) -> None:
        assert self.report is not None
        cm_id = str(cm["_id"])
        if self.rt.dry_run:
            self.plan("create", "mantenimiento", f"from wo:{cm_id}", title=cm["title"])
            return
        if intent is None:
            intent = self.open_intent(
                None,
                self._resume_mt_create,
                source_side="cm",
                source_id=cm_id,
                payload={"snapshot": cm, "aviso_id": self._aviso_without_ot(cm)},
                high_water=self._mt_high_water(),
            )
            if intent is None:
                return
        marker = Marker("cm", cm_id, intent.token)
        form = self.mapping.mt_create_form(cm, marker)
        aviso_id = intent.payload.get("aviso_id")

        def send() -> tuple[int, str]:
            if aviso_id is not None:
                # the request behind this work order is linked to an aviso: create the OT *from*
                # the aviso, so mantenimiento shows the same aviso -> OT relation
                return self.mt.create_ot_from_aviso(int(aviso_id), prioridad=form.get("prioridad"))
            return self.mt.create_ot(form)

        created = self.send_create(intent, send, side="cm", record_id=cm_id, target="mantenimiento")
        if created is None:
            return
        ot_id = created[0]
        crashpoint("create.remote")
        ot = self.mt.get_ot(ot_id)
        if ot is None:
            self.ledger.mark_intent(intent.token, "unknown", error="created OT not readable")
            return
        mt = self.mapping.from_mt(ot)
        # every Click Maint value still has to reach the new OT
        link = self._new_link(cm, mt, still_to_send="cm", origin="cm", marker=marker.text())
        with self.ledger.transaction():
            self.ledger.save_link(link)
            self.ledger.mark_intent(intent.token, "done", result_id=str(ot_id))
            self.history("created_mt", cm_id=cm_id, mt_id=ot_id, outbox=intent.token)
        crashpoint("create.linked")
        self.report.counts["created_mt"] += 1
        self.log.info("record.created", side="mantenimiento", cm_id=cm_id, mt_id=ot_id)
        self._sync_pair(link, cm, mt)

    def _create_in_cm(self, mt: Snapshot, intent: Intent | None) -> None:
        assert self.report is not None
        mt_id = str(mt["_id"])
        if intent is None:
            made = self._unlinked_work_order_of_request(mt.get("_aviso_id"))
            if made is not None:  # approved in Click Maint since our scan read the listing
                self._pair_with_aviso_ot(made, int(mt_id))
                return
        if self.rt.dry_run:
            self.plan("create", "clickmaint", f"from ot:{mt_id}", title=mt["title"])
            return
        intent = self.open_intent(
            intent,
            self._resume_cm_create,
            source_side="mt",
            source_id=mt_id,
            payload={"snapshot": mt},
        )
        if intent is None:
            return
        marker = Marker("mt", mt_id, intent.token)
        fields = self.mapping.cm_create_fields(mt, marker)
        request = self._request_of_aviso(mt.get("_aviso_id"))
        if request is not None:
            fields["work_order_request_id"] = request  # keep aviso -> OT == request -> WO
        self._cap_requests()
        response = self.send_create(
            intent,
            lambda: self.cm.create_work_order(fields),
            side="mt",
            record_id=mt_id,
            target="Click Maint",
        )
        if response is None:
            return
        crashpoint("create.remote")
        cm = self.mapping.from_cm(response)
        # the create carried every value that has a Click Maint counterpart, so both sides
        # start agreed (re-sending write-only fields such as location would cost one more
        # rate-limited request per record)
        link = self._new_link(cm, mt, still_to_send=None, origin="mt", marker=marker.text())
        with self.ledger.transaction():
            self.ledger.save_link(link)
            self.ledger.mark_intent(intent.token, "done", result_id=str(cm["_id"]))
            self.history("created_cm", cm_id=cm["_id"], mt_id=mt_id, outbox=intent.token)
        crashpoint("create.linked")
        self.report.counts["created_cm"] += 1
        self.log.info("record.created", side="clickmaint", cm_id=cm["_id"], mt_id=mt_id)
        self._sync_pair(link, cm, mt)

    # ======================================================================================
    # deletions
    # ======================================================================================
    def _partner_missing(self, link: Link, side: str) -> None:
        """A vanished partner: noted, and acted on at the end of the cycle.

        The mass-delete guard must judge a cycle's vanished records together: acting on each
        as it is found would let an outage that answers 404 for every OT cancel work orders
        one at a time, each passing the guard on its own.
        """
        self._vanished[side][link.cm_id] = link

    def _settle_vanished(self) -> None:
        """Every partner that vanished this cycle, through the guard at once."""
        total = max(1, self.ledger.count_links(self.name, "active"))
        for side in ("mt", "cm"):
            links = list(self._vanished[side].values())
            self._handle_missing(links, total, self._reads_ok[side], side=side)
        self._vanished = {"cm": {}, "mt": {}}

    def _handle_missing(self, links: list[Link], total: int, reads_ok: int, *, side: str) -> None:
        if not links:
            return
        assert self.report is not None
        verdict = deletion_guard(len(links), total, reads_ok, self.config.deletes)
        if not verdict.allowed:
            self.report.counts["delete_guard"] += 1
            self.report.notes.append(f"mass-delete guard: {verdict.reason}; nothing was cancelled")
            self.log.error(
                "delete_guard.tripped", side=side, missing=len(links), reason=verdict.reason
            )
            if not self.rt.dry_run:
                self.history("delete_guard", reason=verdict.reason, count=len(links), side=side)
                self.ledger.set_meta(
                    f"{self.name}_delete_guard", {"at": utcnow(), "reason": verdict.reason}
                )
            return
        for link in links:
            self.rt.check_stop()
            if side == "mt":
                self._mt_deleted(link)
            else:
                self._cm_deleted(link)

    def _mt_deleted(self, link: Link) -> None:
        """The OT is gone: cancel the work order (never delete it)."""
        assert self.report is not None
        ids = {"cm_id": link.cm_id, "mt_id": link.mt_id}
        if self.rt.dry_run:
            self.plan("cancel", "clickmaint", f"wo:{link.cm_id}", reason="OT deleted")
            return
        if self.config.deletes.mode == "cancel":
            cancelled = self.config.clickmaint.cancelled_status
            try:
                response = self.cm.update_work_order(
                    int(link.cm_id), self.mapping.cm_fields({"status": cancelled})
                )
                link.cm_seen = self.mapping.from_cm(response)
                link.cm_updated_at = link.cm_seen.get("_updated_at")
            except NotFound:
                pass  # gone on both sides
        crashpoint("delete.cancelled")
        link.state = "mt_deleted"
        link.dirty = False
        with self.ledger.transaction():
            self.ledger.save_link(link)
            self.history(
                "partner_deleted", **ids, deleted="mantenimiento", mode=self.config.deletes.mode
            )
        self.report.counts[
            "cancelled_cm" if self.config.deletes.mode == "cancel" else "deleted_seen"
        ] += 1

    def _cm_deleted(self, link: Link) -> None:
        """The work order is gone: cancel the OT (never delete it)."""
        assert self.report is not None
        ids = {"cm_id": link.cm_id, "mt_id": link.mt_id}
        if self.rt.dry_run:
            self.plan("cancel", "mantenimiento", f"ot:{link.mt_id}", reason="work order deleted")
            return
        if self.config.deletes.mode == "cancel":
            try:
                self.mt.update_status_notes(int(link.mt_id), estado="CANCELADA")
            except NotFound:
                pass
        link.state = "cm_deleted"
        link.dirty = False
        with self.ledger.transaction():
            self.ledger.save_link(link)
            self.history(
                "partner_deleted", **ids, deleted="clickmaint", mode=self.config.deletes.mode
            )
        self.report.counts[
            "cancelled_mt" if self.config.deletes.mode == "cancel" else "deleted_seen"
        ] += 1

    def _reconcile_deletions(self, *, force: bool) -> None:
        """List every Click Maint id now and then: `updated_at` polling cannot see deletions."""
        last = self.ledger.get_meta("wo_last_reconcile")
        every = timedelta(hours=self.config.deletes.reconcile_every_hours)
        if (
            not force
            and last
            and datetime.now(UTC) - (parse_iso(last, "last") or datetime.now(UTC)) < every
        ):
            return
        if last is None and not force:
            # first cycle: nothing can have been deleted yet; start the clock
            if not self.rt.dry_run:
                self.ledger.set_meta("wo_last_reconcile", utcnow())
            return
        seen: set[str] = set()
        complete = False
        for page in self.cm.iter_pages("/work_orders", per_page=self.config.clickmaint.per_page):
            self.rt.check_stop()
            seen.update(str(item.get("id")) for item in page.items)
            complete = not page.items or page.page >= page.total_pages
        if not complete:
            return
        candidates = [
            link
            for link in self.ledger.iter_links(self.name, state="active")
            if link.cm_id not in seen
        ]
        confirmed: list[Link] = []
        for link in candidates[: self.config.deletes.max_count + 1]:
            try:
                self.cm.get_work_order(int(link.cm_id))
            except NotFound:
                confirmed.append(link)
        for link in confirmed:
            self._partner_missing(link, "cm")
        self._reads_ok["cm"] += len(seen)
        if not self.rt.dry_run:
            self.ledger.set_meta("wo_last_reconcile", utcnow())


def _marker_of(mapping: WorkOrderMapping, raw: dict[str, Any], side: str) -> Marker | None:
    try:
        snap = mapping.from_cm(raw) if side == "cm" else mapping.from_mt(raw)
    except MappingError:
        return None
    origin, marker = origin_of(snap, this_side=side)
    return marker if origin is Origin.OURS else None


def _norm_ts(value: Any) -> str | None:
    try:
        return iso_z(parse_iso(value, "updated_at"))
    except MappingError:
        return None
