"""Cursor safety end to end against the Click Maint simulator: every capability variant,
page drift while paging, equal `updated_at` across a page boundary, clock skew."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from syncd.engine.cursor import choose_strategy
from syncd.engine.records import strip_marker
from syncd.engine.run import UNKNOWN_SORT_RECHECK
from syncd.sandbox.clickmaint_sim import ClickMaintVariant
from syncd.sandbox.faults import FaultConfig
from syncd.systems.clickmaint import Capabilities, iso

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


class ListQueries:
    """Records the query of every `GET /work_orders` list request (the scan's shape)."""

    def __init__(self, h: Harness) -> None:
        self.seen: list[dict[str, str]] = []
        h.cm_transport.before = self._note

    def _note(self, request: httpx.Request) -> None:
        if request.method == "GET" and request.url.path.endswith("/work_orders"):
            self.seen.append(dict(request.url.params))
        return None

    @staticmethod
    def is_probe(q: dict[str, str]) -> bool:
        """Capability probes: the wide page, the future filter, the sorts without a filter
        (`updated_at desc` is the desc scan's, but the probe asks for one item)."""
        unfiltered_asc = q.get("sort") == "updated_at asc" and not any(
            k.startswith("filter[") for k in q
        )
        return q.get("per_page") in ("1000", "1") or unfiltered_asc

    def probes(self) -> list[dict[str, str]]:
        return [q for q in self.seen if self.is_probe(q)]

    def strategies(self) -> set[str]:
        """The strategy each list request belongs to, told from its sort and filter."""
        found = set()
        for q in self.seen:
            if self.is_probe(q):
                continue
            sort, since = q.get("sort"), "filter[updated_at_gteq]" in q
            if sort == "updated_at asc" and since:
                found.add("keyset")
            elif sort == "id asc" and "filter[updated_at_lteq]" in q:
                found.add("keyset")  # keyset reading a second that fills more than a page
            elif sort == "updated_at desc" and not since:
                found.add("desc")
            elif sort is None and since:
                found.add("filter")
            elif sort is None and not since:
                found.add("full")
            else:
                found.add(f"other: {q}")
        return found


def stored_strategy(h: Harness) -> str:
    ledger = h.ledger()
    try:
        return choose_strategy(Capabilities.from_dict(ledger.get_meta("cm_capabilities")))
    finally:
        ledger.close()


@pytest.mark.parametrize(
    ("variant", "strategy"),
    [
        (ClickMaintVariant(), "keyset"),
        (ClickMaintVariant(updated_at_filter=False), "desc"),
        (ClickMaintVariant(updated_at_sort=False), "filter"),
        (ClickMaintVariant(updated_at_filter=False, updated_at_sort=False), "full"),
        (ClickMaintVariant(per_page_cap=7), "keyset"),
    ],
    ids=["keyset", "desc", "filter", "full", "small-pages"],
)
def test_every_capability_variant_converges(
    tmp_path: Path, variant: ClickMaintVariant, strategy: str
) -> None:
    h = make_harness(tmp_path, variant=variant)
    ids = []
    for i in range(40):
        ids.append(h.cm.create_work_order({"title": f"WO {i}"})["id"])
        h.cm.clock.advance(1)  # one second apart: the sort probe needs distinct stamps
    h.quiet_sync()
    assert stored_strategy(h) == strategy
    for wo in ids[::3]:
        h.cm.update_work_order(wo, {"title": f"edited {wo}", "status_id": 3})
    h.cm.clock.advance(10)  # past the lag
    queries = ListQueries(h)
    h.quiet_sync()
    assert queries.strategies() == {strategy}  # what the scan really sent
    assert_everything_mirrored(h)
    for wo in ids[::3]:
        ledger = h.ledger()
        mt_id = int(ledger.get_link("work_orders", cm_id=str(wo)).mt_id)
        ledger.close()
        assert h.mt.ots[mt_id]["descripcion_corta"] == f"edited {wo}"


def age_capabilities(h: Harness, by: timedelta) -> None:
    """Time passes for the cached capability answers (their `detected_at` moves back)."""
    ledger = h.ledger()
    try:
        caps = Capabilities.from_dict(ledger.get_meta("cm_capabilities"))
        detected = datetime.strptime(caps.detected_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        caps.detected_at = iso(detected - by)
        ledger.set_meta("cm_capabilities", caps.to_dict())
    finally:
        ledger.close()


def test_an_unknown_sort_answer_is_probed_again_within_minutes(tmp_path: Path) -> None:
    """Every work order stamped in one second: the sort probe cannot tell and the scan falls
    back to filtered offset pages.  Once the stamps differ, the probe is repeated after
    UNKNOWN_SORT_RECHECK (not after `capability_ttl_hours`) and the scan switches to keyset;
    a cycle in between does not probe (an idle cycle stays cheap)."""
    h = make_harness(tmp_path)
    h.cm.clock.freeze(datetime.now(UTC).replace(microsecond=0))
    ids = [h.cm.create_work_order({"title": f"bulk {i}"})["id"] for i in range(30)]
    h.cm.clock.freeze(None)
    h.quiet_sync()
    ledger = h.ledger()
    caps = ledger.get_meta("cm_capabilities")
    ledger.close()
    assert caps["updated_at_filter"] is True and caps["updated_at_sort"] is None
    assert stored_strategy(h) == "filter"
    h.cm.clock.advance(5)
    h.cm.update_work_order(ids[0], {"title": "edited later"})
    h.cm.clock.advance(10)
    queries = ListQueries(h)
    h.quiet_sync()
    assert queries.strategies() == {"filter"} and not queries.probes()
    age_capabilities(h, UNKNOWN_SORT_RECHECK + timedelta(seconds=30))
    queries.seen.clear()
    h.sync()
    assert queries.probes() and stored_strategy(h) == "keyset"
    assert queries.strategies() == {"keyset"}
    # both answers known: cached for the TTL, even when it was detected a while ago
    age_capabilities(h, UNKNOWN_SORT_RECHECK + timedelta(seconds=30))
    queries.seen.clear()
    h.sync()
    assert queries.seen and not queries.probes()
    assert queries.strategies() == {"keyset"}
    assert_everything_mirrored(h)


def test_more_records_in_one_second_than_a_page(tmp_path: Path) -> None:
    h = make_harness(tmp_path, variant=ClickMaintVariant(per_page_cap=50))
    h.cm.clock.freeze(datetime.now(UTC).replace(microsecond=0))
    for i in range(130):
        h.cm.create_work_order({"title": f"same second {i}"})
    h.cm.clock.freeze(None)
    h.quiet_sync()
    assert len(h.pairs()) == 130
    assert_everything_mirrored(h)


def updates_to_mt(h: Harness, wo: int) -> int:
    ledger = h.ledger()
    try:
        return sum(1 for e in ledger.history(cm_id=str(wo)) if e.action == "updated_mt")
    finally:
        ledger.close()


def test_edits_sharing_one_second_across_pages_are_applied_exactly_once(tmp_path: Path) -> None:
    """Nothing missed is half the cursor contract; the other half is nothing applied twice:
    130 edits in one second, read across pages of 50 (and again by the lookback window),
    reach mantenimiento once each."""
    h = make_harness(tmp_path, variant=ClickMaintVariant(per_page_cap=50))
    ids = [h.cm.create_work_order({"title": f"orden {i}"})["id"] for i in range(130)]
    h.quiet_sync()
    h.cm.clock.advance(60)
    h.cm.clock.freeze(h.cm.clock.now().replace(microsecond=0))
    for wo in ids:
        h.cm.update_work_order(wo, {"title": f"editada {wo}"})
    h.cm.clock.freeze(None)
    writes, before = h.writes()["mt"], {wo: updates_to_mt(h, wo) for wo in ids}
    for _ in range(3):
        h.cm.clock.advance(10)
        h.sync()
    assert h.writes()["mt"] - writes == 130  # one update per edited work order
    assert all(updates_to_mt(h, wo) == before[wo] + 1 for wo in ids)
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
    before = {wo: updates_to_mt(h, wo) for wo in ids}
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
    # applied once each, whichever clock is ahead (a skew must not make syncd re-apply)
    assert all(updates_to_mt(h, wo) == before[wo] + 1 for wo in ids)
