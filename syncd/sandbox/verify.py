"""Compare both simulated servers with the ledger: the invariants every test and soak checks.

* every record on each side has exactly one partner (a record without one after a quiet round
  is a lost record or a duplicate);
* linked pairs agree on every field both servers can write;
* every Click Maint usage transaction the ledger calls mirrored exists exactly once on its OT,
  and no transaction was written twice (the ledger's view);
* independently of the ledger's facts, every usage transaction in Click Maint's own data that
  is booked on a work order linked to a live OT, with a part that has a mantenimiento material
  and a quantity mantenimiento can store, is on that OT exactly once (the server's view: a
  transaction syncd never discovered fails here, not in the ledger's view);
* every request and every aviso has exactly one partner (or is quarantined), no request was
  mirrored into two avisos or the other way round, and linked pairs agree on their status
  (the only field both servers can write).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from ..config import Config
from ..engine.mapping import RequestMapping, WorkOrderMapping
from ..engine.records import WORK_ORDER_FIELDS
from ..ledger.models import Link
from ..ledger.store import Ledger
from .catalog import PARTS
from .clickmaint_sim import ClickMaintSim
from .mantenimiento_sim import MantenimientoSim

BOTH_WAYS = [f.name for f in WORK_ORDER_FIELDS if f.cm_writable and f.mt_writable]
_TX = re.compile(r"⟦syncd tx:(\d+) t:")
_REQUEST_MARKER = re.compile(r"⟦syncd req (cm|mt):(\d+) t:")


@dataclass
class Verdict:
    pairs: int = 0
    fields_compared: int = 0
    divergences: list[str] = field(default_factory=list)
    unlinked_cm: list[int] = field(default_factory=list)
    unlinked_mt: list[int] = field(default_factory=list)
    duplicated_transactions: list[str] = field(default_factory=list)
    missing_transactions: list[str] = field(default_factory=list)
    #: the server's view (`check_transactions`): how many were due on an OT, and what is wrong
    transactions_expected: int = 0
    #: materials used on OTs that carry a syncd transaction marker (copies included)
    transactions_written: int = 0
    transaction_problems: list[str] = field(default_factory=list)
    quarantined: int = 0
    request_pairs: int = 0
    request_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.divergences
            or self.unlinked_cm
            or self.unlinked_mt
            or self.duplicated_transactions
            or self.missing_transactions
            or self.transaction_problems
            or self.request_problems
        )

    def summary(self) -> dict[str, object]:
        return {
            "pairs": self.pairs,
            "fields_compared": self.fields_compared,
            "divergences": len(self.divergences),
            "duplicates_or_lost": len(self.unlinked_cm) + len(self.unlinked_mt),
            "transactions_duplicated": len(self.duplicated_transactions),
            "transactions_missing": len(self.missing_transactions),
            "transactions_expected": self.transactions_expected,
            "transactions_written": self.transactions_written,
            "transaction_problems": len(self.transaction_problems),
            "quarantined": self.quarantined,
            "request_pairs": self.request_pairs,
            "request_problems": len(self.request_problems),
            "examples": (
                self.divergences
                + [f"unlinked wo {i}" for i in self.unlinked_cm]
                + [f"unlinked ot {i}" for i in self.unlinked_mt]
                + self.duplicated_transactions
                + self.missing_transactions
                + self.transaction_problems
                + self.request_problems
            )[:10],
        }


def verify(config: Config, cm: ClickMaintSim, mt: MantenimientoSim) -> Verdict:
    mapping = WorkOrderMapping(config)
    verdict = Verdict()
    ledger = Ledger.open(config.ledger_path)
    try:
        links = list(ledger.iter_links("work_orders", state=None))
        quarantine = ledger.list_quarantine()
        quarantined = {(q.stream, q.side, q.record_id) for q in quarantine}
        verdict.quarantined = len(quarantine)
        out_of_scope = {
            ot for ot in mt.ots if (ledger.mt_index_get(ot) or {}).get("status") == "out_of_scope"
        }
        mirrored = {
            f.source_id: f for f in ledger.facts_in_state("part_usage", "mirrored", limit=10**9)
        }
        request_links = list(ledger.iter_links("requests"))
    finally:
        ledger.close()
    if config.streams.requests.enabled:
        _verify_requests(config, cm, mt, request_links, quarantined, verdict)
    linked_cm = {int(link.cm_id) for link in links}
    linked_mt = {int(link.mt_id) for link in links}
    with cm.lock:
        cm_ids = list(cm.work_orders)
    with mt.lock:
        mt_ids = list(mt.ots)
    verdict.unlinked_cm = sorted(
        i
        for i in cm_ids
        if i not in linked_cm
        and ("work_orders", "cm", str(i)) not in quarantined
        and cm.work_orders[i]["type"] in config.scope.cm_types
    )
    verdict.unlinked_mt = sorted(
        i
        for i in mt_ids
        if i not in linked_mt
        and ("work_orders", "mt", str(i)) not in quarantined
        and i not in out_of_scope
    )
    for link in links:
        if link.state != "active":
            continue
        wo = cm.work_orders.get(int(link.cm_id))
        ot = mt.ots.get(int(link.mt_id))
        if wo is None or ot is None:
            continue
        try:
            a = mapping.from_cm(cm.render_work_order(wo, detail=True))
            b = mapping.from_mt(mt.render_detail(ot))
        except Exception as exc:  # a record still broken on purpose: reported, not compared
            verdict.divergences.append(f"wo {link.cm_id}/ot {link.mt_id}: unreadable ({exc})")
            continue
        verdict.pairs += 1
        for name in BOTH_WAYS:
            if name == "due" and a[name] is None:
                continue
            verdict.fields_compared += 1
            if not mapping.agree(name, a[name], b[name]):
                verdict.divergences.append(
                    f"wo {link.cm_id}/ot {link.mt_id} {name}: {a[name]!r} != {b[name]!r}"
                )
    with mt.lock:
        written = Counter(
            match.group(1)
            for record in mt.materiales_utilizados.values()
            if (match := _TX.search(str(record.get("comentario") or "")))
        )
    verdict.transactions_written = sum(written.values())
    verdict.duplicated_transactions = [
        f"tx {tx} written {n} times" for tx, n in written.items() if n > 1
    ]
    for tx, fact in mirrored.items():
        if written.get(tx, 0) == 0 and fact.mt_ot_id and int(fact.mt_ot_id) in mt.ots:
            verdict.missing_transactions.append(f"tx {tx} mirrored but not on OT {fact.mt_ot_id}")
    if config.streams.part_usage.enabled:
        expected, problems = check_transactions(config, cm, mt, links)
        verdict.transactions_expected = expected
        verdict.transaction_problems = problems
    return verdict


def check_transactions(
    config: Config, cm: ClickMaintSim, mt: MantenimientoSim, links: list[Link]
) -> tuple[int, list[str]]:
    """The server's view of exactly-once, from Click Maint's and mantenimiento's own data.

    Every usage transaction in Click Maint booked on a work order whose link is active and
    whose OT still exists, with a part whose mantenimiento material exists and a positive
    quantity in hundredths, must be on that OT exactly once (by its `⟦syncd tx:ID` marker);
    no transaction may be written twice anywhere.  Returns (transactions expected, problems).
    Only the links come from the ledger: a transaction syncd never discovered (no fact at all)
    is missing here.
    """
    by_wo = {link.cm_id: link for link in links if link.stream == "work_orders"}
    usage_types = set(config.clickmaint.usage_transaction_types)
    with mt.lock:
        skus = {m["sku"] for m in mt.materials.values()}
        live_ots = set(mt.ots)
        written: Counter[str] = Counter()
        where: dict[str, set[int]] = {}
        for record in mt.materiales_utilizados.values():
            match = _TX.search(str(record.get("comentario") or ""))
            if match:
                written[match.group(1)] += 1
                where.setdefault(match.group(1), set()).add(int(record["ot_id"]))
    catalogue = {p.number: p for p in PARTS}
    with cm.lock:
        txs = [dict(t) for t in cm.transactions.values()]
        parts = {pid: dict(p) for pid, p in cm.parts.items()}
    problems: list[str] = []
    expected = 0
    for tx in txs:
        key = str(tx["id"])
        if written[key] > 1:
            problems.append(f"tx {key} written {written[key]} times (OTs {sorted(where[key])})")
        if tx["type"] not in usage_types or tx["work_order_id"] is None:
            continue
        link = by_wo.get(str(tx["work_order_id"]))
        part = parts.get(tx["part_id"])
        if link is None or link.state != "active" or part is None:
            continue
        if int(link.mt_id) not in live_ots:
            continue
        sku = config.mapping.parts.get(part["number"], part["number"])
        known = catalogue.get(part["number"])
        if sku not in skus or (known is not None and known.sku is None):
            continue  # no material: quarantined by design (the ledger says why)
        try:
            quantity = Decimal(str(tx["quantity"]))
        except InvalidOperation:
            continue
        if quantity <= 0 or quantity != quantity.quantize(Decimal("0.01")):
            continue
        expected += 1
        if written[key] == 0:
            problems.append(f"tx {key} (wo {tx['work_order_id']}, part {part['number']}) missing")
        elif where.get(key) != {int(link.mt_id)}:
            problems.append(f"tx {key} on OT {sorted(where[key])}, expected OT {link.mt_id}")
    return expected, problems


def _verify_requests(
    config: Config,
    cm: ClickMaintSim,
    mt: MantenimientoSim,
    links: list,
    quarantined: set[tuple[str, str, str]],
    verdict: Verdict,
) -> None:
    mapping = RequestMapping(config)
    with cm.lock:
        requests = {
            i: cm.render_request(r, detail=True)
            for i, r in cm.requests.items()
            if r["entity_id"] == config.clickmaint.entity_id
        }
    with mt.lock:
        avisos = {i: dict(a) for i, a in mt.avisos.items()}
    problems = verdict.request_problems
    linked_cm = {int(link.cm_id) for link in links}
    linked_mt = {int(link.mt_id) for link in links}
    for request_id in sorted(set(requests) - linked_cm):
        if ("requests", "cm", str(request_id)) not in quarantined:
            problems.append(f"request {request_id} has no aviso")
    for aviso_id in sorted(set(avisos) - linked_mt):
        if ("requests", "mt", str(aviso_id)) not in quarantined:
            problems.append(f"aviso {aviso_id} has no request")
    # a create repeated after a crash would leave a second record with the same marker
    copies: Counter[tuple[str, str]] = Counter()
    for text in [str(a.get("descripcion") or "") for a in avisos.values()] + [
        str(r.get("description") or "") for r in requests.values()
    ]:
        for side, source in _REQUEST_MARKER.findall(text):
            copies[(side, source)] += 1
    problems.extend(
        f"{'request' if side == 'cm' else 'aviso'} {source} mirrored {n} times"
        for (side, source), n in sorted(copies.items())
        if n > 1
    )
    for link in links:
        request = requests.get(int(link.cm_id))
        aviso = avisos.get(int(link.mt_id))
        if request is None or aviso is None:
            problems.append(f"request {link.cm_id} / aviso {link.mt_id}: a side is gone")
            continue
        verdict.request_pairs += 1
        status, estado = request.get("status"), aviso.get("estado")
        if not mapping.agree("status", status, estado):
            problems.append(
                f"request {link.cm_id} / aviso {link.mt_id} status: {status!r} != {estado!r}"
            )
