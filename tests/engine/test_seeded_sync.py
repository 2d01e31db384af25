"""The issue's acceptance run: `sync --once` over both seeded sandboxes converges, and a second
`sync --once` writes nothing on either server."""

from __future__ import annotations

from pathlib import Path

from syncd.app import STREAMS
from syncd.sandbox.clickmaint_sim import ClickMaintSim, ClickMaintVariant
from syncd.sandbox.mantenimiento_sim import MantenimientoSim
from syncd.sandbox.seed_clickmaint import seed_clickmaint
from syncd.sandbox.seed_mantenimiento import seed_mantenimiento
from syncd.sandbox.verify import verify

from .harness import Harness


def sync_once(h: Harness) -> dict[str, int]:
    """Every stream once, in the order `syncd sync --once` runs them; writes made."""
    before = h.writes()
    for stream in STREAMS:
        report = h.sync(stream=stream)
        assert report.status == "ok", (stream, report.error)
    after = h.writes()
    return {side: after[side] - before[side] for side in after}


def test_seeded_sandboxes_converge_in_one_run_and_the_second_writes_nothing(
    tmp_path: Path,
) -> None:
    cm = ClickMaintSim(variant=ClickMaintVariant(rate_limit=1_000_000))
    seed_clickmaint(cm, work_orders=40, requests=20, transactions_per_part=(1, 3), seed=3)
    mt = MantenimientoSim()
    seed_mantenimiento(mt, ots=40, avisos=40, seed=3)
    h = Harness(tmp_path, cm, mt)
    first = sync_once(h)
    assert first["cm"] > 0 and first["mt"] > 0
    h.cm.clock.advance(10)  # past the lag: the second run reads everything the first wrote
    assert sync_once(h) == {"cm": 0, "mt": 0}
    verdict = verify(h.config, cm, mt)
    assert verdict.ok, verdict.summary()
    assert verdict.pairs >= 80 and verdict.request_pairs == 60
    # one job, one record on each side: every aviso's OT and its request's work order are a pair
    ledger = h.ledger()
    try:
        assert ledger.count_history("link_inconsistent") == 0
        for link in ledger.iter_links("requests"):
            aviso = int(link.mt_id)
            ot = next((i for i, o in mt.ots.items() if o["aviso_id"] == aviso), None)
            wo = cm.requests[int(link.cm_id)]["work_order_id"]
            if ot is not None or wo is not None:
                pair = ledger.get_link("work_orders", mt_id=str(ot))
                assert pair is not None and pair.cm_id == str(wo), (link.cm_id, link.mt_id)
    finally:
        ledger.close()
