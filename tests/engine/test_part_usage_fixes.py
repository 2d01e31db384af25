"""part_usage defects found in review: materials on OTs closed before the pass, a corrected
part number, and a `[mapping.parts]` entry that halted every stream."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

import syncd.engine.part_usage as part_usage

from .harness import Harness, make_harness
from .test_part_usage import add_parts, linked_work_order, materials, usage_sync

NO_ENDPOINT = "Click Maint's API has no endpoint that records part usage on a work order"


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    harness = make_harness(tmp_path)
    harness.parts = add_parts(harness)  # type: ignore[attr-defined]
    return harness


def close_in_mantenimiento(h: Harness, ot: int) -> None:
    end = datetime.now(UTC)
    h.mt.close_ot(ot, fecha_inicio=end - timedelta(hours=1), fecha_fin=end)
    h.quiet_sync()  # work_orders sees it closed (and completes the work order)
    ledger = h.ledger()
    try:
        link = ledger.get_link("work_orders", mt_id=str(ot))
        assert link is not None and link.mt_open is False
    finally:
        ledger.close()


def retry_quarantined_now(h: Harness) -> None:
    """What `syncd quarantine retry --stream part_usage` does: every held record is due."""
    ledger = h.ledger()
    try:
        ledger.make_due("part_usage")
    finally:
        ledger.close()


def reported(h: Harness, ot: int) -> list[str]:
    ledger = h.ledger()
    try:
        return [
            e.detail.get("reason")
            for e in ledger.history(mt_id=str(ot))
            if e.action == "not_mirrored"
        ]
    finally:
        ledger.close()


def test_materials_recorded_before_the_ot_closed_are_reported_not_mirrorable(h: Harness) -> None:
    """The materials pass read open OTs only: a material recorded on an OT that was closed
    before the pass came round was dropped without a trace."""
    _wo, ot = linked_work_order(h)
    usage_sync(h)  # a pass has looked at the OT while it was open and empty
    material = next(iter(h.mt.materials))
    h.mt.add_material_usage(ot, material, Decimal("2.00"), comentario="al cerrar la OT")
    close_in_mantenimiento(h, ot)

    assert usage_sync(h).counts["not_mirrored"] == 1
    assert reported(h, ot) == [NO_ENDPOINT]
    assert usage_sync(h).counts["not_mirrored"] == 0  # reported once


def test_closed_ots_are_read_again_on_the_closed_reread_schedule(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A material added to an OT already closed (and already looked at) is found within
    `closed_reread_every` passes; in between, an unchanged closed OT costs no request."""
    monkeypatch.setattr(part_usage, "CLOSED_MARGIN", timedelta(0))
    _wo, ot = linked_work_order(h)
    close_in_mantenimiento(h, ot)
    usage_sync(h)  # the final read after closing: nothing recorded
    reads: list[int] = []

    def count(request: httpx.Request) -> None:
        if (
            request.method == "GET"
            and f"/{ot}/" in request.url.path
            and "materiales" in (request.url.path)
        ):
            reads[-1] += 1

    h.mt_transport.before = count
    material = next(iter(h.mt.materials))
    h.mt.add_material_usage(ot, material, Decimal("1.00"), comentario="después de cerrar")
    found = []
    for _ in range(h.config.mantenimiento.closed_reread_every):
        reads.append(0)
        found.append(usage_sync(h).counts["not_mirrored"])
    assert sum(reads) == 1 and found == reads  # read once, and reported in that pass
    assert reported(h, ot) == [NO_ENDPOINT]


def test_a_part_number_corrected_in_click_maint_releases_its_transaction(h: Harness) -> None:
    """A quarantined transaction kept the part number of its first read: correcting the
    number in Click Maint (the fix for "no Material with sku ...") never released it."""
    wo, ot = linked_work_order(h)
    part = h.parts["FL_A"]  # type: ignore[attr-defined]
    h.cm.parts[part]["number"] = "FL-A"  # a typo: no Material has that sku
    tx = h.cm.add_transaction(part, "usage", 1, work_order_id=wo)
    assert usage_sync(h).counts["quarantined"] == 1
    h.cm.parts[part]["number"] = "FL_A"  # corrected in Click Maint
    retry_quarantined_now(h)

    assert usage_sync(h).counts["mirrored"] == 1
    assert [h.mt.materials[m["material_id"]]["sku"] for m in materials(h, ot)] == ["FL_A"]
    ledger = h.ledger()
    try:
        fact = ledger.get_fact("part_usage", "cm", str(tx["id"]))
        assert fact is not None and (fact.state, fact.part_number) == ("mirrored", "FL_A")
        assert ledger.list_quarantine("part_usage") == []
    finally:
        ledger.close()


def test_a_parts_mapping_entry_needs_no_rebaseline_and_releases_the_transaction(
    h: Harness,
) -> None:
    """`[mapping.parts]` changed the mapping fingerprint: the documented fix for an unmatched
    part halted every stream until `syncd resync --rebaseline`."""
    wo, ot = linked_work_order(h)  # work_orders has stored its fingerprint
    h.mt.add_material("Tubo LED 18 W", "LED-T8-18W")
    h.cm.add_transaction(h.parts["LAMP-LED-18"], "usage", 2, work_order_id=wo)  # type: ignore[attr-defined]
    assert usage_sync(h).counts["quarantined"] == 1
    before = h.config.mapping_fingerprint()

    h.rewrite_config(
        lambda text: text.replace(
            "[mapping.parts]\n", '[mapping.parts]\n"LAMP-LED-18" = "LED-T8-18W"\n'
        )
    )
    assert h.config.mapping.parts["LAMP-LED-18"] == "LED-T8-18W"
    report = h.sync()  # work_orders: no MappingChanged
    assert report.status == "ok", report.error
    assert h.config.mapping_fingerprint() == before
    retry_quarantined_now(h)
    assert usage_sync(h).counts["mirrored"] == 1
    assert [h.mt.materials[m["material_id"]]["sku"] for m in materials(h, ot)] == ["LED-T8-18W"]


def test_other_mapping_changes_still_need_a_rebaseline(h: Harness) -> None:
    linked_work_order(h)
    h.rewrite_config(lambda text: text.replace("[mapping.assets]\n", '[mapping.assets]\n"9" = 1\n'))
    report = h.sync()
    assert report.status == "failed" and "rebaseline" in (report.error or "")


def test_a_fingerprint_taken_before_parts_left_it_is_still_accepted(h: Harness) -> None:
    """Upgrading must not halt an installation that has `[mapping.parts]` entries."""
    assert h.config.mapping.parts  # the sandbox maps REF-R404A -> R404A
    legacy = h.config._fingerprint(with_parts=True)
    assert legacy != h.config.mapping_fingerprint()
    assert h.config.fingerprint_matches(legacy)
    assert h.config.fingerprint_matches(h.config.mapping_fingerprint())
    assert h.config.fingerprint_matches(None)
    assert not h.config.fingerprint_matches("0123456789abcdef")
