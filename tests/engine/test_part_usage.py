"""part_usage: Click Maint transactions reach mantenimiento exactly once, inside the budget."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from syncd.engine.part_usage import classify
from syncd.sandbox.catalog import PARTS

from .harness import Harness, Payload, Rewrite, make_harness


def add_parts(h: Harness) -> dict[str, int]:
    ids = {}
    for stock in PARTS:
        part = h.cm.create_part(
            {
                "id": stock.cm_part_id,
                "name": stock.name,
                "number": stock.number,
                "unit_cost": stock.cost,
                "avg_unit_cost": stock.cost,
            }
        )
        ids[stock.number] = part["id"]
    return ids


def linked_work_order(h: Harness, title: str = "Cambio de rodamientos") -> tuple[int, int]:
    wo = h.cm.create_work_order({"title": title})["id"]
    h.quiet_sync()
    ledger = h.ledger()
    mt = int(ledger.get_link("work_orders", cm_id=str(wo)).mt_id)
    ledger.close()
    return wo, mt


def usage_sync(h: Harness):
    h.cm.clock.advance(10)  # past the lag
    report = h.sync(stream="part_usage")
    assert report.status == "ok", report.error
    return report


def materials(h: Harness, ot: int) -> list[dict]:
    return [m for m in h.mt.materiales_utilizados.values() if m["ot_id"] == ot]


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    harness = make_harness(tmp_path)
    harness.parts = add_parts(harness)  # type: ignore[attr-defined]
    return harness


def test_usage_is_mirrored_exactly_once_and_a_second_run_writes_nothing(h: Harness) -> None:
    wo, ot = linked_work_order(h)
    part = h.parts["BRG-6204"]  # type: ignore[attr-defined]
    oil = h.parts["OIL-ISO68"]  # type: ignore[attr-defined]
    h.cm.add_transaction(part, "usage", 2, work_order_id=wo, note="cambio")
    h.cm.add_transaction(oil, "usage", 2.5, work_order_id=wo)
    h.cm.add_transaction(part, "restock", 10)
    report = usage_sync(h)
    assert report.counts["mirrored"] == 2 and report.counts["not_mirrored"] == 1
    used = materials(h, ot)
    assert sorted(str(m["cantidad"]) for m in used) == ["2.00", "2.50"]
    skus = {h.mt.materials[m["material_id"]]["sku"] for m in used}
    assert skus == {"BRG-6204", "OIL-ISO68"}
    before = h.writes()["mt"]
    again = usage_sync(h)
    assert again.counts["mirrored"] == 0
    assert h.writes()["mt"] == before
    assert len(materials(h, ot)) == 2
    ledger = h.ledger()
    reasons = [e.detail.get("reason") for e in ledger.history(cm_id=str(wo))]
    ledger.close()
    assert any(r is None for r in reasons)  # the mirrored ones
    counts = h.ledger().fact_counts("part_usage")
    assert counts == {"mirrored": 2, "not_mirrored": 1}


def test_idle_cycle_costs_one_request_whatever_the_catalogue_size(h: Harness) -> None:
    for i in range(150):
        h.cm.create_part({"name": f"Repuesto {i}", "number": f"X-{i}"})
    usage_sync(h)
    for _ in range(2):  # cycle intervals pass; syncd learns the server's time from Date headers
        h.cm.clock.advance(600)
        usage_sync(h)
    before = h.app.stats.count(server="clickmaint")
    h.cm.clock.advance(600)
    usage_sync(h)
    spent = h.app.stats.count(server="clickmaint") - before
    assert spent == 1, [(r.method, r.route) for r in list(h.app.stats.recent)[-spent:]]


def test_usage_waits_for_its_work_order_link(h: Harness) -> None:
    wo = h.cm.create_work_order({"title": "todavía sin OT"})["id"]
    h.cm.add_transaction(h.parts["FL_A"], "usage", 1, work_order_id=wo)  # type: ignore[attr-defined]
    assert usage_sync(h).counts["waiting"] == 1
    h.quiet_sync()  # work_orders links it
    report = usage_sync(h)
    assert report.counts["mirrored"] == 1


def test_unmatched_material_is_quarantined_not_guessed(h: Harness) -> None:
    wo, ot = linked_work_order(h)
    h.cm.add_transaction(h.parts["LAMP-LED-18"], "usage", 3, work_order_id=wo)  # type: ignore[attr-defined]
    report = usage_sync(h)
    assert report.counts["quarantined"] == 1
    assert materials(h, ot) == []
    ledger = h.ledger()
    item = ledger.list_quarantine("part_usage")[0]
    assert "LAMP-LED-18" in item.reason
    ledger.close()


def test_mapped_sku_and_renamed_part(h: Harness) -> None:
    wo, ot = linked_work_order(h)
    part = h.parts["REF-R404A"]  # type: ignore[attr-defined]  # sku R404A via [mapping.parts]
    h.cm.add_transaction(part, "usage", 1.25, work_order_id=wo)
    usage_sync(h)
    assert [h.mt.materials[m["material_id"]]["sku"] for m in materials(h, ot)] == ["R404A"]
    h.cm.parts[part]["name"] = "Gas refrigerante (renombrado)"
    h.cm.parts[part]["number"] = "GAS-NEW"  # its number changed: no material has that sku
    h.cm.add_transaction(part, "usage", 1, work_order_id=wo)
    report = usage_sync(h)
    assert report.counts["quarantined"] == 1
    assert len(materials(h, ot)) == 1


@pytest.mark.parametrize(
    ("quantity", "reason"), [(0, "not positive"), (-2, "not positive"), (1.005, "2 decimals")]
)
def test_bad_quantities_are_quarantined_with_a_reason(h: Harness, quantity, reason) -> None:
    wo, ot = linked_work_order(h)
    tx = h.cm.add_transaction(h.parts["FL_A"], "usage", 1, work_order_id=wo)  # type: ignore[attr-defined]
    h.cm.transactions[tx["id"]]["quantity"] = quantity  # what a broken server might send
    report = usage_sync(h)
    assert report.counts["quarantined"] == 1
    ledger = h.ledger()
    assert reason in ledger.list_quarantine("part_usage")[0].reason
    ledger.close()
    assert materials(h, ot) == []


def test_garbled_work_order_id_is_quarantined_then_mirrored(h: Harness) -> None:
    """Found by the chaos soak: a usage read once with work_order_id "abc" was recorded as
    "not booked against a work order", a final verdict, and never mirrored."""
    wo, ot = linked_work_order(h)
    tx = h.cm.add_transaction(h.parts["FL_A"], "usage", 2, work_order_id=wo)  # type: ignore[attr-defined]
    h.cm.transactions[tx["id"]]["work_order_id"] = "abc"  # one garbled answer
    assert usage_sync(h).counts["quarantined"] == 1
    h.cm.transactions[tx["id"]]["work_order_id"] = wo
    ledger = h.ledger()
    try:
        assert ledger.facts_in_state("part_usage", "not_mirrored") == []
        ledger.make_due("part_usage")
    finally:
        ledger.close()
    usage_sync(h)
    assert len(materials(h, ot)) == 1


def test_unknown_type_is_quarantined(h: Harness) -> None:
    wo, _ot = linked_work_order(h)
    tx = h.cm.add_transaction(h.parts["FL_A"], "usage", 1, work_order_id=wo)  # type: ignore[attr-defined]
    h.cm.transactions[tx["id"]]["type"] = "transfer"
    assert usage_sync(h).counts["quarantined"] == 1


def test_duplicate_and_out_of_order_pages_apply_once(h: Harness) -> None:
    """History pages served twice over, each with every transaction listed twice and in
    reverse order: still one material per transaction."""
    wo, ot = linked_work_order(h)
    part = h.parts["BELT-A42"]  # type: ignore[attr-defined]
    base = datetime.now(UTC) - timedelta(minutes=30)
    for i in range(12):  # created out of order, several in one second
        h.cm.add_transaction(
            part, "usage", 1, work_order_id=wo, created_at=base + timedelta(seconds=(7 * i) % 5)
        )
    h.rewrite_config(lambda text: text.replace("[clickmaint]\n", "[clickmaint]\nper_page = 5\n", 1))
    rewrite = Rewrite(h.cm_transport.inner)  # several pages, one second across two
    h.cm_transport.inner = rewrite
    served: list[int] = []

    def doubled_and_reversed(request: httpx.Request, payload: Payload) -> Payload:
        if request.url.path.endswith("/transaction_history"):
            items = payload["data"]
            payload["data"] = list(reversed(items)) + items
            served.extend(tx["id"] for tx in payload["data"])
        return payload

    rewrite.json = doubled_and_reversed
    usage_sync(h)
    assert len(materials(h, ot)) == 12
    first_pass = len(served)
    ledger = h.ledger()  # forget everything that says the history was read: pages come again
    ledger.delete_cursor("part_usage", f"part:{part}")
    ledger.delete_cursor("part_usage", f"part_seen:{part}")
    ledger.set_cursor("part_usage", "parts_watermark", "2000-01-01T00:00:00Z")
    ledger.close()
    usage_sync(h)
    usage_sync(h)
    assert len(served) > first_pass  # the history really was served again
    assert len(materials(h, ot)) == 12
    assert len(set(served)) == 12 and len(served) >= 2 * 2 * 12


def test_a_transaction_in_the_second_of_the_parts_stamp_is_found(h: Harness) -> None:
    """Stamps are whole seconds: a usage booked in the same second as the one before it
    leaves the part's `updated_at` as it was, and must still be found."""
    wo, ot = linked_work_order(h)
    part = h.parts["BRG-6204"]  # type: ignore[attr-defined]
    usage_sync(h)
    h.cm.clock.freeze(h.cm.clock.now().replace(microsecond=0) + timedelta(seconds=60))
    h.cm.add_transaction(part, "usage", 1, work_order_id=wo)
    stamp = h.cm.parts[part]["updated_at"]
    assert h.sync(stream="part_usage").counts["mirrored"] == 1  # read inside that second
    h.cm.add_transaction(part, "usage", 2, work_order_id=wo)
    assert h.cm.parts[part]["updated_at"] == stamp  # nothing in the listing says it moved
    h.cm.clock.freeze(None)
    h.cm.clock.advance(120)
    usage_sync(h)
    usage_sync(h)
    assert sorted(str(m["cantidad"]) for m in materials(h, ot)) == ["1.00", "2.00"]


def test_crash_after_the_post_is_adopted_not_repeated(h: Harness) -> None:
    wo, ot = linked_work_order(h)
    h.cm.add_transaction(h.parts["GRS-EP2"], "usage", 4, work_order_id=wo)  # type: ignore[attr-defined]

    def timeout(request: httpx.Request):
        if request.method == "POST" and "materiales-utilizados" in request.url.path:
            return httpx.ReadTimeout("simulated", request=request)
        return None

    h.mt_transport.after = timeout
    report = usage_sync(h)
    assert report.counts["outcome_unknown"] == 1
    assert len(materials(h, ot)) == 1  # it did land
    h.mt_transport.after = lambda _r: None
    again = usage_sync(h)
    assert again.counts["adopted"] == 1
    assert len(materials(h, ot)) == 1


def test_materials_added_in_mantenimiento_are_reported_not_mirrorable(h: Harness) -> None:
    _wo, ot = linked_work_order(h)
    material = next(iter(h.mt.materials))
    h.mt.add_material_usage(ot, material, Decimal("1.00"), comentario="a mano")
    report = usage_sync(h)
    assert report.counts["not_mirrored"] == 1
    ledger = h.ledger()
    fact = ledger.facts_in_state("part_usage", "not_mirrored")[0]
    assert fact.source_side == "mt" and "no endpoint" in fact.reason
    ledger.close()
    assert usage_sync(h).counts["not_mirrored"] == 0  # reported once


def test_materials_pass_follows_open_reread_every(h: Harness) -> None:
    """One GET per open linked OT per pass: with `open_reread_every = 3` one cycle in three."""
    h.rewrite_config(
        lambda text: text.replace("[mantenimiento]\n", "[mantenimiento]\nopen_reread_every = 3\n")
    )
    _wo, ot = linked_work_order(h)
    reads: list[int] = []

    def count(request: httpx.Request) -> None:
        if request.method == "GET" and "materiales-utilizados" in request.url.path:
            reads[-1] += 1

    h.mt_transport.before = count
    for _ in range(6):
        reads.append(0)
        usage_sync(h)
    assert [n > 0 for n in reads] == [False, False, True, False, False, True]
    material = next(iter(h.mt.materials))
    h.mt.add_material_usage(ot, material, Decimal("1.00"), comentario="a mano")
    found = [usage_sync(h).counts["not_mirrored"] for _ in range(3)]
    assert sorted(found) == [0, 0, 1]  # still reported, on the third cycle at the latest


@given(
    kind=st.sampled_from(["usage", "restock", "return", "reconcile", "cost_update", "??"]),
    quantity=st.one_of(
        st.decimals(-5, 50, places=3),
        # anything a server could send: any Decimal (NaN, sNaN, infinities, huge exponents),
        # any float, numbers as text, text that is not a number
        st.decimals(allow_nan=True, allow_infinity=True),
        st.floats(),
        st.decimals(allow_nan=True, allow_infinity=True).map(str),
        st.sampled_from(["1e999999", "-1e999999", "1E+10", "-0", "sNaN", "abc", ""]),
        st.none(),
    ),
    wo=st.one_of(st.none(), st.integers(1, 10), st.just("abc"), st.just(True), st.just(2.5)),
)
@example(kind="usage", quantity="1e999999", wo=1)  # quantize() overflowed: a crashed cycle
def test_classify_is_total_and_only_mirrors_clean_usage(kind, quantity, wo) -> None:
    verdict = classify({"type": kind, "quantity": quantity, "work_order_id": wo}, ["usage"])
    garbled_wo = wo is not None and (not isinstance(wo, int) or isinstance(wo, bool))
    if verdict.action == "not_mirrored" and kind == "usage":
        assert not garbled_wo, "a garbled work order id must never be a final verdict"
    if verdict.action == "mirror":
        assert kind == "usage" and wo is not None and not garbled_wo
        assert verdict.quantity is not None and verdict.quantity > 0
        assert verdict.quantity == verdict.quantity.quantize(Decimal("0.01"))
    assert verdict.action in ("mirror", "not_mirrored", "quarantine")
    assert verdict.action == "mirror" or verdict.reason


def test_part_listed_without_its_number_is_read_again(h: Harness) -> None:
    """Found by the chaos soak: a parts listing item served without `number` filed its new
    usage under an empty SKU ("no mantenimiento Material with sku ''")."""
    wo, ot = linked_work_order(h)
    part = h.parts["FL_A"]  # type: ignore[attr-defined]
    h.cm.add_transaction(part, "usage", 1, work_order_id=wo)  # type: ignore[attr-defined]
    number = h.cm.parts[part]["number"]
    h.cm.parts[part]["number"] = None  # listing and detail alike: unreadable for a while ...
    report = usage_sync(h)
    assert report.counts["quarantined"] == 1
    assert materials(h, ot) == []
    h.cm.parts[part]["number"] = number  # ... then fine again (its stamp did not move)
    ledger = h.ledger()
    try:
        ledger.make_due("part_usage")
    finally:
        ledger.close()
    usage_sync(h)
    assert len(materials(h, ot)) == 1


class ThrottledMaterials(httpx.BaseTransport):
    """nginx throttling the materials listing for longer than the retries last."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and "materiales-utilizados" in request.url.path:
            return httpx.Response(429, text="<html>429 Too Many Requests</html>")
        return self.inner.handle_request(request)


def test_a_throttled_materials_pass_does_not_fail_the_cycle(h: Harness) -> None:
    """Found by the long chaos soak: a 429 on one OT's materials ended the part_usage cycle."""
    wo, _ot = linked_work_order(h)
    h.cm.add_transaction(h.parts["FL_A"], "usage", 1, work_order_id=wo)  # type: ignore[attr-defined]
    h.mt_transport.inner = ThrottledMaterials(h.mt_transport.inner)
    report = usage_sync(h)  # asserts status ok
    assert report.counts["mirrored"] == 1


def sweep_settings(mode: str, per_cycle: int) -> Callable[[str], str]:
    return lambda text: text.replace(
        "[clickmaint.statuses]",
        f'part_history_sweep = "{mode}"\npart_sweep_per_cycle = {per_cycle}\n\n'
        "[clickmaint.statuses]",
    )


@pytest.mark.parametrize("mode", ["auto", "always", "off"])
def test_a_server_that_does_not_touch_parts_is_swept(h: Harness, mode: str) -> None:
    """If adding a transaction does not move the part's updated_at (the reference leaves it
    open), the listing scan never sees it; the sweep reads every part's history in turn."""
    h.cm.variant.part_touch_on_transaction = False
    h.rewrite_config(sweep_settings(mode, per_cycle=4))
    wo, ot = linked_work_order(h)
    bearing, oil = h.parts["BRG-6204"], h.parts["OIL-ISO68"]  # type: ignore[attr-defined]
    # the first pass reads every part: a usage newer than its part's stamp gives it away
    h.cm.clock.advance(5)
    h.cm.add_transaction(bearing, "usage", 1, work_order_id=wo)
    assert usage_sync(h).counts["mirrored"] == 1
    ledger = h.ledger()
    flagged = ledger.get_meta("part_touch_unreliable")
    ledger.close()
    assert flagged and flagged["part"] == bearing
    # from now on nothing moves: only a sweep can find the next usage
    h.cm.clock.advance(5)
    h.cm.add_transaction(oil, "usage", 3, work_order_id=wo)
    rounds = math.ceil(len(h.parts) / 4) + 1  # type: ignore[attr-defined]
    spent = []
    for _ in range(rounds):
        before = h.app.stats.count(server="clickmaint")
        usage_sync(h)
        spent.append(h.app.stats.count(server="clickmaint") - before)
    used = sorted(str(m["cantidad"]) for m in materials(h, ot))
    if mode == "off":
        assert used == ["1.00"]  # documented: waits until its part changes for another reason
        assert max(spent) == 1
    else:
        assert used == ["1.00", "3.00"]
        # a sweep cycle: the scan, one listing page of 4 parts, one history page per part
        assert max(spent) <= 1 + 1 + 4


def test_a_server_that_touches_parts_is_never_swept_in_auto(h: Harness) -> None:
    wo, _ot = linked_work_order(h)
    h.cm.add_transaction(h.parts["BRG-6204"], "usage", 1, work_order_id=wo)  # type: ignore[attr-defined]
    h.cm.add_transaction(h.parts["OIL-ISO68"], "usage", 2, work_order_id=wo)  # type: ignore[attr-defined]
    assert usage_sync(h).counts["mirrored"] == 2
    report = usage_sync(h)
    assert report.counts["parts_swept"] == 0
    ledger = h.ledger()
    assert ledger.get_meta("part_touch_unreliable") is None
    ledger.close()


def test_every_transaction_decision_is_visible_by_transaction_id(h: Harness) -> None:
    """A restock has no work order or OT to file it under, and a quarantined usage is filed
    under its transaction id: `syncd history clickmaint:tx:<id>` shows both, with reasons."""
    from click.testing import CliRunner

    from syncd.cli import cli

    wo, _ot = linked_work_order(h)
    bearing = h.parts["BRG-6204"]  # type: ignore[attr-defined]
    restock = h.cm.add_transaction(bearing, "restock", 10)["id"]
    odd = h.cm.add_transaction(bearing, "usage", -2, work_order_id=wo)["id"]
    # a work order with the same number as the quarantined transaction must not show it
    usage_sync(h)
    env = {"SYNCD_CONFIG": str(h.config_path), "CREDENTIALS_DIRECTORY": str(h.tmp / "credentials")}

    def history(record: str) -> list[dict]:
        result = CliRunner().invoke(cli, ["history", record, "--json"], env=env)
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    (fact, decided) = history(f"clickmaint:tx:{restock}")
    assert fact["action"] == "fact: not_mirrored" and decided["action"] == "not_mirrored"
    assert "restock adds stock" in fact["detail"]["reason"]
    rows = history(f"clickmaint:tx:{odd}")
    assert rows[0]["action"] == "fact: quarantined"
    assert any(
        r["action"] == "quarantined" and "not positive" in r["detail"]["reason"] for r in rows
    )
    assert not any(
        r["stream"] == "part_usage" and r["action"] == "quarantined"
        for r in history(f"clickmaint:{odd}")
    )
    text = CliRunner().invoke(cli, ["history", "clickmaint:tx:999999"], env=env).output
    assert "no history for clickmaint:tx:999999" in text


class HistoryIgnoresFilters(httpx.BaseTransport):
    """A Click Maint whose transaction_history honours `sort` but not `filter[...]`: the
    reference leaves open whether it does."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/transaction_history"):
            params = [(k, v) for k, v in request.url.params.multi_items() if "filter[" not in k]
            request = httpx.Request(
                request.method,
                request.url.copy_with(params=params),
                headers=request.headers,
            )
        return self.inner.handle_request(request)


def test_a_history_listing_that_ignores_its_filter_is_read_whole(h: Harness) -> None:
    """A keyset scan of a history that ignores `filter[updated_at_gteq]` would stop at its
    first page every time; a new usage further down must still be found."""
    h.rewrite_config(lambda text: text.replace("[clickmaint]\n", "[clickmaint]\nper_page = 5\n", 1))
    h.cm_transport.inner = HistoryIgnoresFilters(h.cm_transport.inner)
    for i in range(3):  # parts stamped in different seconds: /parts shows it honours the sort
        h.cm.clock.advance(2)
        h.cm.create_part({"name": f"Junta {i}", "number": f"JNT-{i}"})
    wo, ot = linked_work_order(h)
    part = h.parts["BRG-6204"]  # type: ignore[attr-defined]
    base = datetime.now(UTC) - timedelta(hours=2)
    for i in range(12):
        h.cm.add_transaction(
            part, "usage", 1, work_order_id=wo, created_at=base + timedelta(minutes=i)
        )
    usage_sync(h)
    assert len(materials(h, ot)) == 12
    h.cm.clock.advance(120)
    h.cm.add_transaction(part, "usage", 3, work_order_id=wo, note="la de hoy")
    for _ in range(3):
        usage_sync(h)
    assert sorted(str(m["cantidad"]) for m in materials(h, ot)).count("3.00") == 1
    assert len(materials(h, ot)) == 13
    ledger = h.ledger()
    assert ledger.get_meta("history_ignores_filters") is not None
    ledger.close()
