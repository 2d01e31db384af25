"""The work_orders stream against both simulators: convergence, idempotence, merge, conflicts,
deletes, quarantine, the outbox, dry runs and the mapping fingerprint."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from syncd.engine import probe_gaps
from syncd.engine.records import find_marker, strip_marker
from syncd.sandbox.clickmaint_sim import ClickMaintVariant

from .harness import Harness, Rewrite, make_harness


def new_wo(h: Harness, title: str = "Cambio de filtros", **fields) -> int:
    body = {"title": title, "description": fields.pop("description", "Revisar según manual")}
    body.update(fields)
    return h.cm.create_work_order(body)["id"]


def new_ot(h: Harness, desc: str = "Revisión de rodamientos", **fields) -> int:
    start = datetime.now(UTC) + timedelta(days=1)
    values = {
        "descripcion_corta": desc,
        "tipo": "CORRECTIVA",
        "prioridad": "MEDIA",
        "estado": "PROGRAMADA",
        "ubicacion_id": 12,
        "inicio_programado": start.isoformat(),
        "fin_programado": (start + timedelta(hours=2)).isoformat(),
    }
    values.update(fields)
    return h.mt.create_ot(**values)["id"]


def mt_for(h: Harness, cm_id: int) -> int:
    ledger = h.ledger()
    try:
        link = ledger.get_link("work_orders", cm_id=str(cm_id))
        assert link is not None, f"wo {cm_id} is not linked"
        return int(link.mt_id)
    finally:
        ledger.close()


def cm_for(h: Harness, mt_id: int) -> int:
    ledger = h.ledger()
    try:
        link = ledger.get_link("work_orders", mt_id=str(mt_id))
        assert link is not None, f"ot {mt_id} is not linked"
        return int(link.cm_id)
    finally:
        ledger.close()


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return make_harness(tmp_path)


# -- convergence and idempotence --------------------------------------------------------------
def test_both_directions_converge_and_second_sync_writes_nothing(h: Harness) -> None:
    wos = [new_wo(h, f"Orden {i} — revisión", priority="high") for i in range(15)]
    ots = [new_ot(h, f"OT {i}: lubricación", notas=f"nota {i}") for i in range(15)]
    report = h.quiet_sync()
    assert report.status == "ok"
    assert len(h.pairs()) == 30
    for wo in wos:
        ot = h.mt.ots[mt_for(h, wo)]
        assert ot["descripcion_corta"] == h.cm.work_orders[wo]["title"]
        assert strip_marker(ot["notas"]) == "Revisar según manual"
        assert ot["prioridad"] == "ALTA" and ot["tipo"] == "NO_PROGRAMADA"
        assert find_marker(ot["descripcion_corta"]) is None  # marker cleaned after linking
    for ot in ots:
        wo = h.cm.work_orders[cm_for(h, ot)]
        assert wo["title"] == h.mt.ots[ot]["descripcion_corta"]
        assert wo["description"].startswith(h.mt.ots[ot]["notas"])
    assert h.disagreements() == []
    before = h.writes()
    quiet = h.sync()
    assert quiet.writes == 0
    assert h.writes() == before  # zero writes on either server


def test_edits_flow_both_ways_field_by_field(h: Harness) -> None:
    wo = new_wo(h, "Fuga de aceite")
    h.quiet_sync()
    ot = mt_for(h, wo)
    due = (datetime.now(UTC) + timedelta(days=5)).replace(second=0, microsecond=0)
    h.cm.update_work_order(wo, {"title": "Fuga de aceite — urgente", "due_date": due.isoformat()})
    h.mt.update_ot(ot, notas="Se cambió el sello")
    h.quiet_sync()
    assert h.mt.ots[ot]["descripcion_corta"] == "Fuga de aceite — urgente"
    assert h.mt.ots[ot]["fin_programado"] == due
    assert h.mt.ots[ot]["inicio_programado"] < due
    assert h.cm.work_orders[wo]["description"] == "Se cambió el sello"
    h.mt.update_ot(ot, estado="EJECUCION")
    h.quiet_sync()
    assert h.cm.work_orders[wo]["status_id"] == 3  # in_progress
    h.cm.update_work_order(wo, {"status_id": 5})
    h.quiet_sync()
    closed = h.mt.ots[ot]
    assert closed["estado"] == "REALIZADA" and closed["cierre"] is not None  # closed via cerrar-ot
    assert h.disagreements() == []


def test_reopen_after_close_uses_plain_update(h: Harness) -> None:
    wo = new_wo(h)
    h.quiet_sync()
    ot = mt_for(h, wo)
    for status in (5, 3, 5):  # close, reopen, close again (the second cierre is refused)
        h.cm.update_work_order(wo, {"status_id": status})
        h.quiet_sync()
    assert h.mt.ots[ot]["estado"] == "REALIZADA"
    assert h.disagreements() == []


# -- conflicts -------------------------------------------------------------------------------
def test_manual_conflict_is_logged_and_blocks_only_that_field(h: Harness) -> None:
    wo = new_wo(h, "Original")
    h.quiet_sync()
    ot = mt_for(h, wo)
    h.cm.update_work_order(wo, {"title": "Título CM", "description": "desc CM"})
    h.mt.update_ot(ot, descripcion_corta="Título MT", estado="EJECUCION")
    report = h.quiet_sync()
    ledger = h.ledger()
    conflicts = ledger.list_conflicts(status="open")
    assert [(c.field, c.cm_value, c.mt_value) for c in conflicts] == [
        ("title", "Título CM", "Título MT")
    ]
    assert report.status == "ok"
    # the rest of the record still synced
    assert strip_marker(h.mt.ots[ot]["notas"]) == "desc CM"
    assert h.cm.work_orders[wo]["status_id"] == 3
    assert (
        h.cm.work_orders[wo]["title"] == "Título CM"
        and h.mt.ots[ot]["descripcion_corta"] == "Título MT"
    )
    # a further cycle does not duplicate the conflict
    h.sync()
    assert len(ledger.list_conflicts(status=None)) == 1
    # resolving it: the next cycle writes the decision to both sides
    ledger.resolve_conflict(conflicts[0].id, resolution="mantenimiento", value=None, by="test")
    ledger.close()
    h.quiet_sync()
    assert h.cm.work_orders[wo]["title"] == "Título MT"
    ledger = h.ledger()
    assert ledger.get_conflict(conflicts[0].id).status == "applied"
    ledger.close()
    assert h.disagreements() == []


def test_resolve_with_explicit_value(h: Harness) -> None:
    wo = new_wo(h, "A")
    h.quiet_sync()
    ot = mt_for(h, wo)
    h.cm.update_work_order(wo, {"title": "B"})
    h.mt.update_ot(ot, descripcion_corta="C")
    h.quiet_sync()
    ledger = h.ledger()
    conflict = ledger.list_conflicts()[0]
    ledger.resolve_conflict(conflict.id, resolution="value", value="D — acordado", by="test")
    ledger.close()
    h.quiet_sync()
    assert h.cm.work_orders[wo]["title"] == "D — acordado"
    assert h.mt.ots[ot]["descripcion_corta"] == "D — acordado"


@pytest.mark.parametrize(
    ("policy", "expected_title"), [("clickmaint", "from CM"), ("mantenimiento", "from MT")]
)
def test_automatic_policies(tmp_path: Path, policy: str, expected_title: str) -> None:
    h = make_harness(tmp_path, extra_config=f'\n[conflicts]\ndefault_policy = "{policy}"\n')
    wo = new_wo(h, "base")
    h.quiet_sync()
    ot = mt_for(h, wo)
    h.cm.update_work_order(wo, {"title": "from CM"})
    h.mt.update_ot(ot, descripcion_corta="from MT")
    h.quiet_sync()
    assert h.cm.work_orders[wo]["title"] == expected_title
    assert h.mt.ots[ot]["descripcion_corta"] == expected_title
    ledger = h.ledger()
    logged = ledger.list_conflicts(status="auto")
    assert [(c.field, c.resolution) for c in logged] == [("title", policy)]
    ledger.close()


def test_newest_policy_uses_each_sides_own_clock(tmp_path: Path) -> None:
    h = make_harness(tmp_path, extra_config='\n[conflicts.fields]\ntitle = "newest"\n')
    h.cm.clock.set_skew(-7200)  # Click Maint's clock is two hours behind: must not matter
    wo = new_wo(h, "base")
    h.quiet_sync()
    ot = mt_for(h, wo)
    h.sync()  # a read of the OT in which nothing changed: starts its change window
    h.cm.update_work_order(wo, {"title": "old CM edit"})
    h.cm.clock.advance(600)  # the CM edit is now 10 minutes old by Click Maint's clock
    h.mt.update_ot(ot, descripcion_corta="fresh MT edit")
    h.quiet_sync()
    assert h.cm.work_orders[wo]["title"] == "fresh MT edit"


def test_same_change_on_both_sides_is_not_a_conflict(h: Harness) -> None:
    wo = new_wo(h, "base")
    h.quiet_sync()
    ot = mt_for(h, wo)
    h.cm.update_work_order(wo, {"title": "same"})
    h.mt.update_ot(ot, descripcion_corta="same")
    h.quiet_sync()
    ledger = h.ledger()
    assert ledger.list_conflicts(status=None) == []
    ledger.close()


# -- deletes ---------------------------------------------------------------------------------
def test_deleted_ot_cancels_work_order_never_deletes(h: Harness) -> None:
    wos = [new_wo(h, f"W{i}") for i in range(12)]
    h.quiet_sync()
    victim = mt_for(h, wos[0])
    h.mt.delete_ot(victim)
    h.quiet_sync()
    assert h.cm.work_orders[wos[0]]["status_id"] == 6  # cancelled, still there
    ledger = h.ledger()
    assert ledger.get_link("work_orders", cm_id=str(wos[0])).state == "mt_deleted"
    assert [e.action for e in ledger.history(cm_id=str(wos[0]))][-1] == "partner_deleted"
    ledger.close()


def test_mass_delete_guard_refuses_an_outage_that_looks_like_deletions(h: Harness) -> None:
    wos = [new_wo(h, f"W{i}") for i in range(20)]
    h.quiet_sync()
    for wo in wos[:10]:
        h.mt.delete_ot(mt_for(h, wo))
    report = h.sync()
    assert report.counts["delete_guard"] == 1
    assert all(h.cm.work_orders[wo]["status_id"] != 6 for wo in wos)
    assert any("mass-delete guard" in n for n in report.notes)


def test_mass_delete_guard_counts_partners_found_gone_one_record_at_a_time(
    h: Harness,
) -> None:
    """An outage that answers 404 for every OT, found while syncing edited work orders one
    by one: the guard judges the cycle's vanished partners together and cancels nothing."""
    wos = [new_wo(h, f"W{i}") for i in range(30)]
    h.quiet_sync()
    h.cm.clock.advance(10)
    for wo in wos[:15]:
        h.cm.update_work_order(wo, {"title": f"edited {wo}"})

    def outage(request: httpx.Request) -> httpx.Response | None:
        if request.method == "GET" and "/detalle/" in request.url.path:
            return httpx.Response(
                404, text="<h1>Not Found</h1>", headers={"content-type": "text/html"}
            )
        return None

    rewrite = Rewrite(h.mt_transport.inner)
    rewrite.raw = lambda request, _response: outage(request)
    h.mt_transport.inner = rewrite
    report = h.sync()
    assert report.counts["delete_guard"] == 1
    assert all(h.cm.work_orders[wo]["status_id"] != 6 for wo in wos)
    ledger = h.ledger()
    assert all(link.state == "active" for link in ledger.iter_links("work_orders", state=None))
    ledger.close()
    rewrite.raw = None  # the server is back: the edits go through, nothing was lost
    h.quiet_sync()
    assert all(h.mt.ots[mt_for(h, wo)]["descripcion_corta"].startswith("edited") for wo in wos[:15])


def test_deleted_work_order_cancels_ot_via_reconciliation(h: Harness) -> None:
    wos = [new_wo(h, f"W{i}") for i in range(12)]
    h.quiet_sync()
    h.cm.delete_work_order(wos[3])
    h.sync(kind="once")  # the daily reconciliation has not come round yet
    assert h.mt.ots[mt_for(h, wos[3])]["estado"] != "CANCELADA"
    ledger = h.ledger()
    ledger.set_meta("wo_last_reconcile", "2000-01-01T00:00:00.000Z")
    ledger.close()
    h.sync()
    assert h.mt.ots[mt_for(h, wos[3])]["estado"] == "CANCELADA"


# -- quarantine ------------------------------------------------------------------------------
def test_unknown_vocabulary_is_quarantined_and_the_rest_completes(h: Harness) -> None:
    h.cm.statuses[8] = {"id": 8, "name": "awaiting_vendor", "is_custom": True}
    bad = new_wo(h, "odd status", status_id=8)
    good = [new_wo(h, f"fine {i}") for i in range(5)]
    report = h.quiet_sync()
    assert report.status == "ok"
    ledger = h.ledger()
    item = ledger.get_quarantined("work_orders", "cm", str(bad))
    assert item is not None and "awaiting_vendor" in item.reason
    assert all(ledger.get_link("work_orders", cm_id=str(g)) for g in good)
    ledger.close()
    # the operator adds the status to the config, accepts the new mapping, and resyncs
    h.rewrite_config(
        lambda text: text.replace(
            "waiting_for_parts = 7\n", "waiting_for_parts = 7\nawaiting_vendor = 8\n"
        ).replace(
            'waiting_for_parts = "ESPERA"\n',
            'waiting_for_parts = "ESPERA"\nawaiting_vendor = "ESPERA"\n',
        )
    )
    assert h.sync().status == "failed"  # a changed mapping is never applied silently
    assert h.sync(kind="resync", rebaseline=True, full=True).status == "ok"
    ledger = h.ledger()
    assert ledger.get_quarantined("work_orders", "cm", str(bad)) is None
    assert h.mt.ots[int(ledger.get_link("work_orders", cm_id=str(bad)).mt_id)]["estado"] == "ESPERA"
    ledger.close()


def test_rejected_write_is_quarantined_with_a_hint(h: Harness) -> None:
    wo = new_wo(h, "ok")
    h.quiet_sync()
    ot = mt_for(h, wo)
    h.mt.users["syncd"]["groups"] = []  # no longer a manager: REALIZADA OTs become read-only
    h.mt.update_ot(ot, estado="REALIZADA")
    h.sync()
    h.cm.update_work_order(wo, {"title": "edit after close"})
    report = h.sync()
    assert report.counts["quarantined"] == 1 and report.status == "ok"
    ledger = h.ledger()
    item = ledger.get_quarantined("work_orders", "cm", str(wo))
    assert item is not None
    assert "finalizada" in item.reason and "Gerentes" in item.reason
    ledger.close()


# -- outbox and crash safety --------------------------------------------------------------
def test_crash_between_remote_create_and_link_commit_adopts(h: Harness, monkeypatch) -> None:
    wo = new_wo(h, "Crear una sola vez")
    from syncd.ledger.store import Ledger

    original = Ledger.save_link

    def crash(self, link):  # the process dies right after the OT was created remotely
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(Ledger, "save_link", crash)
    with pytest.raises(KeyboardInterrupt):
        h.sync()
    monkeypatch.setattr(Ledger, "save_link", original)
    made = [o for o in h.mt.ots.values() if "Crear una sola vez" in (o["descripcion_corta"] or "")]
    assert len(made) == 1
    report = h.quiet_sync()
    assert report.status == "ok"
    made = [o for o in h.mt.ots.values() if "Crear una sola vez" in (o["descripcion_corta"] or "")]
    assert len(made) == 1, "a second OT was created"
    assert mt_for(h, wo) == made[0]["id"]


def test_timed_out_create_is_adopted_not_repeated(h: Harness) -> None:
    ot = new_ot(h, "Timeout al crear")
    calls = {"n": 0}

    def timeout_after_post(request: httpx.Request) -> Exception | None:
        if request.method == "POST" and request.url.path.endswith("/work_orders"):
            calls["n"] += 1
            if calls["n"] == 1:
                return httpx.ReadTimeout("simulated", request=request)
        return None

    h.cm_transport.after = timeout_after_post
    first = h.sync()
    assert first.counts["outcome_unknown"] == 1
    assert sum(1 for w in h.cm.work_orders.values() if w["title"] == "Timeout al crear") == 1
    h.cm_transport.after = lambda _r: None
    h.quiet_sync()
    assert sum(1 for w in h.cm.work_orders.values() if w["title"] == "Timeout al crear") == 1
    assert calls["n"] == 1  # adopted by its marker, never POSTed again
    assert h.cm.work_orders[cm_for(h, ot)]["title"] == "Timeout al crear"


def test_failing_look_for_a_lost_create_does_not_fail_the_cycle(h: Harness) -> None:
    """Found by the long chaos soak: every cycle starts by looking for creates whose outcome
    is unknown, and a server error there (after the retries) failed the whole cycle, every
    cycle, so nothing else got synced."""
    wo = new_wo(h, "Crear con timeout")
    posts = {"n": 0}

    def timeout_after_create(request: httpx.Request) -> Exception | None:
        if request.method == "POST" and "crear-no-programada" in request.url.path:
            posts["n"] += 1
            if posts["n"] == 1:
                return httpx.ReadTimeout("simulated", request=request)
        return None

    new_id = h.mt._next_ids.get("ot", 1)  # the id the create will get
    down = {"search": True}

    def search_down(request: httpx.Request) -> Exception | None:
        looking = "search-ordenes" in request.url.path or f"/ot/{new_id}/" in request.url.path
        if down["search"] and looking:
            return httpx.RemoteProtocolError("server went away", request=request)
        return None

    h.mt_transport.after = timeout_after_create
    h.mt_transport.before = search_down
    assert h.sync().counts["outcome_unknown"] == 1
    h.mt_transport.after = lambda _r: None
    other = new_wo(h, "Otra orden")
    report = h.sync()
    assert report.status == "ok", report.error
    assert report.counts["outbox_later"] == 1
    assert mt_for(h, other)  # the rest of the cycle ran
    down["search"] = False
    h.quiet_sync()
    made = [o for o in h.mt.ots.values() if "Crear con timeout" in o["descripcion_corta"]]
    assert len(made) == 1 and posts["n"] == 1  # adopted later, never created twice
    assert mt_for(h, wo) == made[0]["id"]


class SearchFindsNothing(httpx.BaseTransport):
    """`search-ordenes` answers an empty result (say a user retitled the OT meanwhile), so
    only the id probe can find a lost create."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.details: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if "search-ordenes" in request.url.path:
            return httpx.Response(200, json={"results": []})
        if request.url.path.endswith("/detalle/"):
            self.details.append(int(request.url.path.rstrip("/").split("/")[-2]))
        return self.inner.handle_request(request)


def test_probe_for_a_lost_create_skips_linked_ids(h: Harness) -> None:
    """Found by the long chaos soak: the probe read every OT above the intent's high-water id,
    linked or not, for every lost create in every cycle (thousands of requests in a busy
    plant, each slow under faults)."""
    users = [new_ot(h, f"OT de usuario {i}") for i in range(25)]
    wo = new_wo(h, "Creada y perdida")
    lost_id = h.mt._next_ids.get("ot", 1)  # the id the create will get

    def timeout_after_create(request: httpx.Request) -> Exception | None:
        if request.method == "POST" and "crear-no-programada" in request.url.path:
            return httpx.ReadTimeout("simulated", request=request)
        return None

    def hide_lost(request: httpx.Request) -> Exception | None:
        if f"/ot/{lost_id}/" in request.url.path:
            return httpx.RemoteProtocolError("unreadable for now", request=request)
        return None

    h.mt_transport.after = timeout_after_create
    h.mt_transport.before = hide_lost
    assert h.sync().counts["outcome_unknown"] == 1
    assert all(mt_for(h, cm_for(h, ot)) == ot for ot in users)  # the users' OTs are linked
    h.mt_transport.after = lambda _r: None
    h.mt_transport.before = lambda _r: None
    search = SearchFindsNothing(h.mt_transport.inner)
    h.mt_transport.inner = search
    report = h.sync()
    assert report.counts["adopted"] == 1
    assert mt_for(h, wo) == lost_id
    reads = Counter(search.details)
    # once by the cycle's re-read of open linked OTs, never again by the probe
    assert all(reads[ot] == 1 for ot in users), reads


def test_lost_ledger_relinks_by_marker_without_duplicates(h: Harness) -> None:
    for i in range(3):
        new_wo(h, f"W{i}")
        new_ot(h, f"O{i}")
    h.quiet_sync()
    counts = (len(h.cm.work_orders), len(h.mt.ots))
    pairs = sorted(h.pairs())
    h.config.ledger_path.unlink()
    for suffix in ("-wal", "-shm"):
        Path(str(h.config.ledger_path) + suffix).unlink(missing_ok=True)
    report = h.quiet_sync()
    assert (len(h.cm.work_orders), len(h.mt.ots)) == counts  # nothing created twice
    assert sorted(h.pairs()) == pairs  # every pair found again
    assert h.disagreements() == []
    assert report.status == "ok"


# -- dry run and fingerprint --------------------------------------------------------------
def _fingerprint(h: Harness) -> str:
    state = {
        "cm": h.cm.dump(),
        "mt": h.mt.dump(),
    }
    blob = json.dumps(state, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def test_dry_run_touches_neither_server_nor_ledger(h: Harness) -> None:
    new_wo(h, "dry")
    new_ot(h, "dry ot")
    h.quiet_sync()
    wo = new_wo(h, "a new one")
    h.cm.update_work_order(wo, {"title": "changed"})
    h.mt.create_ot(
        descripcion_corta="another",
        tipo="CORRECTIVA",
        prioridad="BAJA",
        ubicacion_id=11,
        inicio_programado=datetime.now(UTC).isoformat(),
        fin_programado=(datetime.now(UTC) + timedelta(hours=1)).isoformat(),
    )
    servers = _fingerprint(h)
    ledger_bytes = h.config.ledger_path.read_bytes()
    report = h.sync(dry_run=True)
    assert {p.action for p in report.planned} >= {"create"}
    assert _fingerprint(h) == servers
    assert h.config.ledger_path.read_bytes() == ledger_bytes


def test_changed_mapping_requires_rebaseline(h: Harness) -> None:
    new_wo(h)
    h.quiet_sync()
    h.write_config("\n[deletes]\nmax_count = 3\n")
    assert h.sync().status == "ok"  # deletes settings are not part of the mapping
    extra = '\n[vocabularies.priority_to_prioridad]\nnone = "MEDIA"\nlow = "BAJA"\n'
    extra += 'medium = "MEDIA"\nhigh = "CRITICA"\n'
    h.write_config(extra)
    refused = h.sync()
    assert refused.status == "failed" and "rebaseline" in (refused.error or "")
    refused = h.sync(stream="requests")  # priorities shape requests too: gated the same way
    assert refused.status == "failed" and "rebaseline" in (refused.error or "")
    assert h.sync(stream="part_usage").status == "ok"  # facts: not shaped by this mapping
    writes = h.writes()
    accepted = h.sync(kind="resync", rebaseline=True)
    assert accepted.status == "ok"
    assert h.writes() == writes  # accepting a mapping rewrites nothing by itself
    assert h.sync().status == "ok" and h.sync(stream="requests").status == "ok"
    ledger = h.ledger()
    assert ledger.count_history("rebaseline") == 1
    ledger.close()


def test_cycle_cut_by_the_budget_is_partial_and_says_when_to_resume(tmp_path: Path) -> None:
    """The daemon resumes a partial cycle when the budget has room (`budget_wait`); the
    records written before the cut stay written and linked."""
    h = make_harness(tmp_path, variant=ClickMaintVariant(rate_limit=12, rate_window=600))
    h.rewrite_config(
        lambda text: text.replace(
            "[clickmaint]\n",
            "[clickmaint]\nrate_limit = 12\nrate_window_seconds = 600\nrate_reserve = 1\n",
        )
    )
    for i in range(20):
        new_ot(h, f"OT {i}: engrase")
    report = h.sync(kind="cycle")
    assert report.status == "partial"
    assert 0 < report.budget_wait <= 602  # the server's reset time is whole seconds
    assert 0 < report.counts["created_cm"] < 20
    assert len(h.pairs()) == report.counts["created_cm"]


def test_fresh_process_with_a_clock_ahead_of_click_maint_misses_nothing(tmp_path: Path) -> None:
    """Every `sync --once` is a fresh process that learns Click Maint's time from the first
    answer. A horizon taken from the local clock before that answer (here 60 s ahead of Click
    Maint, more than lag + lookback) put the watermark in Click Maint's future, and edits made
    in that gap were never synced."""
    h = make_harness(tmp_path)
    h.cm.clock.set_skew(-60)
    wo = new_wo(h, "Revisar compresor")
    h.quiet_sync()
    ot = mt_for(h, wo)
    h._reload()  # a new process: Click Maint's clock not known yet
    h.quiet_sync()
    h.cm.update_work_order(wo, {"title": "Revisar compresor 2"})
    for _ in range(2):
        h._reload()
        h.sync()
    assert h.mt.ots[ot]["descripcion_corta"] == "Revisar compresor 2"


def test_ots_committed_out_of_order_are_still_discovered(tmp_path: Path) -> None:
    """The id probe missed OT n; then n and n+1 appeared (two users, or database commits out
    of order). Probing on from n+1 must not leave n behind for good."""
    h = make_harness(tmp_path)
    new_ot(h, "existing")
    h.quiet_sync()
    missed = max(h.mt.ots) + 1
    created: list[int] = []

    def after(request: httpx.Request) -> None:
        probed = request.url.path == f"/mantenimiento/api/ot/{missed}/detalle/"
        if probed and not created:
            created.extend([new_ot(h, "usuario A"), new_ot(h, "usuario B")])
        return None

    h.mt_transport.after = after
    h.quiet_sync()
    h.mt_transport.after = lambda _r: None
    h.quiet_sync()
    assert created == [missed, missed + 1]
    linked = {int(mt_id) for _, mt_id in h.pairs()}
    assert [ot for ot in h.mt.ots if ot not in linked] == []
    assert h.disagreements() == []


def test_an_edit_between_our_write_and_its_read_back_is_not_lost(tmp_path: Path) -> None:
    """syncd writes estado, then reads the OT back; a technician's edit in between must not
    become the base (it would never be seen as a change)."""
    h = make_harness(tmp_path)
    wo = new_wo(h, "Bomba de agua")
    h.quiet_sync()
    ot = mt_for(h, wo)
    h.cm.update_work_order(wo, {"status_id": 2})  # on hold: syncd writes ESPERA
    state = {"posted": False, "edited": False}

    def before(request: httpx.Request) -> None:
        path = request.url.path
        if request.method == "POST" and path == f"/mantenimiento/api/ot/{ot}/update/":
            state["posted"] = True
        elif state["posted"] and not state["edited"] and path.endswith(f"/ot/{ot}/detalle/"):
            state["edited"] = True
            h.mt.update_ot(ot, estado="EJECUCION")  # the job starts meanwhile
        return None

    h.mt_transport.before = before
    h.sync()
    h.mt_transport.before = lambda _r: None
    assert state["edited"]
    h.quiet_sync()
    assert h.disagreements() == []
    assert h.mt.ots[ot]["estado"] == "EJECUCION"  # the later edit wins: it is the newest fact


def test_a_first_probe_rechecks_only_the_gaps_near_the_top(tmp_path: Path) -> None:
    """A first-ever probe walks the whole history: the ids of OTs deleted long ago are not
    worth probing again every cycle; only a gap just below the top may still fill."""
    h = make_harness(tmp_path)
    ids = [new_ot(h, f"OT {n}") for n in range(40)]
    for gone in (ids[3], ids[10], ids[-2]):
        h.mt.delete_ot(gone)
    h.quiet_sync()
    ledger = h.ledger()
    try:
        kept = probe_gaps.load(ledger.get_cursor("work_orders", "mt_probe_gaps"))
    finally:
        ledger.close()
    assert sorted(kept) == [ids[-2]]
    linked = {int(mt_id) for _, mt_id in h.pairs()}
    assert linked == set(ids) - {ids[3], ids[10], ids[-2]}


def test_a_preventive_ot_outside_the_horizon_waits_then_links_once_and_leaves_the_due_list(
    h: Harness,
) -> None:
    """Scope in the engine: a preventive OT 40 days out is not copied; once it comes inside
    the horizon it is, and its index row leaves the due list (a row left due would be read
    every cycle and, piled up, starve newly due OTs)."""
    start = datetime.now(UTC) + timedelta(days=40)
    ot = new_ot(
        h,
        "Preventivo trimestral",
        tipo="PREVENTIVA",
        inicio_programado=start.isoformat(),
        fin_programado=(start + timedelta(hours=2)).isoformat(),
    )
    h.quiet_sync()
    assert not any(int(m) == ot for _, m in h.pairs()) and not h.cm.work_orders
    ledger = h.ledger()
    assert ledger.mt_index_get(ot)["status"] == "out_of_scope"
    soon = datetime.now(UTC) + timedelta(days=10)
    h.mt.update_ot(ot, inicio_programado=soon, fin_programado=soon + timedelta(hours=2))
    ledger.db.execute("UPDATE mt_index SET next_check_at = '2000-01-01T00:00:00.000Z'")
    ledger.close()
    h.quiet_sync()
    assert any(int(m) == ot for _, m in h.pairs()) and len(h.cm.work_orders) == 1
    ledger = h.ledger()
    assert ledger.mt_index_get(ot)["status"] == "linked"
    assert ledger.mt_index_due("9999-01-01T00:00:00.000Z") == []
    ledger.close()
    reads: list[str] = []
    h.mt_transport.before = lambda r: (
        reads.append(r.url.path) if f"/ot/{ot}/" in r.url.path else None
    )
    for _ in range(3):
        h.sync()
    assert len(reads) == 3  # the open linked OT's re-read, once per cycle, nothing more
