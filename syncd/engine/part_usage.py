"""The `part_usage` stream: Click Maint part transactions → materials used on mantenimiento OTs.

Transactions are facts: each one reaches mantenimiento exactly once and is never edited or
repeated.  Every transaction syncd sees gets one row in the ledger's `facts` table, whatever
becomes of it (mirrored, not mirrored with a reason, waiting for its work order to be linked,
quarantined), and that row's primary key is the exactly-once guarantee; the create itself goes
through the outbox with a token in the material record's `comentario`.

Change discovery scales with changes, not with the catalogue: the parts listing is scanned
for parts whose `updated_at` moved (a transaction changes the part's stock), and only those
parts' `transaction_history` is paged, each from its own cursor.  An idle cycle costs one
request however many parts exist.

The other direction (materials recorded on a linked OT in mantenimiento) has no Click Maint
counterpart: its API has no endpoint that records part usage on a work order (only cost
updates and reconcile, which change stock, not usage).  Such records are logged once as
*not mirrorable* (`syncd history mantenimiento:<ot>`), never silently dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from ..faultpoints import crashpoint
from ..ledger.models import Fact, Intent, Link, iso_ms, utcnow
from ..systems.clickmaint import Capabilities
from ..systems.errors import (
    BadResponse,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    Rejected,
    ServerError,
)
from .mapping import iso_z, parse_iso
from .run import FATAL_REMOTE, CycleReport, Stream

KNOWN_TYPES = ("restock", "usage", "return", "cost_update", "average_cost_update", "reconcile")
WHY_NOT = {
    "restock": "a restock adds stock to the storeroom; mantenimiento records only usage on OTs",
    "return": "a return to stock cannot be recorded: mantenimiento only takes positive "
    "quantities used on an OT",
    "cost_update": "a cost update changes a price, not usage",
    "average_cost_update": "an average cost update changes a price, not usage",
    "reconcile": "a stock count correction is not usage on an OT",
}
#: a usage whose work order is still not linked after this long is recorded as not mirrored
WAIT_FOR_LINK = timedelta(days=7)
MARKER_PREFIX = "⟦syncd tx:"
#: cursor: closed OTs whose link was saved since this instant get their materials read
CLOSED_CURSOR = "closed_materials_since"
CLOSED_MARGIN = timedelta(minutes=1)
#: meta key set once a history listing was seen ignoring its updated_at filter or sort
HISTORY_IGNORES_FILTERS = "history_ignores_filters"
#: materiales-utilizados `cantidad` is a Decimal(12, 2)
MAX_QUANTITY = Decimal("9999999999.99")


@dataclass(frozen=True)
class Verdict:
    """What to do with one transaction (pure: see `classify`)."""

    action: str  # mirror | not_mirrored | quarantine
    reason: str = ""
    quantity: Decimal | None = None


def parse_quantity(value: Any) -> Decimal | None:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def classify(tx: dict[str, Any], usage_types: list[str]) -> Verdict:
    """Decide from the transaction alone (linking and material lookup come after)."""
    kind = tx.get("type")
    if not isinstance(kind, str) or (kind not in KNOWN_TYPES and kind not in usage_types):
        return Verdict("quarantine", f"unknown transaction type {kind!r}")
    if kind not in usage_types:
        return Verdict("not_mirrored", WHY_NOT.get(kind, f"type {kind} is not usage"))
    quantity = parse_quantity(tx.get("quantity"))
    if quantity is None:
        return Verdict("quarantine", f"quantity {tx.get('quantity')!r} is not a number")
    if quantity <= 0:
        return Verdict("quarantine", f"quantity {quantity} is not positive")
    if quantity > MAX_QUANTITY:
        # also keeps quantize() below from overflowing on values like 1e999999
        return Verdict(
            "quarantine",
            f"quantity {quantity:.6g} is larger than mantenimiento can store "
            f"(numeric(12,2): at most {MAX_QUANTITY})",
        )
    if quantity != quantity.quantize(Decimal("0.01")):
        return Verdict(
            "quarantine",
            f"quantity {quantity} has more than 2 decimals; mantenimiento stores hundredths "
            "and would round it",
        )
    work_order = tx.get("work_order_id")
    if work_order is None:
        return Verdict("not_mirrored", "usage not booked against a work order")
    if not isinstance(work_order, int) or isinstance(work_order, bool):
        # not "no work order": a garbled id must not turn into a final "not mirrored"
        return Verdict("quarantine", f"work_order_id {work_order!r} is not a work order id")
    return Verdict("mirror", quantity=quantity.quantize(Decimal("0.01")))


class PartUsageSync(Stream):
    name = "part_usage"

    def __init__(self, rt: Any) -> None:
        super().__init__(rt)
        self.usage_types = list(self.config.clickmaint.usage_transaction_types)
        self._materials: dict[str, int | None] = {}
        self._decided: set[str] = set()  # facts already looked at in this cycle

    def cycle_body(self, report: CycleReport, *, full: bool = False, **_options: Any) -> None:
        self._resume_outbox()
        self._scan_parts(full=full)
        self._sweep_histories()
        self._retry_waiting()
        self._retry_quarantine()
        # one GET per linked OT looked at: as heavy as the work_orders re-read, so it follows
        # the same knobs (full passes and resyncs always look at every OT)
        cycle_no = int(self.ledger.get_meta("pu_cycle_no", 0) or 0) + 1
        if not self.rt.dry_run:
            self.ledger.set_meta("pu_cycle_no", cycle_no)
        mt_cfg = self.config.mantenimiento
        open_due = full or cycle_no % mt_cfg.open_reread_every == 0
        closed_due = full or cycle_no % mt_cfg.closed_reread_every == 0
        if open_due or closed_due:
            self._reverse_direction(open_ots=open_due, all_closed=closed_due)

    # -- discovery --------------------------------------------------------------------------
    def _scan_parts(self, *, full: bool) -> None:
        watermark = None if full else self.ledger.get_cursor(self.name, "parts_watermark")
        scan = self.clickmaint_scan("/parts", watermark)
        assert self.report is not None
        for batch in scan:
            for part in batch.items:
                self.rt.check_stop()
                self._on_part(part)
            if batch.checkpoint and not self.rt.dry_run:
                self.ledger.set_cursor(self.name, "parts_watermark", batch.checkpoint)
        self.report.counts["part_pages"] += scan.report.pages

    def _sweep_histories(self) -> None:
        """The fallback for a server that adds transactions without moving the part's stamp.

        Those transactions are invisible to the listing scan, so a slice of the catalogue
        (`part_sweep_per_cycle` parts, in id order, round robin) has its history read every
        cycle regardless of stamps.  Each history read starts at that part's own cursor, so
        a part with nothing new costs one request; a full round over N parts takes
        N / part_sweep_per_cycle cycles.
        """
        cfg = self.config.clickmaint
        if cfg.part_history_sweep == "off" or (
            cfg.part_history_sweep == "auto" and not self.ledger.get_meta("part_touch_unreliable")
        ):
            return
        assert self.report is not None
        page_no = int(self.ledger.get_cursor(self.name, "sweep_page") or 1)
        size = cfg.part_sweep_per_cycle
        page = self.cm.list_page("/parts", page=page_no, per_page=size, sort="id asc")
        for part in page.items:
            self.rt.check_stop()
            self._on_part(part, sweep=True)
            self.report.counts["parts_swept"] += 1
        # total_pages, not total / size: a server that caps per_page lower pages by its size
        more = bool(page.items) and page_no < page.total_pages
        if not self.rt.dry_run:
            self.ledger.set_cursor(self.name, "sweep_page", str(page_no + 1 if more else 1))

    def _on_part(self, part: dict[str, Any], *, sweep: bool = False) -> None:
        """Page one part's history from its own cursor (transactions are immutable)."""
        assert self.report is not None
        part_id = part.get("id")
        if not isinstance(part_id, int):
            return
        if not _part_number(part):
            # a listing item without its number (garbled answer?): ask for the part itself
            # rather than file its transactions under an empty SKU
            try:
                part = self.cm.get_part(part_id)
            except (NotFound, BadResponse, ServerError):
                pass
        part_updated = _stamp(part.get("updated_at"))
        seen_key = f"part_seen:{part_id}"
        if (
            not sweep
            and part_updated
            and self.ledger.get_cursor(self.name, seen_key) == part_updated
        ):
            self.report.counts["parts_unchanged"] += 1
            return  # re-read by the lookback window; its history was paged at this stamp
        key = f"part:{part_id}"
        cursor = self.ledger.get_cursor(self.name, key)
        scan = self.clickmaint_scan(
            f"/parts/{part_id}/transaction_history", cursor, caps=self._history_capabilities()
        )
        for batch in scan:
            for tx in batch.items:
                self.rt.check_stop()
                self._on_transaction(part, tx)
                created = _stamp(tx.get("created_at"))
                if part_updated and created and created > part_updated:
                    # the listing would not have shown this part: its stamp does not move
                    self._part_touch_unreliable(part_id, tx)
            if batch.checkpoint and not self.rt.dry_run:
                self.ledger.set_cursor(self.name, key, batch.checkpoint)
        self.report.counts["history_pages"] += scan.report.pages
        if any("ignored" in note for note in scan.report.notes):
            self._history_ignores_filters(part_id, scan.report.notes)
        # Stamps are whole seconds: a transaction booked later in the second the part is
        # stamped with leaves that stamp unchanged.  Only a stamp behind the horizon (that
        # second was over before the history was read) proves the history is complete at it.
        settled = part_updated is not None and part_updated <= scan.horizon
        if scan.report.complete and settled and not self.rt.dry_run:
            self.ledger.set_cursor(self.name, seen_key, part_updated)

    def _history_capabilities(self) -> Capabilities:
        """What a part's history listing honours.

        The reference leaves open whether `transaction_history` honours the `updated_at`
        filter and sort; it is taken to behave like `/parts` (one backend) until a scan sees
        it ignore one.  From then on histories are read whole (the `full` strategy): a keyset
        scan of a listing that ignores its filter would stop at the first page every time and
        never reach a new transaction further down.  A history is read only when its part
        changed, and is short, so this costs little.
        """
        caps = self.cm_capabilities("/parts")
        if self.ledger.get_meta(HISTORY_IGNORES_FILTERS):
            return replace(caps, updated_at_filter=False, updated_at_sort=False)
        return caps

    def _history_ignores_filters(self, part_id: int, notes: list[str]) -> None:
        if self.rt.dry_run or self.ledger.get_meta(HISTORY_IGNORES_FILTERS):
            return
        self.ledger.set_meta(HISTORY_IGNORES_FILTERS, {"part": part_id, "at": utcnow()})
        self.log.warning(
            "clickmaint.history_ignores_filters",
            part=part_id,
            notes=notes,
            hint="part histories are read whole from now on",
        )

    def history_keys(self, side: str, record_id: Any) -> dict[str, Any]:
        """Quarantined records of this stream are transactions, not work orders: filed under
        `tx` so `syncd history clickmaint:tx:<id>` finds them and a work order with the same
        number does not."""
        return {"tx": str(record_id)} if side == "cm" else super().history_keys(side, record_id)

    def _part_touch_unreliable(self, part_id: int, tx: dict[str, Any]) -> None:
        if self.rt.dry_run or self.ledger.get_meta("part_touch_unreliable"):
            return
        self.ledger.set_meta(
            "part_touch_unreliable", {"part": part_id, "transaction": tx.get("id"), "at": utcnow()}
        )
        self.log.warning(
            "clickmaint.part_touch_unreliable",
            part=part_id,
            transaction=tx.get("id"),
            hint="a transaction did not move its part's updated_at; "
            f"clickmaint.part_history_sweep={self.config.clickmaint.part_history_sweep}",
        )

    # -- one transaction ----------------------------------------------------------------------
    def _on_transaction(self, part: dict[str, Any], tx: dict[str, Any]) -> None:
        assert self.report is not None
        tx_id = tx.get("id")
        if not isinstance(tx_id, int):
            self.quarantine("cm", f"part{part.get('id')}-tx?", "transaction without an id")
            return
        existing = self.ledger.get_fact(self.name, "cm", str(tx_id))
        if existing is not None and existing.state in ("mirrored", "not_mirrored"):
            self.report.counts["already_done"] += 1
            return
        fact = existing or Fact(
            stream=self.name,
            source_side="cm",
            source_id=str(tx_id),
            kind="",
            state="new",
            part_id=str(part.get("id")),
            part_number=_part_number(part),
        )
        _read_into(fact, tx)  # a fact not decided yet takes what the server says now ...
        if _part_number(part):  # ... its part's number included (it may have been corrected)
            fact.part_id, fact.part_number = str(part.get("id")), _part_number(part)
        self._decide(fact, tx)

    def _decide(self, fact: Fact, tx: dict[str, Any]) -> None:
        assert self.report is not None
        self._decided.add(fact.source_id)
        verdict = classify(tx, self.usage_types)
        if verdict.action == "not_mirrored":
            self._finish(fact, "not_mirrored", verdict.reason)
            return
        if verdict.action == "quarantine":
            self._hold(fact, verdict.reason)
            return
        link = self.ledger.get_link("work_orders", cm_id=fact.cm_wo_id or "")
        if link is None or link.state != "active":
            first = parse_iso(fact.first_seen, "first_seen") if fact.first_seen else None
            if first is not None and datetime.now(UTC) - first > WAIT_FOR_LINK:
                self._finish(
                    fact, "not_mirrored", f"work order {fact.cm_wo_id} was never linked to an OT"
                )
            else:
                fact.state, fact.reason = (
                    "waiting",
                    f"work order {fact.cm_wo_id} is not linked to an OT yet",
                )
                if not self.rt.dry_run:
                    self.ledger.save_fact(fact)
                self.report.counts["waiting"] += 1
            return
        fact.mt_ot_id = link.mt_id
        material = self._material_for(fact.part_number or "")
        if material is None:
            sku = self._sku(fact.part_number or "")
            self._hold(
                fact, f"no mantenimiento Material with sku {sku!r} (part {fact.part_number!r})"
            )
            return
        assert verdict.quantity is not None
        self._mirror(fact, material, verdict.quantity)

    def _finish(self, fact: Fact, state: str, reason: str = "", target: str | None = None) -> None:
        assert self.report is not None
        fact.state, fact.reason, fact.target_id = state, reason, target or fact.target_id
        self.report.counts[state] += 1
        if self.rt.dry_run:
            if state == "mirrored":
                self.plan("add_material", "mantenimiento", f"ot:{fact.mt_ot_id}", tx=fact.source_id)
            return
        with self.ledger.transaction():
            self.ledger.save_fact(fact)
            self.history(
                state,
                cm_id=fact.cm_wo_id,
                mt_id=fact.mt_ot_id,
                tx=fact.source_id,
                kind=fact.kind,
                part=fact.part_number,
                quantity=fact.quantity,
                reason=reason or None,
                material_record=target,
            )
        self.log.info(
            f"transaction.{state}",
            tx=fact.source_id,
            cm_id=fact.cm_wo_id,
            mt_id=fact.mt_ot_id,
            part=fact.part_number,
            quantity=fact.quantity,
            **({"reason": reason} if reason else {"material_record": fact.target_id}),
        )
        if fact.state == "mirrored":
            self.release("cm", fact.source_id)

    def _hold(self, fact: Fact, reason: str) -> None:
        fact.state, fact.reason = "quarantined", reason
        if not self.rt.dry_run:
            self.ledger.save_fact(fact)
        self.quarantine("cm", fact.source_id, reason)

    # -- materials ------------------------------------------------------------------------------
    def _sku(self, number: str) -> str:
        return self.config.mapping.parts.get(number, number)

    def _material_for(self, number: str) -> int | None:
        """Exact sku match only: a part that cannot be matched is quarantined, not guessed."""
        sku = self._sku(number)
        if not sku:
            return None
        if sku not in self._materials:
            found = None
            for material in self.mt.iter_materials(sku):
                if str(material.get("sku") or "") == sku and isinstance(material.get("id"), int):
                    found = material["id"]
                    break
            self._materials[sku] = found
        return self._materials[sku]

    # -- the write, through the outbox ----------------------------------------------------------
    def _mirror(
        self, fact: Fact, material_id: int, quantity: Decimal, intent: Intent | None = None
    ) -> None:
        assert self.report is not None and fact.mt_ot_id is not None
        if self.rt.dry_run:
            self._finish(fact, "mirrored")
            return
        if intent is None:
            intent = self.open_intent(
                None,
                self._resume,
                op="mirror",
                source_side="cm",
                source_id=fact.source_id,
                payload={
                    "material_id": material_id,
                    "quantity": str(quantity),
                    "ot": fact.mt_ot_id,
                },
            )
            if intent is None:
                return
            fact.state = "pending"
            self.ledger.save_fact(fact)
        comentario = (
            f"Click Maint: part {fact.part_number} x {quantity}, transaction {fact.source_id} "
            f"(work order #{fact.cm_wo_id}) {MARKER_PREFIX}{fact.source_id} t:{intent.token}⟧"
        )
        self.ledger.mark_intent(intent.token, "sent", count_attempt=True)
        crashpoint("tx.sent")
        try:
            record_id = self.mt.add_material_used(
                int(fact.mt_ot_id),
                material_id=material_id,
                cantidad=quantity,
                comentario=comentario,
            )
        except OutcomeUnknown as exc:
            self.ledger.mark_intent(intent.token, "unknown", error=str(exc))
            self.report.counts["outcome_unknown"] += 1
            return
        except (Rejected, NotFound) as exc:
            self.ledger.mark_intent(intent.token, "failed", error=str(exc))
            self._hold(fact, f"mantenimiento refused the material record: {exc}")
            return
        crashpoint("tx.remote")
        with self.ledger.transaction():
            self.ledger.mark_intent(intent.token, "done", result_id=str(record_id))
            self._finish(fact, "mirrored", target=str(record_id))
        crashpoint("tx.done")

    def _resume_outbox(self) -> None:
        self.resume_outbox(self._resume)

    def _resume(self, intent: Intent) -> None:
        """Adopt a material record carrying our token, else (only if never sent) send it."""
        fact = self.ledger.get_fact(self.name, "cm", intent.source_id)
        if fact is None or fact.mt_ot_id is None:
            self.ledger.mark_intent(intent.token, "abandoned", error="fact missing")
            return
        if intent.state != "pending":
            try:
                used = self.mt.materials_used(int(fact.mt_ot_id))
            except NotFound:
                self.ledger.mark_intent(intent.token, "abandoned", error="OT gone")
                self._finish(fact, "not_mirrored", f"OT {fact.mt_ot_id} no longer exists")
                return
            for record in used:
                if intent.token in str(record.get("comentario") or ""):
                    with self.ledger.transaction():
                        self.ledger.mark_intent(
                            intent.token, "done", result_id=str(record.get("id"))
                        )
                        self._finish(fact, "mirrored", target=str(record.get("id")))
                    assert self.report is not None
                    self.report.counts["adopted"] += 1
                    return
            if intent.state == "unknown" and intent.attempts >= 3:
                self.ledger.mark_intent(
                    intent.token, "abandoned", error="not found after 3 attempts"
                )
                self._hold(fact, "material record could not be confirmed after 3 attempts")
                return
        payload = intent.payload
        self._mirror(fact, int(payload["material_id"]), Decimal(payload["quantity"]), intent)

    # -- retries ----------------------------------------------------------------------------------
    def _retry_waiting(self) -> None:
        for fact in self.ledger.facts_in_state(self.name, "waiting"):
            if fact.source_id in self._decided:
                continue
            self.rt.check_stop()
            self._decide(fact, self._as_tx(fact))

    def _retry_quarantine(self) -> None:
        """Due quarantined transactions are read again (one request each, on the quarantine's
        back-off): the reason may have been a garbled answer, not the transaction itself."""
        for item in self.ledger.due_quarantine(self.name):
            self.rt.check_stop()
            fact = self.ledger.get_fact(self.name, "cm", item.record_id)
            if fact is None or fact.state in ("mirrored", "not_mirrored"):
                self.release("cm", item.record_id)
                continue
            try:
                tx = self._as_tx(fact)
                if fact.part_id and fact.part_id.isdigit() and fact.source_id.isdigit():
                    tx = self.cm.get_transaction(int(fact.part_id), int(fact.source_id))
                    _read_into(fact, tx)
                    # the part as it is now: a number corrected in Click Maint (the usual fix
                    # for "no Material with sku ...") must release the transaction
                    number = _part_number(self.cm.get_part(int(fact.part_id)))
                    fact.part_number = number or fact.part_number
                self._materials.pop(self._sku(fact.part_number or ""), None)
                self._decide(fact, tx)
            except NotFound:
                self.quarantine("cm", item.record_id, "the transaction is gone from Click Maint")
            except FATAL_REMOTE:
                raise
            except (BadResponse, ServerError, RateLimited) as exc:
                self.quarantine("cm", item.record_id, str(exc))

    @staticmethod
    def _as_tx(fact: Fact) -> dict[str, Any]:
        return {
            "id": int(fact.source_id),
            "type": fact.kind,
            "quantity": fact.quantity,
            "work_order_id": int(fact.cm_wo_id)
            if fact.cm_wo_id and fact.cm_wo_id.isdigit()
            else None,
        }

    # -- mantenimiento -> Click Maint ------------------------------------------------------
    def _links_to_look_at(self, *, open_ots: bool, all_closed: bool) -> Iterator[Link]:
        """Open linked OTs (when due), and closed ones: every one on the `closed_reread_every`
        schedule, and in between those whose link changed since the previous pass, which
        includes every OT closed since then (its final materials are read at once)."""
        if open_ots:
            yield from self.ledger.iter_links("work_orders", state="active", mt_open=True)
        since = None if all_closed else self.ledger.get_cursor(self.name, CLOSED_CURSOR)
        yield from self.ledger.iter_links(
            "work_orders", state="active", mt_open=False, updated_since=since
        )

    def _reverse_direction(self, *, open_ots: bool = True, all_closed: bool = False) -> None:
        """Materials recorded by people on linked OTs: logged once as not mirrorable.

        Closed OTs are looked at too: materials are often recorded when the job is finished,
        and an OT closed before this pass ran would otherwise never be read.
        """
        assert self.report is not None
        # links saved from here on are looked at next time (a margin covers saves that were
        # stamped before this instant but committed after the listing read past them)
        started = iso_ms(datetime.now(UTC) - CLOSED_MARGIN)
        for link in self._links_to_look_at(open_ots=open_ots, all_closed=all_closed):
            self.rt.check_stop()
            try:
                used = self.mt.materials_used(int(link.mt_id))
            except NotFound:
                continue
            except FATAL_REMOTE:
                raise
            except (BadResponse, ServerError, RateLimited):
                continue
            for record in used:
                record_id = record.get("id")
                if not isinstance(record_id, int) or MARKER_PREFIX in str(
                    record.get("comentario") or ""
                ):
                    continue
                if self.ledger.get_fact(self.name, "mt", str(record_id)) is not None:
                    continue
                fact = Fact(
                    stream=self.name,
                    source_side="mt",
                    source_id=str(record_id),
                    kind="material_used",
                    state="new",
                    part_number=str(record.get("material_sku") or ""),
                    quantity=str(record.get("cantidad")),
                    cm_wo_id=link.cm_id,
                    mt_ot_id=link.mt_id,
                )
                self._finish(
                    fact,
                    "not_mirrored",
                    "Click Maint's API has no endpoint that records part usage on a work order",
                )
        if not self.rt.dry_run:
            self.ledger.set_cursor(self.name, CLOSED_CURSOR, started)


def _stamp(value: Any) -> str | None:
    try:
        return iso_z(parse_iso(value, "timestamp"))
    except Exception:
        return None


def _read_into(fact: Fact, tx: dict[str, Any]) -> None:
    """The transaction's content as the fact keeps it (for retries and `syncd history`)."""
    work_order = tx.get("work_order_id")
    fact.kind = str(tx.get("type"))
    fact.quantity = str(tx.get("quantity"))
    is_id = isinstance(work_order, int) and not isinstance(work_order, bool)
    fact.cm_wo_id = str(work_order) if is_id else None
    fact.detail = {"note": str(tx.get("note") or "")[:200], "created_at": tx.get("created_at")}


def _part_number(part: dict[str, Any]) -> str:
    number = part.get("number")
    return number.strip() if isinstance(number, str) else ""
