"""Contract tests of the mantenimiento client against the simulator of the real Django code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from syncd.sandbox.faults import FaultConfig
from syncd.sandbox.mantenimiento_sim import MantenimientoSim
from syncd.sandbox.seed_mantenimiento import seed_mantenimiento
from syncd.sandbox.server import ServerThread
from syncd.systems.errors import (
    AuthFailed,
    NotFound,
    OutcomeUnknown,
    PermissionDenied,
    RateLimited,
    Rejected,
    ServerError,
)
from syncd.systems.http import HttpClient, RequestStats, RetryPolicy
from syncd.systems.mantenimiento import DjangoSessionAuth, MantenimientoClient

from ..conftest import FAST_RETRY, mt_client
from .logcapture import rendered_logs

PASSWORD = "syncd-sandbox-pass"


@pytest.fixture
def mt_sim() -> MantenimientoSim:
    sim = MantenimientoSim()
    seed_mantenimiento(sim, ots=30, avisos=5, seed=2)
    return sim


def make_client(
    sim: MantenimientoSim | None, *, base_url: str = "http://mt.test", **options: Any
) -> MantenimientoClient:
    transport = httpx.WSGITransport(app=sim) if sim is not None else None
    return mt_client(transport, base_url=base_url, **options)


def first_open_ot(sim: MantenimientoSim) -> int:
    return min(i for i, ot in sim.ots.items() if ot["estado"] in ("ESPERA", "PROGRAMADA"))


def test_lazy_login_then_reads(mt_sim) -> None:
    client = make_client(mt_sim)
    ot_id = first_open_ot(mt_sim)
    ot = client.get_ot(ot_id)
    assert ot is not None and ot["id"] == ot_id
    assert client.auth is not None and client.auth.logins == 1
    assert client.get_ot(ot_id)["raw_status"] in ("ESPERA", "PROGRAMADA")
    assert client.auth.logins == 1  # the session is reused


def test_missing_ot_is_none_html_404(mt_sim) -> None:
    client = make_client(mt_sim)
    assert client.get_ot(999_999) is None


def test_expired_session_is_renewed_transparently(mt_sim) -> None:
    client = make_client(mt_sim)
    ot_id = first_open_ot(mt_sim)
    client.get_ot(ot_id)
    mt_sim.expire_all_sessions()
    client.update_status_notes(ot_id, notas="después de expirar")  # a POST, re-sent after login
    assert client.auth.logins == 2
    assert mt_sim.ots[ot_id]["notas"] == "después de expirar"


def test_wrong_password_and_non_staff_fail_clearly(mt_sim) -> None:
    with pytest.raises(AuthFailed) as exc:
        make_client(mt_sim, password="nope-wrong-pw").get_ot(first_open_ot(mt_sim))
    assert "nope-wrong-pw" not in str(exc.value)
    with pytest.raises(AuthFailed):
        make_client(mt_sim, user="tecnico1", password="tecnico1-pass").get_ot(1000)


def test_csrf_protected_writes(mt_sim) -> None:
    client = make_client(mt_sim)
    ot_id = first_open_ot(mt_sim)
    client.update_ot_fields(ot_id, {"descripcion_detallada": "Título nuevo " + "x" * 250})
    assert mt_sim.ots[ot_id]["descripcion_corta"] == ("Título nuevo " + "x" * 250)[:200]
    # a lost CSRF cookie makes the server answer 403; the client logs in again and resends
    assert client.auth is not None
    client.auth.csrftoken = "stale-token-value-0000000000000"
    client.update_ot_fields(ot_id, {"descripcion_detallada": "Otra vez"})
    assert mt_sim.ots[ot_id]["descripcion_corta"] == "Otra vez"


def test_create_update_close_cycle(mt_sim) -> None:
    client = make_client(mt_sim)
    end = datetime.now(UTC) + timedelta(days=2)
    ot_id, codigo = client.create_ot(
        {
            "descripcion": "Fuga de aceite ⟦syncd cm:5 t:abc123⟧",
            "prioridad": "ALTA",
            "ubicacion": 11,
            "fin_programado": end.strftime("%Y-%m-%dT%H:%M"),
        }
    )
    assert codigo.startswith("OTNP-")
    ot = client.get_ot(ot_id)
    assert ot["tipo_raw"] == "NO_PROGRAMADA" and ot["raw_status"] == "PROGRAMADA"
    assert [r["id"] for r in client.search_ots("abc123")] == [ot_id]
    client.update_status_notes(ot_id, estado="EJECUCION", notas="en curso")
    with pytest.raises(Rejected) as bad:
        client.update_status_notes(ot_id, estado="EN_CURSO")
    assert "no válido" in str(bad.value)
    assert client.close_ot(ot_id, fecha_inicio="2026-01-01T08:00", fecha_fin="2026-01-01T10:00")
    assert (
        client.close_ot(ot_id, fecha_inicio="2026-01-01T08:00", fecha_fin="2026-01-01T10:00")
        is False
    )
    assert client.get_ot(ot_id)["raw_status"] == "REALIZADA"


def test_update_of_missing_ot_is_not_found_not_retried(mt_sim) -> None:
    client = make_client(mt_sim)
    client.get_ot(first_open_ot(mt_sim))
    before = mt_sim.log.total
    with pytest.raises(NotFound):
        client.update_status_notes(999_999, estado="CANCELADA")  # the view answers JSON 500
    assert mt_sim.log.total == before + 1


def test_materials_and_avisos(mt_sim) -> None:
    client = make_client(mt_sim)
    ot_id = first_open_ot(mt_sim)
    material = next(iter(client.iter_materials("FL_A")))
    record = client.add_material_used(
        ot_id, material_id=material["id"], cantidad=Decimal("2.50"), comentario="tx 7 t:abc"
    )
    used = client.materials_used(ot_id)
    assert any(m["id"] == record and m["cantidad"] == 2.5 for m in used)
    with pytest.raises(Rejected):  # the real view only refuses a zero / missing quantity
        client.add_material_used(ot_id, material_id=material["id"], cantidad=Decimal("0"))
    all_materials = list(client.iter_materials())
    assert len(all_materials) == len(mt_sim.materials)  # paged 30 at a time
    avisos = client.list_avisos()
    assert set(avisos) == {"ABIERTO", "PROCESO", "CERRADO", "CANCELADO"}
    aviso_id = client.create_aviso({"ubicacion": 11, "descripcion": "Ruido en compresor t:zz9"})
    assert aviso_id is not None and mt_sim.avisos[aviso_id]["descripcion"].startswith("Ruido")
    client.update_aviso(aviso_id, "PROCESO")
    new_ot, _ = client.create_ot_from_aviso(aviso_id)
    assert mt_sim.ots[new_ot]["aviso_id"] == aviso_id
    with pytest.raises(Rejected):
        client.create_ot_from_aviso(aviso_id)  # an aviso has at most one OT


def test_missing_section_is_permission_denied() -> None:
    sim = MantenimientoSim()
    seed_mantenimiento(sim, ots=2, avisos=0, seed=1)
    sim.users["syncd"]["sections"] = []
    with pytest.raises(PermissionDenied):
        make_client(sim).create_aviso({"ubicacion": 11, "descripcion": "x"})


def test_faults_over_sockets(mt_sim) -> None:
    with ServerThread(mt_sim) as server:
        client = make_client(None, base_url=server.url, timeout=0.5)
        ot_id = first_open_ot(mt_sim)
        assert client.get_ot(ot_id)["id"] == ot_id
        mt_sim.faults.configure(FaultConfig(session_expiry_rate=0.3, seed=11))
        logins = client.auth.logins
        for _ in range(10):
            assert client.get_ot(ot_id)["id"] == ot_id  # logs in again when bounced
        assert client.auth.logins > logins
        mt_sim.faults.configure(FaultConfig(error_rate=1.0))
        with pytest.raises(ServerError):
            client.get_ot(ot_id)
        mt_sim.faults.configure(FaultConfig(timeout_rate=1.0, timeout_delay=1.0))
        with pytest.raises(OutcomeUnknown):
            client.create_ot({"descripcion": "timeout t:tt1", "ubicacion": 11})
        assert sum("t:tt1" in (o["descripcion_corta"] or "") for o in mt_sim.ots.values()) == 1
        mt_sim.faults.configure(FaultConfig(html_error_rate=0.2, malformed_json_rate=0.1, seed=4))
        for _ in range(5):
            assert client.get_ot(ot_id)["id"] == ot_id


def test_password_never_logged(mt_sim) -> None:
    client = make_client(mt_sim)
    with rendered_logs() as logs:
        client.get_ot(first_open_ot(mt_sim))
    assert "http.request" in logs.getvalue()
    assert PASSWORD not in logs.getvalue()
    assert client.auth is not None and client.auth.sessionid
    assert client.auth.sessionid not in logs.getvalue()


class LoginTrouble(httpx.BaseTransport):
    """The first `failures` login requests answer `status` (an overloaded server, nginx)."""

    def __init__(self, sim: MantenimientoSim, failures: int, status: int) -> None:
        self.inner = httpx.WSGITransport(app=sim)
        self.failures = failures
        self.status = status

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/admin/login/") and self.failures > 0:
            self.failures -= 1
            return httpx.Response(self.status, html="<h1>busy</h1>")
        return self.inner.handle_request(request)


def _client_over(transport: httpx.BaseTransport) -> MantenimientoClient:
    auth = DjangoSessionAuth("syncd", lambda: PASSWORD)
    http = HttpClient(
        "mantenimiento",
        "http://mt.test",
        timeout=5.0,
        auth=auth,
        retry=FAST_RETRY,
        transport=transport,
        stats=RequestStats(),
        classify_5xx=MantenimientoClient.classify_5xx,
    )
    return MantenimientoClient(http, auth)


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_a_busy_login_is_retried_not_an_auth_failure(mt_sim, status) -> None:
    """Found by the chaos soak: a 5xx or 429 on the login page ended whole cycles as
    "credentials refused"; the request behind the login was never sent, so even a write is
    safely retried."""
    ot_id = first_open_ot(mt_sim)
    client = _client_over(LoginTrouble(mt_sim, failures=2, status=status))
    assert client.get_ot(ot_id)["id"] == ot_id
    writer = _client_over(LoginTrouble(mt_sim, failures=2, status=status))
    writer.create_ot({"descripcion": f"tras el login t:lg{status}", "ubicacion": 11})
    made = [o for o in mt_sim.ots.values() if f"t:lg{status}" in (o["descripcion_corta"] or "")]
    assert len(made) == 1


def test_a_login_that_stays_down_is_a_server_error(mt_sim) -> None:
    client = _client_over(LoginTrouble(mt_sim, failures=100, status=503))
    with pytest.raises(ServerError) as caught:
        client.get_ot(first_open_ot(mt_sim))
    assert not isinstance(caught.value, AuthFailed)
    assert "login answered HTTP 503" in str(caught.value)


# -- one round trip per remaining client method ---------------------------------------------
def test_move_ot_date_shifts_both_ends_and_replays_harmlessly(mt_sim) -> None:
    client = make_client(mt_sim)
    ot_id = first_open_ot(mt_sim)
    ot = mt_sim.ots[ot_id]
    start, end = ot["inicio_programado"], ot["fin_programado"]
    target = (start + timedelta(days=9)).date()
    client.move_ot_date(ot_id, target.isoformat())
    assert mt_sim.ots[ot_id]["inicio_programado"] == start + timedelta(days=9)
    assert mt_sim.ots[ot_id]["fin_programado"] == end + timedelta(days=9)
    client.move_ot_date(ot_id, target.isoformat())  # the date is absolute: a replay is a no-op
    assert mt_sim.ots[ot_id]["inicio_programado"] == start + timedelta(days=9)
    shown = client.get_ot(ot_id)["inicio"]
    assert shown.split()[0] == target.strftime("%d/%m/%Y")
    with pytest.raises(NotFound):
        client.move_ot_date(999_999, target.isoformat())
    with pytest.raises(Rejected):
        client.move_ot_date(ot_id, "")


def test_delete_ots_removes_only_active_ones(mt_sim) -> None:
    client = make_client(mt_sim)
    active = first_open_ot(mt_sim)
    closed = client.create_ot({"descripcion": "para cerrar t:del1", "ubicacion": 11})[0]
    client.close_ot(closed, fecha_inicio="2026-01-01T08:00", fecha_fin="2026-01-01T09:00")
    client.delete_ots([active, closed, 999_999])
    assert client.get_ot(active) is None
    assert client.get_ot(closed)["raw_status"] == "REALIZADA"  # the view keeps closed OTs
    client.delete_ots([active])  # replaying is harmless: nothing left to delete
    assert closed in mt_sim.ots


def test_notifications_round_trip(mt_sim) -> None:
    client = make_client(mt_sim)
    seeded = client.notifications()
    me = mt_sim.users["syncd"]["id"]
    mt_sim.add_notification(me, "OT 1001 asignada", tipo="WARNING")
    mt_sim.add_notification(mt_sim.users["tecnico1"]["id"], "no es para syncd")
    items = client.notifications()
    assert len(items) == len(seeded) + 1
    assert (items[0]["mensaje"], items[0]["tipo"]) == ("OT 1001 asignada", "WARNING")  # newest
    assert set(items[0]) == {"id", "mensaje", "tipo", "creado_en"}
    assert "no es para syncd" not in {n["mensaje"] for n in items}


def test_ots_today_lists_unscheduled_ots_and_filters(mt_sim) -> None:
    client = make_client(mt_sim)
    ot_id, codigo = client.create_ot({"descripcion": "hoy mismo t:hoy1", "ubicacion": 11})
    today = client.ots_today()
    assert set(today) >= {"ots", "total", "can_delete"}
    assert ot_id in {o["id"] for o in today["ots"]} or today["total"] == 20  # capped at 20
    specific = client.ots_today(q=str(ot_id))
    assert [o["id"] for o in specific["ots"]][:1] == [ot_id]
    assert specific["ots"][0]["codigo"] == codigo
    assert specific["ots"][0]["descripcion"] == "hoy mismo t:hoy1"
    preventive = client.ots_today(tipo="PROGRAMADA")
    assert all(o["tipo"] == "PROGRAMADA" for o in preventive["ots"])
    assert ot_id not in {o["id"] for o in preventive["ots"]}


def test_remaining_methods_over_a_real_socket(mt_sim) -> None:
    with ServerThread(mt_sim) as server:
        client = make_client(None, base_url=server.url)
        ot_id = first_open_ot(mt_sim)
        start = mt_sim.ots[ot_id]["inicio_programado"]
        client.move_ot_date(ot_id, (start + timedelta(days=1)).date().isoformat())
        assert mt_sim.ots[ot_id]["inicio_programado"] == start + timedelta(days=1)
        mt_sim.add_notification(mt_sim.users["syncd"]["id"], "por socket")
        assert client.notifications()[0]["mensaje"] == "por socket"
        assert client.ots_today(q=str(ot_id))["ots"][0]["id"] == ot_id
        client.delete_ots([ot_id])
        assert client.get_ot(ot_id) is None


# -- drift and throttling on plain reads ------------------------------------------------------
def test_iter_materials_is_complete_under_page_drift(mt_sim) -> None:
    """The catalogue changes between two page requests (inserts, renames, deletes): every
    material that existed throughout is still yielded, and none twice."""
    for i in range(100):
        mt_sim.add_material(f"Material {i:03d}", f"MAT-{i:03d}", stock=1.0)
    client = make_client(mt_sim)
    drifted = 0
    for seed in range(10):
        before = set(mt_sim.materials)
        mt_sim.faults.configure(FaultConfig(page_drift_rate=0.3, seed=seed))
        got = [m["id"] for m in client.iter_materials()]
        drifted += mt_sim.faults.counts["page_drift"]
        mt_sim.faults.clear()
        throughout = before & set(mt_sim.materials)
        assert len(got) == len(set(got)), f"seed {seed}: duplicates"
        assert throughout <= set(got), f"seed {seed}: missed {sorted(throughout - set(got))}"
    assert drifted >= 10
    # without drift a multi-page walk is read twice (the second walk confirms the first);
    # a query that fits one page costs one request, and stopping early costs what was read
    requests = client.http.stats.count
    before_calls = requests()
    assert {m["id"] for m in client.iter_materials()} == set(mt_sim.materials)
    pages = -(-len(mt_sim.materials) // 30)
    assert requests() - before_calls == 2 * pages
    before_calls = requests()
    assert [m["sku"] for m in client.iter_materials("MAT-042")] == ["MAT-042"]
    assert next(iter(client.iter_materials())) is not None
    assert requests() - before_calls == 2


def test_a_429_burst_on_a_read_is_waited_out(mt_sim) -> None:
    """nginx in front of mantenimiento answers a burst of 429s (Retry-After: 1): the read
    waits each one out and succeeds; a burst longer than the retries is RateLimited."""
    slept: list[float] = []
    burst_ends = [True]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if burst_ends[0] and len(slept) == 3:
            mt_sim.faults.clear()  # the burst is over by the fourth attempt

    auth = DjangoSessionAuth("syncd", lambda: PASSWORD)
    http = HttpClient(
        "mantenimiento",
        "http://mt.test",
        auth=auth,
        retry=RetryPolicy(attempts=4, backoff_initial=0.01, jitter=0.0),
        transport=httpx.WSGITransport(app=mt_sim),
        stats=RequestStats(),
        sleep=sleep,
        classify_5xx=MantenimientoClient.classify_5xx,
    )
    client = MantenimientoClient(http, auth)
    ot_id = first_open_ot(mt_sim)
    client.get_ot(ot_id)
    mt_sim.faults.configure(FaultConfig(burst_429_rate=1.0, burst_429_length=3))
    assert client.get_ot(ot_id)["id"] == ot_id
    assert slept == [1.0, 1.0, 1.0]
    assert http.stats.throttled["mantenimiento"] == 3
    assert mt_sim.log.by_status[429] == 3
    slept.clear()
    burst_ends[0] = False
    mt_sim.faults.configure(FaultConfig(burst_429_rate=1.0, burst_429_length=10))
    with pytest.raises(RateLimited) as caught:
        client.get_ot(ot_id)
    assert caught.value.retry_after == 1.0 and "429" in str(caught.value)
    assert slept == [1.0, 1.0, 1.0]  # waited before each of the 3 resends, then gave up
    mt_sim.faults.clear()
