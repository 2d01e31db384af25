"""Simulator of the self-hosted Django CMMS "mantenimiento" (the `sajaldi/energy` project).

It reproduces what the deployed server *code* does, as recorded in
`/work/shared/reference/mantenimiento-api.md` (cited as §n), not the vendor summary: Django session
cookies from `/admin/login/`, CSRF enforced by middleware before any view decorator runs, a 302 to
the login page (never a 401) when the session is gone, Django's HTML 404/500 pages, the views that
turn a missing OT into a JSON 500, no paging, and `actualizado_en` semantics that hide some writes.

Comments marked `code:` record behaviour read from the view source that the reference summarises
(e.g. which lookups sit inside a `try`); `# inferred:` marks choices where both are silent.  The
whole state lives in plain dicts guarded by `self.lock`, so tests can seed, inspect and edit it
directly ("UI / admin user" helpers) as well as through HTTP.
"""

from __future__ import annotations

import html
import json
import logging
import math
import re
import secrets
import string
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

from werkzeug.wrappers import Request, Response

from .base import SimApp, json_response
from .clock import SimClock
from .faults import PROXY_HTML_ERROR, Faults

log = logging.getLogger("syncd.sandbox.mantenimiento")

Record = dict[str, Any]

# ---------------------------------------------------------------------------------------------
# Vocabularies (§3.1, §3.8, §3.10, §4).  Order matters: `status_list` follows ESTADO_CHOICES.
# ---------------------------------------------------------------------------------------------
ESTADOS: dict[str, str] = {
    "ESPERA": "En Espera de Programación",
    "PROGRAMADA": "Programada",
    "EJECUCION": "En Ejecución",
    "REALIZADA": "Realizada",
    "CANCELADA": "Cancelada",
}
TIPOS: dict[str, str] = {
    "PREVENTIVA": "Preventiva",
    "CORRECTIVA": "Correctiva",
    "NO_PROGRAMADA": "No Programada",
}
PRIORIDADES: dict[str, str] = {
    "BAJA": "Baja",
    "MEDIA": "Media",
    "ALTA": "Alta",
    "CRITICA": "Crítica",
}
AVISO_ESTADOS: dict[str, str] = {
    "ABIERTO": "Abierto",
    "PROCESO": "En Proceso",
    "CERRADO": "Cerrado",
    "CANCELADO": "Cancelado",
}
AVISO_TIPOS: dict[str, str] = {
    "AVERIA": "Avería / Falla (M2)",
    "SOLICITUD": "Solicitud de Servicio (M1)",
    "MEJORA": "Mejora / Modificación",
    "LEGAL": "Requerimiento Legal / Seguridad",
    "MAL_USO": "Mal Uso de las Instalaciones",
}
NOTIF_TIPOS: dict[str, str] = {
    "SUCCESS": "Éxito",
    "ERROR": "Error",
    "INFO": "Información",
    "WARNING": "Advertencia",
}
# inferred: the labels of Material.TIPO_MATERIAL_CHOICES were not read; the codes are from §4.
TIPOS_MATERIAL: dict[str, str] = {
    "INSUMO": "Insumo",
    "REPUESTO": "Repuesto",
    "CONSUMIBLE": "Consumible",
    "MEDICAMENTO": "Medicamento",
    "HERRAMIENTA": "Herramienta",
    "EPP": "EPP",
    "SERVICIO": "Servicio",
    "ACTIVO": "Activo",
    "OTRO": "Otro",
}
#: estados the "active" filters of delete-ots / ordenes-hoy use (§2.1, §2.2)
ACTIVE_ESTADOS = ("ESPERA", "PROGRAMADA", "EJECUCION")
MANAGER_GROUP = "Gerentes"

LOGIN_PATH = "/admin/login/"
LOGIN_REDIRECT_URL = "/app/"  # §1.2 settings.LOGIN_REDIRECT_URL
MOBILE_DASHBOARD = "/app/"  # §1.2 core:mobile_dashboard
CSRF_COOKIE_AGE = 31449600  # Django default (one year)
#: §1.2 CSRF_TRUSTED_ORIGINS hard-coded in settings (the env var part is empty in the sandbox)
TRUSTED_ORIGINS = (
    "https://softcom.ccg.hn",
    "http://softcom.ccg.hn",
    "https://*.ccg.hn",
    "http://10.30.1.11",
    "http://127.0.0.1:8000",
)

DEFAULT_USERS: dict[str, dict[str, Any]] = {
    "syncd": {
        "id": 7,
        "password": "syncd-sandbox-pass",
        "is_staff": True,
        "is_superuser": False,
        "groups": ["Gerentes"],
        "sections": ["tareas_hoy", "crear_aviso", "mis_avisos"],
        "first_name": "Sync",
        "last_name": "Daemon",
    },
    "tecnico1": {
        "id": 8,
        "password": "tecnico1-sandbox-pass",
        "is_staff": False,
        "is_superuser": False,
        "groups": ["Tecnicos"],
        "sections": ["tareas_hoy", "crear_aviso", "mis_avisos"],
        "first_name": "Pedro",
        "last_name": "Ramírez",
    },
    "admin": {
        "id": 1,
        "password": "admin-sandbox-pass",
        "is_staff": True,
        "is_superuser": True,
        "groups": [],
        "sections": ["tareas_hoy", "crear_aviso", "mis_avisos"],
        "first_name": "",
        "last_name": "",
    },
}

# ---------------------------------------------------------------------------------------------
# Django's stock HTML answers (DEBUG=False, §0) and the reverse proxy's pages.
# ---------------------------------------------------------------------------------------------
_DJANGO_ERROR_PAGE = (
    '\n<!doctype html>\n<html lang="en">\n<head>\n  <title>{title}</title>\n</head>\n<body>\n'
    "  <h1>{title}</h1><p>{details}</p>\n</body>\n</html>\n"
)
NOT_FOUND_HTML = _DJANGO_ERROR_PAGE.format(
    title="Not Found", details="The requested resource was not found on this server."
)
SERVER_ERROR_HTML = _DJANGO_ERROR_PAGE.format(title="Server Error (500)", details="")
CSRF_FAILURE_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta http-equiv="content-type" content="text/html; charset=utf-8">
  <meta name="robots" content="NONE,NOARCHIVE">
  <title>403 Forbidden</title>
</head>
<body>
<div id="summary">
  <h1>Forbidden <span>(403)</span></h1><p>CSRF verification failed. Request aborted.</p>
{extra}</div>
<div id="explanation">
  <p><small>More information is available with DEBUG=True.</small></p>
</div>
</body>
</html>
"""
_CSRF_NO_COOKIE_HTML = (
    "  <p>You are seeing this message because this site requires a CSRF cookie when submitting "
    "forms. This cookie is required for security reasons, to ensure that your browser is not "
    "being hijacked by third parties.</p>\n"
    "  <p>If you have configured your browser to disable cookies, please re-enable them, at "
    "least for this site, or for “same-origin” requests.</p>\n"
)
_NGINX_PAGE = (
    "<html>\r\n<head><title>{status}</title></head>\r\n<body>\r\n"
    "<center><h1>{status}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
NGINX_503_HTML = _NGINX_PAGE.format(status="503 Service Temporarily Unavailable")
NGINX_429_HTML = _NGINX_PAGE.format(status="429 Too Many Requests")
LOGIN_ERROR = (
    "Please enter the correct username and password for a staff account. "
    "Note that both fields may be case-sensitive."
)
FIELD_REQUIRED = "This field is required."

# ---------------------------------------------------------------------------------------------
# CSRF tokens, Django style (§1.3): 32-char secret in the cookie, 64-char masked form tokens.
# ---------------------------------------------------------------------------------------------
CSRF_CHARS = string.ascii_letters + string.digits
CSRF_SECRET_LENGTH = 32
CSRF_TOKEN_LENGTH = 2 * CSRF_SECRET_LENGTH
_SESSION_KEY_CHARS = string.ascii_lowercase + string.digits


def new_csrf_secret() -> str:
    return "".join(secrets.choice(CSRF_CHARS) for _ in range(CSRF_SECRET_LENGTH))


def mask_csrf_secret(secret: str) -> str:
    """A fresh 64-char token for `secret` (Django masks every rendered token: BREACH defence)."""
    mask = new_csrf_secret()
    cipher = "".join(
        CSRF_CHARS[(CSRF_CHARS.index(s) + CSRF_CHARS.index(m)) % len(CSRF_CHARS)]
        for s, m in zip(secret, mask, strict=True)
    )
    return mask + cipher


def unmask_csrf_token(token: str) -> str:
    mask, cipher = token[:CSRF_SECRET_LENGTH], token[CSRF_SECRET_LENGTH:]
    return "".join(
        CSRF_CHARS[CSRF_CHARS.index(c) - CSRF_CHARS.index(m)]
        for c, m in zip(cipher, mask, strict=True)
    )


def csrf_format_error(token: str) -> str | None:
    """Django's `_check_token_format`: the reason text, or None when the token is well formed."""
    if len(token) not in (CSRF_TOKEN_LENGTH, CSRF_SECRET_LENGTH):
        return "has incorrect length"
    if any(c not in CSRF_CHARS for c in token):
        return "has invalid characters"
    return None


def _token_secret(token: str) -> str:
    return unmask_csrf_token(token) if len(token) == CSRF_TOKEN_LENGTH else token


# ---------------------------------------------------------------------------------------------
# Django ORM behaviours the views rely on.
# ---------------------------------------------------------------------------------------------
class Http404Error(Exception):
    """`get_object_or_404` outcome; views that catch `Exception` turn it into a JSON 500 (§0)."""


class DoesNotExistError(Exception):
    """`Model.objects.get` miss, e.g. "User matching query does not exist."."""


class DatabaseError(Exception):
    """What PostgreSQL would refuse (too long values, NOT NULL, foreign keys)."""


def _pk(value: Any, field_name: str = "id") -> int:
    """IntegerField.get_prep_value: `int(value)` with Django's error text on failure."""
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise exc.__class__(f"Field '{field_name}' expected a number but got {value!r}.") from exc


def _text(value: Any) -> str | None:
    """TextField.to_python: non-strings are stored as their `str()`."""
    if value is None or isinstance(value, str):
        return value
    return str(value)


def _char(value: Any, max_length: int, column: str) -> str:
    """A CharField write: PostgreSQL rejects NULL and values longer than the column."""
    if value is None:
        raise DatabaseError(
            f'null value in column "{column}" of relation "mantenimiento_ordentrabajo" '
            "violates not-null constraint"
        )
    text = str(value)
    if len(text) > max_length:
        raise DatabaseError(f"value too long for type character varying({max_length})")
    return text


def _icontains(needle: str, haystack: Any) -> bool:
    return haystack is not None and needle in str(haystack).lower()


def _label(choices: dict[str, str], value: Any) -> Any:
    """`get_FOO_display()`: unknown stored values are shown raw."""
    return choices.get(value, value) if isinstance(value, str) else value


def _full_name(user: Record | None) -> str:
    if not user:
        return ""
    return f"{user.get('first_name', '')} {user.get('last_name', '')}".strip()


def _name_or_username(user: Record | None) -> str | None:
    """`user.get_full_name() or user.username` as most views render people."""
    if not user:
        return None
    return _full_name(user) or user["username"]


def _asc_nulls_last(value: Any) -> tuple[int, Any]:
    return (1, "") if value is None else (0, value)


def _as_list(value: Any) -> list[int]:
    return [int(v) for v in (value or [])]


def _blank_ot() -> Record:
    """A fresh OrdenTrabajo row with the model defaults (§3.1)."""
    return {
        "id": None,
        "codigo_de_orden": None,
        "tipo": "PREVENTIVA",
        "prioridad": "MEDIA",
        "estado": "ESPERA",
        "rutina_id": None,
        "aviso_id": None,
        "tecnico_id": None,
        "tecnico_puesto_id": None,
        "tecnicos": [],
        "colaboradores_puesto": [],
        "empresa_responsable": None,
        "supervisor_id": None,
        "ubicacion_id": None,
        "activos": [],
        "inicio_programado": None,
        "fin_programado": None,
        "fecha_ejecucion": None,
        "descripcion_corta": None,
        "descripcion_detallada": None,
        "notas": None,
        "equipo_parado": False,
        "creado_en": None,
        "actualizado_en": None,
        "cierre": None,
        "archivos": [],
    }


def _blank_aviso() -> Record:
    """A fresh Aviso row with the model defaults (§3.8)."""
    return {
        "id": None,
        "descripcion": "",
        "estado": "ABIERTO",
        "prioridad": "MEDIA",
        "tipo": "SOLICITUD",
        "ubicacion_id": None,
        "activo_id": None,
        "falla_id": None,
        "solicitante_id": None,
        "responsable_id": None,
        "departamento_id": None,
        "foto": None,
        "fotos": [],
        "equipo_parado": False,
        "diagnostico": None,
        "acciones": None,
        "cerrado_por_id": None,
        "creado_en": None,
        "fecha_cierre": None,
        "actualizado_en": None,
    }


#: fields the helpers accept (the id is assigned, never edited)
OT_FIELDS = frozenset(_blank_ot()) - {"id"}
AVISO_FIELDS = frozenset(_blank_aviso()) - {"id"}


# ---------------------------------------------------------------------------------------------
# Routing: one row per Django URL pattern, with its decorators (§2, §4).
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Route:
    """A URL pattern plus the decorators of its view, applied in order after CSRF middleware.

    guards: "staff" (staff_member_required), "login" (login_required), "section:<key>"
    (mobile_permission_required), "methods:<A,B>" (require_POST / require_http_methods: empty 405).
    """

    pattern: re.Pattern[str]
    view: str
    guards: tuple[str, ...] = ()
    csrf_exempt: bool = False


def _route(regex: str, view: str, *guards: str, exempt: bool = False) -> Route:
    # re.ASCII: Django's <int:pk> converter is [0-9]+, not any Unicode digit
    return Route(re.compile(regex + r"\Z", re.ASCII), view, tuple(guards), exempt)


ROUTES: tuple[Route, ...] = (
    _route(r"/admin/login/", "view_admin_login"),
    _route(r"/admin/logout/", "view_admin_logout", "methods:POST,OPTIONS"),
    _route(r"/admin/", "view_admin_index", "staff"),
    _route(r"/app/", "view_app_dashboard", "login"),
    # §2.1 search and detail
    _route(r"/mantenimiento/api/search-ordenes/", "view_search_ordenes", "staff"),
    _route(r"/mantenimiento/api/ot/(\d+)/detalle/", "view_ot_detail", "staff"),
    _route(r"/mantenimiento/api/ordenes-hoy/", "view_ordenes_hoy", "staff"),
    # §2.2 updates
    _route(
        r"/mantenimiento/api/ot/(\d+)/update/",
        "view_ot_update",
        "staff",
        "methods:POST",
        exempt=True,
    ),
    _route(
        r"/mantenimiento/api/update-ot-date/",
        "view_update_ot_date",
        "staff",
        "methods:POST",
        exempt=True,
    ),
    _route(r"/mantenimiento/api/delete-ots/", "view_delete_ots", "staff"),
    _route(r"/mantenimiento/api/cerrar-ot/(\d+)/", "view_cerrar_ot", "staff", "methods:POST"),
    # §2.3 mobile
    _route(r"/mantenimiento/app/ot/(\d+)/update-ajax/", "view_ot_update_ajax", "staff"),
    _route(r"/mantenimiento/app/ot/crear-no-programada/", "view_crear_otnp", "staff"),
    _route(r"/mantenimiento/app/aviso/crear/", "view_aviso_form", "staff", "section:crear_aviso"),
    _route(
        r"/mantenimiento/app/aviso/(\d+)/editar/",
        "view_aviso_form",
        "staff",
        "section:crear_aviso",
    ),
    _route(r"/mantenimiento/app/aviso/(\d+)/", "view_aviso_page", "staff", "section:mis_avisos"),
    _route(r"/mantenimiento/app/avisos/", "view_mis_avisos", "staff", "section:mis_avisos"),
    # §2.4 notifications
    _route(r"/mantenimiento/api/notifications/", "view_notifications", "staff"),
    _route(
        r"/mantenimiento/api/notifications/read/",
        "view_notifications_read",
        "staff",
        "methods:POST",
        exempt=True,
    ),
    # §2.7 avisos Kanban
    _route(r"/mantenimiento/avisos/api/list/", "view_avisos_list", "staff", "methods:GET"),
    _route(
        r"/mantenimiento/avisos/api/update/(\d+)/", "view_aviso_update", "staff", "methods:POST"
    ),
    _route(
        r"/mantenimiento/avisos/api/create-ot/(\d+)/",
        "view_aviso_create_ot",
        "staff",
        "methods:POST",
    ),
    # §4 inventarios
    _route(r"/inventarios/api/ot/(\d+)/materiales-utilizados/", "view_materiales_ot", "login"),
    _route(
        r"/inventarios/api/material-utilizado/(\d+)/delete/",
        "view_material_delete",
        "login",
        exempt=True,
    ),
    _route(r"/inventarios/api/materials/", "view_materials", "login"),
)

#: values the malformed-record fault writes into one field of a served OT detail
DETAIL_CORRUPTIONS: tuple[tuple[str, Any], ...] = (
    ("inicio", "31/02/2025 25:61"),
    ("fin", "00/00/0000 99:99"),
    ("raw_status", "PENDIENTE"),
    ("prioridad_raw", None),
    ("tipo_raw", "PREVENTIVO"),
    ("codigo", None),
    ("activos", "N/A"),
    ("status_list", []),
)


@dataclass
class _Session:
    user_id: int
    expires_at: float  # time.monotonic(): session age is real time, not the skewable SimClock


@dataclass
class _Ctx:
    """Per-request state the middlewares share with the view."""

    request: Request
    user: Record | None
    session_key: str | None
    cookie_secret: str | None  # valid secret from the csrftoken cookie
    cookie_error: str | None  # why the csrftoken cookie is unusable
    csrf_secret: str | None  # secret get_token() hands out (new one if the cookie was bad)
    set_csrf: str | None = None
    set_session: str | None = None
    clear_session: bool = False
    extra_headers: dict[str, str] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def is_manager(self) -> bool:
        user = self.user or {}
        return bool(user.get("is_superuser")) or MANAGER_GROUP in user.get("groups", [])


class MantenimientoSim(SimApp):
    """WSGI simulator of the mantenimiento server; state in dicts keyed by id (see module doc)."""

    name = "mantenimiento"

    def __init__(
        self,
        *,
        users: dict[str, dict] | None = None,
        session_ttl: float = 1209600.0,
        server_tz: str = "America/Tegucigalpa",
        display_tz: str = "UTC",
        clock: SimClock | None = None,
        faults: Faults | None = None,
        strict_material_quantities: bool = False,
    ) -> None:
        super().__init__(clock=clock, faults=faults)
        self.session_ttl = session_ttl
        #: TIME_ZONE: naive inputs are read in it and `__date` lookups use it
        self.server_tz = ZoneInfo(server_tz)
        #: the zone model datetimes come back in from PostgreSQL, i.e. what strftime() renders
        self.display_tz = ZoneInfo(display_tz)
        #: False = the real view (no quantity validation, numeric(12,2) rounding); True = the
        #: 400s a validating view would give (see view_materiales_ot)
        self.strict_material_quantities = strict_material_quantities

        self.ots: dict[int, Record] = {}
        self.avisos: dict[int, Record] = {}
        self.materials: dict[int, Record] = {}
        self.materiales_utilizados: dict[int, Record] = {}
        self.ubicaciones: dict[int, Record] = {}
        self.activos: dict[int, Record] = {}
        self.notifications: dict[int, Record] = {}
        self.tecnicos_puesto: dict[int, Record] = {}
        self.empresas: dict[int, Record] = {}
        self.departamentos: dict[int, Record] = {}
        self.fallas: dict[int, Record] = {}
        self.rutinas: dict[int, Record] = {}

        self._sessions: dict[str, _Session] = {}
        self._next_ids: dict[str, int] = {}
        #: codigo_de_orden -> ot id (the column is UNIQUE)
        self._codes: dict[str, int] = {}
        #: "OTNP-<year>-" -> numbers in use, and their max (the allocator reads the max, §3.1)
        self._otnp_numbers: dict[str, set[int]] = {}
        self._otnp_max: dict[str, int] = {}

        self.users: dict[str, Record] = {}
        self._users_by_id: dict[int, Record] = {}
        for username, spec in (users if users is not None else DEFAULT_USERS).items():
            self.add_user(username, **spec)

    # =========================================================================================
    # Ids, time and small lookups
    # =========================================================================================
    def _next_id(self, table: str, start: int = 1) -> int:
        """Sequences never go back, even after deletes (PostgreSQL serial)."""
        value = self._next_ids.get(table, start)
        self._next_ids[table] = value + 1
        return value

    def _bump_sequence(self, table: str, used: int) -> None:
        self._next_ids[table] = max(self._next_ids.get(table, 1), used + 1)

    def _now(self) -> datetime:
        return self.clock.now()

    def _make_aware(self, value: datetime) -> datetime:
        """timezone.make_aware with TIME_ZONE; like Django it refuses aware values."""
        if value.tzinfo is not None and value.utcoffset() is not None:
            raise ValueError(f"make_aware expects a naive datetime, got {value}")
        return value.replace(tzinfo=self.server_tz)

    def _to_utc(self, value: datetime | str | None) -> datetime | None:
        """Helper/control input: datetime or ISO string; naive means server time (admin forms)."""
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if isinstance(value, date) and not isinstance(value, datetime):
            value = datetime(value.year, value.month, value.day)
        if value.tzinfo is None or value.utcoffset() is None:
            value = self._make_aware(value)
        return value.astimezone(UTC)

    def _db(self, value: datetime) -> datetime:
        """A model datetime as Django hands it to the views (UTC from PostgreSQL, §0)."""
        return value.astimezone(self.display_tz)

    def _fmt(self, value: datetime | None, pattern: str, default: Any = None) -> Any:
        return self._db(value).strftime(pattern) if value is not None else default

    def _local_date(self, value: datetime) -> date:
        """`field__date=` lookups convert to TIME_ZONE before taking the date (USE_TZ=True)."""
        return value.astimezone(self.server_tz).date()

    def user_by_id(self, user_id: Any) -> Record | None:
        return self._users_by_id.get(user_id) if user_id is not None else None

    @staticmethod
    def _iso(value: Any) -> Any:
        return value.astimezone(UTC).isoformat() if isinstance(value, datetime) else value

    # =========================================================================================
    # Catalogue and people ("admin" helpers; the seed uses them)
    # =========================================================================================
    def add_user(self, username: str, **spec: Any) -> Record:
        with self.lock:
            user_id = int(spec.get("id") or self._next_id("user", 100))
            self._bump_sequence("user", user_id)
            user = {
                "id": user_id,
                "username": username,
                "password": spec.get("password", ""),
                "is_staff": bool(spec.get("is_staff", False)),
                "is_superuser": bool(spec.get("is_superuser", False)),
                "is_active": bool(spec.get("is_active", True)),
                "groups": list(spec.get("groups", [])),
                "sections": list(spec.get("sections", [])),
                "first_name": spec.get("first_name", ""),
                "last_name": spec.get("last_name", ""),
                "email": spec.get("email", ""),
            }
            self.users[username] = user
            self._users_by_id[user_id] = user
            return user

    def _add(self, table: str, store: dict[int, Record], record: Record, start: int) -> Record:
        with self.lock:
            record_id = int(record.get("id") or self._next_id(table, start))
            self._bump_sequence(table, record_id)
            record["id"] = record_id
            store[record_id] = record
            return record

    def add_ubicacion(
        self,
        nombre: str,
        *,
        id: int | None = None,
        parent_id: int | None = None,
        tipo: str = "AREA",
    ) -> Record:
        rec = {"id": id, "nombre": nombre, "parent_id": parent_id, "tipo": tipo}
        return self._add("ubicacion", self.ubicaciones, rec, 1)

    def add_activo(
        self,
        nombre: str,
        *,
        id: int | None = None,
        codigo_interno: str | None = None,
        ubicacion_id: int | None = None,
        serie: str | None = None,
    ) -> Record:
        rec = {
            "id": id,
            "nombre": nombre,
            "codigo_interno": codigo_interno,
            "ubicacion_id": ubicacion_id,
            "serie": serie,
        }
        return self._add("activo", self.activos, rec, 1)

    def add_material(self, nombre: str, sku: str, **fields: Any) -> Record:
        now = self._now()
        rec = {
            "id": fields.get("id"),
            "nombre": nombre,
            "sku": sku,
            "descripcion": fields.get("descripcion"),
            "unidad": fields.get("unidad"),
            "precio_estimado": float(fields.get("precio_estimado", 0.0)),
            "stock": float(fields.get("stock", 0.0)),
            "categoria": fields.get("categoria"),
            "categoria_id": fields.get("categoria_id"),
            "tipo_material": fields.get("tipo_material", "REPUESTO"),
            "departamentos": list(fields.get("departamentos", [])),
            "bodegas": list(fields.get("bodegas", [])),
            "creado_en": fields.get("creado_en", now),
            "actualizado_en": fields.get("actualizado_en", now),
        }
        return self._add("material", self.materials, rec, 1)

    def add_tecnico_puesto(
        self,
        nombre: str,
        apellido: str,
        *,
        id: int | None = None,
        user_id: int | None = None,
        puesto: str | None = None,
        empresa_id: int | None = None,
    ) -> Record:
        rec = {
            "id": id,
            "nombre": nombre,
            "apellido": apellido,
            "user_id": user_id,
            "puesto": puesto,
            "empresa_id": empresa_id,
        }
        return self._add("tecnico_puesto", self.tecnicos_puesto, rec, 1)

    def add_empresa(self, nombre: str, *, id: int | None = None) -> Record:
        return self._add("empresa", self.empresas, {"id": id, "nombre": nombre}, 1)

    def add_departamento(self, nombre: str, *, id: int | None = None) -> Record:
        return self._add("departamento", self.departamentos, {"id": id, "nombre": nombre}, 1)

    def add_falla(self, nombre: str, *, id: int | None = None) -> Record:
        return self._add("falla", self.fallas, {"id": id, "nombre": nombre}, 1)

    def ensure_rutina(self, nombre: str) -> int:
        """The id of the rutina called `nombre`, created on first use."""
        with self.lock:
            for rutina in self.rutinas.values():
                if rutina["nombre"] == nombre:
                    return rutina["id"]
            return self._add("rutina", self.rutinas, {"id": None, "nombre": nombre}, 1)["id"]

    def add_notification(self, user_id: int, mensaje: str, tipo: str = "INFO") -> Record:
        rec = {
            "id": None,
            "user_id": user_id,
            "mensaje": mensaje,
            "tipo": tipo,
            "leida": False,
            "creado_en": self._now(),
        }
        return self._add("notification", self.notifications, rec, 1)

    # =========================================================================================
    # Work orders: the model layer (codes, signals, cascades)
    # =========================================================================================
    _OT_DATETIMES = (
        "inicio_programado",
        "fin_programado",
        "fecha_ejecucion",
        "creado_en",
        "actualizado_en",
    )

    def _clean_ot_fields(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Admin-form validation for the direct helpers and control routes (choices, types)."""
        fields = dict(fields)
        if "rutina" in fields:
            rutina = fields.pop("rutina")
            fields["rutina_id"] = self.ensure_rutina(rutina) if rutina else None
        unknown = set(fields) - OT_FIELDS
        if unknown:
            raise ValueError(f"unknown OT field(s): {', '.join(sorted(unknown))}")
        for key, choices in (("tipo", TIPOS), ("estado", ESTADOS), ("prioridad", PRIORIDADES)):
            if key in fields and fields[key] not in choices:
                raise ValueError(f"{key} {fields[key]!r} is not one of {', '.join(choices)}")
        for key in self._OT_DATETIMES:
            if key in fields:
                fields[key] = self._to_utc(fields[key])
        for key in ("activos", "tecnicos", "colaboradores_puesto"):
            if key in fields:
                fields[key] = _as_list(fields[key])
        if fields.get("descripcion_corta") and len(fields["descripcion_corta"]) > 200:
            raise ValueError("descripcion_corta is limited to 200 characters")
        return fields

    def _insert_ot(self, fields: dict[str, Any]) -> Record:
        """OrdenTrabajo.objects.create + save(): id, timestamps and the code (§3.1)."""
        if fields.get("inicio_programado") is None or fields.get("fin_programado") is None:
            raise ValueError("inicio_programado and fin_programado are required (NOT NULL)")
        code = fields.get("codigo_de_orden")
        if code and code in self._codes:
            raise ValueError(f"codigo_de_orden {code!r} already exists (UNIQUE)")
        ot = _blank_ot()
        requested_id = fields.pop("id", None)
        ot.update(fields)
        if requested_id is not None:
            if int(requested_id) in self.ots:
                raise ValueError(f"OT id {requested_id} already exists")
            ot["id"] = int(requested_id)
            self._bump_sequence("ot", ot["id"])
        else:
            ot["id"] = self._next_id("ot")
        now = self._now()
        ot["creado_en"] = ot["creado_en"] or now
        ot["actualizado_en"] = ot["actualizado_en"] or now
        self.ots[ot["id"]] = ot
        if ot["codigo_de_orden"]:
            self._register_code(ot["codigo_de_orden"], ot["id"])
        else:
            # §3.1: the code is written afterwards with QuerySet.update (no auto_now bump)
            self._register_code(self._new_code(ot), ot["id"])
        return ot

    def _new_code(self, ot: Record) -> str:
        """§3.1 `_assign_otnp_code`: max existing OTNP-<year>- number + 1, so deleting the newest
        OTNP hands its number out again; other tipos get OT-<id zero-padded to 9>."""
        if ot["tipo"] != "NO_PROGRAMADA":
            return f"OT-{ot['id']:09d}"
        prefix = f"OTNP-{self._now().astimezone(UTC).year}-"  # timezone.now().year (UTC)
        number = self._otnp_max.get(prefix, 0) + 1
        code = f"{prefix}{number:05d}"
        if code in self._codes:  # IntegrityError on every retry -> the pk fallback
            code = f"{prefix}{ot['id']:05d}"
        return code

    def _register_code(self, code: str, ot_id: int) -> None:
        self.ots[ot_id]["codigo_de_orden"] = code
        self._codes[code] = ot_id
        prefix, number = self._otnp_parts(code)
        if prefix is not None:
            self._otnp_numbers.setdefault(prefix, set()).add(number)
            self._otnp_max[prefix] = max(self._otnp_max.get(prefix, 0), number)

    def _unregister_code(self, code: str | None) -> None:
        if not code:
            return
        self._codes.pop(code, None)
        prefix, number = self._otnp_parts(code)
        if prefix is None:
            return
        numbers = self._otnp_numbers.get(prefix, set())
        numbers.discard(number)
        if self._otnp_max.get(prefix) == number:
            self._otnp_max[prefix] = max(numbers, default=0)

    @staticmethod
    def _otnp_parts(code: str) -> tuple[str | None, int]:
        parts = code.split("-")
        if len(parts) == 3 and parts[0] == "OTNP" and parts[2].isdigit():
            return f"OTNP-{parts[1]}-", int(parts[2])
        return None, 0

    def _save_ot(self, ot: Record, changes: dict[str, Any], *, bump: bool = True) -> None:
        """`ot.save()` (bump=True: auto_now moves) or `save(update_fields=...)` (bump=False)."""
        previous = ot["estado"]
        if "codigo_de_orden" in changes and changes["codigo_de_orden"] != ot["codigo_de_orden"]:
            new_code = changes["codigo_de_orden"]
            if new_code and new_code in self._codes:
                raise ValueError(f"codigo_de_orden {new_code!r} already exists (UNIQUE)")
            self._unregister_code(ot["codigo_de_orden"])
            ot["codigo_de_orden"] = None
            if new_code:
                self._register_code(new_code, ot["id"])
            changes = {k: v for k, v in changes.items() if k != "codigo_de_orden"}
        ot.update(changes)
        if bump:
            ot["actualizado_en"] = self._now()
        self._ot_post_save(ot, previous)

    def _ot_post_save(self, ot: Record, previous_estado: str) -> None:
        """Stand-in for the OT post_save signal (§3.11): a change to REALIZADA notifies."""
        if ot["estado"] == "REALIZADA" and previous_estado != "REALIZADA":
            codigo = ot["codigo_de_orden"] or f"OT #{ot['id']}"
            # inferred: message text and recipients (supervisor and lead technician)
            for user_id in dict.fromkeys((ot["supervisor_id"], ot["tecnico_id"])):
                if user_id is not None and user_id in self._users_by_id:
                    self.add_notification(
                        user_id, f"La orden {codigo} fue marcada como Realizada.", "SUCCESS"
                    )

    def _delete_ots(self, ot_ids: Iterable[int]) -> int:
        """Hard delete with the cascades of §3.1 (cierre, files, materiales utilizados)."""
        doomed = {i for i in ot_ids if i in self.ots}
        for ot_id in doomed:
            self._unregister_code(self.ots.pop(ot_id)["codigo_de_orden"])
        if doomed:
            for reg_id in [
                r for r, m in self.materiales_utilizados.items() if m["ot_id"] in doomed
            ]:
                del self.materiales_utilizados[reg_id]
        return len(doomed)

    def _close(
        self,
        ot: Record,
        fecha_inicio: datetime,
        fecha_fin: datetime,
        horas_hombre: float,
        comentarios: Any,
        tecnico_id: int | None,
    ) -> None:
        """CierreOrdenTrabajo.objects.create: the closure's save() and post_save (§3.2, §3.11)."""
        ot["cierre"] = {
            "fecha_inicio_real": fecha_inicio,
            "fecha_fin_real": fecha_fin,
            "horas_hombre": horas_hombre,
            "comentarios": comentarios,
            "tecnico_id": tecnico_id,
            "creado_en": self._now(),
        }
        if ot["estado"] != "REALIZADA":
            # §2.2 / §3.2: save(update_fields=['estado','fecha_ejecucion']) -> actualizado_en kept
            self._save_ot(ot, {"estado": "REALIZADA", "fecha_ejecucion": fecha_fin}, bump=False)
        aviso = self.avisos.get(ot["aviso_id"]) if ot["aviso_id"] is not None else None
        if aviso is not None:
            # §3.11 the closure closes the linked aviso.
            # inferred: fecha_cierre = now; diagnostico/acciones take the comments when empty
            aviso["estado"] = "CERRADO"
            aviso["fecha_cierre"] = self._now()
            aviso["cerrado_por_id"] = tecnico_id
            aviso["diagnostico"] = aviso["diagnostico"] or comentarios
            aviso["acciones"] = aviso["acciones"] or comentarios
            aviso["actualizado_en"] = self._now()

    # -- public helpers (tests, seeds, benchmarks) ---------------------------------------------
    def create_ot(self, **fields: Any) -> Record:
        """Create an OT the way the UI/admin or a routine would: any tipo/estado, next id, code.

        Accepts the internal field names (datetimes may be ISO strings; naive means server
        time), `rutina="<name>"` as a shortcut and `id=` (above the sequence) for seeding gaps.
        """
        with self.lock:
            requested_id = fields.pop("id", None)
            cleaned = self._clean_ot_fields(fields)
            if requested_id is not None:
                cleaned["id"] = requested_id
            return self._insert_ot(cleaned)

    def update_ot(self, ot_id: int, **fields: Any) -> Record:
        """A plain save() from the admin: applies `fields` and bumps actualizado_en."""
        with self.lock:
            ot = self.ots[ot_id]
            cleaned = self._clean_ot_fields(fields)
            explicit_stamp = cleaned.pop("actualizado_en", None)
            self._save_ot(ot, cleaned)
            if explicit_stamp is not None:
                ot["actualizado_en"] = explicit_stamp
            return ot

    def delete_ot(self, ot_id: int) -> None:
        with self.lock:
            if ot_id not in self.ots:
                raise KeyError(f"no OT {ot_id}")
            self._delete_ots([ot_id])

    def close_ot(
        self,
        ot_id: int,
        *,
        fecha_inicio: datetime | str,
        fecha_fin: datetime | str,
        comentarios: str = "",
        horas_hombre: float = 0.0,
        tecnico_id: int | None = None,
    ) -> None:
        """Same effect as `api/cerrar-ot` (naive datetimes are server time)."""
        with self.lock:
            ot = self.ots[ot_id]
            if ot["cierre"] is not None:
                raise ValueError("Esta orden ya tiene un cierre registrado.")
            start, end = self._to_utc(fecha_inicio), self._to_utc(fecha_fin)
            assert start is not None and end is not None
            self._close(ot, start, end, float(horas_hombre), comentarios, tecnico_id)

    def create_aviso(self, **fields: Any) -> Record:
        """An aviso as the admin or the mobile form creates it (ubicacion falls back to the
        activo's; descripcion is required)."""
        with self.lock:
            aviso = _blank_aviso()
            aviso.update(self._clean_aviso_fields(fields))
            if aviso["ubicacion_id"] is None and aviso["activo_id"] in self.activos:
                aviso["ubicacion_id"] = self.activos[aviso["activo_id"]]["ubicacion_id"]
            if aviso["ubicacion_id"] is None:
                raise ValueError("an aviso needs a ubicacion (NOT NULL)")
            if not aviso["descripcion"]:
                raise ValueError("an aviso needs a descripcion")
            return self._insert_aviso(aviso)

    def update_aviso(self, aviso_id: int, **fields: Any) -> Record:
        with self.lock:
            aviso = self.avisos[aviso_id]
            cleaned = self._clean_aviso_fields(fields)
            explicit_stamp = cleaned.pop("actualizado_en", None)
            aviso.update(cleaned)
            aviso["actualizado_en"] = explicit_stamp or self._now()
            return aviso

    def add_material_usage(
        self,
        ot_id: int,
        material_id: int,
        cantidad: Any,
        *,
        comentario: str = "",
        activo_id: int | None = None,
        registrado_por: int | None = None,
        fecha_registro: datetime | str | None = None,
    ) -> Record:
        """A MaterialUtilizadoOT row (does not touch the OT's actualizado_en, §5)."""
        with self.lock:
            if ot_id not in self.ots:
                raise KeyError(f"no OT {ot_id}")
            if material_id not in self.materials:
                raise KeyError(f"no material {material_id}")
            if activo_id is not None and activo_id not in self.activos:
                raise KeyError(f"no activo {activo_id}")
            return self._insert_usage(
                ot_id,
                material_id,
                activo_id,
                self._db_decimal(cantidad),
                comentario,
                registrado_por,
                self._to_utc(fecha_registro) or self._now(),
            )

    def expire_all_sessions(self) -> None:
        with self.lock:
            self._sessions.clear()

    # =========================================================================================
    # Avisos and materials: model layer
    # =========================================================================================
    _AVISO_DATETIMES = ("creado_en", "fecha_cierre", "actualizado_en")

    def _clean_aviso_fields(self, fields: dict[str, Any]) -> dict[str, Any]:
        fields = dict(fields)
        unknown = set(fields) - AVISO_FIELDS
        if unknown:
            raise ValueError(f"unknown aviso field(s): {', '.join(sorted(unknown))}")
        for key, choices in (
            ("estado", AVISO_ESTADOS),
            ("prioridad", PRIORIDADES),
            ("tipo", AVISO_TIPOS),
        ):
            if key in fields and fields[key] not in choices:
                raise ValueError(f"{key} {fields[key]!r} is not one of {', '.join(choices)}")
        for key in self._AVISO_DATETIMES:
            if key in fields:
                fields[key] = self._to_utc(fields[key])
        return fields

    def _insert_aviso(self, aviso: Record) -> Record:
        now = self._now()
        aviso["id"] = self._next_id("aviso")
        aviso["creado_en"] = aviso["creado_en"] or now  # default=timezone.now (editable)
        aviso["actualizado_en"] = aviso["actualizado_en"] or now
        self.avisos[aviso["id"]] = aviso
        return aviso

    @staticmethod
    def _db_decimal(value: Any) -> Decimal:
        """numeric(12,2): PostgreSQL rounds half away from zero and rejects >= 10**10."""
        number = value if isinstance(value, Decimal) else Decimal(str(value))
        if not number.is_finite():
            raise InvalidOperation(f"{value!r} is not a finite number")
        number = number.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        if abs(number) >= Decimal(10) ** 10:
            raise DatabaseError("numeric field overflow")
        return number

    def _insert_usage(
        self,
        ot_id: int,
        material_id: int,
        activo_id: int | None,
        cantidad: Decimal,
        comentario: Any,
        registrado_por: int | None,
        fecha: datetime,
    ) -> Record:
        record = {
            "id": self._next_id("material_utilizado"),
            "ot_id": ot_id,
            "material_id": material_id,
            "activo_id": activo_id,
            "cantidad": cantidad,
            "comentario": comentario,
            "registrado_por": registrado_por,
            "fecha_registro": fecha,
        }
        self.materiales_utilizados[record["id"]] = record
        return record

    # =========================================================================================
    # Rendering
    # =========================================================================================
    def ruta_completa(self, ubicacion_id: int | None) -> str | None:
        """Ubicacion.get_ruta_completa(): "Root > ... > Leaf"."""
        names: list[str] = []
        seen: set[int] = set()
        current = self.ubicaciones.get(ubicacion_id) if ubicacion_id is not None else None
        if current is None:
            return None
        while current is not None and current["id"] not in seen:
            seen.add(current["id"])
            names.append(current["nombre"])
            parent = current.get("parent_id")
            current = self.ubicaciones.get(parent) if parent is not None else None
        return " > ".join(reversed(names))

    def _ubicacion_nombre(self, ubicacion_id: int | None) -> str | None:
        ubi = self.ubicaciones.get(ubicacion_id) if ubicacion_id is not None else None
        return ubi["nombre"] if ubi else None

    def _tecnico_puesto_str(self, puesto_id: int | None) -> str | None:
        """TecnicoPuesto.__str__ (models.py), including its `- None` when the user has no puesto."""
        tp = self.tecnicos_puesto.get(puesto_id) if puesto_id is not None else None
        if tp is None:
            return None
        user = self.user_by_id(tp.get("user_id"))
        if user is not None:
            return f"{_name_or_username(user)} - {tp.get('puesto')}"
        return f"{tp['nombre']} {tp['apellido']} - {tp.get('puesto') or 'Sin Puesto'}"

    def _activos_of(self, ot: Record) -> list[Record]:
        return [self.activos[a] for a in ot["activos"] if a in self.activos]

    def render_detail(self, ot: Record) -> dict[str, Any]:
        """The `ot` object of `api/ot/<pk>/detalle/` (§2.1, newest api.py)."""
        rutina = self.rutinas.get(ot["rutina_id"]) if ot["rutina_id"] is not None else None
        if rutina is not None:
            rutina_text = rutina["nombre"]
        elif ot["aviso_id"] is not None and ot["aviso_id"] in self.avisos:
            rutina_text = f"Aviso #{ot['aviso_id']}"
        else:
            rutina_text = "OT Correctiva"
        empresa = self.empresas.get(ot["empresa_responsable"])
        return {
            "id": ot["id"],
            "codigo": ot["codigo_de_orden"] or f"OT #{ot['id']}",
            "tipo": _label(TIPOS, ot["tipo"]),
            "tipo_raw": ot["tipo"],
            "prioridad": _label(PRIORIDADES, ot["prioridad"]),
            "prioridad_raw": ot["prioridad"],
            "estado": _label(ESTADOS, ot["estado"]),
            "rutina": rutina_text,
            "rutina_id": ot["rutina_id"],
            "ubicacion": self.ruta_completa(ot["ubicacion_id"]) or "No especificada",
            "ubicacion_id": ot["ubicacion_id"],
            "tecnico": _name_or_username(self.user_by_id(ot["tecnico_id"])),
            "tecnico_puesto": self._tecnico_puesto_str(ot["tecnico_puesto_id"]),
            "empresa": empresa["nombre"] if empresa else None,
            "inicio": self._fmt(ot["inicio_programado"], "%d/%m/%Y %H:%M", "Sin fecha"),
            "fin": self._fmt(ot["fin_programado"], "%d/%m/%Y %H:%M", "Sin fecha"),
            "descripcion": ot["descripcion_corta"] or "",
            "notas": ot["notas"] or "",
            "activos": [
                {"id": a["id"], "nombre": a["nombre"], "codigo": a["codigo_interno"]}
                for a in self._activos_of(ot)
            ],
            "status_color": None,  # §2.1: get_status_color() has no return statement
            "raw_status": ot["estado"],
            "status_list": [{"id": k, "label": v} for k, v in ESTADOS.items()],
            "archivos": [
                {k: a.get(k) for k in ("id", "nombre", "tipo", "url", "momento")}
                for a in ot["archivos"]
            ],
        }

    def _serialize(self, record: Record) -> Record:
        out: Record = {}
        for key, value in record.items():
            if isinstance(value, dict):
                out[key] = self._serialize(value)
            elif isinstance(value, Decimal):
                out[key] = str(value)
            elif isinstance(value, list):
                out[key] = [self._serialize(v) if isinstance(v, dict) else v for v in value]
            else:
                out[key] = self._iso(value)
        return out

    def serialize_ot(self, ot: Record) -> Record:
        return {**self._serialize(ot), "detail": self.render_detail(ot)}

    def dump(self) -> dict[str, Any]:
        """Everything a verifier needs, datetimes as ISO UTC strings, sorted by id."""
        with self.lock:

            def rows(store: dict[int, Record]) -> list[Record]:
                return [self._serialize(store[k]) for k in sorted(store)]

            return {
                "ots": [self.serialize_ot(self.ots[k]) for k in sorted(self.ots)],
                "avisos": rows(self.avisos),
                "materiales_utilizados": rows(self.materiales_utilizados),
                "materials": rows(self.materials),
                "ubicaciones": rows(self.ubicaciones),
                "activos": rows(self.activos),
                "tecnicos_puesto": rows(self.tecnicos_puesto),
                "empresas": rows(self.empresas),
                "notifications": rows(self.notifications),
            }

    # =========================================================================================
    # Fault hooks
    # =========================================================================================
    def error_response(self, status: int, request: Request) -> Response:
        if status == 500:
            return Response(SERVER_ERROR_HTML, status=500, content_type="text/html; charset=utf-8")
        if status == 502:
            return Response(PROXY_HTML_ERROR, status=502, content_type="text/html")
        if status == 503:
            return Response(NGINX_503_HTML, status=503, content_type="text/html")
        page = _NGINX_PAGE.format(status=f"{status} Error")
        return Response(page, status=status, content_type="text/html")

    def rate_limited_response(self, request: Request) -> Response:
        return Response(
            NGINX_429_HTML, status=429, content_type="text/html", headers={"Retry-After": "1"}
        )

    def expire_session(self, request: Request) -> None:
        with self.lock:
            key = request.cookies.get("sessionid")
            if key:
                self._sessions.pop(key, None)

    def _maybe_corrupt_detail(self, detail: dict[str, Any]) -> dict[str, Any]:
        """Malformed-record fault: one garbage field in a served detail (never in state)."""
        if not self.faults.chance(self.faults.config.malformed_record_rate):
            return detail
        key, value = self.faults.choice(list(DETAIL_CORRUPTIONS))
        self.faults.counts["malformed_record"] += 1
        return {**detail, key: value}

    # =========================================================================================
    # Request pipeline: URL resolution, sessions, CSRF middleware, decorators, view
    # =========================================================================================
    def handle(self, request: Request) -> Response:
        with self.lock:
            response = self._handle_locked(request)
        # SecurityMiddleware / XFrameOptionsMiddleware headers every Django answer carries
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        return response

    def _resolve(self, path: str) -> tuple[Route, tuple[str, ...]] | None:
        for route in ROUTES:
            match = route.pattern.match(path)
            if match:
                return route, match.groups()
        return None

    def _handle_locked(self, request: Request) -> Response:
        resolved = self._resolve(request.path)
        if resolved is None:
            if not request.path.endswith("/") and self._resolve(request.path + "/"):
                # CommonMiddleware APPEND_SLASH (DEBUG=False: POSTs are redirected too)
                return Response(
                    status=301, headers={"Location": self._full_path(request, slash=True)}
                )
            return self._html(NOT_FOUND_HTML, 404)
        route, args = resolved
        request.get_data()  # cache the body: both the form parser and json.loads may read it
        ctx = self._context(request)
        try:
            response = self._csrf_reject(ctx, route)
            if response is None:
                response = self._run_guards(ctx, route)
            if response is None:
                view: Callable[..., Response] = getattr(self, route.view)
                response = view(ctx, *(int(a) for a in args))
        except Http404Error:
            response = self._html(NOT_FOUND_HTML, 404)
        except Exception:  # Django's handler500 for anything a view did not catch
            log.debug("unhandled error in %s", route.view, exc_info=True)
            response = self._html(SERVER_ERROR_HTML, 500)
        self._finish(ctx, response)
        return response

    def _context(self, request: Request) -> _Ctx:
        user, key = self._session_user(request)
        raw = request.cookies.get("csrftoken")
        cookie_secret: str | None = None
        cookie_error: str | None = None
        if raw is not None:
            cookie_error = csrf_format_error(raw)
            if cookie_error is None:
                cookie_secret = _token_secret(raw)
        ctx = _Ctx(request, user, key, cookie_secret, cookie_error, cookie_secret)
        if cookie_error is not None:
            # CsrfViewMiddleware.process_request replaces an unusable cookie
            ctx.csrf_secret = ctx.set_csrf = new_csrf_secret()
        return ctx

    def _session_user(self, request: Request) -> tuple[Record | None, str | None]:
        key = request.cookies.get("sessionid")
        session = self._sessions.get(key) if key else None
        if session is None:
            return None, None
        if session.expires_at <= time.monotonic():
            del self._sessions[key]  # type: ignore[arg-type]
            return None, None
        user = self._users_by_id.get(session.user_id)
        if user is None or not user["is_active"]:
            return None, key
        return user, key

    def _finish(self, ctx: _Ctx, response: Response) -> None:
        if ctx.set_session is not None:
            response.set_cookie(
                "sessionid",
                ctx.set_session,
                max_age=max(1, math.ceil(self.session_ttl)),
                path="/",
                httponly=True,
                samesite="Lax",
            )
        elif ctx.clear_session:
            response.delete_cookie("sessionid", path="/", samesite="Lax")
        if ctx.set_csrf is not None:
            response.set_cookie(
                "csrftoken", ctx.set_csrf, max_age=CSRF_COOKIE_AGE, path="/", samesite="Lax"
            )
        if ctx.session_key or ctx.set_session:
            response.vary.add("Cookie")
        for name, value in ctx.extra_headers.items():
            response.headers[name] = value

    # -- CSRF middleware (§1.3) -----------------------------------------------------------------
    def _csrf_reject(self, ctx: _Ctx, route: Route) -> Response | None:
        """CsrfViewMiddleware.process_view: runs before every decorator of the view."""
        if ctx.method in ("GET", "HEAD", "OPTIONS", "TRACE") or route.csrf_exempt:
            return None
        reason = self._csrf_origin_reason(ctx) or self._csrf_token_reason(ctx)
        if reason is None:
            return None
        log.debug("CSRF rejected %s %s: %s", ctx.method, ctx.request.path, reason)
        extra = _CSRF_NO_COOKIE_HTML if reason == "CSRF cookie not set." else ""
        return self._html(CSRF_FAILURE_HTML.format(extra=extra), 403)

    def _request_origin(self, ctx: _Ctx) -> tuple[str, str]:
        """(scheme, host) as Django sees them behind the proxy (SECURE_PROXY_SSL_HEADER,
        USE_X_FORWARDED_HOST)."""
        headers = ctx.request.headers
        secure = headers.get("X-Forwarded-Proto", "").lower() == "https"
        scheme = "https" if secure else ctx.request.scheme
        host = headers.get("X-Forwarded-Host") or headers.get("Host") or ctx.request.host
        return scheme, host.split(",")[0].strip()

    @staticmethod
    def _trusted(origin: str) -> bool:
        if origin in TRUSTED_ORIGINS:
            return True
        parts = urlsplit(origin)
        for trusted in TRUSTED_ORIGINS:
            t = urlsplit(trusted)
            if t.netloc.startswith("*.") and parts.scheme == t.scheme:
                suffix = t.netloc[1:]
                if parts.netloc.endswith(suffix) or parts.netloc == suffix[1:]:
                    return True
        return False

    def _csrf_origin_reason(self, ctx: _Ctx) -> str | None:
        scheme, host = self._request_origin(ctx)
        origin = ctx.request.headers.get("Origin")
        if origin is not None:
            if origin == f"{scheme}://{host}" or self._trusted(origin):
                return None
            return f"Origin checking failed - {origin} does not match any trusted origins."
        if scheme != "https":
            return None  # §1.3: plain HTTP has no Referer check
        referer = ctx.request.headers.get("Referer")
        if not referer:
            return "Referer checking failed - no Referer."
        parts = urlsplit(referer)
        if not parts.scheme or not parts.netloc:
            return "Referer checking failed - Referer is malformed."
        if parts.scheme != "https":
            return "Referer checking failed - Referer is insecure while host is secure."
        if parts.netloc == host or self._trusted(f"{parts.scheme}://{parts.netloc}"):
            return None
        return f"Referer checking failed - {referer} does not match any trusted origins."

    def _csrf_token_reason(self, ctx: _Ctx) -> str | None:
        if ctx.cookie_error is not None:
            return f"CSRF cookie {ctx.cookie_error}."
        if ctx.cookie_secret is None:
            return "CSRF cookie not set."
        token = ""
        if ctx.method == "POST":
            token = ctx.request.form.get("csrfmiddlewaretoken", "")
        source = "POST"
        if token == "":
            header = ctx.request.headers.get("X-CSRFToken")
            if header is None:
                return "CSRF token missing."
            token, source = header, "X-CSRFToken"
        problem = csrf_format_error(token)
        if problem is not None:
            return f"CSRF token from {source} {problem}."
        if not secrets.compare_digest(_token_secret(token), ctx.cookie_secret):
            return f"CSRF token from {source} incorrect."
        return None

    def get_token(self, ctx: _Ctx) -> str:
        """django.middleware.csrf.get_token: a masked token; the cookie is (re)sent."""
        if ctx.csrf_secret is None:
            ctx.csrf_secret = new_csrf_secret()
        ctx.set_csrf = ctx.csrf_secret
        return mask_csrf_secret(ctx.csrf_secret)

    # -- decorators ------------------------------------------------------------------------------
    def _run_guards(self, ctx: _Ctx, route: Route) -> Response | None:
        user = ctx.user
        for guard in route.guards:
            if guard == "staff":
                if user is None or not user["is_staff"]:
                    return self._redirect_to_login(ctx)
            elif guard == "login":
                if user is None:
                    return self._redirect_to_login(ctx)
            elif guard.startswith("section:"):
                if user is None or guard.split(":", 1)[1] not in user["sections"]:
                    return self._redirect(MOBILE_DASHBOARD)
            elif guard.startswith("methods:"):
                allowed = guard.split(":", 1)[1].split(",")
                if ctx.method not in allowed:
                    # require_http_methods: HttpResponseNotAllowed, empty body
                    return Response(
                        b"",
                        status=405,
                        headers={"Allow": ", ".join(allowed)},
                        content_type="text/html; charset=utf-8",
                    )
        return None

    @staticmethod
    def _full_path(request: Request, *, slash: bool = False) -> str:
        path = quote(request.path, safe="/:@&+$,-_.!~*'()")
        if slash:
            path += "/"
        query = request.query_string.decode("latin-1")
        return f"{path}?{query}" if query else path

    def _redirect_to_login(self, ctx: _Ctx) -> Response:
        """user_passes_test -> redirect_to_login: next is the full path, '/' left unescaped."""
        next_value = quote(self._full_path(ctx.request), safe="/")
        return self._redirect(f"{LOGIN_PATH}?next={next_value}")

    # -- response helpers ----------------------------------------------------------------------
    @staticmethod
    def _json(data: Any, status: int = 200) -> Response:
        """JsonResponse: DjangoJSONEncoder keeps ensure_ascii=True."""
        return Response(json.dumps(data), status=status, content_type="application/json")

    def _error(self, message: str, status: int) -> Response:
        return self._json({"status": "error", "message": message}, status)

    @staticmethod
    def _html(body: str, status: int = 200) -> Response:
        return Response(body, status=status, content_type="text/html; charset=utf-8")

    @staticmethod
    def _redirect(location: str, status: int = 302) -> Response:
        return Response(
            b"",
            status=status,
            headers={"Location": location},
            content_type="text/html; charset=utf-8",
        )

    def _page(self, title: str, body: str) -> Response:
        page = (
            '<!DOCTYPE html>\n<html lang="es">\n<head><meta charset="utf-8">'
            f"<title>{html.escape(title)} | Softcom</title></head>\n"
            f"<body>\n{body}\n</body>\n</html>\n"
        )
        return self._html(page)

    @staticmethod
    def _body_json(ctx: _Ctx) -> Any:
        return json.loads(ctx.request.get_data())

    @staticmethod
    def _get_or_404(store: dict[int, Record], pk: Any, model: str) -> Record:
        record = store.get(_pk(pk))
        if record is None:
            raise Http404Error(f"No {model} matches the given query.")
        return record

    @staticmethod
    def _get(store: dict[int, Record], pk: Any, model: str) -> Record:
        record = store.get(_pk(pk))
        if record is None:
            raise DoesNotExistError(f"{model} matching query does not exist.")
        return record

    @staticmethod
    def _first(store: dict[int, Record], pk: Any) -> Record | None:
        return store.get(_pk(pk))

    # =========================================================================================
    # Views: admin and app shells
    # =========================================================================================
    def view_admin_login(self, ctx: _Ctx) -> Response:
        """Jazzmin-styled admin login (§1.4): staff only, CSRF checked by the middleware."""
        if ctx.method in ("GET", "HEAD"):
            if ctx.user is not None and ctx.user["is_staff"]:
                return self._redirect("/admin/")  # AdminSite.login: already logged in
            return self._login_page(ctx, ctx.request.args.get("next", "/admin/"), errors=[])
        if ctx.method != "POST":
            return Response(
                b"",
                status=405,
                headers={"Allow": "GET, POST, HEAD, OPTIONS"},
                content_type="text/html; charset=utf-8",
            )
        form = ctx.request.form
        username, password = form.get("username", ""), form.get("password", "")
        next_value = form.get("next") or ctx.request.args.get("next", "")
        if not username or not password:
            return self._login_page(ctx, next_value, errors=[FIELD_REQUIRED], username=username)
        user = self.users.get(username)
        if (
            user is None
            or not secrets.compare_digest(user["password"].encode(), password.encode())
            or not user["is_active"]
            or not user["is_staff"]
        ):
            return self._login_page(ctx, next_value, errors=[LOGIN_ERROR], username=username)
        # django.contrib.auth.login(): new session key, rotated CSRF secret
        if ctx.session_key:
            self._sessions.pop(ctx.session_key, None)
        key = "".join(secrets.choice(_SESSION_KEY_CHARS) for _ in range(32))
        self._sessions[key] = _Session(user["id"], time.monotonic() + self.session_ttl)
        ctx.set_session = key
        ctx.csrf_secret = ctx.set_csrf = new_csrf_secret()
        return self._redirect(self._safe_next(ctx, next_value) or LOGIN_REDIRECT_URL)

    def _safe_next(self, ctx: _Ctx, target: str) -> str | None:
        """url_has_allowed_host_and_scheme: relative paths or this very host."""
        if not target or target.startswith(("//", "/\\")) or "\\" in target[:2]:
            return None
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target if target.startswith("/") else None
        _, host = self._request_origin(ctx)
        return target if parts.scheme in ("http", "https") and parts.netloc == host else None

    def _login_page(
        self, ctx: _Ctx, next_value: str, *, errors: list[str], username: str = ""
    ) -> Response:
        token = self.get_token(ctx)
        error_html = "".join(f'<p class="errornote">{html.escape(e)}</p>\n' for e in errors)
        body = f"""<div class="login-box">
<div class="login-logo"><h1>Softcom</h1><p>Administración del sitio</p></div>
<div class="card"><div class="card-body login-card-body">
{error_html}<form action="{LOGIN_PATH}" method="post" id="login-form">\
<input type="hidden" name="csrfmiddlewaretoken" value="{token}">
<input type="text" name="username" value="{html.escape(username)}" autofocus \
autocapitalize="none" autocomplete="username" maxlength="150" required id="id_username">
<input type="password" name="password" autocomplete="current-password" required id="id_password">
<input type="hidden" name="next" value="{html.escape(next_value)}">
<button type="submit" class="btn btn-primary btn-block">Log in</button>
</form></div></div></div>"""
        return self._page("Log in", body)

    def view_admin_logout(self, ctx: _Ctx) -> Response:
        if ctx.method == "OPTIONS":
            return Response(b"", headers={"Allow": "POST, OPTIONS"})
        if ctx.session_key:
            self._sessions.pop(ctx.session_key, None)
        ctx.clear_session, ctx.session_key = True, None
        return self._page("Logged out", "<h1>Logged out</h1><p>Thanks for spending time today.</p>")

    def view_admin_index(self, ctx: _Ctx) -> Response:
        return self._page("Site administration", "<h1>Site administration</h1>")

    def view_app_dashboard(self, ctx: _Ctx) -> Response:
        name = html.escape(_name_or_username(ctx.user) or "")
        return self._page("Inicio", f"<h1>Bienvenido, {name}</h1>")

    # =========================================================================================
    # Views: §2.1 search and detail
    # =========================================================================================
    def view_ot_detail(self, ctx: _Ctx, pk: int) -> Response:
        ot = self._get_or_404(self.ots, pk, "OrdenTrabajo")  # outside any try: HTML 404
        detail = self._maybe_corrupt_detail(self.render_detail(ot))
        return self._json({"status": "success", "ot": detail})

    def _ot_order_key(self, ot: Record) -> tuple[Any, ...]:
        """Meta ordering ['inicio_programado', 'ubicacion'] (inferred: id breaks ties)."""
        return (ot["inicio_programado"], _asc_nulls_last(ot["ubicacion_id"]), ot["id"])

    def _ot_matches(
        self, ot: Record, q: str, *, rutina: bool = False, activos: bool = True
    ) -> bool:
        if q in str(ot["id"]) or _icontains(q, ot["codigo_de_orden"]):
            return True
        if _icontains(q, ot["descripcion_corta"]):
            return True
        if _icontains(q, self._ubicacion_nombre(ot["ubicacion_id"])):
            return True
        rec = self.rutinas.get(ot["rutina_id"]) if rutina else None
        if rec is not None and _icontains(q, rec["nombre"]):
            return True
        if activos:
            for activo in self._activos_of(ot):
                if _icontains(q, activo["nombre"]) or _icontains(q, activo["codigo_interno"]):
                    return True
        return False

    def view_search_ordenes(self, ctx: _Ctx) -> Response:
        q = ctx.request.args.get("q", "").strip()
        if not q:
            return self._json({"results": []})
        needle = q.lower()
        hits = sorted(
            (ot for ot in self.ots.values() if self._ot_matches(ot, needle)),
            key=self._ot_order_key,
        )[:30]
        results = []
        for ot in hits:
            lugar = self._ubicacion_nombre(ot["ubicacion_id"]) or "Sin Ubicación"
            desc = ot["descripcion_corta"] or f"OT #{ot['id']}"
            codigo = ot["codigo_de_orden"] or ot["id"]
            estado = _label(ESTADOS, ot["estado"])
            results.append({"id": ot["id"], "text": f"OT #{codigo} - [{estado}] {lugar} - {desc}"})
        return self._json({"results": results})

    def view_ordenes_hoy(self, ctx: _Ctx) -> Response:
        """code: api_ordenes_hoy.  'today' is the UTC date of timezone.now(), while the
        `inicio_programado__date` lookup compares the TIME_ZONE date (inferred from Django)."""
        today = self._now().astimezone(UTC).date()
        q = ctx.request.args.get("q", "").strip()
        tipo = ctx.request.args.get("tipo", "").strip()
        specific = bool(re.match(r"^[\d\-]+$", q)) if q else False
        needle = q.lower()
        if specific:
            rows = [
                ot
                for ot in self.ots.values()
                if needle in str(ot["id"]) or _icontains(needle, ot["codigo_de_orden"])
            ]
            # code: order_by('-inicio_programado') (inferred: -id breaks ties)
            rows.sort(key=lambda ot: (ot["inicio_programado"], ot["id"]), reverse=True)
        else:
            rows = [
                ot
                for ot in self.ots.values()
                if ot["tipo"] == "NO_PROGRAMADA"
                or (
                    ot["estado"] in ACTIVE_ESTADOS
                    and self._local_date(ot["inicio_programado"]) == today
                )
            ]
            if q:
                rows = [
                    ot for ot in rows if self._ot_matches(ot, needle, rutina=True, activos=False)
                ]
            if tipo:
                rows = [ot for ot in rows if ot["tipo"] == tipo]
            rows.sort(key=lambda ot: (ot["inicio_programado"], ot["id"]))
        result = [self._ordenes_hoy_item(ot, today) for ot in rows[:20]]
        return self._json(
            {"ots": result, "total": len(result), "can_delete": bool(ctx.user["is_superuser"])}
        )

    def _ordenes_hoy_item(self, ot: Record, today: date) -> dict[str, Any]:
        rutina = self.rutinas.get(ot["rutina_id"]) if ot["rutina_id"] is not None else None
        inicio = ot["inicio_programado"]
        return {
            "id": ot["id"],
            "codigo": ot["codigo_de_orden"] or f"OT #{ot['id']}",
            "descripcion": rutina["nombre"]
            if rutina
            else (ot["descripcion_corta"] or "OT Correctiva"),
            "ubicacion": self._ubicacion_nombre(ot["ubicacion_id"]) or "",
            "tecnico": _name_or_username(self.user_by_id(ot["tecnico_id"])) or "N/A",
            "estado": _label(ESTADOS, ot["estado"]),
            "estado_class": str(ot["estado"]).lower(),
            "hora": self._fmt(inicio, "%H:%M", ""),
            "fecha": self._fmt(inicio, "%d/%m", "") if self._db(inicio).date() != today else "",
            "tipo": ot["tipo"],
        }

    # =========================================================================================
    # Views: §2.2 updates
    # =========================================================================================
    def view_ot_update(self, ctx: _Ctx, pk: int) -> Response:
        """code: api_update_ot_status_notes; the 404 lookup sits inside `try` -> JSON 500."""
        try:
            ot = self._get_or_404(self.ots, pk, "OrdenTrabajo")
            data = self._body_json(ctx)
            nuevo_estado = data.get("estado")
            nuevas_notas = data.get("notas")
            changes: dict[str, Any] = {}
            if nuevo_estado:
                if nuevo_estado not in ESTADOS:
                    return self._error(f"Estado {nuevo_estado} no válido", 400)
                changes["estado"] = nuevo_estado
                if nuevo_estado == "EJECUCION" and not ot["fecha_ejecucion"]:
                    changes["fecha_ejecucion"] = self._now()
            if nuevas_notas is not None:
                changes["notas"] = _text(nuevas_notas)
            self._save_ot(ot, changes)
            return self._json({"status": "success", "message": "Orden actualizada correctamente"})
        except json.JSONDecodeError:
            return self._error("JSON inválido", 400)
        except Exception as exc:
            return self._error(str(exc), 500)

    def view_update_ot_date(self, ctx: _Ctx) -> Response:
        """code: api_update_ot_date; shifts by whole days of the UTC date, keeps the time."""
        try:
            data = self._body_json(ctx)
            ot_id = str(data.get("ot_id", ""))
            nueva_fecha_str = data.get("nueva_fecha")
            if not ot_id or not nueva_fecha_str:
                return self._error("Datos incompletos", 400)
            nueva = datetime.strptime(nueva_fecha_str, "%Y-%m-%d").date()
            if ot_id.startswith("proj_"):
                parts = ot_id.split("_")
                if len(parts) < 3:
                    return self._error("ID de proyección inválido", 400)
                _pk(parts[1])
                # The sandbox has no Programacion rows: Programacion.objects.get() fails -> 500
                raise DoesNotExistError("Programacion matching query does not exist.")
            ot = self.ots.get(_pk(ot_id))
            if ot is None:
                return self._error("Orden no encontrada", 404)
            delta = nueva - self._db(ot["inicio_programado"]).date()
            changes = {"inicio_programado": ot["inicio_programado"] + delta}
            if ot["fin_programado"]:
                changes["fin_programado"] = ot["fin_programado"] + delta
            self._save_ot(ot, changes)
            return self._json(
                {"status": "success", "message": f"Orden #{ot_id} movida al {nueva_fecha_str}"}
            )
        except Exception as exc:
            return self._error(str(exc), 500)

    def view_delete_ots(self, ctx: _Ctx) -> Response:
        """code: api_delete_ots; method checked by hand, only active estados are deleted."""
        if ctx.method != "POST":
            return self._error("POST req.", 405)
        try:
            raw_ids = self._body_json(ctx).get("ot_ids", [])
            ids: list[int] = []
            for rid in raw_ids:
                if isinstance(rid, str):
                    cleaned = rid.replace(",", "").replace(".", "")
                    if cleaned.isdigit():
                        ids.append(int(cleaned))
                elif isinstance(rid, int | float):
                    ids.append(int(rid))
            doomed = [i for i in ids if i in self.ots and self.ots[i]["estado"] in ACTIVE_ESTADOS]
            count = self._delete_ots(doomed)
            return self._json({"status": "success", "message": f"{count} eliminadas."})
        except Exception as exc:
            return self._error(str(exc), 500)

    def view_cerrar_ot(self, ctx: _Ctx, pk: int) -> Response:
        """code: api_cerrar_ot; unparseable dates are not caught (HTML 500)."""
        ot = self._get_or_404(self.ots, pk, "OrdenTrabajo")
        if ot["cierre"] is not None:
            return self._error("Esta orden ya tiene un cierre registrado.", 400)
        try:
            data = self._body_json(ctx)
        except json.JSONDecodeError:
            return self._error("JSON inválido.", 400)
        fecha_inicio, fecha_fin = data.get("fecha_inicio"), data.get("fecha_fin")
        if not fecha_inicio or not fecha_fin:
            return self._error("Las fechas de inicio y fin son requeridas.", 400)
        # naive values: Django stores them as TIME_ZONE wall-clock
        start = self._make_aware(datetime.strptime(fecha_inicio, "%Y-%m-%dT%H:%M"))
        end = self._make_aware(datetime.strptime(fecha_fin, "%Y-%m-%dT%H:%M"))
        horas = float(data.get("horas_hombre", 0))
        comentarios = data.get("comentarios", "")
        self._close(
            ot, start.astimezone(UTC), end.astimezone(UTC), horas, comentarios, ctx.user["id"]
        )
        return self._json({"status": "success", "message": "Orden cerrada correctamente."})

    # =========================================================================================
    # Views: §2.3 mobile
    # =========================================================================================
    def view_ot_update_ajax(self, ctx: _Ctx, pk: int) -> Response:
        """code: mobile_ot_update_ajax.  Absent fields are left alone; M2M sets are committed
        immediately, so a later error still leaves the team changed (autocommit)."""
        if ctx.method != "POST":
            return self._error("Método no permitido", 405)
        ot = self._get_or_404(self.ots, pk, "OrdenTrabajo")
        if ot["estado"] == "REALIZADA" and not ctx.is_manager:
            return self._error("No se puede modificar una orden finalizada", 400)
        form = ctx.request.form
        changes: dict[str, Any] = {}
        try:
            tecnico_id = form.get("tecnico")
            if tecnico_id:
                if tecnico_id == "none":
                    changes.update(tecnico_puesto_id=None, tecnico_id=None)
                else:
                    tp = self._first(self.tecnicos_puesto, tecnico_id)
                    if tp is not None:
                        changes.update(tecnico_puesto_id=tp["id"], tecnico_id=tp.get("user_id"))
            tecnicos_ids = form.getlist("tecnicos")
            if tecnicos_ids:
                self._set_team(ot, [t for t in tecnicos_ids if t != "none"])
            supervisor_id = form.get("supervisor")
            if supervisor_id:
                changes["supervisor_id"] = (
                    self._get(self._users_by_id, supervisor_id, "User")["id"]
                    if supervisor_id != "none"
                    else None
                )
            empresa_id = form.get("empresa_responsable")
            if empresa_id:
                changes["empresa_responsable"] = (
                    self._get(self.empresas, empresa_id, "Empresa")["id"]
                    if empresa_id != "none"
                    else None
                )
            ubicacion_id = form.get("ubicacion")
            if ubicacion_id:
                changes["ubicacion_id"] = (
                    self._get(self.ubicaciones, ubicacion_id, "Ubicacion")["id"]
                    if ubicacion_id != "none"
                    else None
                )
            descripcion = form.get("descripcion_detallada")
            if descripcion is not None:
                changes.update(
                    descripcion_detallada=descripcion, descripcion_corta=descripcion[:200]
                )
            for key in ("inicio_programado", "fin_programado"):
                raw = form.get(key)
                if raw:
                    value = datetime.fromisoformat(raw)
                    if value.tzinfo is None:
                        value = self._make_aware(value)
                    changes[key] = value.astimezone(UTC)
            self._save_ot(ot, changes)
            return self._json({"status": "success", "message": "Orden actualizada correctamente"})
        except Exception as exc:
            return self._error(str(exc), 400)

    def _set_team(self, ot: Record, raw_ids: list[str]) -> None:
        """colaboradores_puesto.set(ids) + tecnicos.set(their users); unknown ids violate the
        foreign key of the through table."""
        ids = [_pk(t) for t in raw_ids]
        for puesto_id in ids:
            if puesto_id not in self.tecnicos_puesto:
                raise DatabaseError(
                    'insert or update on table "mantenimiento_ordentrabajo_colaboradores_puesto" '
                    "violates foreign key constraint\n"
                    f"DETAIL:  Key (tecnicopuesto_id)=({puesto_id}) is not present in table "
                    '"mantenimiento_tecnicopuesto".'
                )
        ot["colaboradores_puesto"] = list(dict.fromkeys(ids))
        users = [self.tecnicos_puesto[i].get("user_id") for i in ot["colaboradores_puesto"]]
        ot["tecnicos"] = [u for u in users if u is not None]

    def view_crear_otnp(self, ctx: _Ctx) -> Response:
        """code: mobile_crear_otnp.  Nothing is validated beyond what the database refuses;
        aware or unparseable dates are silently replaced by the defaults."""
        if ctx.method != "POST":
            return self._crear_otnp_page(ctx)
        form = ctx.request.form
        try:
            ubi_id = form.get("ubicacion")
            prio = form.get("prioridad", "MEDIA")
            desc = form.get("descripcion", "").strip()
            tecnico_id = form.get("tecnico")
            empresa_id = form.get("empresa_responsable")
            activo_id = form.get("activo")
            ubicacion = self._get_or_404(self.ubicaciones, ubi_id, "Ubicacion") if ubi_id else None
            tp = (
                self._first(self.tecnicos_puesto, tecnico_id)
                if tecnico_id and tecnico_id != "none"
                else None
            )
            empresa = (
                self._first(self.empresas, empresa_id)
                if empresa_id and empresa_id != "none"
                else None
            )
            activo = self._first(self.activos, activo_id) if activo_id else None
            tecnico_user_id = tp.get("user_id") if tp else None
            if tecnico_user_id is None and tp is None:
                tecnico_user_id = ctx.user["id"]
            now = self._now()
            inicio = self._lenient_local(form.get("inicio_programado"), now)
            fin = self._lenient_local(form.get("fin_programado"), inicio + timedelta(hours=2))
            ot = self._insert_ot(
                {
                    "tipo": "NO_PROGRAMADA",
                    "prioridad": _char(prio, 10, "prioridad"),
                    "ubicacion_id": ubicacion["id"] if ubicacion else None,
                    "tecnico_id": tecnico_user_id,
                    "tecnico_puesto_id": tp["id"] if tp else None,
                    "empresa_responsable": empresa["id"] if empresa else None,
                    "descripcion_corta": desc[:200],
                    "descripcion_detallada": desc,
                    "estado": "PROGRAMADA",
                    "inicio_programado": inicio,
                    "fin_programado": fin,
                }
            )
            if activo is not None:
                ot["activos"] = [activo["id"]]
            tecnicos_ids = form.getlist("tecnicos")
            if tecnicos_ids:
                self._set_team(ot, [t for t in tecnicos_ids if t != "none"])
            return self._json(
                {"status": "success", "ot_id": ot["id"], "codigo": ot["codigo_de_orden"]}
            )
        except Exception as exc:
            return self._error(str(exc), 400)

    def _lenient_local(self, raw: str | None, default: datetime) -> datetime:
        """`try: make_aware(fromisoformat(raw)) except: pass` — aware input raises, so it is
        ignored like garbage."""
        if not raw:
            return default
        try:
            return self._make_aware(datetime.fromisoformat(raw)).astimezone(UTC)
        except Exception:
            return default

    def _crear_otnp_page(self, ctx: _Ctx) -> Response:
        token = self.get_token(ctx)
        ubis = sorted(
            ((self.ruta_completa(u) or "", u) for u in self.ubicaciones), key=lambda p: p[0]
        )
        options = "".join(f'<option value="{u}">{html.escape(path)}</option>' for path, u in ubis)
        prios = "".join(
            f'<option value="{k}"{" selected" if k == "MEDIA" else ""}>{v}</option>'
            for k, v in PRIORIDADES.items()
        )
        personal = "".join(
            f'<option value="{tp["id"]}">{html.escape(self._tecnico_puesto_str(tp["id"]) or "")}'
            "</option>"
            for tp in sorted(self.tecnicos_puesto.values(), key=lambda t: t["nombre"])
        )
        body = f"""<h1>Nueva OT No Programada</h1>
<form method="post" action="/mantenimiento/app/ot/crear-no-programada/">\
<input type="hidden" name="csrfmiddlewaretoken" value="{token}">
<select name="ubicacion">{options}</select>
<select name="prioridad">{prios}</select>
<select name="tecnico"><option value="none">Sin asignar</option>{personal}</select>
<textarea name="descripcion"></textarea>
<input type="datetime-local" name="inicio_programado">
<input type="datetime-local" name="fin_programado">
<button type="submit">Crear</button>
</form>"""
        return self._page("Nueva OT No Programada", body)

    def view_aviso_form(self, ctx: _Ctx, pk: int | None = None) -> Response:
        """code: mobile_crear_aviso (also the editar route).  HTML in, 302 out; validation
        errors re-render the form with status 200."""
        instance = self._get_or_404(self.avisos, pk, "Aviso") if pk is not None else None
        if instance is not None:
            activo = self.activos.get(instance["activo_id"])
        else:
            aid = ctx.request.args.get("activo")
            if ctx.method == "POST" and not aid:
                aid = ctx.request.form.get("activo")
            try:
                activo = (
                    self._first(self.activos, str(aid).replace(",", "").replace(".", ""))
                    if aid
                    else None
                )
            except ValueError:
                activo = None
        ubi_defecto = None
        uid = ctx.request.args.get("ubicacion")
        if uid:
            try:
                ubi_defecto = self._first(self.ubicaciones, uid.replace(",", "").replace(".", ""))
            except ValueError:
                pass
        if ctx.method != "POST":
            return self._aviso_form_page(ctx, instance, activo, ubi_defecto, error=None)
        form = ctx.request.form
        ubi_id = form.get("ubicacion")
        ubicacion = self._first(self.ubicaciones, ubi_id) if ubi_id else None  # ValueError: 500
        if ubicacion is None:
            ubicacion = self.ubicaciones.get(activo["ubicacion_id"]) if activo else ubi_defecto
        if ubicacion is None:
            return self._aviso_form_page(
                ctx,
                instance,
                activo,
                ubi_defecto,
                error="Debe seleccionar una ubicación para el reporte.",
            )
        data = self._aviso_form_data(form, activo, ubicacion)
        if not data["descripcion"].strip():
            return self._aviso_form_page(
                ctx,
                instance,
                activo,
                ubi_defecto,
                error="La descripción del aviso es obligatoria.",
            )
        self._aviso_form_dates(form, data, instance)
        self._aviso_db_values(data)
        if instance is not None:
            if data.get("estado") == "CERRADO" and instance["estado"] != "CERRADO":
                data["cerrado_por_id"] = ctx.user["id"]
            instance.update(data)
            instance["actualizado_en"] = self._now()
            aviso = instance
        else:
            aviso = _blank_aviso()
            aviso.update(data, solicitante_id=ctx.user["id"])
            aviso = self._insert_aviso(aviso)
        self._attach_fotos(ctx, aviso)
        if activo is not None:
            # inferred: activos:mobile_activo_detalle is routed at /activos/<pk>/
            return self._redirect(f"/activos/{activo['id']}/")
        return self._redirect(f"/mantenimiento/app/aviso/{aviso['id']}/")

    @staticmethod
    def _aviso_form_data(form: Any, activo: Record | None, ubicacion: Record) -> Record:
        """The `data` dict of mobile_crear_aviso: raw form values, checked only on save."""

        def optional(name: str) -> str | None:
            raw = form.get(name)
            return raw if raw and raw != "none" else None

        return {
            "activo_id": activo["id"] if activo else None,
            "ubicacion_id": ubicacion["id"],
            "falla_id": form.get("falla") or None,  # '' -> NULL; 'none' is not special here
            "descripcion": form.get("descripcion") or form.get("description") or "",
            "prioridad": form.get("prioridad", "MEDIA"),
            "tipo": form.get("tipo", "SOLICITUD"),
            "responsable_id": optional("responsable"),
            "departamento_id": optional("departamento"),
            "equipo_parado": form.get("equipo_parado") == "on",
        }

    def _aviso_db_values(self, data: Record) -> None:
        """What the INSERT/UPDATE would refuse (unchoiced values are stored as sent): bad ids,
        dangling foreign keys, over-long codes.  Raises -> Django's HTML 500."""
        for key, store in (
            ("falla_id", self.fallas),
            ("responsable_id", self._users_by_id),
            ("departamento_id", self.departamentos),
        ):
            if data.get(key) is not None:
                data[key] = _pk(data[key], key)
                if data[key] not in store:
                    raise DatabaseError(
                        f'insert or update on table "mantenimiento_aviso" violates foreign key '
                        f"constraint\nDETAIL:  Key ({key})=({data[key]}) is not present."
                    )
        for key, length in (("prioridad", 10), ("tipo", 15), ("estado", 10)):
            if key in data:
                data[key] = _char(data[key], length, key)

    def _aviso_form_dates(self, form: Any, data: Record, instance: Record | None) -> None:
        estado = form.get("estado")
        if estado:
            data["estado"] = estado
        elif instance is None:
            data["estado"] = "ABIERTO"
        if data.get("estado") == "CERRADO":
            data["fecha_cierre"] = self._now() if instance is not None else None
        for key in ("creado_en", "fecha_cierre"):
            raw = form.get(key)
            if raw:
                try:
                    data[key] = self._make_aware(datetime.fromisoformat(raw)).astimezone(UTC)
                except Exception:
                    if key == "fecha_cierre":
                        data[key] = None
        for key in ("diagnostico", "acciones"):
            value = form.get(key, "").strip()
            if value:
                data[key] = value

    def _attach_fotos(self, ctx: _Ctx, aviso: Record) -> None:
        fotos = ctx.request.files.getlist("fotos")
        descripciones = ctx.request.form.getlist("descripciones[]")
        foto_tipo = ctx.request.form.get("foto_tipo", "APERTURA")
        for index, upload in enumerate(fotos):
            path = f"avisos/fotos/{upload.filename or 'foto.jpg'}"
            if not aviso["foto"]:
                aviso["foto"] = f"avisos/{upload.filename or 'foto.jpg'}"
            aviso["fotos"].append(
                {
                    "id": self._next_id("foto_aviso"),
                    "foto": path,
                    "descripcion": descripciones[index] if index < len(descripciones) else "",
                    "tipo": foto_tipo,
                    "creado_en": self._now(),
                }
            )

    def _aviso_form_page(
        self,
        ctx: _Ctx,
        instance: Record | None,
        activo: Record | None,
        ubi_defecto: Record | None,
        *,
        error: str | None,
    ) -> Response:
        token = self.get_token(ctx)
        ubis = "".join(
            f'<option value="{u["id"]}"'
            f"{' selected' if ubi_defecto and ubi_defecto['id'] == u['id'] else ''}>"
            f"{html.escape(u['nombre'])}</option>"
            for u in sorted(self.ubicaciones.values(), key=lambda u: u["nombre"])
        )
        tipos = "".join(
            f'<option value="{k}">{html.escape(v)}</option>' for k, v in AVISO_TIPOS.items()
        )
        prios = "".join(f'<option value="{k}">{v}</option>' for k, v in PRIORIDADES.items())
        error_html = (
            f'<div class="alert alert-danger">{html.escape(error)}</div>\n' if error else ""
        )
        activo_html = (
            f'<input type="hidden" name="activo" value="{activo["id"]}">'
            f"<p>{html.escape(activo['nombre'])}</p>"
            if activo
            else ""
        )
        title = f"Editar AV-{instance['id']}" if instance else "Nuevo Aviso"
        body = f"""<h1>{title}</h1>
{error_html}<form method="post" enctype="multipart/form-data">\
<input type="hidden" name="csrfmiddlewaretoken" value="{token}">
{activo_html}<select name="ubicacion"><option value="">---</option>{ubis}</select>
<select name="tipo">{tipos}</select><select name="prioridad">{prios}</select>
<textarea name="descripcion"></textarea><input type="file" name="fotos" multiple>
<button type="submit">Enviar</button>
</form>"""
        return self._page(title, body)

    def view_aviso_page(self, ctx: _Ctx, pk: int) -> Response:
        """code: mobile_aviso_detalle: requester, same puesto or superuser; others go to the
        list."""
        aviso = self._get_or_404(self.avisos, pk, "Aviso")
        if not self._can_see_aviso(ctx.user, aviso):
            return self._redirect("/mantenimiento/app/avisos/")
        ubicacion = self._ubicacion_nombre(aviso["ubicacion_id"]) or ""
        body = (
            f"<h1>AV-{aviso['id']}</h1>"
            f'<p class="estado">{html.escape(_label(AVISO_ESTADOS, aviso["estado"]))}</p>'
            f'<p class="ubicacion">{html.escape(ubicacion)}</p>'
            f'<p class="descripcion">{html.escape(aviso["descripcion"])}</p>'
        )
        return self._page(f"AV-{aviso['id']}", body)

    def _puesto_of(self, user_id: int | None) -> str | None:
        for tp in self.tecnicos_puesto.values():
            if user_id is not None and tp.get("user_id") == user_id:
                return tp.get("puesto")
        return None

    def _can_see_aviso(self, user: Record, aviso: Record) -> bool:
        if user["is_superuser"] or aviso["solicitante_id"] == user["id"]:
            return True
        mine = self._puesto_of(user["id"])
        return mine is not None and mine == self._puesto_of(aviso["solicitante_id"])

    def view_mis_avisos(self, ctx: _Ctx) -> Response:
        mine = [
            a
            for a in self.avisos.values()
            if self._can_see_aviso({**ctx.user, "is_superuser": False}, a)
        ]
        mine.sort(key=lambda a: (a["creado_en"], a["id"]), reverse=True)
        items = "".join(
            f'<li><a href="/mantenimiento/app/aviso/{a["id"]}/">AV-{a["id"]}</a> '
            f"{html.escape(a['descripcion'][:60])}</li>"
            for a in mine
        )
        return self._page("Mis avisos", f"<h1>Mis avisos</h1><ul>{items}</ul>")

    # =========================================================================================
    # Views: §2.4 notifications
    # =========================================================================================
    def view_notifications(self, ctx: _Ctx) -> Response:
        unread = [
            n
            for n in self.notifications.values()
            if n["user_id"] == ctx.user["id"] and not n["leida"]
        ]
        unread.sort(key=lambda n: (n["creado_en"], n["id"]), reverse=True)
        items = [
            {
                "id": n["id"],
                "mensaje": n["mensaje"],
                "tipo": n["tipo"],
                "creado_en": self._fmt(n["creado_en"], "%H:%M:%S"),
            }
            for n in unread
        ]
        return self._json({"status": "success", "notificaciones": items})

    def view_notifications_read(self, ctx: _Ctx) -> Response:
        try:
            nid = self._body_json(ctx).get("notif_id")
            wanted = _pk(nid) if nid else None
            for n in self.notifications.values():
                if n["user_id"] != ctx.user["id"]:
                    continue
                if (wanted is not None and n["id"] == wanted) or (
                    wanted is None and not n["leida"]
                ):
                    n["leida"] = True
            return self._json({"status": "success"})
        except Exception as exc:
            return self._error(str(exc), 500)

    # =========================================================================================
    # Views: §2.7 avisos Kanban API
    # =========================================================================================
    def view_avisos_list(self, ctx: _Ctx) -> Response:
        search = ctx.request.args.get("search", "").strip().lower()
        departamento_id = ctx.request.args.get("departamento_id", "").strip()
        rows = list(self.avisos.values())
        if search:
            rows = [
                a
                for a in rows
                if _icontains(search, a["descripcion"])
                or _icontains(search, self._ubicacion_nombre(a["ubicacion_id"]))
            ]
        if departamento_id:
            wanted = _pk(departamento_id, "departamento_id")  # ValueError -> HTML 500
            rows = [a for a in rows if a["departamento_id"] == wanted]
        # order_by('-prioridad', '-creado_en'): prioridad sorts as a string (§2.7)
        rows.sort(key=lambda a: (a["prioridad"], a["creado_en"], a["id"]), reverse=True)
        first_ot = self._first_ot_by_aviso()
        data: dict[str, list[dict[str, Any]]] = {k: [] for k in AVISO_ESTADOS}
        for aviso in rows:
            if aviso["estado"] in data:
                data[aviso["estado"]].append(self._aviso_item(aviso, first_ot.get(aviso["id"])))
        return self._json({"status": "success", "data": data})

    def _first_ot_by_aviso(self) -> dict[int, Record]:
        """`aviso.ordenes.first()`: the OT model's default ordering picks the first."""
        first: dict[int, Record] = {}
        for ot in self.ots.values():
            aviso_id = ot["aviso_id"]
            if aviso_id is None:
                continue
            current = first.get(aviso_id)
            if current is None or self._ot_order_key(ot) < self._ot_order_key(current):
                first[aviso_id] = ot
        return first

    def _aviso_item(self, aviso: Record, ot: Record | None) -> dict[str, Any]:
        activo = self.activos.get(aviso["activo_id"])
        responsable = self.user_by_id(aviso["responsable_id"])
        falla = self.fallas.get(aviso["falla_id"])
        departamento = self.departamentos.get(aviso["departamento_id"])
        return {
            "id": aviso["id"],
            "titulo": f"AV-{aviso['id']}",
            "descripcion": aviso["descripcion"],
            "estado": aviso["estado"],
            "prioridad": aviso["prioridad"],
            "tipo": aviso["tipo"],
            "tipo_display": _label(AVISO_TIPOS, aviso["tipo"]),
            "ubicacion": self._ubicacion_nombre(aviso["ubicacion_id"]) or "Desconocida",
            "activo": activo["nombre"] if activo else "",
            "solicitante": _name_or_username(self.user_by_id(aviso["solicitante_id"])) or "Sistema",
            "responsable_id": responsable["id"] if responsable else None,
            "responsable_nombre": _name_or_username(responsable) or "Sin asignar",
            "creado_en": self._fmt(aviso["creado_en"], "%d/%m/%Y %H:%M"),
            "tiene_foto": bool(aviso["foto"]),
            # inferred: the storage URL of the photo (S3/MinIO in production)
            "foto_url": f"/media/{aviso['foto']}" if aviso["foto"] else None,
            "falla": falla["nombre"] if falla else "",
            "departamento_nombre": departamento["nombre"] if departamento else "General",
            "tiene_ot": ot is not None,
            "ot_id": ot["id"] if ot else None,
            "ot_codigo": ot["codigo_de_orden"] if ot else None,
        }

    def view_aviso_update(self, ctx: _Ctx, pk: int) -> Response:
        """code: api_update_aviso_estado (body parsed before the lookup; both inside try)."""
        try:
            payload = self._body_json(ctx)
            aviso = self._get_or_404(self.avisos, pk, "Aviso")
            nuevo = payload.get("estado")
            if nuevo not in AVISO_ESTADOS:
                return self._error("Estado inválido.", 400)
            changes: Record = {"estado": nuevo}
            if nuevo == "CERRADO":
                changes["fecha_cierre"] = self._now()
            elif aviso["fecha_cierre"] is not None:
                changes["fecha_cierre"] = None
            responsable_id = payload.get("responsable_id")
            if responsable_id:
                user_id = _pk(responsable_id, "responsable_id")
                if user_id not in self._users_by_id:
                    raise DatabaseError(
                        'insert or update on table "mantenimiento_aviso" violates foreign key '
                        "constraint"
                    )
                changes["responsable_id"] = user_id
            aviso.update(changes)
            aviso["actualizado_en"] = self._now()
            return self._json(
                {"status": "success", "message": f"Aviso {aviso['id']} movido a {nuevo}."}
            )
        except Exception as exc:
            return self._error(str(exc), 500)

    def view_aviso_create_ot(self, ctx: _Ctx, pk: int) -> Response:
        """code: api_aviso_create_ot."""
        try:
            payload = self._body_json(ctx)
            aviso = self._get_or_404(self.avisos, pk, "Aviso")
            if any(ot["aviso_id"] == aviso["id"] for ot in self.ots.values()):
                return self._error("Este aviso ya tiene una Orden de Trabajo asignada.", 400)
            tecnico_id = payload.get("tecnico_id")
            tecnico = self._first(self._users_by_id, tecnico_id) if tecnico_id else None
            raw_inicio = payload.get("fecha_inicio")
            if raw_inicio:
                inicio = datetime.fromisoformat(raw_inicio)
                if inicio.tzinfo is None:
                    inicio = self._make_aware(inicio)
                inicio = inicio.astimezone(UTC)
            else:
                inicio = self._now()
            prioridad = payload.get("prioridad", aviso["prioridad"])
            ot = self._insert_ot(
                {
                    "aviso_id": aviso["id"],
                    "tipo": "CORRECTIVA",
                    "prioridad": _char(prioridad, 10, "prioridad"),
                    "estado": "PROGRAMADA" if tecnico else "ESPERA",
                    "ubicacion_id": aviso["ubicacion_id"],
                    "tecnico_id": tecnico["id"] if tecnico else None,
                    "inicio_programado": inicio,
                    "fin_programado": inicio + timedelta(hours=2),
                    "descripcion_corta": f"Corr.: {aviso['descripcion'][:50]}...",
                }
            )
            if aviso["activo_id"] is not None:
                ot["activos"] = [aviso["activo_id"]]
            if aviso["estado"] == "ABIERTO":
                aviso["estado"] = "PROCESO"
                if tecnico:
                    aviso["responsable_id"] = tecnico["id"]
                aviso["actualizado_en"] = self._now()
            return self._json(
                {
                    "status": "success",
                    "message": f"Orden de Trabajo {ot['codigo_de_orden']} creada correctamente.",
                    "ot_id": ot["id"],
                    "ot_codigo": ot["codigo_de_orden"],
                }
            )
        except Exception as exc:
            return self._error(str(exc), 500)

    # =========================================================================================
    # Views: §4 inventarios
    # =========================================================================================
    def view_materiales_ot(self, ctx: _Ctx, ot_id: int) -> Response:
        """code: api_materiales_utilizados_ot (inventarios/views.py)."""
        ot = self._get_or_404(self.ots, ot_id, "OrdenTrabajo")
        if ctx.method == "GET":
            return self._json(self._materiales_payload(ot))
        if ctx.method != "POST":
            return self._error("Método no permitido", 405)
        try:
            data = self._body_json(ctx)
        except ValueError:
            return self._error("JSON inválido", 400)
        material_id, activo_id = data.get("material_id"), data.get("activo_id")
        cantidad, comentario = data.get("cantidad"), data.get("comentario", "")
        if not material_id or not cantidad:
            return self._error("material_id y cantidad son requeridos", 400)
        material = self.materials.get(_pk(material_id))  # non-numeric id: HTML 500
        if material is None:
            return self._error("Material no encontrado", 404)
        activo = None
        if activo_id:
            activo = self.activos.get(_pk(activo_id))
            if activo is None:
                return self._error("Activo no encontrado", 404)
        if self.strict_material_quantities:
            problem = self._quantity_problem(cantidad)
            if problem:
                return self._error(problem, 400)
        # code: Decimal(str(cantidad)) is not caught (garbage -> HTML 500); numeric(12,2) rounds
        stored = self._db_decimal(Decimal(str(cantidad)))
        record = self._insert_usage(
            ot["id"],
            material["id"],
            activo["id"] if activo else None,
            stored,
            comentario,
            ctx.user["id"],
            self._now(),
        )
        return self._json(
            {
                "status": "success",
                "message": (
                    f"{material['nombre']} x{cantidad} vinculado a OT {ot['codigo_de_orden']}"
                ),
                "id": record["id"],
            }
        )

    @staticmethod
    def _quantity_problem(cantidad: Any) -> str | None:
        """The validation a stricter view would apply (model: Decimal(12,2), >= 0.01)."""
        try:
            number = Decimal(str(cantidad))
        except InvalidOperation:
            return "cantidad debe ser un número"
        if not number.is_finite():
            return "cantidad debe ser un número"
        if number < Decimal("0.01"):
            return "cantidad debe ser al menos 0.01"
        exponent = number.normalize().as_tuple().exponent
        if isinstance(exponent, int) and exponent < -2:
            return "cantidad admite como máximo 2 decimales"
        return None

    def _materiales_payload(self, ot: Record) -> dict[str, Any]:
        rows = [m for m in self.materiales_utilizados.values() if m["ot_id"] == ot["id"]]

        def activo_name(row: Record) -> str | None:
            activo = self.activos.get(row["activo_id"])
            return activo["nombre"] if activo else None

        # order_by('activo__nombre', '-fecha_registro'): NULL names last (PostgreSQL ASC)
        rows.sort(key=lambda r: (r["fecha_registro"], r["id"]), reverse=True)
        rows.sort(key=lambda r: _asc_nulls_last(activo_name(r)))
        materiales = []
        for row in rows:
            material = self.materials.get(row["material_id"], {})
            activo = self.activos.get(row["activo_id"])
            registrado = self.user_by_id(row["registrado_por"])
            materiales.append(
                {
                    "id": row["id"],
                    "material_id": row["material_id"],
                    "material_nombre": material.get("nombre"),
                    "material_sku": material.get("sku"),
                    "activo_id": row["activo_id"],
                    "activo_nombre": activo["nombre"] if activo else None,
                    "activo_codigo": activo["codigo_interno"] if activo else None,
                    "cantidad": float(row["cantidad"]),
                    "comentario": row["comentario"],
                    "registrado_por": _full_name(registrado) if registrado else None,
                    "fecha": self._fmt(row["fecha_registro"], "%d/%m/%Y %H:%M"),
                }
            )
        return {
            "status": "success",
            "materiales": materiales,
            "activos_ot": [
                {"id": a["id"], "nombre": a["nombre"], "codigo": a["codigo_interno"]}
                for a in self._activos_of(ot)
            ],
            "ot_codigo": ot["codigo_de_orden"],
        }

    def view_material_delete(self, ctx: _Ctx, registro_id: int) -> Response:
        if ctx.method != "POST":
            return self._error("Método no permitido", 405)
        self._get_or_404(self.materiales_utilizados, registro_id, "MaterialUtilizadoOT")
        del self.materiales_utilizados[registro_id]
        return self._json({"status": "success", "message": "Registro eliminado"})

    def view_materials(self, ctx: _Ctx) -> Response:
        """inventarios/api_materials.py: ordered by nombre, Paginator(30).get_page()."""
        args = ctx.request.args
        query = args.get("q", "").lower()
        category = args.get("category")
        requested = self._page_request(args.get("page", "1"))
        if requested is not None and requested > 1:
            self._maybe_drift_materials()
        rows = sorted(self.materials.values(), key=lambda m: (m["nombre"], m["id"]))
        if query:
            rows = [
                m
                for m in rows
                if _icontains(query, m["nombre"])
                or _icontains(query, m["sku"])
                or _icontains(query, m["descripcion"])
            ]
        if category:
            wanted = _pk(category, "categoria_id")  # ValueError -> HTML 500
            rows = [m for m in rows if m.get("categoria_id") == wanted]
        num_pages = max(1, -(-len(rows) // 30))  # allow_empty_first_page
        if requested is None:
            number = 1  # PageNotAnInteger
        elif requested < 1 or requested > num_pages:
            number = num_pages  # EmptyPage
        else:
            number = requested
        page = rows[(number - 1) * 30 : number * 30]
        return self._json(
            {
                "results": [self._material_item(m) for m in page],
                "has_next": number < num_pages,
                "num_pages": num_pages,
                "current_page": number,
            }
        )

    @staticmethod
    def _page_request(raw: str) -> int | None:
        """Paginator.validate_number's int(): None when it is not an integer."""
        try:
            return int(raw)
        except (TypeError, ValueError):
            return None

    def _material_item(self, m: Record) -> dict[str, Any]:
        return {
            "id": m["id"],
            "nombre": m["nombre"],
            "sku": m["sku"],
            "descripcion": m["descripcion"] or "",
            "unidad": m["unidad"] or "Unidad",
            "precio_estimado": float(m["precio_estimado"]),
            "stock": float(m["stock"] or 0),
            "categoria": m["categoria"] or "General",
            "tipo_material": _label(TIPOS_MATERIAL, m["tipo_material"]),
            "image_url": _MATERIAL_IMAGE,
            "is_allowed": not m["departamentos"],
            "bodegas": sorted(set(m["bodegas"])),
        }

    def _maybe_drift_materials(self) -> None:
        """Page-drift fault: the catalogue changes between two page requests."""
        if not self.faults.chance(self.faults.config.page_drift_rate):
            return
        action = self.faults.choice(["insert", "edit", "delete"])
        used = {m["material_id"] for m in self.materiales_utilizados.values()}
        if action == "delete":
            candidates = sorted(set(self.materials) - used)
            if candidates:
                del self.materials[self.faults.choice(candidates)]
            else:
                action = "insert"
        if action == "edit" and self.materials:
            material = self.materials[self.faults.choice(sorted(self.materials))]
            material["nombre"] = "A " + material["nombre"]
            material["actualizado_en"] = self._now()
        elif action == "insert":
            serial = self._next_ids.get("material", 1)
            self.add_material(f"AAA Material nuevo {serial}", f"DRIFT-{serial}", stock=1.0)
        self.faults.counts["page_drift"] += 1

    # =========================================================================================
    # Control API (/_sim/...)
    # =========================================================================================
    def handle_control(self, request: Request, path: str) -> Response | None:
        body = request.get_json(silent=True) or {}
        parts = path.split("/")
        method = request.method
        with self.lock:
            if path == "dump" and method == "GET":
                return json_response(self.dump())
            if path == "expire-sessions" and method == "POST":
                self.expire_all_sessions()
                return json_response({"ok": True})
            if path == "ots" and method == "POST":
                return json_response(self.serialize_ot(self.create_ot(**body)), status=201)
            if parts[0] == "ots" and len(parts) >= 2 and parts[1].isdigit():
                return self._control_ot(method, int(parts[1]), parts[2:], body)
            if path == "avisos" and method == "POST":
                return json_response(self._serialize(self.create_aviso(**body)), status=201)
            if (
                parts[0] == "avisos"
                and len(parts) == 2
                and parts[1].isdigit()
                and method == "PATCH"
            ):
                aviso_id = int(parts[1])
                if aviso_id not in self.avisos:
                    return json_response({"error": f"no aviso {aviso_id}"}, status=404)
                return json_response(self._serialize(self.update_aviso(aviso_id, **body)))
            if path == "materiales-utilizados" and method == "POST":
                return self._control_material_usage(body)
        return None

    def _control_ot(self, method: str, ot_id: int, rest: list[str], body: Record) -> Response:
        if ot_id not in self.ots:
            return json_response({"error": f"no OT {ot_id}"}, status=404)
        if not rest and method == "GET":
            return json_response(self.serialize_ot(self.ots[ot_id]))
        if not rest and method == "PATCH":
            return json_response(self.serialize_ot(self.update_ot(ot_id, **body)))
        if not rest and method == "DELETE":
            self.delete_ot(ot_id)
            return json_response({"ok": True, "deleted": ot_id})
        if rest == ["close"] and method == "POST":
            try:
                self.close_ot(
                    ot_id,
                    fecha_inicio=body["fecha_inicio"],
                    fecha_fin=body["fecha_fin"],
                    comentarios=body.get("comentarios", ""),
                    horas_hombre=float(body.get("horas_hombre", 0.0)),
                    tecnico_id=body.get("tecnico_id"),
                )
            except ValueError as exc:
                return json_response({"error": str(exc)}, status=409)
            return json_response(self.serialize_ot(self.ots[ot_id]))
        return json_response({"error": f"unsupported {method} on ots/{ot_id}"}, status=405)

    def _control_material_usage(self, body: Record) -> Response:
        try:
            record = self.add_material_usage(
                int(body["ot_id"]),
                int(body["material_id"]),
                body["cantidad"],
                comentario=body.get("comentario", ""),
                activo_id=body.get("activo_id"),
                registrado_por=body.get("registrado_por"),
                fecha_registro=body.get("fecha_registro"),
            )
        except KeyError as exc:
            return json_response({"error": str(exc)}, status=404)
        return json_response(self._serialize(record), status=201)


_MATERIAL_IMAGE = (
    "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='100' height='100' "
    "viewBox='0 0 24 24' fill='none' stroke='%233b82f6' stroke-width='1.5' "
    "stroke-linecap='round' stroke-linejoin='round'%3E%3Cpath d='M21 16V8a2 2 0 0 0-1-1.73l-7-4"
    "a2 2 0 0 0-2 0l-7 4A2 2 0 0 0 3 8v8a2 2 0 0 0 1 1.73l7 4a2 2 0 0 0 2 0l7-4A2 2 0 0 0 21 "
    "16z'%3E%3C/path%3E%3Cpolyline points='3.27 6.96 12 12.01 20.73 6.96'%3E%3C/polyline%3E"
    "%3Cline x1='12' y1='22.08' x2='12' y2='12'%3E%3C/line%3E%3C/svg%3E"
)
