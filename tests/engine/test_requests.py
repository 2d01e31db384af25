"""requests ⇄ avisos, and their relation to the work_orders stream."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from syncd.engine.records import find_marker

from .harness import Harness, make_harness


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return make_harness(tmp_path)


def both(h: Harness) -> None:
    """One round of both streams, requests first (as a daemon would interleave them)."""
    h.cm.clock.advance(10)
    for stream in ("requests", "work_orders", "requests", "work_orders"):
        report = h.sync(stream=stream)
        assert report.status == "ok", report.error


def link_of(h: Harness, stream: str, *, cm_id=None, mt_id=None):
    ledger = h.ledger()
    try:
        if cm_id is not None:
            return ledger.get_link(stream, cm_id=str(cm_id))
        return ledger.get_link(stream, mt_id=str(mt_id))
    finally:
        ledger.close()


def ot_from_aviso(h: Harness, aviso: int, title: str) -> int:
    """What a planner does in mantenimiento: turn the aviso into a corrective OT."""
    return h.mt.create_ot(
        descripcion_corta=title,
        tipo="CORRECTIVA",
        aviso_id=aviso,
        ubicacion_id=12,
        inicio_programado="2030-01-01T10:00:00+00:00",
        fin_programado="2030-01-01T12:00:00+00:00",
    )["id"]


def new_aviso(h: Harness, text: str, **fields) -> int:
    values = {"descripcion": text, "ubicacion_id": 12, "prioridad": "ALTA", "tipo": "AVERIA"}
    values.update(fields)
    return h.mt.create_aviso(**values)["id"]


def test_both_directions_and_quiet_second_run(h: Harness) -> None:
    req = h.cm.create_request(
        {"title": "Fuga en cuarto frío", "description": "Goteo constante", "priority": "high"}
    )["id"]
    aviso = new_aviso(h, "Ruido en compresor\n\nSe escucha desde el pasillo")
    both(h)
    linked = link_of(h, "requests", cm_id=req)
    text = h.mt.avisos[int(linked.mt_id)]["descripcion"]
    assert text.startswith("Fuga en cuarto frío\n\nGoteo constante")
    assert h.mt.avisos[int(linked.mt_id)]["prioridad"] == "ALTA"
    made = h.cm.requests[int(link_of(h, "requests", mt_id=aviso).cm_id)]
    assert made["title"] == "Ruido en compresor"
    assert made["description"].startswith("Se escucha desde el pasillo")
    assert find_marker(made["description"]) is not None  # how a crash would find it again
    before = h.writes()
    quiet = h.sync(stream="requests")
    assert quiet.writes == 0 and h.writes() == before


def test_status_flows_both_ways(h: Harness) -> None:
    req = h.cm.create_request({"title": "Cambiar luminaria"})["id"]
    both(h)
    aviso = int(link_of(h, "requests", cm_id=req).mt_id)
    h.cm.update_request(req, {"status": "declined"})
    both(h)
    assert h.mt.avisos[aviso]["estado"] == "CANCELADO"
    other = h.cm.create_request({"title": "Pintar barandas"})["id"]
    both(h)
    other_aviso = int(link_of(h, "requests", cm_id=other).mt_id)
    h.mt.update_aviso(other_aviso, estado="PROCESO")
    both(h)
    assert h.cm.requests[other]["status"] == "approved"


def test_aviso_text_changes_reach_click_maint_but_not_back(h: Harness) -> None:
    aviso = new_aviso(h, "Texto original")
    both(h)
    req = int(link_of(h, "requests", mt_id=aviso).cm_id)
    h.mt.update_aviso(aviso, descripcion="Texto corregido\n\ncon detalle")
    both(h)
    assert h.cm.requests[req]["title"] == "Texto corregido"
    h.cm.update_request(req, {"title": "Editado en Click Maint"})
    both(h)
    assert h.mt.avisos[aviso]["descripcion"].startswith("Texto corregido")  # no API to edit it
    ledger = h.ledger()
    actions = [(e.action, e.detail.get("field")) for e in ledger.history(cm_id=str(req))]
    ledger.close()
    assert ("not_mirrorable", "title") in actions


def test_approved_request_work_order_is_created_from_the_aviso(h: Harness) -> None:
    req = h.cm.create_request({"title": "Reparar bomba", "priority": "high"})["id"]
    both(h)
    aviso = int(link_of(h, "requests", cm_id=req).mt_id)
    h.cm.update_request(req, {"status": "approved"})  # Click Maint creates the work order
    wo = h.cm.requests[req]["work_order_id"]
    assert wo is not None
    both(h)
    ot = int(link_of(h, "work_orders", cm_id=wo).mt_id)
    assert h.mt.ots[ot]["aviso_id"] == aviso  # the OT hangs off the aviso, like a human would do
    assert h.mt.ots[ot]["descripcion_corta"] == "Reparar bomba"
    assert sum(1 for o in h.mt.ots.values() if o["aviso_id"] == aviso) == 1
    both(h)
    assert sum(1 for o in h.mt.ots.values() if o["aviso_id"] == aviso) == 1
    ledger = h.ledger()
    assert ledger.count_history("link_inconsistent") == 0
    ledger.close()


def test_ot_made_from_aviso_in_mantenimiento_links_its_request(h: Harness) -> None:
    aviso = new_aviso(h, "Falla en tablero")
    both(h)
    req = int(link_of(h, "requests", mt_id=aviso).cm_id)
    ot = ot_from_aviso(h, aviso, "Corr.: Falla en tablero...")
    both(h)
    wo = int(link_of(h, "work_orders", mt_id=ot).cm_id)
    assert h.cm.work_orders[wo]["work_order_request_id"] == req


def test_timed_out_aviso_create_is_adopted(h: Harness) -> None:
    req = h.cm.create_request({"title": "Una sola vez"})["id"]
    calls = {"n": 0}

    def timeout(request: httpx.Request):
        if request.method == "POST" and request.url.path.endswith("/aviso/crear/"):
            calls["n"] += 1
            return httpx.ReadTimeout("simulated", request=request)
        return None

    h.mt_transport.after = timeout
    h.cm.clock.advance(10)
    assert h.sync(stream="requests").counts["outcome_unknown"] == 1
    h.mt_transport.after = lambda _r: None
    both(h)
    assert calls["n"] == 1
    assert sum(1 for a in h.mt.avisos.values() if a["descripcion"].startswith("Una sola vez")) == 1
    assert link_of(h, "requests", cm_id=req) is not None


def test_work_order_made_from_an_aviso_request_is_not_taken_for_syncds_own(h: Harness) -> None:
    """Click Maint copies the request's description, marker included, into the work order it
    makes on approval; that work order is a user's, not a create syncd lost track of."""
    aviso = new_aviso(h, "Fuga de agua en cámara")
    both(h)
    req = int(link_of(h, "requests", mt_id=aviso).cm_id)
    assert "⟦syncd req mt:" in h.cm.requests[req]["description"]
    h.cm.update_request(req, {"status": "approved"})
    wo = h.cm.requests[req]["work_order_id"]
    assert "⟦syncd req mt:" in h.cm.work_orders[wo]["description"]
    both(h)
    ot = int(link_of(h, "work_orders", cm_id=wo).mt_id)
    assert h.mt.ots[ot]["aviso_id"] == aviso
    assert "⟦syncd req" not in (h.mt.ots[ot]["notas"] or "")
    both(h)
    assert sum(1 for o in h.mt.ots.values() if o["aviso_id"] == aviso) == 1
    ledger = h.ledger()
    try:
        assert ledger.count_history("duplicate_detected") == 0
    finally:
        ledger.close()


def test_both_users_convert_the_same_pair_and_nothing_is_left_unlinked(h: Harness) -> None:
    """The request approved in Click Maint *and* the aviso turned into an OT, before syncd
    looked: two pieces of work, both mirrored; the disagreement is in the history."""
    aviso = new_aviso(h, "Ruido en compresor")
    both(h)
    req = int(link_of(h, "requests", mt_id=aviso).cm_id)
    h.cm.update_request(req, {"status": "approved"})
    wo = h.cm.requests[req]["work_order_id"]
    ot = ot_from_aviso(h, aviso, "Corr.: Ruido en compresor")
    both(h)
    both(h)
    assert link_of(h, "work_orders", cm_id=wo) is not None
    assert link_of(h, "work_orders", mt_id=ot) is not None
    linked_wos = {int(cm) for cm, _mt in h.pairs()}
    assert set(h.cm.work_orders) <= linked_wos


def test_request_quarantined_by_a_garbled_read_is_retried_and_released(h: Harness) -> None:
    req = h.cm.create_request({"title": "Cambiar filtro", "priority": "low"})["id"]
    both(h)
    aviso = int(link_of(h, "requests", cm_id=req).mt_id)
    h.cm.update_request(req, {"status": "approved"})
    h.cm.requests[req]["status"] = "garbled"  # as one bad answer would show it
    h.cm.clock.advance(10)
    assert h.sync(stream="requests").counts["quarantined"] == 1

    def held() -> bool:
        ledger = h.ledger()
        try:
            return ledger.get_quarantined("requests", "cm", str(req)) is not None
        finally:
            ledger.close()

    h.cm.clock.advance(600)  # the scan's watermark moves past the request
    for _ in range(2):
        h.sync(stream="requests")
    # the next answers are fine, but the record does not change again: only a retry sees it
    h.cm.requests[req]["status"] = "approved"
    h.sync(stream="requests")
    assert held() and h.mt.avisos[aviso]["estado"] != "PROCESO"
    ledger = h.ledger()
    try:
        assert ledger.make_due("requests") == 1  # `syncd quarantine retry`
    finally:
        ledger.close()
    h.sync(stream="requests")
    assert not held()
    assert h.mt.avisos[aviso]["estado"] == "PROCESO"  # the approval reached mantenimiento


def test_lost_answer_to_an_ot_from_aviso_is_adopted_not_copied_back(h: Harness) -> None:
    """Found by the long chaos soak: an OT made from an aviso carries no marker, so when the
    answer to `create-ot` was lost, discovery took the new OT for a user's and created a
    second work order in Click Maint; the outbox then tried to link the same OT and crashed
    every cycle on the ledger's unique index."""
    req = h.cm.create_request({"title": "Cambiar rodamiento", "priority": "high"})["id"]
    both(h)
    aviso = int(link_of(h, "requests", cm_id=req).mt_id)
    h.cm.update_request(req, {"status": "approved"})
    wo = h.cm.requests[req]["work_order_id"]
    lost = {"n": 0}

    def lose_answer(request: httpx.Request):
        if request.method == "POST" and "create-ot" in request.url.path and not lost["n"]:
            lost["n"] += 1
            return httpx.ReadTimeout("simulated", request=request)
        return None

    h.mt_transport.after = lose_answer
    wos_before = len(h.cm.work_orders)
    h.cm.clock.advance(10)
    report = h.sync()
    assert report.status == "ok", report.error
    assert report.counts["outcome_unknown"] == 1
    h.mt_transport.after = lambda _r: None
    both(h)
    ots = [o for o in h.mt.ots.values() if o["aviso_id"] == aviso]
    assert len(ots) == 1
    assert int(link_of(h, "work_orders", cm_id=wo).mt_id) == ots[0]["id"]
    assert len(h.cm.work_orders) == wos_before  # no second work order


def test_create_whose_result_is_linked_elsewhere_is_held_not_crashed(h: Harness) -> None:
    """If a lost create's only candidate result already belongs to another link, syncd can
    neither link it nor safely send the create again: the intent is abandoned, the work
    order held for an operator, and the cycle goes on."""
    aviso = new_aviso(h, "Fuga en válvula")
    both(h)
    ot = ot_from_aviso(h, aviso, "Corr.: Fuga en válvula")
    both(h)
    assert link_of(h, "work_orders", mt_id=ot) is not None
    other = h.cm.create_work_order({"title": "Orden sin OT", "priority": "low"})["id"]
    raw = h.cm.render_work_order(h.cm.work_orders[other], detail=True)
    ledger = h.ledger()
    try:
        intent = ledger.add_intent(
            stream="work_orders",
            op="create",
            source_side="cm",
            source_id=str(other),
            target_side="mt",
            payload={"snapshot": h.mapping.from_cm(raw), "aviso_id": aviso},
        )
        ledger.mark_intent(intent.token, "unknown")
    finally:
        ledger.close()
    ots_before = len(h.mt.ots)
    for _ in range(2):
        h.cm.clock.advance(10)
        report = h.sync()
        assert report.status == "ok", report.error
    assert len(h.mt.ots) == ots_before  # nothing sent again
    ledger = h.ledger()
    try:
        held = ledger.get_quarantined("work_orders", "cm", str(other))
        assert held is not None and "check for a duplicate" in held.reason
        assert held.next_retry_at.startswith("9999")
        assert ledger.count_history("adopt_refused") == 1
        assert ledger.make_due("work_orders") == 1  # the operator checked: go ahead
    finally:
        ledger.close()
    h.cm.clock.advance(10)
    h.sync()
    assert link_of(h, "work_orders", cm_id=other) is not None


def test_the_verifier_sees_request_duplicates_orphans_and_status_drift(h: Harness) -> None:
    """`sandbox.verify` is what the crash matrix, the demo and the tests trust: it must see
    each way requests ⇄ avisos can go wrong."""
    from syncd.sandbox.verify import verify

    req = h.cm.create_request({"title": "Fuga en cuarto frío", "priority": "high"})["id"]
    new_aviso(h, "Ruido en compresor")
    both(h)
    clean = verify(h.config, h.cm, h.mt)
    assert clean.ok and clean.request_pairs == 2, clean.summary()

    link = link_of(h, "requests", cm_id=req)
    mirror = h.mt.avisos[int(link.mt_id)]
    # a second aviso carrying the same request's marker: what a repeated create would leave
    h.mt.create_aviso(
        descripcion=mirror["descripcion"], ubicacion_id=12, prioridad="ALTA", tipo="AVERIA"
    )
    h.mt.avisos[int(link.mt_id)]["estado"] = "CANCELADO"  # drift behind syncd's back
    problems = verify(h.config, h.cm, h.mt).request_problems
    assert f"request {req} mirrored 2 times" in problems
    assert any(p.startswith("aviso ") and p.endswith("has no request") for p in problems)
    assert any(p.startswith(f"request {req} / aviso {link.mt_id} status") for p in problems)


@pytest.mark.parametrize("order", [("work_orders", "requests"), ("requests", "work_orders")])
def test_an_aviso_whose_ot_came_first_gives_one_work_order_in_either_stream_order(
    h: Harness, order: tuple[str, str]
) -> None:
    """Approving a request makes Click Maint create a work order.  An aviso that already has
    an OT is one job: whichever stream runs first, Click Maint ends with one work order that
    names the request, mantenimiento with the one OT, and the request approved."""
    aviso = new_aviso(h, "Motor de cinta recalienta")
    ot = ot_from_aviso(h, aviso, "Corr.: Motor de cinta recalienta")
    h.mt.update_aviso(aviso, estado="PROCESO")  # the planner moves it on: approved
    for _ in range(3):
        h.cm.clock.advance(10)
        for stream in order:
            assert h.sync(stream=stream).status == "ok"
    assert len(h.cm.work_orders) == 1 and len(h.mt.ots) == 1
    (wo,) = h.cm.work_orders
    req = int(link_of(h, "requests", mt_id=aviso).cm_id)
    assert int(link_of(h, "work_orders", mt_id=ot).cm_id) == wo
    assert h.cm.work_orders[wo]["work_order_request_id"] == req
    assert h.cm.requests[req]["work_order_id"] == wo
    assert h.cm.requests[req]["status"] == "approved"
    before = h.writes()
    h.cm.clock.advance(10)
    for stream in order:
        assert h.sync(stream=stream).status == "ok"
    assert h.writes() == before
    ledger = h.ledger()
    assert ledger.count_history("link_inconsistent") == 0
    ledger.close()


def test_a_work_order_approved_for_an_aviso_whose_ot_is_linked_elsewhere_is_held(
    h: Harness,
) -> None:
    """Should Click Maint still make a second work order for a job (a user approving the
    request before syncd named it on the OT's work order), it is held with both ids, never
    copied into a second OT."""
    aviso = new_aviso(h, "Compresor no arranca")
    ot = ot_from_aviso(h, aviso, "Corr.: Compresor no arranca")
    h.cm.clock.advance(10)
    assert h.sync(stream="work_orders").status == "ok"  # the OT's work order, naming nothing
    h.cm.clock.advance(10)
    # the request exists before syncd's aviso pass can name it on the work order
    ledger = h.ledger()
    ledger.set_cursor("requests", "cm_watermark", "2000-01-01T00:00:00Z")
    ledger.close()
    first = h.sync(stream="requests")
    assert first.status == "ok"
    req = int(link_of(h, "requests", mt_id=aviso).cm_id)
    wo = int(link_of(h, "work_orders", mt_id=ot).cm_id)
    h.cm.update_work_order(wo, {"work_order_request_id": None})  # a user unlinks it
    h.cm.requests[req]["work_order_id"] = None
    h.cm.update_request(req, {"status": "pending"})
    h.cm.update_request(req, {"status": "approved"})  # ... and approves: a second work order
    second = h.cm.requests[req]["work_order_id"]
    assert second not in (None, wo)
    h.cm.clock.advance(10)
    assert h.sync(stream="work_orders").status == "ok"
    assert len(h.mt.ots) == 1  # not copied
    ledger = h.ledger()
    held = ledger.get_quarantined("work_orders", "cm", str(second))
    ledger.close()
    assert held is not None and f"OT {ot}" in held.reason and str(wo) in held.reason


def test_a_request_created_unapproved_then_adopted_after_a_lost_answer_is_approved(
    h: Harness,
) -> None:
    """The crash matrix found it: a request created `pending` (its approval must wait, see
    above) whose create answer was lost is adopted next cycle; the adoption must still treat
    the approval as a change to send, or the pair stays pending against PROCESO for good."""
    aviso = new_aviso(h, "Bomba de agua pierde presión")
    ot = ot_from_aviso(h, aviso, "Corr.: Bomba de agua pierde presión")
    h.mt.update_aviso(aviso, estado="PROCESO")
    h.cm.clock.advance(10)
    assert h.sync(stream="work_orders").status == "ok"  # the OT's work order, naming nothing

    def lost(request: httpx.Request) -> Exception | None:
        if request.method == "POST" and request.url.path.endswith("/requests"):
            return httpx.ReadTimeout("answer lost", request=request)
        return None

    h.cm_transport.after = lost
    assert h.sync(stream="requests").status == "ok"
    assert len(h.cm.requests) == 1  # it landed, pending; syncd does not know yet
    h.cm_transport.after = lambda _request: None
    for _ in range(3):
        h.cm.clock.advance(10)
        for stream in ("requests", "work_orders"):
            assert h.sync(stream=stream).status == "ok"
    (req,) = h.cm.requests
    wo = int(link_of(h, "work_orders", mt_id=ot).cm_id)
    assert h.cm.requests[req]["status"] == "approved"
    assert h.cm.work_orders[wo]["work_order_request_id"] == req
    assert len(h.cm.work_orders) == 1 and len(h.mt.ots) == 1
