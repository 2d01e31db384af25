"""Behaviour of the mantenimiento (Django CMMS) simulator, observed over HTTP like a client would.

Every test logs in the way a non-browser client must (§1.4 of the reference): GET the admin login
page, read the csrftoken cookie and the masked form token, POST the form, keep the cookies.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from syncd.sandbox.catalog import PARTS
from syncd.sandbox.clock import SimClock
from syncd.sandbox.mantenimiento_sim import (
    DEFAULT_USERS,
    LOGIN_ERROR,
    MantenimientoSim,
    mask_csrf_secret,
    unmask_csrf_token,
)
from syncd.sandbox.seed_mantenimiento import seed_mantenimiento
from syncd.sandbox.server import ServerThread

LOGIN = "/admin/login/"
PASSWORD = "syncd-sandbox-pass"
TEGUCIGALPA = ZoneInfo("America/Tegucigalpa")
#: 09:00 in Tegucigalpa (UTC-6)
T0 = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
CSRF_FAILED = (
    "<h1>Forbidden <span>(403)</span></h1><p>CSRF verification failed. Request aborted.</p>"
)
NOT_FOUND = "<h1>Not Found</h1><p>The requested resource was not found on this server.</p>"
DETAIL_KEYS = {
    "id", "codigo", "tipo", "tipo_raw", "prioridad", "prioridad_raw", "estado", "rutina",
    "rutina_id", "ubicacion", "ubicacion_id", "tecnico", "tecnico_puesto", "empresa", "inicio",
    "fin", "descripcion", "notas", "activos", "status_color", "raw_status", "status_list",
    "archivos",
}  # fmt: skip
AVISO_KEYS = {
    "id", "titulo", "descripcion", "estado", "prioridad", "tipo", "tipo_display", "ubicacion",
    "activo", "solicitante", "responsable_id", "responsable_nombre", "creado_en", "tiene_foto",
    "foto_url", "falla", "departamento_nombre", "tiene_ot", "ot_id", "ot_codigo",
}  # fmt: skip
MATERIAL_KEYS = {
    "id", "nombre", "sku", "descripcion", "unidad", "precio_estimado", "stock", "categoria",
    "tipo_material", "image_url", "is_allowed", "bodegas",
}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Fixtures and helpers
# ---------------------------------------------------------------------------------------------
def users_with_plain_staff() -> dict[str, dict[str, Any]]:
    """The default users plus a staff member who is neither manager nor mobile user."""
    users = {name: dict(spec) for name, spec in DEFAULT_USERS.items()}
    users["staff2"] = {"id": 9, "password": "staff2-pass", "is_staff": True, "groups": []}
    return users


def new_sim(**kwargs: Any) -> MantenimientoSim:
    clock = SimClock()
    clock.freeze(T0)
    sim = MantenimientoSim(clock=clock, users=users_with_plain_staff(), **kwargs)
    seed_mantenimiento(sim, ots=0, avisos=0)  # catalogue, people, 3 notifications for syncd
    return sim


def client_for(sim: MantenimientoSim) -> httpx.Client:
    return httpx.Client(
        transport=httpx.WSGITransport(app=sim), base_url="http://mt.test", follow_redirects=False
    )


def form_token(page: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match, "no csrfmiddlewaretoken in the page"
    return match.group(1)


def login(
    client: httpx.Client, username: str = "syncd", password: str = PASSWORD, next_path: str = ""
) -> httpx.Response:
    page = client.get(LOGIN)
    assert page.status_code == 200
    data = {
        "username": username,
        "password": password,
        "csrfmiddlewaretoken": form_token(page.text),
    }
    if next_path:
        data["next"] = next_path
    return client.post(LOGIN, data=data)


def csrf(client: httpx.Client) -> dict[str, str]:
    return {"X-CSRFToken": client.cookies["csrftoken"]}


@pytest.fixture
def sim() -> MantenimientoSim:
    return new_sim()


@pytest.fixture
def anon(sim: MantenimientoSim) -> Iterator[httpx.Client]:
    with client_for(sim) as client:
        yield client


@pytest.fixture
def api(sim: MantenimientoSim) -> Iterator[httpx.Client]:
    with client_for(sim) as client:
        assert login(client).status_code == 302
        yield client


def make_ot(sim: MantenimientoSim, **fields: Any) -> dict[str, Any]:
    start = fields.pop("inicio_programado", T0 + timedelta(days=1))
    fields.setdefault("fin_programado", start + timedelta(hours=2))
    fields.setdefault("ubicacion_id", 13)
    fields.setdefault("descripcion_corta", "Revisión de rodamientos")
    return sim.create_ot(inicio_programado=start, **fields)


# ---------------------------------------------------------------------------------------------
# Authentication, sessions and CSRF (§1.3, §1.4)
# ---------------------------------------------------------------------------------------------
def test_anonymous_callers_are_redirected_to_the_login_page(
    sim: MantenimientoSim, anon: httpx.Client
) -> None:
    ot = make_ot(sim)
    r = anon.get(f"/mantenimiento/api/ot/{ot['id']}/detalle/")
    assert r.status_code == 302
    assert r.headers["location"] == f"/admin/login/?next=/mantenimiento/api/ot/{ot['id']}/detalle/"
    r = anon.get("/mantenimiento/api/search-ordenes/", params={"q": "OT 1"})
    assert (
        r.headers["location"]
        == "/admin/login/?next=/mantenimiento/api/search-ordenes/%3Fq%3DOT%2B1"
    )
    # login_required views redirect too, and the staff check precedes the method check
    assert anon.get(f"/inventarios/api/ot/{ot['id']}/materiales-utilizados/").status_code == 302
    assert anon.get(f"/mantenimiento/api/cerrar-ot/{ot['id']}/").status_code == 302
    # an exempt POST reaches the decorator, which redirects
    r = anon.post(f"/mantenimiento/api/ot/{ot['id']}/update/", json={"estado": "EJECUCION"})
    assert r.status_code == 302 and r.headers["location"].startswith(LOGIN)


def test_unknown_urls_get_the_django_html_404_and_missing_slashes_a_301(
    sim: MantenimientoSim, anon: httpx.Client
) -> None:
    for path in ("/mantenimiento/api/ot/abc/detalle/", "/inventarios/nope/", "/mantenimiento/x/"):
        r = anon.get(path)
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("text/html")
        assert NOT_FOUND in r.text
    r = anon.get("/mantenimiento/api/ot/5/detalle", params={"a": "1"})
    assert r.status_code == 301
    assert r.headers["location"] == "/mantenimiento/api/ot/5/detalle/?a=1"


def test_login_page_sets_the_cookie_and_a_masked_token(anon: httpx.Client) -> None:
    page = anon.get(LOGIN)
    secret = anon.cookies["csrftoken"]
    token = form_token(page.text)
    assert len(secret) == 32 and len(token) == 64
    assert unmask_csrf_token(token) == secret
    assert form_token(anon.get(LOGIN).text) != token  # every rendering is masked afresh


def test_login_csrf_failures_answer_403(anon: httpx.Client) -> None:
    form = {"username": "syncd", "password": PASSWORD, "csrfmiddlewaretoken": "x" * 64}
    r = anon.post(LOGIN, data=form)  # no cookie at all
    assert r.status_code == 403 and CSRF_FAILED in r.text
    assert "requires a CSRF cookie" in r.text
    anon.get(LOGIN)
    r = anon.post(LOGIN, data=form)  # cookie, but a token for another secret
    assert r.status_code == 403 and CSRF_FAILED in r.text
    form["csrfmiddlewaretoken"] = anon.cookies["csrftoken"]  # the bare secret is accepted too
    assert anon.post(LOGIN, data=form).status_code == 302


@pytest.mark.parametrize(
    ("username", "password"),
    [("syncd", "wrong"), ("tecnico1", "tecnico1-sandbox-pass"), ("nobody", PASSWORD)],
)
def test_bad_credentials_or_non_staff_rerender_the_form(
    anon: httpx.Client, username: str, password: str
) -> None:
    r = login(anon, username, password)
    assert r.status_code == 200
    assert LOGIN_ERROR in r.text
    assert "Please enter the correct username and password for a staff account." in r.text
    assert "sessionid" not in r.cookies
    assert form_token(r.text)


def test_successful_login_sets_the_session_and_rotates_the_csrf_cookie(
    anon: httpx.Client,
) -> None:
    anon.get(LOGIN)
    before = anon.cookies["csrftoken"]
    r = login(anon, next_path="/mantenimiento/api/ordenes-hoy/")
    assert r.status_code == 302
    assert r.headers["location"] == "/mantenimiento/api/ordenes-hoy/"
    cookies = r.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("sessionid="))
    assert "HttpOnly" in session and "Path=/" in session and "SameSite=Lax" in session
    assert anon.cookies["csrftoken"] != before and len(anon.cookies["csrftoken"]) == 32
    assert anon.get("/mantenimiento/api/ordenes-hoy/").status_code == 200
    # already logged in: the admin login page sends staff to the admin index
    assert anon.get(LOGIN).headers["location"] == "/admin/"


def test_login_without_next_or_with_a_foreign_next_goes_to_login_redirect_url(
    sim: MantenimientoSim,
) -> None:
    with client_for(sim) as client:
        assert login(client).headers["location"] == "/app/"
    with client_for(sim) as client:
        assert login(client, next_path="https://evil.example/x").headers["location"] == "/app/"


def test_sessions_expire_after_their_ttl_and_on_demand() -> None:
    sim = new_sim(session_ttl=0.3)
    ot = make_ot(sim)
    path = f"/mantenimiento/api/ot/{ot['id']}/detalle/"
    with client_for(sim) as client:
        login(client)
        assert client.get(path).status_code == 200
        time.sleep(0.35)
        r = client.get(path)
        assert r.status_code == 302 and r.headers["location"].startswith(LOGIN)
        login(client)
        assert client.get(path).status_code == 200
        sim.expire_all_sessions()
        assert client.get(path).status_code == 302


def test_session_expiry_fault_forgets_the_callers_session(sim: MantenimientoSim) -> None:
    ot = make_ot(sim)
    with client_for(sim) as client:
        login(client)
        sim.faults.configure({"session_expiry_rate": 1.0, "seed": 3})
        r = client.get(f"/mantenimiento/api/ot/{ot['id']}/detalle/")
        assert r.status_code == 302 and r.headers["location"].startswith(LOGIN)
        assert sim.faults.counts["expire_session"] == 1
        sim.faults.clear()
        assert client.get(f"/mantenimiento/api/ot/{ot['id']}/detalle/").status_code == 302


def test_non_exempt_posts_need_the_csrf_header_exempt_ones_do_not(
    sim: MantenimientoSim, api: httpx.Client
) -> None:
    ot = make_ot(sim)
    body = {"fecha_inicio": "2026-03-10T08:00", "fecha_fin": "2026-03-10T09:00"}
    close = f"/mantenimiento/api/cerrar-ot/{ot['id']}/"
    r = api.post(close, json=body)
    assert r.status_code == 403 and CSRF_FAILED in r.text
    assert r.headers["content-type"].startswith("text/html")
    assert api.post(close, json=body, headers={"X-CSRFToken": "a" * 32}).status_code == 403
    assert sim.ots[ot["id"]]["cierre"] is None
    other = make_ot(sim)
    r = api.post(f"/mantenimiento/api/ot/{other['id']}/update/", json={"notas": "sin token"})
    assert r.status_code == 200  # csrf_exempt
    secret = api.cookies["csrftoken"]
    r = api.post(close, json=body, headers={"X-CSRFToken": mask_csrf_secret(secret)})
    assert r.status_code == 200  # a masked token for the cookie secret is accepted


def test_csrf_runs_before_the_login_check_and_checks_the_origin(
    sim: MantenimientoSim, anon: httpx.Client, api: httpx.Client
) -> None:
    ot = make_ot(sim)
    # anonymous, no token: the middleware answers before staff_member_required
    assert anon.post(f"/mantenimiento/api/cerrar-ot/{ot['id']}/", json={}).status_code == 403
    r = api.post(
        "/mantenimiento/api/delete-ots/",
        json={"ot_ids": [ot["id"]]},
        headers={**csrf(api), "Origin": "http://evil.example"},
    )
    assert r.status_code == 403 and ot["id"] in sim.ots
    r = api.post(
        "/mantenimiento/api/delete-ots/",
        json={"ot_ids": [ot["id"]]},
        headers={**csrf(api), "Origin": "http://mt.test", "Referer": "http://mt.test/"},
    )
    assert r.status_code == 200 and ot["id"] not in sim.ots


def test_method_checks(sim: MantenimientoSim, api: httpx.Client) -> None:
    ot = make_ot(sim)
    r = api.get(f"/mantenimiento/api/ot/{ot['id']}/update/")  # require_POST
    assert r.status_code == 405 and r.content == b"" and r.headers["allow"] == "POST"
    r = api.get(f"/mantenimiento/api/cerrar-ot/{ot['id']}/")
    assert r.status_code == 405 and r.content == b""
    r = api.post("/mantenimiento/avisos/api/list/", headers=csrf(api))  # require GET
    assert r.status_code == 405 and r.headers["allow"] == "GET"
    r = api.get("/mantenimiento/api/delete-ots/")  # checked by hand: JSON
    assert r.status_code == 405 and r.json() == {"status": "error", "message": "POST req."}
    r = api.get(f"/mantenimiento/app/ot/{ot['id']}/update-ajax/")
    assert r.status_code == 405 and r.json()["message"] == "Método no permitido"


# ---------------------------------------------------------------------------------------------
# §2.1 detail, search, today's list
# ---------------------------------------------------------------------------------------------
def test_detail_shape_labels_and_formatting(sim: MantenimientoSim, api: httpx.Client) -> None:
    puesto = next(p for p in sim.tecnicos_puesto.values() if p["user_id"] is None)
    ot = make_ot(
        sim,
        tipo="NO_PROGRAMADA",
        prioridad="CRITICA",
        estado="EJECUCION",
        activos=[202],
        ubicacion_id=12,
        tecnico_id=20,
        tecnico_puesto_id=puesto["id"],
        empresa_responsable=1,
        inicio_programado=datetime(2026, 3, 11, 14, 30, tzinfo=UTC),
    )
    r = api.get(f"/mantenimiento/api/ot/{ot['id']}/detalle/")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["status"] == "success" and set(body["ot"]) == DETAIL_KEYS
    d = body["ot"]
    assert d["codigo"] == "OTNP-2026-00001"
    assert (d["tipo"], d["tipo_raw"]) == ("No Programada", "NO_PROGRAMADA")
    assert (d["prioridad"], d["prioridad_raw"]) == ("Crítica", "CRITICA")
    assert (d["estado"], d["raw_status"]) == ("En Ejecución", "EJECUCION")
    assert d["rutina"] == "OT Correctiva" and d["rutina_id"] is None
    assert d["ubicacion"] == "Edificio Principal > Sala de Máquinas" and d["ubicacion_id"] == 12
    assert d["tecnico"] == "Ana Martínez"
    assert d["tecnico_puesto"] == f"{puesto['nombre']} {puesto['apellido']} - {puesto['puesto']}"
    assert d["empresa"] == sim.empresas[1]["nombre"]
    assert d["inicio"] == "11/03/2026 14:30" and d["fin"] == "11/03/2026 16:30"  # UTC wall clock
    assert d["activos"] == [
        {"id": 202, "nombre": "Compresor Atlas Copco GA37", "codigo": "CMP-001"}
    ]
    assert d["status_color"] is None and d["archivos"] == [] and d["notas"] == ""
    assert [s["id"] for s in d["status_list"]] == [
        "ESPERA", "PROGRAMADA", "EJECUCION", "REALIZADA", "CANCELADA",
    ]  # fmt: skip
    assert d["status_list"][0]["label"] == "En Espera de Programación"
    assert "\\u00e1" in r.text  # JsonResponse keeps ensure_ascii


def test_detail_fallbacks_and_html_404(sim: MantenimientoSim, api: httpx.Client) -> None:
    ot = make_ot(sim, rutina="Lubricación de rodamientos", tecnico_id=1, descripcion_corta=None)
    sim.update_ot(ot["id"], codigo_de_orden=None)
    d = api.get(f"/mantenimiento/api/ot/{ot['id']}/detalle/").json()["ot"]
    assert d["codigo"] == f"OT #{ot['id']}"
    assert d["rutina"] == "Lubricación de rodamientos" and d["rutina_id"] == ot["rutina_id"]
    assert d["tecnico"] == "admin"  # no full name: the username
    assert d["descripcion"] == ""
    r = api.get("/mantenimiento/api/ot/999999/detalle/")
    assert r.status_code == 404 and NOT_FOUND in r.text
    assert r.headers["content-type"].startswith("text/html")


def test_search_ordenes(sim: MantenimientoSim, api: httpx.Client) -> None:
    late = make_ot(sim, activos=[205], inicio_programado=T0 + timedelta(days=3))
    early = make_ot(sim, activos=[205], inicio_programado=T0 + timedelta(days=1), ubicacion_id=None)
    make_ot(sim, activos=[202], descripcion_corta="Cambio de filtros")
    r = api.get("/mantenimiento/api/search-ordenes/", params={"q": "etq-102"})
    results = r.json()["results"]
    assert [x["id"] for x in results] == [early["id"], late["id"]]  # inicio_programado order
    assert set(results[0]) == {"id", "text"}
    assert results[0]["text"] == (
        f"OT #{early['codigo_de_orden']} - [En Espera de Programación] Sin Ubicación - "
        "Revisión de rodamientos"
    )
    assert results[1]["text"].startswith(f"OT #{late['codigo_de_orden']} - [")
    assert "Línea de Envasado 1" in results[1]["text"]
    by_place = api.get("/mantenimiento/api/search-ordenes/", params={"q": "LÍNEA DE ENVASADO"})
    assert late["id"] in [x["id"] for x in by_place.json()["results"]]
    by_id = api.get("/mantenimiento/api/search-ordenes/", params={"q": str(late["id"])})
    assert late["id"] in [x["id"] for x in by_id.json()["results"]]
    assert api.get("/mantenimiento/api/search-ordenes/", params={"q": "  "}).json() == {
        "results": []
    }
    for _ in range(40):
        make_ot(sim, descripcion_corta="Lubricación general")
    many = api.get("/mantenimiento/api/search-ordenes/", params={"q": "lubricación"})
    assert len(many.json()["results"]) == 30


def test_ordenes_hoy(sim: MantenimientoSim, api: httpx.Client) -> None:
    today = make_ot(sim, inicio_programado=T0 + timedelta(hours=1), estado="PROGRAMADA")
    # 21:00 local on the same local day, but already the 11th in UTC
    tonight = make_ot(sim, inicio_programado=datetime(2026, 3, 11, 3, 0, tzinfo=UTC))
    done_today = make_ot(sim, inicio_programado=T0, estado="REALIZADA")
    tomorrow = make_ot(sim, inicio_programado=T0 + timedelta(days=2))
    otnp_old = make_ot(
        sim, tipo="NO_PROGRAMADA", estado="REALIZADA", inicio_programado=T0 - timedelta(days=20)
    )
    body = api.get("/mantenimiento/api/ordenes-hoy/").json()
    assert set(body) == {"ots", "total", "can_delete"} and body["can_delete"] is False
    ids = [o["id"] for o in body["ots"]]
    assert ids == [otnp_old["id"], today["id"], tonight["id"]]
    assert done_today["id"] not in ids and tomorrow["id"] not in ids
    item = body["ots"][1]
    assert set(item) == {
        "id", "codigo", "descripcion", "ubicacion", "tecnico", "estado", "estado_class", "hora",
        "fecha", "tipo",
    }  # fmt: skip
    assert item["hora"] == "16:00" and item["fecha"] == "" and item["tecnico"] == "N/A"
    assert item["estado_class"] == "programada" and item["ubicacion"] == "Línea de Envasado 1"
    assert body["ots"][2]["fecha"] == "11/03"
    assert body["ots"][0]["fecha"] == "18/02"
    only = api.get("/mantenimiento/api/ordenes-hoy/", params={"tipo": "NO_PROGRAMADA"}).json()
    assert [o["id"] for o in only["ots"]] == [otnp_old["id"]]
    # digits and dashes: every OT, by id or code, newest inicio first, tipo ignored
    digits = api.get(
        "/mantenimiento/api/ordenes-hoy/", params={"q": str(tomorrow["id"]), "tipo": "CORRECTIVA"}
    ).json()
    assert [o["id"] for o in digits["ots"]] == [tomorrow["id"]]
    code = api.get("/mantenimiento/api/ordenes-hoy/", params={"q": "-0000"}).json()
    assert [o["id"] for o in code["ots"]] == [
        tomorrow["id"], tonight["id"], today["id"], done_today["id"], otnp_old["id"],
    ]  # fmt: skip
    with client_for(sim) as admin:
        login(admin, "admin", "admin-sandbox-pass")
        assert admin.get("/mantenimiento/api/ordenes-hoy/").json()["can_delete"] is True


# ---------------------------------------------------------------------------------------------
# §2.2 updates
# ---------------------------------------------------------------------------------------------
def test_update_estado_and_notas(sim: MantenimientoSim, api: httpx.Client) -> None:
    ot = make_ot(sim, notas="previa", supervisor_id=30)
    url = f"/mantenimiento/api/ot/{ot['id']}/update/"
    sim.clock.advance(60)
    r = api.post(url, json={"estado": "EJECUCION"})
    assert r.json() == {"status": "success", "message": "Orden actualizada correctamente"}
    assert ot["estado"] == "EJECUCION" and ot["notas"] == "previa"
    assert ot["fecha_ejecucion"] == T0 + timedelta(seconds=60)
    assert ot["actualizado_en"] == T0 + timedelta(seconds=60)
    sim.clock.advance(60)
    api.post(url, json={"estado": "", "notas": None})  # nothing changes but it is saved
    assert ot["estado"] == "EJECUCION" and ot["notas"] == "previa"
    assert ot["actualizado_en"] == T0 + timedelta(seconds=120)
    api.post(url, json={"notas": ""})
    assert ot["notas"] == ""
    r = api.post(url, json={"estado": "PENDIENTE"})
    assert r.status_code == 400 and r.json()["message"] == "Estado PENDIENTE no válido"
    r = api.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["message"] == "JSON inválido"
    r = api.post("/mantenimiento/api/ot/999999/update/", json={"estado": "EJECUCION"})
    assert r.status_code == 500
    assert r.json() == {"status": "error", "message": "No OrdenTrabajo matches the given query."}
    # REALIZADA here: no closure, fecha_ejecucion untouched, the supervisor is notified
    api.post(url, json={"estado": "REALIZADA"})
    assert ot["cierre"] is None and ot["fecha_ejecucion"] == T0 + timedelta(seconds=60)
    assert any(n["user_id"] == 30 and n["tipo"] == "SUCCESS" for n in sim.notifications.values())


def test_update_ajax_fields_dates_and_manager_rule(
    sim: MantenimientoSim, api: httpx.Client
) -> None:
    ot = make_ot(sim, notas="keep me", prioridad="ALTA")
    url = f"/mantenimiento/app/ot/{ot['id']}/update-ajax/"
    long_text = 'Reemplazo de sellos — válvula ½" ' * 10
    sim.clock.advance(30)
    r = api.post(
        url,
        data={
            "descripcion_detallada": long_text,
            "inicio_programado": "2026-03-12T08:30",  # naive: server time (UTC-6)
            "fin_programado": "2026-03-12T10:00:00+00:00",  # aware: honoured
            "tecnico": "1",
            "tecnicos": ["2", "4"],
            "ubicacion": "15",
        },
        headers=csrf(api),
    )
    assert r.json() == {"status": "success", "message": "Orden actualizada correctamente"}
    assert ot["descripcion_detallada"] == long_text
    assert ot["descripcion_corta"] == long_text[:200] and len(ot["descripcion_corta"]) == 200
    assert ot["inicio_programado"] == datetime(2026, 3, 12, 14, 30, tzinfo=UTC)
    assert ot["fin_programado"] == datetime(2026, 3, 12, 10, 0, tzinfo=UTC)
    assert ot["tecnico_puesto_id"] == 1 and ot["tecnico_id"] == sim.tecnicos_puesto[1]["user_id"]
    assert ot["colaboradores_puesto"] == [2, 4] and ot["tecnicos"] == [21]
    assert ot["ubicacion_id"] == 15 and ot["notas"] == "keep me" and ot["prioridad"] == "ALTA"
    assert ot["actualizado_en"] == T0 + timedelta(seconds=30)
    detail = api.get(f"/mantenimiento/api/ot/{ot['id']}/detalle/").json()["ot"]
    assert detail["inicio"] == "12/03/2026 14:30"

    assert api.post(url, data={"tecnico": "none"}, headers=csrf(api)).status_code == 200
    assert ot["tecnico_puesto_id"] is None and ot["tecnico_id"] is None
    r = api.post(url, data={"ubicacion": "4242"}, headers=csrf(api))
    assert r.status_code == 400
    assert r.json() == {"status": "error", "message": "Ubicacion matching query does not exist."}
    r = api.post(url, data={"inicio_programado": "mañana"}, headers=csrf(api))
    assert r.status_code == 400 and "isoformat" in r.json()["message"]
    assert api.post(url, data={}, headers={}).status_code == 403  # CSRF required
    assert (
        api.post("/mantenimiento/app/ot/999999/update-ajax/", headers=csrf(api)).status_code == 404
    )

    sim.update_ot(ot["id"], estado="REALIZADA")
    with client_for(sim) as plain:
        login(plain, "staff2", "staff2-pass")
        r = plain.post(url, data={"descripcion_detallada": "x"}, headers=csrf(plain))
        assert r.status_code == 400
        assert r.json()["message"] == "No se puede modificar una orden finalizada"
    assert api.post(url, data={"descripcion_detallada": "ok"}, headers=csrf(api)).status_code == 200
    assert ot["descripcion_corta"] == "ok"  # syncd is in "Gerentes"


def test_cerrar_ot_once_then_400(sim: MantenimientoSim, api: httpx.Client) -> None:
    aviso = sim.create_aviso(descripcion="Fuga de aceite", ubicacion_id=12)
    ot = make_ot(sim, aviso_id=aviso["id"], estado="EJECUCION", supervisor_id=30)
    stamp = ot["actualizado_en"]
    url = f"/mantenimiento/api/cerrar-ot/{ot['id']}/"
    sim.clock.advance(300)
    body = {
        "fecha_inicio": "2026-03-10T08:00",
        "fecha_fin": "2026-03-10T09:30",
        "horas_hombre": 3,
        "comentarios": "Sellos cambiados",
    }
    r = api.post(url, json=body, headers=csrf(api))
    assert r.json() == {"status": "success", "message": "Orden cerrada correctamente."}
    assert ot["estado"] == "REALIZADA"
    assert ot["fecha_ejecucion"] == datetime(2026, 3, 10, 9, 30, tzinfo=TEGUCIGALPA)
    assert ot["actualizado_en"] == stamp  # update_fields: invisible to polling
    assert ot["cierre"]["tecnico_id"] == 7 and ot["cierre"]["horas_hombre"] == 3.0
    assert aviso["estado"] == "CERRADO" and aviso["diagnostico"] == "Sellos cambiados"
    r = api.post(url, json=body, headers=csrf(api))
    assert r.status_code == 400
    assert r.json()["message"] == "Esta orden ya tiene un cierre registrado."
    other = make_ot(sim)
    other_url = f"/mantenimiento/api/cerrar-ot/{other['id']}/"
    r = api.post(other_url, json={"fecha_inicio": "2026-03-10T08:00"}, headers=csrf(api))
    assert r.status_code == 400
    assert r.json()["message"] == "Las fechas de inicio y fin son requeridas."
    r = api.post(other_url, json={**body, "fecha_fin": "10/03/2026"}, headers=csrf(api))
    assert r.status_code == 500 and "Server Error (500)" in r.text  # strptime is not caught
    assert other["cierre"] is None
    r = api.post("/mantenimiento/api/cerrar-ot/999999/", json=body, headers=csrf(api))
    assert r.status_code == 404 and NOT_FOUND in r.text


def test_close_keeps_fecha_ejecucion_when_already_realizada(sim: MantenimientoSim) -> None:
    ot = make_ot(sim, estado="REALIZADA")
    sim.close_ot(ot["id"], fecha_inicio="2026-03-10T08:00", fecha_fin="2026-03-10T09:00")
    assert ot["fecha_ejecucion"] is None and ot["cierre"] is not None  # CierreOrdenTrabajo.save
    with pytest.raises(ValueError, match="ya tiene un cierre"):
        sim.close_ot(ot["id"], fecha_inicio="2026-03-10T08:00", fecha_fin="2026-03-10T09:00")


def test_crear_no_programada_codes_ids_and_dates(sim: MantenimientoSim, api: httpx.Client) -> None:
    url = "/mantenimiento/app/ot/crear-no-programada/"
    page = api.get(url)
    assert page.status_code == 200 and form_token(page.text)
    made = []
    for n in range(3):
        r = api.post(url, data={"ubicacion": "13", "descripcion": f"Fuga #{n}"}, headers=csrf(api))
        made.append(r.json())
    assert [m["codigo"] for m in made] == ["OTNP-2026-00001", "OTNP-2026-00002", "OTNP-2026-00003"]
    assert [m["ot_id"] for m in made] == list(range(made[0]["ot_id"], made[0]["ot_id"] + 3))
    assert set(made[0]) == {"status", "ot_id", "codigo"}
    first = sim.ots[made[0]["ot_id"]]
    assert (first["tipo"], first["estado"], first["prioridad"]) == (
        "NO_PROGRAMADA", "PROGRAMADA", "MEDIA",
    )  # fmt: skip
    assert first["inicio_programado"] == T0 and first["fin_programado"] == T0 + timedelta(hours=2)
    assert first["tecnico_id"] == 7  # no personal given: the caller leads
    # ids are never reused; the OTNP number is max()+1, so the newest one's number comes back
    api.post(
        "/mantenimiento/api/delete-ots/", json={"ot_ids": [made[2]["ot_id"]]}, headers=csrf(api)
    )
    preventive = make_ot(sim)
    assert preventive["codigo_de_orden"] == f"OT-{preventive['id']:09d}"
    long_text = "Descripción larga ñ " * 20
    r = api.post(
        url,
        data={
            "ubicacion": "13",
            "descripcion": f"  {long_text}  ",
            "prioridad": "ALTA",
            "inicio_programado": "2026-03-15T07:00",
            "fin_programado": "2026-03-15T09:00+00:00",  # aware: make_aware fails, default used
            "activo": "206",
            "tecnico": "4",
        },
        headers=csrf(api),
    ).json()
    assert r["codigo"] == "OTNP-2026-00003" and r["ot_id"] == preventive["id"] + 1
    ot = sim.ots[r["ot_id"]]
    assert ot["descripcion_detallada"] == long_text.strip()
    assert ot["descripcion_corta"] == long_text.strip()[:200]
    assert ot["inicio_programado"] == datetime(2026, 3, 15, 13, 0, tzinfo=UTC)
    assert ot["fin_programado"] == ot["inicio_programado"] + timedelta(hours=2)
    assert ot["activos"] == [206] and ot["tecnico_puesto_id"] == 4 and ot["tecnico_id"] is None
    r = api.post(url, data={"ubicacion": "4242", "descripcion": "x"}, headers=csrf(api))
    assert r.status_code == 400
    assert r.json() == {"status": "error", "message": "No Ubicacion matches the given query."}
    assert api.post(url, data={"descripcion": "x"}).status_code == 403


def test_crear_no_programada_stores_prioridad_unvalidated(
    sim: MantenimientoSim, api: httpx.Client
) -> None:
    """The view never checks the choice: only PostgreSQL's varchar(10) limit bites."""
    url = "/mantenimiento/app/ot/crear-no-programada/"
    made = api.post(url, data={"ubicacion": "13", "prioridad": "URGENTE"}, headers=csrf(api))
    ot_id = made.json()["ot_id"]
    assert sim.ots[ot_id]["prioridad"] == "URGENTE"
    detail = api.get(f"/mantenimiento/api/ot/{ot_id}/detalle/").json()["ot"]
    assert detail["prioridad"] == detail["prioridad_raw"] == "URGENTE"
    before = len(sim.ots)
    r = api.post(url, data={"ubicacion": "13", "prioridad": "MUY_URGENTE_YA"}, headers=csrf(api))
    assert r.status_code == 400 and "value too long" in r.json()["message"]
    assert len(sim.ots) == before


def test_update_ot_date_shifts_whole_days(sim: MantenimientoSim, api: httpx.Client) -> None:
    ot = make_ot(
        sim,
        inicio_programado=datetime(2026, 3, 12, 14, 30, tzinfo=UTC),
        fin_programado=datetime(2026, 3, 12, 17, 0, tzinfo=UTC),
    )
    url = "/mantenimiento/api/update-ot-date/"
    sim.clock.advance(10)
    r = api.post(url, json={"ot_id": ot["id"], "nueva_fecha": "2026-03-20", "reason": "x"})
    assert r.json() == {
        "status": "success",
        "message": f"Orden #{ot['id']} movida al 2026-03-20",
    }
    assert ot["inicio_programado"] == datetime(2026, 3, 20, 14, 30, tzinfo=UTC)
    assert ot["fin_programado"] == datetime(2026, 3, 20, 17, 0, tzinfo=UTC)
    assert ot["actualizado_en"] == T0 + timedelta(seconds=10)
    r = api.post(url, json={"ot_id": 999999, "nueva_fecha": "2026-03-20"})
    assert r.status_code == 404 and r.json()["message"] == "Orden no encontrada"
    assert api.post(url, json={"ot_id": ot["id"]}).json()["message"] == "Datos incompletos"
    assert api.post(url, json={"nueva_fecha": "2026-03-20"}).status_code == 400
    assert api.post(url, json={"ot_id": ot["id"], "nueva_fecha": "20/03/2026"}).status_code == 500
    r = api.post(url, json={"ot_id": "proj_5", "nueva_fecha": "2026-03-20"})
    assert r.status_code == 400 and r.json()["message"] == "ID de proyección inválido"
    r = api.post(url, json={"ot_id": "proj_5_2026-03-18", "nueva_fecha": "2026-03-20"})
    assert r.status_code == 500  # no Programacion rows in the sandbox


def test_delete_ots_only_active_estados(sim: MantenimientoSim, api: httpx.Client) -> None:
    active = [make_ot(sim, estado=e) for e in ("ESPERA", "PROGRAMADA", "EJECUCION")]
    kept = [make_ot(sim, estado=e) for e in ("REALIZADA", "CANCELADA")]
    sim.add_material_usage(active[0]["id"], 301, "2")
    ids: list[Any] = [f"{o['id']:,}" for o in active] + [o["id"] for o in kept] + ["abc"]
    r = api.post("/mantenimiento/api/delete-ots/", json={"ot_ids": ids}, headers=csrf(api))
    assert r.json() == {"status": "success", "message": "3 eliminadas."}
    assert all(o["id"] not in sim.ots for o in active)
    assert all(o["id"] in sim.ots for o in kept)
    assert sim.materiales_utilizados == {}  # cascade
    assert api.post("/mantenimiento/api/delete-ots/", json={"ot_ids": []}).status_code == 403


# ---------------------------------------------------------------------------------------------
# §2.7 avisos and the mobile aviso form
# ---------------------------------------------------------------------------------------------
def test_avisos_list_grouping_order_and_search(sim: MantenimientoSim, api: httpx.Client) -> None:
    a1 = sim.create_aviso(descripcion="Fuga en bomba", ubicacion_id=17, prioridad="ALTA")
    a2 = sim.create_aviso(
        descripcion="Ruido", activo_id=205, prioridad="MEDIA", responsable_id=20, departamento_id=1
    )
    sim.clock.advance(60)
    a3 = sim.create_aviso(descripcion="Luz quemada", ubicacion_id=11, prioridad="MEDIA")
    a4 = sim.create_aviso(descripcion="Cerrado ya", ubicacion_id=11, estado="CERRADO")
    ot = make_ot(sim, aviso_id=a2["id"], tipo="CORRECTIVA")
    body = api.get("/mantenimiento/avisos/api/list/").json()
    assert body["status"] == "success"
    data = body["data"]
    assert list(data) == ["ABIERTO", "PROCESO", "CERRADO", "CANCELADO"]
    # -prioridad sorts the codes as strings: MEDIA > CRITICA > BAJA > ALTA; then -creado_en
    assert [a["id"] for a in data["ABIERTO"]] == [a3["id"], a2["id"], a1["id"]]
    assert [a["id"] for a in data["CERRADO"]] == [a4["id"]]
    item = next(a for a in data["ABIERTO"] if a["id"] == a2["id"])
    assert set(item) == AVISO_KEYS
    assert item["titulo"] == f"AV-{a2['id']}" and item["ubicacion"] == "Línea de Envasado 1"
    assert item["activo"] == "Etiquetadora" and item["solicitante"] == "Sistema"
    assert (
        item["responsable_nombre"] == "Ana Martínez"
        and item["departamento_nombre"] == "Mantenimiento"
    )
    assert (
        item["tipo_display"] == "Solicitud de Servicio (M1)"
        and item["creado_en"] == "10/03/2026 15:00"
    )
    assert (item["tiene_ot"], item["ot_id"], item["ot_codigo"]) == (
        True,
        ot["id"],
        ot["codigo_de_orden"],
    )
    plain = next(a for a in data["ABIERTO"] if a["id"] == a1["id"])
    assert (plain["responsable_nombre"], plain["departamento_nombre"], plain["falla"]) == (
        "Sin asignar", "General", "",
    )  # fmt: skip
    found = api.get("/mantenimiento/avisos/api/list/", params={"search": "TRATAMIENTO"}).json()
    assert [a["id"] for a in found["data"]["ABIERTO"]] == [a1["id"]]
    dept = api.get("/mantenimiento/avisos/api/list/", params={"departamento_id": "1"}).json()
    assert [a["id"] for a in dept["data"]["ABIERTO"]] == [a2["id"]]


def test_aviso_update_and_create_ot(sim: MantenimientoSim, api: httpx.Client) -> None:
    aviso = sim.create_aviso(descripcion="Compresor dispara térmico " * 4, activo_id=202)
    url = f"/mantenimiento/avisos/api/update/{aviso['id']}/"
    r = api.post(url, json={"estado": "CERRADO", "responsable_id": 21}, headers=csrf(api))
    assert r.json()["status"] == "success"
    assert aviso["estado"] == "CERRADO" and aviso["fecha_cierre"] == T0
    assert aviso["responsable_id"] == 21
    api.post(url, json={"estado": "ABIERTO"}, headers=csrf(api))
    assert aviso["estado"] == "ABIERTO" and aviso["fecha_cierre"] is None
    r = api.post(url, json={"estado": "PENDIENTE"}, headers=csrf(api))
    assert r.status_code == 400 and r.json()["message"] == "Estado inválido."
    assert api.post(url, json={"estado": "CERRADO"}).status_code == 403

    create = f"/mantenimiento/avisos/api/create-ot/{aviso['id']}/"
    r = api.post(create, json={}, headers=csrf(api))
    body = r.json()
    assert set(body) == {"status", "message", "ot_id", "ot_codigo"}
    ot = sim.ots[body["ot_id"]]
    assert body["ot_codigo"] == ot["codigo_de_orden"] == f"OT-{ot['id']:09d}"
    assert (ot["tipo"], ot["estado"], ot["aviso_id"]) == ("CORRECTIVA", "ESPERA", aviso["id"])
    assert ot["descripcion_corta"] == f"Corr.: {aviso['descripcion'][:50]}..."
    assert ot["ubicacion_id"] == 12 and ot["activos"] == [202]
    assert ot["fin_programado"] - ot["inicio_programado"] == timedelta(hours=2)
    assert aviso["estado"] == "PROCESO"
    r = api.post(create, json={}, headers=csrf(api))
    assert r.status_code == 400
    assert r.json()["message"] == "Este aviso ya tiene una Orden de Trabajo asignada."
    other = sim.create_aviso(descripcion="Otra", ubicacion_id=11)
    r = api.post(
        f"/mantenimiento/avisos/api/create-ot/{other['id']}/",
        json={"tecnico_id": 20, "fecha_inicio": "2026-03-11T07:00", "prioridad": "ALTA"},
        headers=csrf(api),
    ).json()
    ot2 = sim.ots[r["ot_id"]]
    assert (ot2["estado"], ot2["tecnico_id"], ot2["prioridad"]) == ("PROGRAMADA", 20, "ALTA")
    assert ot2["inicio_programado"] == datetime(2026, 3, 11, 13, 0, tzinfo=UTC)
    assert other["responsable_id"] == 20
    r = api.post("/mantenimiento/avisos/api/create-ot/999999/", json={}, headers=csrf(api))
    assert r.status_code == 500 and r.json()["message"] == "No Aviso matches the given query."


def test_crear_aviso_form_redirects_to_the_new_aviso(
    sim: MantenimientoSim, api: httpx.Client
) -> None:
    url = "/mantenimiento/app/aviso/crear/"
    page = api.get(url)
    assert page.status_code == 200 and form_token(page.text)
    before = sim._next_ids.get("aviso", 1)
    r = api.post(
        url,
        data={
            "ubicacion": "15",
            "descripcion": "Puerta del cuarto frío no cierra",
            "tipo": "AVERIA",
        },
        headers=csrf(api),
    )
    assert r.status_code == 302 and r.headers["location"] == f"/mantenimiento/app/aviso/{before}/"
    aviso = sim.avisos[before]
    assert (aviso["estado"], aviso["tipo"], aviso["solicitante_id"]) == ("ABIERTO", "AVERIA", 7)
    assert api.get(r.headers["location"]).status_code == 200
    # the location can come from the activo; then the redirect goes to the asset page
    r = api.post(
        url,
        data={"activo": "203", "description": "Caldera sin presión"},
        files={"fotos": ("caldera.jpg", b"\xff\xd8fake", "image/jpeg")},
        headers=csrf(api),
    )
    assert r.status_code == 302 and r.headers["location"] == "/activos/203/"
    aviso = sim.avisos[before + 1]
    assert aviso["ubicacion_id"] == 12 and aviso["descripcion"] == "Caldera sin presión"
    listed = api.get("/mantenimiento/avisos/api/list/").json()["data"]["ABIERTO"]
    assert next(a for a in listed if a["id"] == aviso["id"])["tiene_foto"] is True
    # validation errors re-render the HTML form with status 200
    r = api.post(url, data={"ubicacion": "15", "descripcion": "  "}, headers=csrf(api))
    assert r.status_code == 200 and "La descripción del aviso es obligatoria." in r.text
    r = api.post(url, data={"descripcion": "sin lugar"}, headers=csrf(api))
    assert r.status_code == 200 and "Debe seleccionar una ubicación" in r.text
    assert len(sim.avisos) == 2
    with client_for(sim) as plain:  # staff without the mobile section
        login(plain, "staff2", "staff2-pass")
        r = plain.post(url, data={"ubicacion": "15", "descripcion": "x"}, headers=csrf(plain))
        assert r.status_code == 302 and r.headers["location"] == "/app/"
        r = plain.get(f"/mantenimiento/app/aviso/{before}/")
        assert r.status_code == 302 and r.headers["location"] == "/app/"


def test_aviso_edit_form_closes_and_records_who(sim: MantenimientoSim, api: httpx.Client) -> None:
    aviso = sim.create_aviso(descripcion="Goteo", ubicacion_id=11, solicitante_id=7)
    sim.clock.advance(120)
    r = api.post(
        f"/mantenimiento/app/aviso/{aviso['id']}/editar/",
        data={"ubicacion": "11", "descripcion": "Goteo en techo", "estado": "CERRADO",
              "diagnostico": "Canal tapado"},
        headers=csrf(api),
    )  # fmt: skip
    assert r.status_code == 302
    assert r.headers["location"] == f"/mantenimiento/app/aviso/{aviso['id']}/"
    assert (aviso["estado"], aviso["cerrado_por_id"]) == ("CERRADO", 7)
    assert aviso["fecha_cierre"] == aviso["actualizado_en"] == T0 + timedelta(seconds=120)
    assert (aviso["descripcion"], aviso["diagnostico"]) == ("Goteo en techo", "Canal tapado")
    r = api.post(
        f"/mantenimiento/app/aviso/{aviso['id']}/editar/",
        data={"ubicacion": "11", "descripcion": "x", "responsable": "4242"},
        headers=csrf(api),
    )
    assert r.status_code == 500 and aviso["descripcion"] == "Goteo en techo"


# ---------------------------------------------------------------------------------------------
# §4 inventarios
# ---------------------------------------------------------------------------------------------
def test_materiales_utilizados_get_and_post(sim: MantenimientoSim, api: httpx.Client) -> None:
    ot = make_ot(sim, activos=[202, 203])
    url = f"/inventarios/api/ot/{ot['id']}/materiales-utilizados/"
    stamp = ot["actualizado_en"]
    r = api.post(
        url,
        json={"material_id": 301, "cantidad": "1.50", "activo_id": 203, "comentario": "tok-1"},
        headers=csrf(api),
    )
    body = r.json()
    assert body["status"] == "success" and body["message"].endswith(ot["codigo_de_orden"])
    first_id = body["id"]
    sim.clock.advance(60)
    second_id = api.post(url, json={"material_id": 302, "cantidad": 2}, headers=csrf(api)).json()[
        "id"
    ]
    third_id = api.post(
        url, json={"material_id": 303, "cantidad": 1, "activo_id": 202}, headers=csrf(api)
    ).json()["id"]
    got = api.get(url).json()
    assert set(got) == {"status", "materiales", "activos_ot", "ot_codigo"}
    # activo name first (Caldera < Compresor, no activo last), then newest
    assert [m["id"] for m in got["materiales"]] == [first_id, third_id, second_id]
    row = got["materiales"][0]
    assert row == {
        "id": first_id,
        "material_id": 301,
        "material_nombre": PARTS[0].name,
        "material_sku": PARTS[0].sku,
        "activo_id": 203,
        "activo_nombre": "Caldera Pirotubular 150 BHP",
        "activo_codigo": "CAL-001",
        "cantidad": 1.5,
        "comentario": "tok-1",
        "registrado_por": "Sync Daemon",
        "fecha": "10/03/2026 15:00",
    }
    assert sim.materiales_utilizados[first_id]["cantidad"] == Decimal("1.50")
    assert got["activos_ot"][0] == {
        "id": 202,
        "nombre": "Compresor Atlas Copco GA37",
        "codigo": "CMP-001",
    }
    assert ot["actualizado_en"] == stamp  # child rows never touch the OT

    assert api.post(url, json={"material_id": 301, "cantidad": 1}).status_code == 403  # CSRF
    for bad in ({"material_id": 301}, {"cantidad": 1}, {"material_id": 301, "cantidad": 0}):
        r = api.post(url, json=bad, headers=csrf(api))
        assert r.status_code == 400
        assert r.json()["message"] == "material_id y cantidad son requeridos"
    r = api.post(url, json={"material_id": 9999, "cantidad": 1}, headers=csrf(api))
    assert r.status_code == 404 and r.json()["message"] == "Material no encontrado"
    r = api.post(url, json={"material_id": 301, "cantidad": 1, "activo_id": 9}, headers=csrf(api))
    assert r.status_code == 404 and r.json()["message"] == "Activo no encontrado"
    r = api.get("/inventarios/api/ot/999999/materiales-utilizados/")
    assert r.status_code == 404 and NOT_FOUND in r.text
    r = api.put(url, json={}, headers=csrf(api))
    assert r.status_code == 405 and r.json()["message"] == "Método no permitido"


def test_material_quantities_follow_the_real_view(sim: MantenimientoSim, api: httpx.Client) -> None:
    """The real view does not validate: numeric(12,2) rounds, garbage is an HTML 500."""
    ot = make_ot(sim)
    url = f"/inventarios/api/ot/{ot['id']}/materiales-utilizados/"
    r = api.post(url, json={"material_id": 301, "cantidad": "1.005"}, headers=csrf(api))
    assert sim.materiales_utilizados[r.json()["id"]]["cantidad"] == Decimal("1.01")
    r = api.post(url, json={"material_id": 301, "cantidad": "dos"}, headers=csrf(api))
    assert r.status_code == 500 and "Server Error (500)" in r.text
    strict = new_sim(strict_material_quantities=True)
    ot2 = make_ot(strict)
    with client_for(strict) as client:
        login(client)
        url2 = f"/inventarios/api/ot/{ot2['id']}/materiales-utilizados/"
        for cantidad in ("1.005", "dos", "-1", "0.001"):
            r = client.post(
                url2, json={"material_id": 301, "cantidad": cantidad}, headers=csrf(client)
            )
            assert r.status_code == 400, cantidad
        assert strict.materiales_utilizados == {}


def test_material_usage_delete_is_csrf_exempt(sim: MantenimientoSim, api: httpx.Client) -> None:
    ot = make_ot(sim)
    record = sim.add_material_usage(ot["id"], 301, "3", comentario="x")
    r = api.post(f"/inventarios/api/material-utilizado/{record['id']}/delete/")
    assert r.json() == {"status": "success", "message": "Registro eliminado"}
    assert (
        api.post(f"/inventarios/api/material-utilizado/{record['id']}/delete/").status_code == 404
    )


def test_materials_are_paged_30_at_a_time(sim: MantenimientoSim, api: httpx.Client) -> None:
    for n in range(40):
        sim.add_material(f"Tornillo M{n:02d}", f"TOR-{n:02d}", stock=n)
    total = len(sim.materials)
    first = api.get("/inventarios/api/materials/").json()
    assert set(first) == {"results", "has_next", "num_pages", "current_page"}
    assert len(first["results"]) == 30 and first["has_next"] is True
    assert first["num_pages"] == -(-total // 30) and first["current_page"] == 1
    assert set(first["results"][0]) == MATERIAL_KEYS
    names = [m["nombre"] for m in first["results"]]
    assert names == sorted(names)
    last = api.get("/inventarios/api/materials/", params={"page": 99}).json()
    assert last["current_page"] == first["num_pages"] and last["has_next"] is False
    assert api.get("/inventarios/api/materials/", params={"page": "x"}).json()["current_page"] == 1
    seen = set()
    for page in range(1, first["num_pages"] + 1):
        got = api.get("/inventarios/api/materials/", params={"page": page}).json()
        seen |= {m["id"] for m in got["results"]}
    assert len(seen) == total
    q = api.get("/inventarios/api/materials/", params={"q": "tor-1"}).json()
    assert {m["sku"] for m in q["results"]} == {f"TOR-1{n}" for n in range(10)}
    filtro = next(m for m in first["results"] if m["sku"] == "FL_A")
    assert filtro["tipo_material"] == "Repuesto" and filtro["is_allowed"] is True
    sim.faults.configure({"page_drift_rate": 1.0, "seed": 1})
    api.get("/inventarios/api/materials/", params={"page": 2})
    assert sim.faults.counts["page_drift"] == 1
    api.get("/inventarios/api/materials/", params={"page": 1})
    assert sim.faults.counts["page_drift"] == 1


# ---------------------------------------------------------------------------------------------
# §2.4 notifications, faults
# ---------------------------------------------------------------------------------------------
def test_notifications_unread_newest_first_then_read(
    sim: MantenimientoSim, api: httpx.Client
) -> None:
    sim.clock.advance(3600)
    newest = sim.add_notification(7, "La OT OT-000000009 fue reprogramada.", "WARNING")
    sim.add_notification(20, "para otra persona")
    items = api.get("/mantenimiento/api/notifications/").json()["notificaciones"]
    assert items[0]["id"] == newest["id"] and len(items) == 3
    assert items[0] == {
        "id": newest["id"],
        "mensaje": "La OT OT-000000009 fue reprogramada.",
        "tipo": "WARNING",
        "creado_en": "16:00:00",
    }
    r = api.post("/mantenimiento/api/notifications/read/", json={"notif_id": newest["id"]})
    assert r.json() == {"status": "success"}
    assert len(api.get("/mantenimiento/api/notifications/").json()["notificaciones"]) == 2
    api.post("/mantenimiento/api/notifications/read/", json={})
    assert api.get("/mantenimiento/api/notifications/").json()["notificaciones"] == []
    assert not any(n["leida"] for n in sim.notifications.values() if n["user_id"] == 20)


def test_realizada_transition_notifies_supervisor_and_technician(
    sim: MantenimientoSim, api: httpx.Client
) -> None:
    ot = make_ot(sim, supervisor_id=7, tecnico_id=20, estado="EJECUCION")
    api.post(
        f"/mantenimiento/api/cerrar-ot/{ot['id']}/",
        json={"fecha_inicio": "2026-03-10T08:00", "fecha_fin": "2026-03-10T09:00"},
        headers=csrf(api),
    )
    mine = api.get("/mantenimiento/api/notifications/").json()["notificaciones"]
    assert mine[0]["tipo"] == "SUCCESS" and ot["codigo_de_orden"] in mine[0]["mensaje"]
    assert any(n["user_id"] == 20 for n in sim.notifications.values())


def test_malformed_record_fault_corrupts_one_served_field(
    sim: MantenimientoSim, api: httpx.Client
) -> None:
    ot = make_ot(sim)
    clean = api.get(f"/mantenimiento/api/ot/{ot['id']}/detalle/").json()["ot"]
    sim.faults.configure({"malformed_record_rate": 1.0, "seed": 7})
    for _ in range(5):
        bad = api.get(f"/mantenimiento/api/ot/{ot['id']}/detalle/").json()["ot"]
        changed = [k for k in clean if bad[k] != clean[k]]
        assert len(changed) == 1
    assert sim.faults.counts["malformed_record"] == 5
    assert sim.render_detail(ot) == clean  # the stored record is intact


def test_error_and_rate_limit_faults_look_like_the_proxy(
    sim: MantenimientoSim, api: httpx.Client
) -> None:
    sim.faults.configure({"error_rate": 1.0, "seed": 5})
    statuses = set()
    for _ in range(12):
        r = api.get("/mantenimiento/api/ordenes-hoy/")
        assert r.headers["content-type"].startswith("text/html")
        statuses.add(r.status_code)
        if r.status_code == 500:
            assert "<h1>Server Error (500)</h1>" in r.text
        else:
            assert "nginx" in r.text
    assert statuses == {500, 502, 503}
    sim.faults.configure({"burst_429_rate": 1.0, "burst_429_length": 1})
    r = api.get("/mantenimiento/api/ordenes-hoy/")
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert "Too Many Requests" in r.text


# ---------------------------------------------------------------------------------------------
# Control API, seed, real socket, scale
# ---------------------------------------------------------------------------------------------
def test_control_routes(sim: MantenimientoSim, anon: httpx.Client) -> None:
    r = anon.post(
        "/_sim/ots",
        json={
            "tipo": "PREVENTIVA",
            "estado": "PROGRAMADA",
            "rutina": "Lubricación de rodamientos",
            "inicio_programado": "2026-03-12T14:00:00+00:00",
            "fin_programado": "2026-03-12T15:00:00+00:00",
            "ubicacion_id": 12,
            "activos": [202],
        },
    )
    assert r.status_code == 201
    created = r.json()
    ot_id = created["id"]
    assert created["codigo_de_orden"] == f"OT-{ot_id:09d}"
    assert created["inicio_programado"] == "2026-03-12T14:00:00+00:00"
    assert created["detail"]["rutina"] == "Lubricación de rodamientos"
    sim.clock.advance(5)
    r = anon.patch(
        f"/_sim/ots/{ot_id}",
        json={"descripcion_corta": "Editado en UI", "prioridad": "ALTA", "notas": "n"},
    )
    assert r.json()["descripcion_corta"] == "Editado en UI"
    assert r.json()["actualizado_en"] == (T0 + timedelta(seconds=5)).isoformat()
    assert anon.patch(f"/_sim/ots/{ot_id}", json={"estado": "PENDIENTE"}).status_code == 400
    r = anon.post(
        f"/_sim/ots/{ot_id}/close",
        json={"fecha_inicio": "2026-03-10T08:00", "fecha_fin": "2026-03-10T09:00"},
    )
    assert r.json()["estado"] == "REALIZADA" and r.json()["cierre"]["fecha_fin_real"]
    r = anon.post(
        "/_sim/materiales-utilizados",
        json={"ot_id": ot_id, "material_id": 301, "cantidad": "2.5", "comentario": "ui"},
    )
    assert r.status_code == 201 and r.json()["cantidad"] == "2.50"
    r = anon.post("/_sim/avisos", json={"descripcion": "Desde UI", "ubicacion_id": 11})
    aviso_id = r.json()["id"]
    r = anon.patch(f"/_sim/avisos/{aviso_id}", json={"estado": "CANCELADO"})
    assert r.json()["estado"] == "CANCELADO"
    dump = anon.get("/_sim/dump").json()
    assert {"ots", "avisos", "materiales_utilizados", "materials"} <= set(dump)
    row = next(o for o in dump["ots"] if o["id"] == ot_id)
    assert row["detail"]["estado"] == "Realizada" and row["actualizado_en"].endswith("+00:00")
    assert dump["materiales_utilizados"][0]["cantidad"] == "2.50"
    assert anon.delete(f"/_sim/ots/{ot_id}").json() == {"ok": True, "deleted": ot_id}
    assert anon.delete(f"/_sim/ots/{ot_id}").status_code == 404
    assert anon.post("/_sim/expire-sessions").json() == {"ok": True}
    assert anon.get("/_sim/nope").status_code == 404


def test_seed_sizes_gaps_and_determinism() -> None:
    sims = [MantenimientoSim(clock=SimClock()) for _ in range(2)]
    for s in sims:
        s.clock.freeze(T0)
        seed_mantenimiento(s, seed=4)
    sim = sims[0]
    ids = sorted(sim.ots)
    assert len(ids) == 300 and ids[0] == 1000
    assert ids[-1] - ids[0] + 1 > len(ids)  # deleted OTs left gaps
    assert len(sim.avisos) == 40
    assert len(sim.materials) == sum(1 for p in PARTS if p.sku) + 15
    assert {m["sku"] for m in sim.materials.values()} >= {p.sku for p in PARTS if p.sku}
    assert len(sim.tecnicos_puesto) == 5 and sim.materiales_utilizados
    assert {o["estado"] for o in sim.ots.values()} == {
        "ESPERA", "PROGRAMADA", "EJECUCION", "REALIZADA", "CANCELADA",
    }  # fmt: skip
    assert {o["tipo"] for o in sim.ots.values()} == {"PREVENTIVA", "CORRECTIVA", "NO_PROGRAMADA"}
    assert any(o["cierre"] for o in sim.ots.values())
    assert any(o["aviso_id"] for o in sim.ots.values())
    assert all(o["creado_en"] <= T0 and o["actualizado_en"] <= T0 for o in sim.ots.values())
    assert all(a["creado_en"] <= T0 for a in sim.avisos.values())
    assert all(m["fecha_registro"] <= T0 for m in sim.materiales_utilizados.values())
    spread = [o["inicio_programado"] - T0 for o in sim.ots.values()]
    assert min(spread) < timedelta(days=-20) and max(spread) > timedelta(days=20)
    assert sims[0].dump() == sims[1].dump()
    small = MantenimientoSim()
    seed_mantenimiento(small, ots=20, avisos=5, seed=2)
    assert len(small.ots) == 20 and len(small.avisos) == 5


def test_over_a_real_socket_with_concurrent_clients() -> None:
    sim = new_sim()
    with ServerThread(sim) as server:
        with httpx.Client(base_url=server.url, follow_redirects=False) as client:
            assert login(client).status_code == 302
            made = client.post(
                "/mantenimiento/app/ot/crear-no-programada/",
                data={"ubicacion": "12", "descripcion": "Por socket"},
                headers=csrf(client),
            ).json()
            detail = client.get(f"/mantenimiento/api/ot/{made['ot_id']}/detalle/").json()
            assert detail["ot"]["codigo"] == made["codigo"] == "OTNP-2026-00001"

        codes: list[str] = []
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                with httpx.Client(base_url=server.url, follow_redirects=False) as c:
                    login(c)
                    for _ in range(5):
                        r = c.post(
                            "/mantenimiento/app/ot/crear-no-programada/",
                            data={"ubicacion": "12", "descripcion": "concurrente"},
                            headers=csrf(c),
                        )
                        codes.append(r.json()["codigo"])
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert sorted(codes) == [f"OTNP-2026-{n:05d}" for n in range(2, 22)]


def test_bulk_creation_is_linear_and_fast() -> None:
    sim = MantenimientoSim()
    start = T0 - timedelta(days=30)
    began = time.perf_counter()
    for n in range(50_000):
        sim.create_ot(
            tipo="NO_PROGRAMADA" if n % 5 == 0 else "PREVENTIVA",
            inicio_programado=start + timedelta(minutes=n),
            fin_programado=start + timedelta(minutes=n + 60),
            ubicacion_id=11,
        )
    assert time.perf_counter() - began < 15
    assert len(sim.ots) == 50_000
    year = sim.clock.now().year
    assert sim.ots[max(sim.ots)]["codigo_de_orden"] == f"OT-{max(sim.ots):09d}"
    assert f"OTNP-{year}-10000" in sim._codes
