"""Cursor safety end to end against the Click Maint simulator: every capability variant,
page drift while paging, equal `updated_at` across a page boundary, clock skew."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from syncd.engine.records import strip_marker
from syncd.sandbox.clickmaint_sim import ClickMaintVariant
from syncd.sandbox.faults import FaultConfig

from .harness import Harness, make_harness


def linked_cm_ids(h: Harness) -> set[int]:
    return {int(cm) for cm, _mt in h.pairs()}


def assert_everything_mirrored(h: Harness) -> None:
    """Every work order is linked exactly once; no OT was created twice for one work order."""
    ledger = h.ledger()
    try:
        quarantined = {int(q.record_id) for q in ledger.list_quarantine() if q.side == "cm"}
    finally:
        ledger.close()
    missing = set(h.cm.work_orders) - linked_cm_ids(h) - quarantined
    assert not missing, f"work orders never mirrored: {sorted(missing)[:10]}"
    # every OT syncd created (all NO_PROGRAMADA ones here) is linked: none is a stray duplicate
    linked_ots = {int(mt) for _cm, mt in h.pairs()}
    strays = {i for i, ot in h.mt.ots.items() if ot["tipo"] == "NO_PROGRAMADA"} - linked_ots
    assert not strays, f"OTs created but not linked (duplicates): {sorted(strays)}"
    assert h.disagreements() == []


@pytest.mark.parametrize(
    "variant",
    [
        ClickMaintVariant(),
        ClickMaintVariant(updated_at_filter=False),
        ClickMaintVariant(updated_at_sort=False),
        ClickMaintVariant(updated_at_filter=False, updated_at_sort=False),
        ClickMaintVariant(per_page_cap=7),
    ],
    ids=["keyset", "desc", "filter", "full", "small-pages"],
)
def test_every_capability_variant_converges(tmp_path: Path, variant: ClickMaintVariant) -> None:
    h = make_harness(tmp_path, variant=variant)
    ids = [h.cm.create_work_order({"title": f"WO {i}"})["id"] for i in range(40)]
    h.quiet_sync()
    for wo in ids[::3]:
        h.cm.update_work_order(wo, {"title": f"edited {wo}", "status_id": 3})
    h.cm.clock.advance(10)  # past the lag
    h.quiet_sync()
    assert_everything_mirrored(h)
    for wo in ids[::3]:
        ledger = h.ledger()
        mt_id = int(ledger.get_link("work_orders", cm_id=str(wo)).mt_id)
        ledger.close()
        assert h.mt.ots[mt_id]["descripcion_corta"] == f"edited {wo}"


def test_more_records_in_one_second_than_a_page(tmp_path: Path) -> None:
    h = make_harness(tmp_path, variant=ClickMaintVariant(per_page_cap=50))
    h.cm.clock.freeze(datetime.now(UTC).replace(microsecond=0))
    for i in range(130):
        h.cm.create_work_order({"title": f"same second {i}"})
    h.cm.clock.freeze(None)
    h.quiet_sync()
    assert len(h.pairs()) == 130
    assert_everything_mirrored(h)


def test_page_drift_while_paging_loses_nothing(tmp_path: Path) -> None:
    h = make_harness(tmp_path, variant=ClickMaintVariant(per_page_cap=10))
    for i in range(120):
        h.cm.create_work_order({"title": f"drift {i}"})
    h.cm.faults.configure(FaultConfig(page_drift_rate=0.5, seed=5))
    for _ in range(3):
        h.sync()
    assert h.cm.faults.counts["page_drift_edit"] + h.cm.faults.counts["page_drift_insert"] > 0
    h.cm.faults.clear()
    h.cm.clock.advance(10)
    h.quiet_sync()
    assert_everything_mirrored(h)


@pytest.mark.parametrize("skew", [-3600.0, 3600.0])
def test_clock_skew_between_servers(tmp_path: Path, skew: float) -> None:
    h = make_harness(tmp_path)
    h.cm.clock.set_skew(skew)
    h.mt.clock.set_skew(-skew / 2)
    ids = [h.cm.create_work_order({"title": f"skew {i}"})["id"] for i in range(10)]
    h.quiet_sync()
    for wo in ids:
        h.cm.update_work_order(wo, {"description": "after skew"})
    h.cm.clock.advance(10)
    h.quiet_sync()
    assert_everything_mirrored(h)
    ledger = h.ledger()
    for wo in ids:
        mt_id = int(ledger.get_link("work_orders", cm_id=str(wo)).mt_id)
        assert strip_marker(h.mt.ots[mt_id]["notas"]) == "after skew"
    ledger.close()
