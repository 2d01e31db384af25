"""mantenimiento (Django) client: session login, CSRF, transparent re-login, and the real routes.

Written against what the server *code* does (see ../shared/reference/mantenimiento-api.md), not
the vendor summary: session cookies from `/admin/login/`, a 302 to the login page when the
session is gone, HTML 404 pages for missing OTs (and a JSON 500 from the views that wrap the
lookup), and no list endpoint with paging.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Generator, Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..redact import excerpt, register_secret
from .errors import (
    AuthFailed,
    BadResponse,
    LoginUnavailable,
    NotFound,
    PermissionDenied,
    Rejected,
    RemoteError,
)
from .http import HttpClient, RetryPolicy, parse_retry_after

LOGIN_PATH = "/admin/login/"
_NOT_FOUND_500 = "No OrdenTrabajo matches the given query"
_AVISO_LOCATION = re.compile(r"/mantenimiento/app/aviso/(\d+)/?$")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
#: walks over a multi-page materials listing before accepting what they found
MATERIAL_WALKS = 4
#: a login answered 429: wait at most this long (the HTTP layer's own cap for Retry-After)
MAX_RETRY_AFTER = RetryPolicy().max_retry_after


class DjangoSessionAuth(httpx.Auth):
    """Logs in lazily and again whenever the server bounces us to the login page.

    Requests yielded from an auth flow bypass the client's cookie jar, so the flow sets the
    `Cookie` header itself.  A generation counter makes concurrent callers that all hit an
    expired session share one re-login instead of each logging in.
    """

    requires_response_body = True  # CSRF failures are recognised by their page text
    #: logins in a row for one request before its session counts as refused (each is two
    #: requests; a session that expires again right after a login is rare but not alarming)
    max_relogins = 4

    def __init__(
        self,
        username: str,
        password: Callable[[], str],
        *,
        login_path: str = LOGIN_PATH,
    ) -> None:
        self.username = username
        self._password = password
        self.login_path = login_path
        self.sessionid: str | None = None
        self.csrftoken: str | None = None
        self.logins = 0
        self._generation = 0
        self._lock = threading.Lock()

    def _is_login_redirect(self, response: httpx.Response) -> bool:
        if response.status_code not in (301, 302, 303):
            return False
        location = response.headers.get("location", "")
        return urlsplit(location).path.startswith(self.login_path)

    @staticmethod
    def _is_csrf_failure(response: httpx.Response) -> bool:
        return response.status_code == 403 and b"CSRF verification failed" in response.content

    def _apply(self, request: httpx.Request) -> None:
        cookies = []
        if self.sessionid:
            cookies.append(f"sessionid={self.sessionid}")
        if self.csrftoken:
            cookies.append(f"csrftoken={self.csrftoken}")
        if cookies:
            request.headers["Cookie"] = "; ".join(cookies)
        if request.method not in SAFE_METHODS and self.csrftoken:
            request.headers["X-CSRFToken"] = self.csrftoken
            origin = f"{request.url.scheme}://{request.url.netloc.decode()}"
            request.headers["Referer"] = origin + "/"
            request.headers["Origin"] = origin

    def _login(
        self, request: httpx.Request, seen_generation: int
    ) -> Generator[httpx.Request, httpx.Response, None]:
        with self._lock:
            if self._generation != seen_generation and self.sessionid:
                return  # somebody else logged in while we waited
            login_url = request.url.copy_with(path=self.login_path, query=None)
            page = yield httpx.Request("GET", login_url)
            csrf = page.cookies.get("csrftoken")
            _transient_login_answer(page, "GET", self.login_path)
            if page.status_code != 200 or not csrf:
                raise AuthFailed(
                    f"login page unusable (HTTP {page.status_code})",
                    server="mantenimiento",
                    method="GET",
                    path=self.login_path,
                )
            next_path = request.url.path
            answer = yield httpx.Request(
                "POST",
                login_url,
                data={
                    "username": self.username,
                    "password": self._password(),
                    "csrfmiddlewaretoken": csrf,
                    "next": next_path,
                },
                headers={
                    "Cookie": f"csrftoken={csrf}",
                    "Referer": str(login_url),
                    "Origin": f"{login_url.scheme}://{login_url.netloc.decode()}",
                },
            )
            session = answer.cookies.get("sessionid")
            _transient_login_answer(answer, "POST", self.login_path)
            if answer.status_code not in (301, 302, 303) or not session:
                reason = (
                    "CSRF check failed at login"
                    if answer.status_code == 403
                    else "credentials refused or user is not staff"
                )
                raise AuthFailed(
                    reason,
                    server="mantenimiento",
                    method="POST",
                    path=self.login_path,
                    status=answer.status_code,
                )
            self.sessionid = session
            self.csrftoken = answer.cookies.get("csrftoken") or csrf  # Django rotates it at login
            # a debug page or a proxy may echo them back: scrubbed like the password
            register_secret(self.sessionid, slot=f"mantenimiento-session-{id(self)}")
            register_secret(self.csrftoken, slot=f"mantenimiento-csrf-{id(self)}")
            self._generation += 1
            self.logins += 1

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        generation = self._generation
        if not self.sessionid:
            yield from self._login(request, generation)
            generation = self._generation
        self._apply(request)
        response = yield request
        for _ in range(self.max_relogins):
            if not (
                self._is_login_redirect(response)
                or (request.method not in SAFE_METHODS and self._is_csrf_failure(response))
            ):
                return
            # Both are answered before the view runs, so resending (even a POST) is safe.
            yield from self._login(request, generation)
            generation = self._generation
            self._apply(request)
            response = yield request


def _transient_login_answer(response: httpx.Response, method: str, path: str) -> None:
    """A busy or failing server during login is not a credentials problem: raise something
    the HTTP layer retries (with back-off) instead of ending the cycle as an auth failure."""
    status = response.status_code
    if status == 429 or status >= 500:
        response.read()
        raise LoginUnavailable(
            f"login answered HTTP {status}",
            retry_after=parse_retry_after(response.headers.get("retry-after"), MAX_RETRY_AFTER)
            if status == 429
            else None,
            server="mantenimiento",
            method=method,
            path=path,
            status=status,
        )


class MantenimientoClient:
    server = "mantenimiento"

    def __init__(self, http: HttpClient, auth: DjangoSessionAuth | None = None) -> None:
        self.http = http
        self.auth = auth

    # -- response handling ----------------------------------------------------------------
    @staticmethod
    def classify_5xx(response: httpx.Response) -> RemoteError | None:
        """Views that wrap `get_object_or_404` in try/except answer a missing OT with a 500."""
        if _NOT_FOUND_500.encode() in response.content:
            return NotFound(
                "no such OT (server answered 500)",
                server="mantenimiento",
                method=response.request.method,
                path=response.request.url.path,
                status=response.status_code,
            )
        return None

    def _where(self, response: httpx.Response) -> dict[str, Any]:
        return {
            "server": self.server,
            "method": response.request.method,
            "path": response.request.url.path,
            "status": response.status_code,
        }

    def _check_status(self, response: httpx.Response) -> None:
        where = self._where(response)
        status = response.status_code
        if status in (301, 302, 303):
            location = response.headers.get("location", "")
            if urlsplit(location).path.startswith(LOGIN_PATH):
                raise AuthFailed("session refused even after logging in again", **where)
            raise PermissionDenied(f"redirected to {urlsplit(location).path}", **where)
        if status == 404:
            raise NotFound("not found", **where)
        if status == 403:
            raise PermissionDenied("forbidden", body=excerpt(response.content), **where)
        if status == 405:
            raise Rejected("method not allowed", **where)

    def _json(self, response: httpx.Response) -> Any:
        self._check_status(response)
        where = self._where(response)
        if "json" not in response.headers.get("content-type", ""):
            raise BadResponse("expected JSON", body=excerpt(response.content), **where)
        try:
            payload = response.json()
        except ValueError:
            raise BadResponse("invalid JSON", body=excerpt(response.content), **where) from None
        if response.status_code >= 400 or (
            isinstance(payload, dict) and payload.get("status") == "error"
        ):
            message = ""
            if isinstance(payload, dict):
                message = str(payload.get("message") or payload.get("error") or "")
            if response.status_code == 404:
                raise NotFound(message or "not found", **where)
            raise Rejected(message or "request rejected", **where)
        return payload

    def _get(self, path: str, params: Any = None) -> Any:
        return self.http.call("GET", path, params=params, parse=self._json, idempotent=True)

    def _post(self, path: str, *, idempotent: bool, json: Any = None, data: Any = None) -> Any:
        return self.http.call(
            "POST", path, json=json, data=data, parse=self._json, idempotent=idempotent
        )

    # -- work orders (OT) -------------------------------------------------------------------
    def get_ot(self, ot_id: int) -> dict[str, Any] | None:
        """The OT detail, or None when the server says it does not exist (HTML 404)."""
        try:
            payload = self._get(f"/mantenimiento/api/ot/{ot_id}/detalle/")
        except NotFound:
            return None
        ot = payload.get("ot") if isinstance(payload, dict) else None
        if not isinstance(ot, dict):
            raise BadResponse("detail without an 'ot' object", server=self.server)
        return ot

    def update_status_notes(
        self, ot_id: int, *, estado: str | None = None, notas: str | None = None
    ) -> None:
        body: dict[str, Any] = {}
        if estado is not None:
            body["estado"] = estado
        if notas is not None:
            body["notas"] = notas
        # Sets absolute values: replaying it is harmless.
        self._post(f"/mantenimiento/api/ot/{ot_id}/update/", json=body, idempotent=True)

    def update_ot_fields(self, ot_id: int, form: dict[str, Any]) -> None:
        """`update-ajax`: descripcion_detallada (→ descripcion_corta), dates, ubicacion, people."""
        self._post(f"/mantenimiento/app/ot/{ot_id}/update-ajax/", data=form, idempotent=True)

    def close_ot(
        self,
        ot_id: int,
        *,
        fecha_inicio: str,
        fecha_fin: str,
        horas_hombre: float = 0.0,
        comentarios: str = "",
    ) -> bool:
        """Close with a closure record.  Returns False if the OT already had one.

        The second call answers 400 "ya tiene un cierre": the effect is already there, so that
        is reported, not raised; this is what makes the close safe to replay.
        """
        try:
            self._post(
                f"/mantenimiento/api/cerrar-ot/{ot_id}/",
                json={
                    "fecha_inicio": fecha_inicio,
                    "fecha_fin": fecha_fin,
                    "horas_hombre": horas_hombre,
                    "comentarios": comentarios,
                },
                idempotent=True,
            )
        except Rejected as exc:
            if "ya tiene un cierre" in str(exc):
                return False
            raise
        return True

    def create_ot(self, form: dict[str, Any]) -> tuple[int, str]:
        """`crear-no-programada`: NOT idempotent; the caller embeds its outbox token."""
        payload = self._post(
            "/mantenimiento/app/ot/crear-no-programada/", data=form, idempotent=False
        )
        try:
            return int(payload["ot_id"]), str(payload.get("codigo") or "")
        except (KeyError, TypeError, ValueError):
            raise BadResponse("create answer without ot_id", server=self.server) from None

    def move_ot_date(self, ot_id: int, nueva_fecha: str) -> None:
        self._post(
            "/mantenimiento/api/update-ot-date/",
            json={"ot_id": ot_id, "nueva_fecha": nueva_fecha},
            idempotent=False,
        )

    def search_ots(self, q: str) -> list[dict[str, Any]]:
        payload = self._get("/mantenimiento/api/search-ordenes/", {"q": q})
        results = payload.get("results") if isinstance(payload, dict) else None
        return results if isinstance(results, list) else []

    def ots_today(self, q: str = "", tipo: str = "") -> dict[str, Any]:
        params = {k: v for k, v in (("q", q), ("tipo", tipo)) if v}
        payload = self._get("/mantenimiento/api/ordenes-hoy/", params)
        return payload if isinstance(payload, dict) else {}

    def delete_ots(self, ot_ids: list[int]) -> None:
        self._post("/mantenimiento/api/delete-ots/", json={"ot_ids": ot_ids}, idempotent=True)

    # -- avisos ---------------------------------------------------------------------------
    def list_avisos(self, search: str | None = None) -> dict[str, list[dict[str, Any]]]:
        params = {"search": search} if search else None
        payload = self._get("/mantenimiento/avisos/api/list/", params)
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, dict):
            raise BadResponse("avisos list without data", server=self.server)
        return {k: v for k, v in data.items() if isinstance(v, list)}

    def iter_avisos(self, search: str | None = None) -> Iterator[dict[str, Any]]:
        for group in self.list_avisos(search).values():
            yield from group

    def update_aviso(self, aviso_id: int, estado: str, responsable_id: int | None = None) -> None:
        body: dict[str, Any] = {"estado": estado}
        if responsable_id is not None:
            body["responsable_id"] = responsable_id
        self._post(f"/mantenimiento/avisos/api/update/{aviso_id}/", json=body, idempotent=True)

    def create_ot_from_aviso(
        self, aviso_id: int, *, prioridad: str | None = None, fecha_inicio: str | None = None
    ) -> tuple[int, str]:
        """Idempotent by nature: a second call is refused because the aviso has its OT."""
        body: dict[str, Any] = {}
        if prioridad:
            body["prioridad"] = prioridad
        if fecha_inicio:
            body["fecha_inicio"] = fecha_inicio
        payload = self._post(
            f"/mantenimiento/avisos/api/create-ot/{aviso_id}/", json=body, idempotent=False
        )
        return int(payload["ot_id"]), str(payload.get("ot_codigo") or "")

    def create_aviso(self, form: dict[str, Any]) -> int | None:
        """The mobile form answers 302 to the new aviso; None when the id is not in Location."""

        def parse(response: httpx.Response) -> int | None:
            if response.status_code in (301, 302, 303):
                location = response.headers.get("location", "")
                path = urlsplit(location).path
                if path.startswith(LOGIN_PATH):
                    raise AuthFailed("session refused", **self._where(response))
                if path.rstrip("/") in ("/app", ""):
                    raise PermissionDenied(
                        "user lacks the 'crear_aviso' section", **self._where(response)
                    )
                match = _AVISO_LOCATION.search(path)
                return int(match.group(1)) if match else None
            self._check_status(response)
            if response.status_code == 200:
                raise Rejected(
                    "aviso form re-rendered (validation error)",
                    body=excerpt(response.content, 200),
                    **self._where(response),
                )
            raise BadResponse("unexpected answer", **self._where(response))

        return self.http.call(
            "POST", "/mantenimiento/app/aviso/crear/", data=form, parse=parse, idempotent=False
        )

    # -- notifications ----------------------------------------------------------------------
    def notifications(self) -> list[dict[str, Any]]:
        payload = self._get("/mantenimiento/api/notifications/")
        items = payload.get("notificaciones") if isinstance(payload, dict) else None
        return items if isinstance(items, list) else []

    # -- inventory ----------------------------------------------------------------------------
    def materials_used(self, ot_id: int) -> list[dict[str, Any]]:
        payload = self._get(f"/inventarios/api/ot/{ot_id}/materiales-utilizados/")
        items = payload.get("materiales") if isinstance(payload, dict) else None
        if not isinstance(items, list):
            raise BadResponse("materiales-utilizados without a list", server=self.server)
        return items

    def add_material_used(
        self,
        ot_id: int,
        *,
        material_id: int,
        cantidad: Decimal,
        comentario: str = "",
        activo_id: int | None = None,
    ) -> int:
        """NOT idempotent: the caller puts its token in `comentario` and adopts on doubt."""
        body: dict[str, Any] = {
            "material_id": material_id,
            "cantidad": float(cantidad),  # a JSON number: the view tests it for truthiness
            "comentario": comentario,
        }
        if activo_id is not None:
            body["activo_id"] = activo_id
        payload = self._post(
            f"/inventarios/api/ot/{ot_id}/materiales-utilizados/", json=body, idempotent=False
        )
        try:
            return int(payload["id"])
        except (KeyError, TypeError, ValueError):
            raise BadResponse("material record answer without id", server=self.server) from None

    def iter_materials(self, q: str = "") -> Iterator[dict[str, Any]]:
        """Every material matching `q`, each once, lazily (stop early and nothing more is read).

        The view pages 30 at a time by offset over a catalogue people edit: an insert or a
        rename between two page requests repeats an item (dropped here by id), a delete or a
        rename moves one past us unseen.  A single page is a snapshot; a longer walk is walked
        again until two walks in a row return the same materials in the same order (a walk
        nothing moved under), at most `MATERIAL_WALKS` times, yielding what the walks add.
        """
        seen: set[Any] = set()
        previous: list[Any] | None = None
        for _ in range(MATERIAL_WALKS):
            order: list[Any] = []
            pages = 0
            for results in self._material_pages(q):
                pages += 1
                for item in results:
                    key = item.get("id") if isinstance(item, dict) else None
                    order.append(key)
                    if key is None or key not in seen:
                        seen.add(key)
                        yield item
            if pages <= 1 or order == previous:
                return
            previous = order

    def _material_pages(self, q: str) -> Iterator[list[dict[str, Any]]]:
        page, limit = 1, None
        while True:
            params: dict[str, Any] = {"page": page}
            if q:
                params["q"] = q
            payload = self._get("/inventarios/api/materials/", params)
            results = payload.get("results") if isinstance(payload, dict) else None
            if not isinstance(results, list):
                raise BadResponse("materials page without results", server=self.server)
            yield results
            if page == 1:
                # a catalogue growing faster than we read it cannot keep us here forever
                said = payload.get("num_pages")
                limit = 2 * said + 5 if isinstance(said, int) else None
            if not payload.get("has_next") or (limit is not None and page >= limit):
                return
            page += 1
