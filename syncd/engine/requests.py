"""The `requests` stream: Click Maint work-order requests ⇄ mantenimiento avisos.

Same engine as work orders (per-side bases, field merge, outbox creates with markers), with
the write paths the two APIs offer: Click Maint requests are fully writable; an aviso can be
created with all its text (`app/aviso/crear/`) but afterwards the API only changes its estado
(`avisos/api/update/`), so text and priority flow mantenimiento → Click Maint only.

Links to work orders stay consistent with the `work_orders` stream: a request approved in Click
Maint becomes a work order there, and the `work_orders` stream creates its OT *from the linked
aviso* (`avisos/api/create-ot/`), so mantenimiento shows the same aviso → OT relation; an aviso
turned into an OT in mantenimiento gives an OT whose work order is created with
`work_order_request_id` of the linked request.  Each cycle checks both relations and records any
disagreement in the record's history.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ..faultpoints import crashpoint
from ..ledger.models import Intent, Link, utcnow
from ..systems.errors import NotFound
from .fingerprint import check_mapping_fingerprint
from .mapping import MappingError, RequestMapping, iso_z, parse_iso
from .merge import Resolution, advance_base, base_after_write, edited_during_write, merge
from .plan import Origin, deletion_guard, origin_of
from .records import REQUEST, FieldSpec, Marker, Snapshot, merged_view, snapshot_hash
from .run import FATAL_REMOTE, RECORD_ERRORS, CycleReport, Stream

NO_AVISO_EDIT = "mantenimiento's API cannot edit an aviso's text or priority after creation"
REQUEST_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("title", cm_writable=True, mt_writable=False, why_one_way=NO_AVISO_EDIT),
    FieldSpec("description", cm_writable=True, mt_writable=False, why_one_way=NO_AVISO_EDIT),
    FieldSpec("status", cm_writable=True, mt_writable=True),
    FieldSpec("priority", cm_writable=True, mt_writable=False, why_one_way=NO_AVISO_EDIT),
)


class RequestSync(Stream):
    name = "requests"

    def __init__(self, rt: Any) -> None:
        super().__init__(rt)
        self.mapping = RequestMapping(rt.config)
        self._avisos: dict[int, dict[str, Any]] | None = None

    def cycle_body(
        self, report: CycleReport, *, full: bool = False, rebaseline: bool = False, **_: Any
    ) -> None:
        check_mapping_fingerprint(self, rebaseline=rebaseline)  # statuses, priorities, scope
        self._avisos = None
        self._resume_outbox()
        self._scan_requests(full=full)
        self._retry_quarantine()
        self._scan_avisos()

    # -- reads -----------------------------------------------------------------------------------
    def avisos(self, *, refresh: bool = False) -> dict[int, dict[str, Any]]:
        """All avisos (one unpaged request), cached for the cycle."""
        if self._avisos is None or refresh:
            self._avisos = {
                a["id"]: a for a in self.mt.iter_avisos() if isinstance(a.get("id"), int)
            }
        return self._avisos

    def _scan_requests(self, *, full: bool) -> None:
        watermark = None if full else self.ledger.get_cursor(self.name, "cm_watermark")
        scan = self.clickmaint_scan("/requests", watermark)
        for batch in scan:
            for raw in batch.items:
                self.rt.check_stop()
                self._on_cm(raw)
            if batch.checkpoint and not self.rt.dry_run:
                self.ledger.set_cursor(self.name, "cm_watermark", batch.checkpoint)

    # -- Click Maint side ------------------------------------------------------------------------
    def _on_cm(self, raw: dict[str, Any]) -> None:
        assert self.report is not None
        cm_id = str(raw.get("id"))
        try:
            cm = self.mapping.from_cm(raw)
        except MappingError as exc:
            held = self.ledger.get_quarantined(self.name, "cm", cm_id)
            if held is None or held.reason != str(exc):
                self.quarantine("cm", cm_id, str(exc))
            return
        link = self.ledger.get_link(self.name, cm_id=cm_id)
        if (
            link is not None
            and link.cm_hash == snapshot_hash(cm, REQUEST_FIELDS)
            and not link.dirty
        ):
            self.report.counts["unchanged"] += 1
            return
        self.release("cm", cm_id)
        try:
            if link is None:
                origin, marker = origin_of(cm, this_side="cm", kind=REQUEST)
                if origin is Origin.OURS and marker is not None:
                    self._adopt_marked(marker, cm=cm)
                elif self._in_scope_cm(cm):
                    self._create_aviso(cm, None)
                else:
                    self.report.counts["out_of_scope"] += 1
                return
            if link.state != "active":
                return
            aviso = self.avisos().get(int(link.mt_id))
            if aviso is None:
                return  # the aviso pass handles vanished avisos (with the guard)
            self._sync_pair(link, cm, self.mapping.from_mt(aviso))
        except FATAL_REMOTE:
            raise
        except RECORD_ERRORS as exc:
            self.quarantine("cm", cm_id, str(exc))

    def _retry_quarantine(self) -> None:
        """Re-read due quarantined requests by id.

        The scan sees a request again only when it changes, so one garbled answer would hold
        it for good.  Avisos need nothing of this: every cycle reads all of them.
        """
        for item in self.ledger.due_quarantine(self.name)[:50]:
            if item.side != "cm":
                continue
            self.rt.check_stop()
            try:
                raw = self.cm.get_request(int(item.record_id))
                self.mapping.from_cm(raw)
            except NotFound:
                self.release("cm", item.record_id)
                continue
            except FATAL_REMOTE:
                raise
            except RECORD_ERRORS as exc:
                self.quarantine("cm", item.record_id, str(exc))  # the next, longer backoff
                continue
            link = self.ledger.get_link(self.name, cm_id=item.record_id)
            if link is not None and not self.rt.dry_run:
                link.dirty = True  # its hash may be unchanged: sync the pair anyway
                self.ledger.save_link(link)
            self._on_cm(raw)

    def _in_scope_cm(self, cm: Snapshot) -> bool:
        not_before = self.config.scope.not_before
        limit = iso_z(parse_iso(not_before, "not_before")) if not_before else None
        return not limit or (cm.get("_updated_at") or "") >= limit

    # -- mantenimiento side ----------------------------------------------------------------------
    def _scan_avisos(self) -> None:
        assert self.report is not None
        avisos = self.avisos(refresh=True)
        links = {link.mt_id: link for link in self.ledger.iter_links(self.name, state="active")}
        missing = [link for mt_id, link in links.items() if int(mt_id) not in avisos]
        now = utcnow()
        for aviso_id, aviso in sorted(avisos.items()):
            self.rt.check_stop()
            held = self.ledger.get_quarantined(self.name, "mt", str(aviso_id))
            if held is not None and held.next_retry_at > now:
                continue  # quarantined: left alone until its retry is due
            try:
                mt = self.mapping.from_mt(aviso)
            except MappingError as exc:
                self.quarantine("mt", aviso_id, str(exc))
                continue
            link = links.get(str(aviso_id))
            try:
                if link is None:
                    if self.ledger.get_link(self.name, mt_id=str(aviso_id)) is not None:
                        continue  # linked but not active (partner deleted)
                    origin, marker = origin_of(mt, this_side="mt", kind=REQUEST)
                    if origin is Origin.OURS and marker is not None:
                        self._adopt_marked(marker, mt=mt)
                    elif self._in_scope_mt(aviso):
                        self._create_request(mt, None)
                    link = self.ledger.get_link(self.name, mt_id=str(aviso_id))
                    if held is not None and link is not None:
                        self.release("mt", aviso_id)
                    if link is None or not link.dirty:
                        continue
                # the relation first: naming the request on the OT's work order is what
                # makes approving the request safe (see _approval_would_duplicate)
                self._check_work_order_link(link, mt)
                if snapshot_hash(mt, REQUEST_FIELDS) != link.mt_hash or link.dirty:
                    self._sync_pair(link, link.cm_seen, mt)
                if held is not None:
                    self.release("mt", aviso_id)
            except FATAL_REMOTE:
                raise
            except RECORD_ERRORS as exc:
                self.quarantine("mt", aviso_id, str(exc))
        if missing:
            verdict = deletion_guard(len(missing), len(links), len(avisos), self.config.deletes)
            if not verdict.allowed:
                self.report.counts["delete_guard"] += 1
                self.report.notes.append(f"mass-delete guard: {verdict.reason}")
                self.history("delete_guard", reason=verdict.reason, count=len(missing))
                return
            for link in missing:
                self._aviso_deleted(link)

    def _in_scope_mt(self, aviso: dict[str, Any]) -> bool:
        not_before = self.config.scope.not_before
        created = str(aviso.get("creado_en") or "")
        if not_before and created:
            try:
                moment = datetime.strptime(created, "%d/%m/%Y %H:%M").replace(
                    tzinfo=self.display_tz
                )
            except ValueError:
                return True
            limit = parse_iso(not_before, "not_before")
            return limit is None or moment >= limit
        return True

    @property
    def display_tz(self) -> ZoneInfo:
        return ZoneInfo(self.config.mantenimiento.display_timezone)

    # -- merge -----------------------------------------------------------------------------------
    def _policy(self, field: str) -> str:
        conflicts = self.config.conflicts
        return conflicts.fields.get(
            f"request.{field}", conflicts.fields.get(field, conflicts.default_policy)
        )

    def _sync_pair(self, link: Link, cm: Snapshot, mt: Snapshot) -> None:
        assert self.report is not None
        conflicts_here = self.ledger.open_conflicts_for(self.name, link.cm_id)
        plan = merge(
            REQUEST_FIELDS,
            base_cm=link.base_cm,
            base_mt=link.base_mt,
            cm=cm,
            mt=mt,
            translator=self.mapping,
            policy_for=self._policy,
            resolutions={
                f: Resolution(c.id, c.resolution or "mantenimiento", c.resolved_value)
                for f, c in conflicts_here.items()
                if c.status == "resolved"
            },
            open_conflicts={f: c.id for f, c in conflicts_here.items() if c.status == "open"},
        )
        ids = {"cm_id": link.cm_id, "mt_id": link.mt_id}
        deferred = plan.to_cm.get("status") == "approved" and self._approval_would_duplicate(
            link.cm_id, cm.get("_work_order_id"), mt
        )
        if deferred:
            del plan.to_cm["status"]
            plan.hold.add("status")  # still a change to mirror once it is safe
            self.report.counts["approval_deferred"] += 1
        if self.rt.dry_run:
            if plan.to_mt:
                self.plan("update", "mantenimiento", f"aviso:{link.mt_id}", **plan.to_mt)
            if plan.to_cm:
                self.plan("update", "clickmaint", f"request:{link.cm_id}", **plan.to_cm)
            return
        cm_after, mt_after = cm, mt
        if "status" in plan.to_mt:
            try:
                self.mt.update_aviso(int(link.mt_id), plan.to_mt["status"])
            except NotFound:
                self._aviso_deleted(link)
                return
            refreshed = self.avisos(refresh=True).get(int(link.mt_id))
            if refreshed is not None:
                mt_after = self.mapping.from_mt(refreshed)
        if plan.to_cm:
            response = self.cm.update_request(int(link.cm_id), dict(plan.to_cm))
            cm_after = self.mapping.from_cm(response)
        raced = edited_during_write((cm_after, plan.to_cm), (mt_after, plan.to_mt))
        if raced:  # seen as a change next cycle (see merge.base_after_write)
            self.log.info("pair.edited_during_write", **ids, fields=raced)
        if plan.has_writes:
            crashpoint("request.written")  # written remotely, base not advanced yet
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
                    resolution=c.winner,
                    run_id=self.report.run_id,
                )
                self.history("conflict", **ids, field=c.field, policy=c.policy, winner=c.winner)
            for conflict_id in plan.applied:
                self.ledger.mark_conflict_applied(conflict_id)
            for conflict_id in plan.moot:
                self.ledger.close_conflict(conflict_id, "sides agree")
            for field, direction, reason in plan.not_mirrorable:
                self.history(
                    "not_mirrorable", **ids, field=field, direction=direction, reason=reason
                )
            link.base_cm = advance_base(
                REQUEST_FIELDS, link.base_cm, base_after_write(cm, cm_after, plan.to_cm), plan.hold
            )
            link.base_mt = advance_base(
                REQUEST_FIELDS, link.base_mt, base_after_write(mt, mt_after, plan.to_mt), plan.hold
            )
            link.cm_seen, link.mt_seen = cm_after, mt_after
            link.cm_hash = snapshot_hash(cm_after, REQUEST_FIELDS)
            link.mt_hash = snapshot_hash(mt_after, REQUEST_FIELDS)
            link.cm_updated_at = cm_after.get("_updated_at")
            link.dirty = deferred
            self.ledger.save_link(link)
            if plan.to_mt:
                self.history("updated_mt", **ids, fields=sorted(plan.to_mt))
            if plan.to_cm:
                self.history("updated_cm", **ids, fields=sorted(plan.to_cm))
        self.report.counts["updated_mt"] += 1 if plan.to_mt else 0
        self.report.counts["updated_cm"] += 1 if plan.to_cm else 0
        self.report.counts["conflicts"] += sum(1 for c in plan.conflicts if c.winner is None)
        if plan.has_writes:
            self.log.info(
                "record.synced",
                cm_id=link.cm_id,
                mt_id=link.mt_id,
                to_mt=sorted(plan.to_mt),
                to_cm=sorted(plan.to_cm),
            )

    def _approval_would_duplicate(
        self, request_id: str | None, request_work_order: Any, mt: Snapshot
    ) -> bool:
        """Approving a request makes Click Maint create a work order from it unless one names
        it.  If the aviso's OT is already mirrored as a work order that does not name this
        request, approving now would give that job a second work order: the approval waits
        until `_check_work_order_link` has named the request on the OT's work order.  An OT
        not mirrored yet is fine: the work order made by the approval is paired with it."""
        ot = mt.get("_ot_id")
        if ot is None or request_work_order is not None:
            return False
        wo_link = self.ledger.get_link("work_orders", mt_id=str(ot))
        if wo_link is None or wo_link.state != "active":
            return False
        return request_id is None or str(wo_link.cm_seen.get("_request_id")) != request_id

    def _check_work_order_link(self, link: Link, mt: Snapshot) -> None:
        """Aviso → OT and request → work order must point at linked partners.

        The OT's work order naming no request yet (it was mirrored before the aviso was) is
        repaired by naming this request on it; any other disagreement is recorded once in the
        record's history and counted as `link_inconsistent`.
        """
        ot = mt.get("_ot_id")
        request_wo = link.cm_seen.get("_work_order_id")
        wo_link = self.ledger.get_link("work_orders", mt_id=str(ot)) if ot else None
        problem: dict[str, Any] | None = None
        if wo_link is not None and wo_link.state == "active":
            named = wo_link.cm_seen.get("_request_id")
            request_ok = request_wo is None or str(request_wo) == wo_link.cm_id
            if named is None and request_ok:
                self._name_request(wo_link, link)
                return
            if str(named) != link.cm_id or not request_ok:
                problem = {"aviso_ot": ot, "ot_work_order": wo_link.cm_id, "names": named}
        elif ot is None and request_wo is not None:
            wo_partner = self.ledger.get_link("work_orders", cm_id=str(request_wo))
            if wo_partner is not None:  # its OT was not made from this aviso
                problem = {"aviso_ot": None, "work_order_ot": wo_partner.mt_id}
        if problem is None:
            return
        key = f"{request_wo}->{ot}"
        if link.base_mt.get("_inconsistent") == key:
            return  # already reported
        self.history(
            "link_inconsistent",
            cm_id=link.cm_id,
            mt_id=link.mt_id,
            request_work_order=request_wo,
            **problem,
        )
        if not self.rt.dry_run:
            link.base_mt["_inconsistent"] = key
            self.ledger.save_link(link)
        assert self.report is not None
        self.report.counts["link_inconsistent"] += 1

    def _name_request(self, wo_link: Link, link: Link) -> None:
        """Point the OT's work order at the request mirrored from the OT's aviso."""
        ids = {"cm_id": link.cm_id, "mt_id": link.mt_id, "work_order": wo_link.cm_id}
        if self.rt.dry_run:
            self.plan("name_request", "clickmaint", f"work_order:{wo_link.cm_id}", **ids)
            return
        self.cm.update_work_order(int(wo_link.cm_id), {"work_order_request_id": int(link.cm_id)})
        wo_link.cm_seen = {**wo_link.cm_seen, "_request_id": int(link.cm_id)}
        with self.ledger.transaction():
            self.ledger.save_link(wo_link)
            self.history("request_named", **ids)
        assert self.report is not None
        self.report.counts["request_named"] += 1

    # -- creates ---------------------------------------------------------------------------------
    def _create_aviso(self, cm: Snapshot, intent: Intent | None) -> None:
        assert self.report is not None
        cm_id = str(cm["_id"])
        if self.rt.dry_run:
            self.plan("create", "mantenimiento", f"aviso from request:{cm_id}", title=cm["title"])
            return
        intent = self.open_intent(
            intent, self._resume, source_side="cm", source_id=cm_id, payload={"snapshot": cm}
        )
        if intent is None:
            return
        ubicacion = self.config.mantenimiento.default_ubicacion_id
        if ubicacion is None:
            self.ledger.mark_intent(intent.token, "failed", error="no default ubicacion")
            self.quarantine(
                "cm", cm_id, "an aviso needs an ubicacion: set mantenimiento.default_ubicacion_id"
            )
            return
        marker = Marker("cm", cm_id, intent.token, REQUEST)
        form = {
            "ubicacion": ubicacion,
            "descripcion": self.mapping.aviso_text(cm, marker),
            "prioridad": self.mapping.to_mt("priority", cm["priority"]),
            "tipo": "SOLICITUD",
            "estado": self.mapping.to_mt("status", cm["status"]),
        }
        created: list[int | None] = []
        if not self.send_create(
            intent,
            lambda: created.append(self.mt.create_aviso(form)) or True,
            side="cm",
            record_id=cm_id,
            target="mantenimiento",
        ):
            return
        found = self._aviso_with_token(intent.token, created[0])
        if found is None:
            self.ledger.mark_intent(intent.token, "unknown", error="created aviso not found")
            return
        self._link(intent, cm, self.mapping.from_mt(found), origin="cm")

    def _create_request(self, mt: Snapshot, intent: Intent | None) -> None:
        assert self.report is not None
        mt_id = str(mt["_id"])
        if self.rt.dry_run:
            self.plan("create", "clickmaint", f"request from aviso:{mt_id}", title=mt["title"])
            return
        intent = self.open_intent(
            intent, self._resume, source_side="mt", source_id=mt_id, payload={"snapshot": mt}
        )
        if intent is None:
            return
        fields = self.mapping.cm_create_fields(mt, Marker("mt", mt_id, intent.token, REQUEST))
        if fields.get("status") == "approved" and self._approval_would_duplicate(None, None, mt):
            fields["status"] = "pending"  # approved once it is safe (see _link)
        response = self.send_create(
            intent,
            lambda: self.cm.create_request(fields),
            side="mt",
            record_id=mt_id,
            target="Click Maint",
        )
        if response is None:
            return
        self._link(intent, self.mapping.from_cm(response), mt, origin="mt")

    def _link(self, intent: Intent, cm: Snapshot, mt: Snapshot, *, origin: str) -> None:
        """Link a created (or adopted) record with its source; both start agreed.

        One exception: a request created `pending` for an approved aviso (its approval had
        to wait, see `_approval_would_duplicate`).  Its status stays out of the aviso's base,
        so the approval is a change still to send, whether the link is made right after the
        create or, after a lost answer or a crash, when the request is adopted.  Any other
        difference (a title the server shortened) is what the created record holds.
        """
        base_cm = merged_view(cm, REQUEST_FIELDS)
        base_mt = merged_view(mt, REQUEST_FIELDS)
        approval_waits = (
            intent.target_side == "cm"
            and cm.get("status") == "pending"
            and self.mapping.estado_to_status.get(mt.get("status")) == "approved"
        )
        if approval_waits:
            base_mt.pop("status", None)
        assert self.report is not None
        crashpoint("request.remote")  # the request / aviso exists, the link does not yet
        link = Link(
            stream=self.name,
            cm_id=str(cm["_id"]),
            mt_id=str(mt["_id"]),
            base_cm=base_cm,
            base_mt=base_mt,
            cm_seen=cm,
            mt_seen=mt,
            cm_hash=snapshot_hash(cm, REQUEST_FIELDS),
            mt_hash=snapshot_hash(mt, REQUEST_FIELDS),
            cm_updated_at=cm.get("_updated_at"),
            origin=origin,
            dirty=approval_waits,
        )
        with self.ledger.transaction():
            self.ledger.save_link(link)
            self.ledger.mark_intent(
                intent.token,
                "done",
                result_id=link.mt_id if intent.target_side == "mt" else link.cm_id,
            )
            self.history(
                f"created_{intent.target_side}",
                cm_id=link.cm_id,
                mt_id=link.mt_id,
                outbox=intent.token,
            )
        crashpoint("request.linked")
        self.report.counts[f"created_{intent.target_side}"] += 1
        self.log.info(
            "record.created",
            side="mantenimiento" if intent.target_side == "mt" else "clickmaint",
            cm_id=link.cm_id,
            mt_id=link.mt_id,
        )

    # -- outbox ----------------------------------------------------------------------------------
    def _aviso_with_token(self, token: str, aviso_id: int | None = None) -> dict[str, Any] | None:
        avisos = self.avisos(refresh=True)
        if aviso_id is not None and token in str(avisos.get(aviso_id, {}).get("descripcion") or ""):
            return avisos[aviso_id]
        for aviso in avisos.values():
            if token in str(aviso.get("descripcion") or ""):
                return aviso
        return None

    def _request_with_token(self, token: str) -> dict[str, Any] | None:
        return self.find_in_clickmaint("/requests", token)

    def _resume_outbox(self) -> None:
        self.resume_outbox(self._resume)

    def _resume(self, intent: Intent) -> None:
        snapshot: Snapshot = intent.payload.get("snapshot") or {}
        if intent.state != "pending":
            if intent.target_side == "mt":
                found = self._aviso_with_token(intent.token)
                if found is not None:
                    self._link(intent, snapshot, self.mapping.from_mt(found), origin="adopted-cm")
                    return
            else:
                found = self._request_with_token(intent.token)
                if found is not None:
                    self._link(intent, self.mapping.from_cm(found), snapshot, origin="adopted-mt")
                    return
            if intent.state == "unknown" and intent.attempts >= 3:
                self.ledger.mark_intent(
                    intent.token, "abandoned", error="not found after 3 attempts"
                )
                self.quarantine(
                    intent.source_side, intent.source_id, "create could not be confirmed"
                )
                return
        if not snapshot:
            self.ledger.mark_intent(intent.token, "abandoned", error="no snapshot to retry with")
            return
        if intent.target_side == "mt":
            self._create_aviso(snapshot, intent)
        else:
            self._create_request(snapshot, intent)

    def _adopt_marked(
        self, marker: Marker, *, cm: Snapshot | None = None, mt: Snapshot | None = None
    ) -> None:
        """A record with our marker but no link: the create happened, the link commit did not."""
        source_link = (
            self.ledger.get_link(self.name, mt_id=marker.source_id)
            if marker.source_side == "mt"
            else self.ledger.get_link(self.name, cm_id=marker.source_id)
        )
        if source_link is not None:
            self.history("duplicate_detected", marker=marker.text())
            return
        intent = self.ledger.intent_by_token(marker.token) or self.ledger.add_intent(
            stream=self.name,
            op="create",
            source_side=marker.source_side,
            source_id=marker.source_id,
            target_side="cm" if cm is not None else "mt",
            token=marker.token,
        )
        if cm is not None:
            aviso = self.avisos().get(int(marker.source_id))
            if aviso is not None:
                self._link(intent, cm, self.mapping.from_mt(aviso), origin="adopted-mt")
        elif mt is not None:
            try:
                request = self.cm.get_request(int(marker.source_id))
            except NotFound:
                return
            self._link(intent, self.mapping.from_cm(request), mt, origin="adopted-cm")

    # -- deletes ---------------------------------------------------------------------------------
    def _aviso_deleted(self, link: Link) -> None:
        """The aviso is gone: decline the request (never delete it)."""
        if self.rt.dry_run:
            self.plan("cancel", "clickmaint", f"request:{link.cm_id}", reason="aviso deleted")
            return
        if self.config.deletes.mode == "cancel":
            try:
                self.cm.update_request(int(link.cm_id), {"status": "declined"})
            except NotFound:
                pass
        link.state = "mt_deleted"
        with self.ledger.transaction():
            self.ledger.save_link(link)
            self.history(
                "partner_deleted", cm_id=link.cm_id, mt_id=link.mt_id, deleted="mantenimiento"
            )
        assert self.report is not None
        self.report.counts["cancelled_cm"] += 1
