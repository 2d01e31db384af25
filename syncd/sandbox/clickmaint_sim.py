"""A faithful simulator of the Click Maint public REST API (v1).

syncd's Click Maint client, cursors, rate budget and quarantine logic are tested against this
server, so it reproduces what the recovered documentation states (envelopes, field sets of list
items vs. details, the `filter[...]` / `sort` / `page` query conventions, rate-limit headers) and,
where the documentation is silent, the behaviour a Rails + Ransack + Kaminari backend would show.
Every such guess is marked `# inferred:` so it can be revisited once the live API is probed.

The simulator also has "UI user" helpers (`create_work_order`, `add_transaction`, ...) that bypass
HTTP: they stand for people editing records in the Click Maint web app while syncd polls.
"""

from __future__ import annotations

import json
import math
import operator
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Request, Response

from .base import SimApp, json_response
from .catalog import MACHINES, PLACES, TECHNICIANS, Machine, Place
from .clock import SimClock
from .faults import Faults

Record = dict[str, Any]

API_PREFIX = "/api/v1"
WO_TYPES = ("reactive", "preventive")
PRIORITIES = ("none", "low", "medium", "high")
REQUEST_STATUSES = ("pending", "on_hold", "approved", "declined")
TRANSACTION_TYPES = (
    "restock",
    "usage",
    "return",
    "cost_update",
    "average_cost_update",
    "reconcile",
)
#: transaction types that move stock in or out against a work order
WORK_ORDER_TRANSACTIONS = ("usage", "return")
OPEN_STATUS_ID = 1
COMPLETED_STATUS_ID = 5
MAX_TITLE = 255  # inferred: Rails string column + length validation
MAX_DESCRIPTION = 30_000  # the web UI allows 30,000 characters of description [H6]
YES_NO = ("yes", "no")

#: the user behind the sandbox API key; every API write is attributed to it
API_USER: dict[str, Any] = {"id": 9, "name": "syncd", "surname": "API"}
#: web-app users (technicians of the shared plant catalogue); "UI" edits are attributed to them
UI_USERS: list[dict[str, Any]] = [
    {"id": i, "name": name, "surname": surname}
    for i, (name, surname) in enumerate(TECHNICIANS, start=1)
]
CATEGORIES: dict[int, str] = {
    10: "Refrigeration",
    11: "Electrical",
    12: "Mechanical",
    13: "Lubrication",
    14: "Safety",
}
PROCEDURE_TEMPLATES: dict[int, str] = {
    10: "Refrigeration Procedure",
    11: "Lubrication Procedure",
    12: "Electrical Safety Checklist",
    13: "Monthly PM Checklist",
}
ASSETS_BY_ID: dict[int, Machine] = {m.cm_asset_id: m for m in MACHINES}
LOCATIONS_BY_ID: dict[int, Place] = {p.cm_location_id: p for p in PLACES}
_PLACES_BY_MT_ID: dict[int, Place] = {p.mt_ubicacion_id: p for p in PLACES}
#: inferred: catalogue assets have no documented creation date; a fixed one keeps sorts stable
_CATALOGUE_CREATED_AT = datetime(2024, 1, 1, tzinfo=UTC)

_RATE_LIMIT_ENV = "syncd.clickmaint.rate_limit"


def default_statuses() -> dict[int, dict[str, Any]]:
    """Built-in statuses plus two tenant-defined ones.

    inferred: only `5 -> completed (is_custom false)` and the use of `status_id: 1` are documented;
    the other ids/names are plausible and the custom ones exercise `is_custom: true`.
    """
    return {
        1: {"id": 1, "name": "open", "is_custom": False},
        2: {"id": 2, "name": "on_hold", "is_custom": False},
        3: {"id": 3, "name": "in_progress", "is_custom": False},
        5: {"id": 5, "name": "completed", "is_custom": False},
        6: {"id": 6, "name": "cancelled", "is_custom": True},
        7: {"id": 7, "name": "waiting_for_parts", "is_custom": True},
    }


@dataclass
class ClickMaintVariant:
    """Knobs for behaviours the documentation leaves open, so syncd is tested against each."""

    per_page_default: int = 25
    per_page_cap: int = 100
    rate_limit: int = 300
    rate_window: float = 300.0
    updated_at_filter: bool = True
    updated_at_sort: bool = True
    part_touch_on_transaction: bool = True
    approve_creates_work_order: bool = True

    def update(self, values: dict[str, Any]) -> None:
        """Partial update with type checks: a typo in a test must fail loudly, not be ignored."""
        kinds = {f.name: type(getattr(self, f.name)) for f in fields(self)}
        for key, value in values.items():
            if key not in kinds:
                raise ValueError(f"unknown variant option: {key}")
            kind = kinds[key]
            if kind is bool:
                if not isinstance(value, bool):
                    raise ValueError(f"variant option {key} must be a boolean")
                setattr(self, key, value)
            elif kind is int:
                setattr(self, key, int(value))
            else:
                setattr(self, key, float(value))


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------
class ApiError(Exception):
    """An error answer in the documented `{"status":"error","message":...}` shape."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ValidationError(ValueError):
    """Rails-style validation failure; the message is the joined full messages."""


class RecordNotFound(KeyError):
    """A record id that does not exist (or lives in another entity)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "Record not found"


# ---------------------------------------------------------------------------------------------
# small value helpers
# ---------------------------------------------------------------------------------------------
def iso(value: datetime | None) -> str | None:
    """Render a stored (UTC, whole-second) instant the way the API does: `2025-07-17T19:19:20Z`."""
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: Any) -> datetime:
    """Parse an ISO-8601 input (Z, offset, naive = UTC, or date only) to a UTC whole-second instant.

    inferred: Rails casts offsets to UTC and treats naive input in the app zone (UTC); the API only
    ever renders whole seconds, so storing sub-seconds would make `_gteq` cursors miss records.
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value.strip():
        parsed = datetime.fromisoformat(value.strip())
    else:
        raise ValueError(f"not an ISO-8601 timestamp: {value!r}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).replace(microsecond=0)


def num(value: float | int | None, places: int = 4) -> float | int | None:
    """JSON number as the docs show them: integral values without decimals (`146`, `26.15`)."""
    if value is None:
        return None
    rounded = round(float(value), places)
    return int(rounded) if rounded.is_integer() else rounded


def coerce_int(value: Any) -> int | None:
    """Rails integer casting for ids: ints and digit strings; anything else is invalid (None)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


def coerce_number(value: Any) -> float | None:
    """Numericality casting: numbers and numeric strings; NaN/inf and booleans are invalid."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def user_ref(user: dict[str, Any] | None) -> dict[str, Any] | None:
    return {"id": user["id"], "name": user["name"], "surname": user["surname"]} if user else None


def location_path(place: Place) -> str:
    parent = _PLACES_BY_MT_ID.get(place.parent_mt_id) if place.parent_mt_id else None
    return f"{parent.name} > {place.name}" if parent else place.name


def error_body(message: str) -> dict[str, str]:
    return {"status": "error", "message": message}


def error_json(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response(error_body(message), status=status, headers=headers)


# ---------------------------------------------------------------------------------------------
# Ransack-style filtering and sorting
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FieldSpec:
    """A filterable / sortable attribute: its value kind and how to read it from a stored record."""

    kind: str  # "int" | "float" | "str" | "datetime" | "bool"
    get: Callable[[Record], Any]


def _key(name: str, kind: str) -> tuple[str, FieldSpec]:
    return name, FieldSpec(kind, lambda r, _n=name: r.get(_n))


STRING_PREDICATES = frozenset(
    {"cont", "not_cont", "i_cont", "start", "not_start", "end", "not_end"}
)
BOOLEAN_PREDICATES = frozenset({"null", "not_null", "present", "blank", "true", "false"})
LIST_PREDICATES = frozenset({"in", "not_in"})
PREDICATES: tuple[str, ...] = tuple(
    sorted(
        STRING_PREDICATES
        | BOOLEAN_PREDICATES
        | LIST_PREDICATES
        | {"eq", "not_eq", "gt", "gteq", "lt", "lteq"},
        key=len,
        reverse=True,
    )
)
TIMESTAMP_FIELDS = frozenset({"created_at", "updated_at"})
_FILTER_KEY = re.compile(r"^filter\[([A-Za-z0-9_]+)\](\[\d*\])?$")
_TRUE = frozenset({"true", "1", "t", "yes", "y", "on"})
_FALSE = frozenset({"false", "0", "f", "no", "n", "off"})


@dataclass(frozen=True)
class Condition:
    """One parsed `filter[<attr>_<predicate>]`; hashable so list results can be cached per query."""

    fields: tuple[str, ...]
    predicate: str
    value: Any


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(raw)


def _parse_value(kind: str, raw: str) -> Any:
    """Cast a query value to the attribute's type; ValueError means "ignore the condition"."""
    if kind == "int":
        parsed = coerce_int(raw)
        if parsed is None:
            raise ValueError(raw)
        return parsed
    if kind == "float":
        parsed_f = coerce_number(raw)
        if parsed_f is None:
            raise ValueError(raw)
        return parsed_f
    if kind == "datetime":
        return parse_iso(raw)
    if kind == "bool":
        return _parse_bool(raw)
    return raw


def _split_attribute(name: str, spec: dict[str, FieldSpec]) -> tuple[tuple[str, ...], str] | None:
    """`updated_at_gteq` -> (("updated_at",), "gteq"); the longest predicate whose prefix is known.

    Attribute names contain underscores: `status_id_not_in` must not be `status_id_not` + `in`.
    Ransack's `a_or_b_cont` combinator is honoured when every part is a known attribute.
    """
    for predicate in PREDICATES:
        suffix = "_" + predicate
        if not name.endswith(suffix):
            continue
        attribute = name[: -len(suffix)]
        if attribute in spec:
            return (attribute,), predicate
        parts = tuple(attribute.split("_or_"))
        if len(parts) > 1 and all(p in spec for p in parts):
            return parts, predicate
    return None


def parse_filters(
    args: MultiDict[str, str], spec: dict[str, FieldSpec], *, allow_timestamps: bool
) -> tuple[Condition, ...]:
    """Parse every `filter[...]` query parameter.

    inferred: Ransack >= 4 with an allow-list silently drops unknown attributes, unknown
    predicates, blank values and values that cannot be cast, so all of those are ignored here.
    """
    raw_by_name: dict[str, list[str]] = {}
    for key, values in args.lists():
        match = _FILTER_KEY.match(key)
        if match:
            raw_by_name.setdefault(match.group(1), []).extend(values)
    conditions: list[Condition] = []
    for name, values in raw_by_name.items():
        split = _split_attribute(name, spec)
        if split is None:
            continue
        names, predicate = split
        if not allow_timestamps and any(n in TIMESTAMP_FIELDS for n in names):
            continue
        condition = _build_condition(names, predicate, values, spec)
        if condition is not None:
            conditions.append(condition)
    return tuple(conditions)


def _build_condition(
    names: tuple[str, ...], predicate: str, values: list[str], spec: dict[str, FieldSpec]
) -> Condition | None:
    kinds = {spec[n].kind for n in names}
    if len(kinds) != 1:
        return None  # inferred: an OR over differently typed columns is not cast by Ransack
    kind = kinds.pop()
    try:
        if predicate in LIST_PREDICATES:
            items = [p.strip() for v in values for p in v.split(",") if p.strip()]
            parsed = frozenset(_parse_value(kind, item) for item in items)
            return Condition(names, predicate, parsed) if parsed else None
        raw = values[-1] if values else ""
        if not raw.strip():
            return None  # Ransack skips blank values
        if predicate in BOOLEAN_PREDICATES:
            if predicate in ("true", "false") and kind != "bool":
                return None
            return Condition(names, predicate, _parse_bool(raw))
        if predicate in STRING_PREDICATES:
            if kind != "str":
                return None
            return Condition(names, predicate, raw.lower())
        return Condition(names, predicate, _parse_value(kind, raw))
    except ValueError:
        return None


def _present(value: Any) -> bool:
    if value is None:
        return False
    return bool(value.strip()) if isinstance(value, str) else True


Test = Callable[[Any, Any], bool]


def _not_null(test: Test) -> Test:
    """SQL semantics: NULL satisfies no comparison (not even `not_eq` / `not_in`)."""
    return lambda value, target: value is not None and test(value, target)


def _text(value: Any) -> str:
    return str(value).lower()


#: predicate -> test(record value, parsed target).
#: inferred: `cont`/`start`/`end` go through Arel `matches`, i.e. ILIKE on PostgreSQL, so they
#: are case-insensitive just like `i_cont` (targets are lower-cased when parsed).
PREDICATE_TESTS: dict[str, Test] = {
    "eq": _not_null(operator.eq),
    "not_eq": _not_null(operator.ne),
    "gt": _not_null(operator.gt),
    "gteq": _not_null(operator.ge),
    "lt": _not_null(operator.lt),
    "lteq": _not_null(operator.le),
    "in": _not_null(lambda v, t: v in t),
    "not_in": _not_null(lambda v, t: v not in t),
    "cont": _not_null(lambda v, t: t in _text(v)),
    "i_cont": _not_null(lambda v, t: t in _text(v)),
    "not_cont": _not_null(lambda v, t: t not in _text(v)),
    "start": _not_null(lambda v, t: _text(v).startswith(t)),
    "not_start": _not_null(lambda v, t: not _text(v).startswith(t)),
    "end": _not_null(lambda v, t: _text(v).endswith(t)),
    "not_end": _not_null(lambda v, t: not _text(v).endswith(t)),
    "true": _not_null(lambda v, t: (v is True) == t),
    "false": _not_null(lambda v, t: (v is False) == t),
    "null": lambda v, t: (v is None) == t,
    "not_null": lambda v, t: (v is not None) == t,
    "present": lambda v, t: _present(v) == t,
    "blank": lambda v, t: (not _present(v)) == t,
}


def compile_conditions(
    conditions: Iterable[Condition], spec: dict[str, FieldSpec]
) -> Callable[[Record], bool]:
    """One predicate function for a whole query (conditions AND-ed, `_or_` attributes OR-ed)."""
    compiled = [
        (tuple(spec[name].get for name in c.fields), PREDICATE_TESTS[c.predicate], c.value)
        for c in conditions
    ]

    def matches(record: Record) -> bool:
        return all(
            any(test(get(record), target) for get in getters) for getters, test, target in compiled
        )

    return matches


DEFAULT_SORT: tuple[tuple[str, bool], ...] = (("created_at", True),)


def parse_sort(
    raw: str | None, spec: dict[str, FieldSpec], *, allow_updated_at: bool
) -> tuple[tuple[str, bool], ...]:
    """`"updated_at desc"` -> (("updated_at", True),).  Comma-separated sorts are honoured.

    inferred: Ransack drops sorts on non-allow-listed attributes or with a bad direction and the
    controller's default (`created_at desc`) applies; a missing direction means `asc`.
    """
    if not raw or not raw.strip():
        return DEFAULT_SORT
    sorts: list[tuple[str, bool]] = []
    for part in raw.split(","):
        tokens = part.split()
        if not tokens or len(tokens) > 2:
            continue
        name = tokens[0]
        direction = tokens[1].lower() if len(tokens) == 2 else "asc"
        if name not in spec or direction not in ("asc", "desc"):
            continue
        if name == "updated_at" and not allow_updated_at:
            continue
        sorts.append((name, direction == "desc"))
    return tuple(sorts) or DEFAULT_SORT


def sort_records(
    records: list[Record], sorts: tuple[tuple[str, bool], ...], spec: dict[str, FieldSpec]
) -> list[Record]:
    """Stable multi-key sort; ties fall back to `id` in the primary direction for determinism.

    NULLs sort last ascending and first descending, as PostgreSQL does by default.
    """
    ordered = sorted(records, key=lambda r: r["id"], reverse=sorts[0][1])
    for name, descending in reversed(sorts):
        getter = spec[name].get
        ordered.sort(key=lambda r, _g=getter: _null_key(_g(r)), reverse=descending)
    return ordered


def _null_key(value: Any) -> tuple[bool, Any]:
    return (value is None, value)


@dataclass(frozen=True)
class ListQuery:
    page: int
    per_page: int
    sorts: tuple[tuple[str, bool], ...]
    search: str | None
    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class Collection:
    """How one list endpoint filters, searches, renders and corrupts its records."""

    name: str
    spec: dict[str, FieldSpec]
    search_keys: tuple[str, ...]
    render: Callable[[Record], Record]
    corruptions: tuple[tuple[str, Any], ...]


# ---------------------------------------------------------------------------------------------
# rate limiting
# ---------------------------------------------------------------------------------------------
class FixedWindowLimiter:
    """Per-client fixed window on the monotonic clock (the skewable sim clock must not matter)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}

    def hit(self, client: str, limit: int, window: float) -> tuple[bool, int, float]:
        """Count one request; returns (allowed, remaining, seconds until the window resets)."""
        now = time.monotonic()
        with self._lock:
            start, count = self._windows.get(client, (now, 0))
            if now - start >= window:
                start, count = now, 0
            count += 1
            self._windows[client] = (start, count)
        return count <= limit, max(0, limit - count), max(0.0, start + window - now)

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()


# ---------------------------------------------------------------------------------------------
# routing
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Route:
    methods: frozenset[str]
    pattern: re.Pattern[str]
    handler: str
    needs_entity: bool = True


def _route(methods: str, path: str, handler: str, *, needs_entity: bool = True) -> Route:
    regex = re.sub(r"<(\w+)>", r"(?P<\1>[^/]+)", path)
    return Route(
        frozenset(methods.split()), re.compile(f"^{API_PREFIX}{regex}/?$"), handler, needs_entity
    )


ROUTES: tuple[Route, ...] = (
    _route("GET", "/entities", "_entities_index", needs_entity=False),
    _route("GET", "/assets", "_assets_index"),
    _route("GET", "/work_orders", "_wo_index"),
    _route("POST", "/work_orders", "_wo_create"),
    _route("GET", "/work_orders/<wo_id>", "_wo_show"),
    _route("PUT PATCH", "/work_orders/<wo_id>", "_wo_update"),
    _route("DELETE", "/work_orders/<wo_id>", "_wo_destroy"),
    _route("GET", "/requests", "_req_index"),
    _route("POST", "/requests", "_req_create"),
    _route("GET", "/requests/<req_id>", "_req_show"),
    _route("PUT PATCH", "/requests/<req_id>", "_req_update"),
    _route("DELETE", "/requests/<req_id>", "_req_destroy"),
    _route("GET", "/parts", "_part_index"),
    _route("GET", "/parts/<part_id>", "_part_show"),
    # inferred: the verbs of the member routes were lost from the docs; all three are accepted
    _route("POST PUT PATCH", "/parts/<part_id>/unit_cost", "_part_unit_cost"),
    _route("POST PUT PATCH", "/parts/<part_id>/average_unit_cost", "_part_average_cost"),
    _route("POST PUT PATCH", "/parts/<part_id>/reconcile", "_part_reconcile"),
    _route("GET", "/parts/<part_id>/transaction_history", "_tx_index"),
    _route("GET", "/parts/<part_id>/transaction/<tx_id>", "_tx_show"),
)

# API fields permitted by the controllers (strong parameters); anything else is silently dropped.
WO_API_FIELDS = frozenset(
    {
        "title",
        "type",
        "description",
        "priority",
        "work_order_request_id",
        "due_date",
        "completed_at",
        "location_id",
        "asset_id",
        "status_id",
        "procedure_template_ids",
        "notify_vendors_on_create",
        "notify_vendors_on_update",
    }
)
# Extra fields only the web UI (direct helpers) can set; seeds use the timestamps to backdate.
WO_UI_FIELDS = frozenset(
    {
        "created_at",
        "updated_at",
        "technician_ids",
        "category_ids",
        "comments_count",
        "pm_schedule_id",
    }
)
REQ_API_FIELDS = frozenset(
    {"title", "description", "status", "notify", "priority", "location_id", "asset_id", "due_date"}
)
REQ_UI_FIELDS = frozenset(
    {
        "created_at",
        "updated_at",
        "technician_ids",
        "category_ids",
        "comments_count",
        "completed_at",
        "work_order_id",
    }
)
PART_FIELDS = frozenset(
    {
        "id",
        "name",
        "description",
        "is_non_stock",
        "number",
        "area",
        "lead_time",
        "on_hand_qty",
        "min_qty",
        "desired_qty",
        "unit_cost",
        "avg_unit_cost",
        "part_type",
        "storeroom",
        "measurement_unit",
        "reserved",
        "asset_ids",
        "qr_code",
        "created_at",
        "updated_at",
    }
)

_DRIFT_ACTIONS = ("edit",) * 6 + ("insert",) * 3 + ("delete",)
_REV_SUFFIX = " (rev.)"


# ---------------------------------------------------------------------------------------------
# the simulator
# ---------------------------------------------------------------------------------------------
class ClickMaintSim(SimApp):
    """In-memory Click Maint: work orders, requests, parts and their transaction history."""

    name = "clickmaint"

    def __init__(
        self,
        *,
        api_keys: dict[str, list[int]] | None = None,
        variant: ClickMaintVariant | None = None,
        clock: SimClock | None = None,
        faults: Faults | None = None,
    ) -> None:
        super().__init__(clock=clock, faults=faults)
        self.api_keys: dict[str, list[int]] = (
            api_keys if api_keys is not None else {"cm-sandbox-key": [1, 2]}
        )
        self.variant = variant or ClickMaintVariant()
        self.entities: dict[int, dict[str, Any]] = {
            1: {"id": 1, "name": "Planta Norte"},
            2: {"id": 2, "name": "Planta Sur"},
        }
        self.statuses: dict[int, dict[str, Any]] = default_statuses()
        self.work_orders: dict[int, Record] = {}
        self.requests: dict[int, Record] = {}
        self.parts: dict[int, Record] = {}
        self.transactions: dict[int, Record] = {}
        self.limiter = FixedWindowLimiter()
        self._next_ids = {"work_order": 1001, "request": 301, "part": 201, "tx": 9001, "proc": 501}
        #: parts cost booked on each work order (usage minus returns), for `total_costs`
        self._wo_parts_cost: dict[int, float] = {}
        #: bumped on every mutation; part of the list-result cache key
        self._version = 0
        self._list_cache: OrderedDict[tuple[Any, ...], list[Record]] = OrderedDict()
        self._collections = self._build_collections()

    # =========================================================================================
    # WSGI plumbing: rate limit, headers, error shapes
    # =========================================================================================
    def dispatch(self, request: Request) -> Response:
        """Every non-control answer (even a 401, 404 or injected fault) carries limit headers."""
        response = super().dispatch(request)
        headers = request.environ.get(_RATE_LIMIT_ENV)
        if headers:
            response.headers.update(headers)
        return response

    def before_faults(self, request: Request) -> Response | None:
        """Rack::Attack-style fixed window per client IP; rejected requests count too."""
        variant = self.variant
        allowed, remaining, seconds_left = self.limiter.hit(
            request.remote_addr or "unknown", variant.rate_limit, variant.rate_window
        )
        headers = {
            "X-RateLimit-Limit": str(variant.rate_limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(math.ceil(time.time() + seconds_left)),
        }
        request.environ[_RATE_LIMIT_ENV] = headers
        if allowed:
            return None
        retry_after = max(1, math.ceil(seconds_left))
        # inferred: the 429 status and the generic error envelope are not documented
        return error_json(
            429,
            f"Rate limit exceeded. Retry in {retry_after} seconds.",
            headers={"Retry-After": str(retry_after)},
        )

    def rate_limited_response(self, request: Request) -> Response:
        return error_json(
            429, "Rate limit exceeded. Retry in 1 seconds.", headers={"Retry-After": "1"}
        )

    def error_response(self, status: int, request: Request) -> Response:
        message = "Internal Server Error" if status == 500 else "Service Unavailable"
        return error_json(status, message)

    def reset_rate_limits(self) -> None:
        self.limiter.reset()

    # =========================================================================================
    # API entry point
    # =========================================================================================
    def handle(self, request: Request) -> Response:
        try:
            route, params = self._match(request)
            key = self._authenticate(request)
            with self.lock:
                if not route.needs_entity:
                    return getattr(self, route.handler)(request, key)
                entity = self._entity(request, key)
                return getattr(self, route.handler)(request, entity, **params)
        except ApiError as exc:
            return error_json(exc.status, exc.message)

    def _match(self, request: Request) -> tuple[Route, dict[str, int]]:
        """inferred: Rails routing answers unknown paths and verbs with 404 before any auth."""
        for route in ROUTES:
            match = route.pattern.match(request.path)
            if match and request.method in route.methods:
                return route, {k: self._path_id(v) for k, v in match.groupdict().items()}
        raise ApiError(404, "Not Found")

    @staticmethod
    def _path_id(raw: str) -> int:
        parsed = coerce_int(raw)
        if parsed is None:
            raise ApiError(404, "Record not found")
        return parsed

    def _authenticate(self, request: Request) -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or token not in self.api_keys:
            raise ApiError(401, "Unauthorized")
        return token

    def _entity(self, request: Request, key: str) -> int:
        """inferred: 400 when the documented-required header is absent, 403 when unusable."""
        raw = request.headers.get("X-Entity-Id")
        if raw is None or not raw.strip():
            raise ApiError(400, "X-Entity-Id header is required")
        entity = coerce_int(raw)
        if entity is None or entity not in self.api_keys[key] or entity not in self.entities:
            raise ApiError(403, "Entity not found or access denied")
        return entity

    @staticmethod
    def _json_body(request: Request) -> dict[str, Any]:
        """inferred: the body is parsed as JSON whatever the Content-Type header says."""
        raw = request.get_data(cache=True)
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, "Invalid JSON") from exc
        return body if isinstance(body, dict) else {}

    def _wrapped(self, request: Request, wrapper: str) -> dict[str, Any]:
        """`params.require(:wrapper)`: a missing, non-object or empty wrapper is a 400."""
        value = self._json_body(request).get(wrapper)
        if not isinstance(value, dict) or not value:
            raise ApiError(400, f"param is missing or the value is empty: {wrapper}")
        return value

    @staticmethod
    def _ok(data: Any, status: int = 200) -> Response:
        return json_response({"status": "success", "data": data}, status=status)

    # =========================================================================================
    # handlers: entities & assets
    # =========================================================================================
    def _entities_index(self, request: Request, key: str) -> Response:
        """inferred: needs no X-Entity-Id (it is how clients discover it); `{id, name}` items."""
        allowed = sorted(e for e in self.api_keys[key] if e in self.entities)
        return self._ok([dict(self.entities[e]) for e in allowed])

    def _assets_index(self, request: Request, entity: int) -> Response:
        """inferred: the catalogue is one plant shared by every entity; assets never drift."""
        return self._list_response(request, self._collections["assets"], ("assets", None))

    @staticmethod
    def _asset_record(machine: Machine) -> Record:
        place = PLACES[machine.place]
        return {
            "id": machine.cm_asset_id,
            "name": machine.name,
            "asset_code": machine.code,
            "status": "online",
            "location_id": place.cm_location_id,
            "created_at": _CATALOGUE_CREATED_AT,
            "updated_at": _CATALOGUE_CREATED_AT,
        }

    # =========================================================================================
    # handlers: work orders
    # =========================================================================================
    def _wo_index(self, request: Request, entity: int) -> Response:
        def drift() -> None:
            self._drift_work_orders(entity)

        return self._list_response(
            request, self._collections["work_orders"], ("wo", entity), drift=drift
        )

    def _wo_create(self, request: Request, entity: int) -> Response:
        """inferred: 201 Created with the detail object, as Rails `render status: :created`."""
        fields_in = self._permit(self._wrapped(request, "work_order"), WO_API_FIELDS)
        wo = self._api_call(lambda: self._insert_work_order(fields_in, entity, API_USER))
        return self._ok(self.render_work_order(wo, detail=True), status=201)

    def _wo_show(self, request: Request, entity: int, wo_id: int) -> Response:
        return self._ok(self.render_work_order(self._find_wo(wo_id, entity), detail=True))

    def _wo_update(self, request: Request, entity: int, wo_id: int) -> Response:
        wo = self._find_wo(wo_id, entity)
        fields_in = self._permit(self._wrapped(request, "work_order"), WO_API_FIELDS)
        self._api_call(lambda: self._modify_work_order(wo, fields_in, API_USER))
        return self._ok(self.render_work_order(wo, detail=True))

    def _wo_destroy(self, request: Request, entity: int, wo_id: int) -> Response:
        """inferred: 204 No Content (the docs only show the error sample for delete)."""
        self._find_wo(wo_id, entity)
        self._remove_work_order(wo_id)
        return Response(status=204)

    def _find_wo(self, wo_id: int, entity: int) -> Record:
        wo = self.work_orders.get(wo_id)
        if wo is None or wo["entity_id"] != entity:
            raise ApiError(404, "Record not found")
        return wo

    # =========================================================================================
    # handlers: requests
    # =========================================================================================
    def _req_index(self, request: Request, entity: int) -> Response:
        def drift() -> None:
            self._drift_requests(entity)

        return self._list_response(
            request, self._collections["requests"], ("req", entity), drift=drift
        )

    def _req_create(self, request: Request, entity: int) -> Response:
        fields_in = self._permit(self._wrapped(request, "work_order_request"), REQ_API_FIELDS)
        req = self._api_call(lambda: self._insert_request(fields_in, entity, API_USER))
        return self._ok(self.render_request(req, detail=True), status=201)

    def _req_show(self, request: Request, entity: int, req_id: int) -> Response:
        return self._ok(self.render_request(self._find_req(req_id, entity), detail=True))

    def _req_update(self, request: Request, entity: int, req_id: int) -> Response:
        req = self._find_req(req_id, entity)
        fields_in = self._permit(self._wrapped(request, "work_order_request"), REQ_API_FIELDS)
        self._api_call(lambda: self._modify_request(req, fields_in, API_USER))
        return self._ok(self.render_request(req, detail=True))

    def _req_destroy(self, request: Request, entity: int, req_id: int) -> Response:
        self._find_req(req_id, entity)
        self._remove_request(req_id)
        return Response(status=204)

    def _find_req(self, req_id: int, entity: int) -> Record:
        req = self.requests.get(req_id)
        if req is None or req["entity_id"] != entity:
            raise ApiError(404, "Record not found")
        return req

    # =========================================================================================
    # handlers: parts & transactions
    # =========================================================================================
    def _part_index(self, request: Request, entity: int) -> Response:
        """inferred: the parts list was not recovered; it follows the other lists' conventions."""

        def drift() -> None:
            self._drift_parts(entity)

        return self._list_response(
            request, self._collections["parts"], ("parts", entity), drift=drift
        )

    def _part_show(self, request: Request, entity: int, part_id: int) -> Response:
        return self._ok(self.render_part(self._find_part(part_id, entity)))

    def _part_unit_cost(self, request: Request, entity: int, part_id: int) -> Response:
        return self._cost_update(request, entity, part_id, "cost_update")

    def _part_average_cost(self, request: Request, entity: int, part_id: int) -> Response:
        return self._cost_update(request, entity, part_id, "average_cost_update")

    def _cost_update(self, request: Request, entity: int, part_id: int, tx_type: str) -> Response:
        part = self._find_part(part_id, entity)
        body = self._json_body(request)
        cost = self._api_call(lambda: self._validate_cost(body.get("cost")))
        note = self._note(body.get("note"))
        # inferred: a cost change moves no stock, so its transaction has quantity 0
        self._record_transaction(part, tx_type, 0, cost=cost, note=note, user=API_USER)
        return self._ok(self.render_part(part))

    def _part_reconcile(self, request: Request, entity: int, part_id: int) -> Response:
        """inferred: body `{"quantity": <new on-hand>, "note": "..."}`; the UI requires the note."""
        part = self._find_part(part_id, entity)
        body = self._json_body(request)
        target, note = self._api_call(lambda: self._validate_reconcile(body))
        delta = round(target - part["on_hand_qty"], 4)
        self._record_transaction(part, "reconcile", delta, note=note, user=API_USER)
        return self._ok(self.render_part(part))

    def _tx_index(self, request: Request, entity: int, part_id: int) -> Response:
        part = self._find_part(part_id, entity)

        def drift() -> None:
            self._drift_transactions(part)

        def extra(matching: list[Record]) -> dict[str, Any]:
            used = sum(t["quantity"] for t in matching if t["type"] == "usage")
            return {"total_used": num(used)}

        return self._list_response(
            request,
            self._collections["transactions"],
            ("tx", part_id),
            drift=drift,
            extra_meta=extra,
        )

    def _tx_show(self, request: Request, entity: int, part_id: int, tx_id: int) -> Response:
        self._find_part(part_id, entity)
        tx = self.transactions.get(tx_id)
        if tx is None or tx["part_id"] != part_id:
            raise ApiError(404, "Record not found")
        return self._ok(self.render_transaction(tx))

    def _find_part(self, part_id: int, entity: int) -> Record:
        part = self.parts.get(part_id)
        if part is None or part["entity_id"] != entity:
            raise ApiError(404, "Record not found")
        return part

    @staticmethod
    def _validate_cost(raw: Any) -> float:
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            raise ValidationError("Cost can't be blank")
        cost = coerce_number(raw)
        if cost is None:
            raise ValidationError("Cost is not a number")
        if cost < 0:
            raise ValidationError("Cost must be greater than or equal to 0")
        try:
            exact = Decimal(str(raw))
            two_places = exact == exact.quantize(Decimal("0.01"))
        except InvalidOperation as exc:
            raise ValidationError("Cost is not a number") from exc
        if not two_places:
            raise ValidationError("Cost must have at most 2 decimal places")
        return cost

    @staticmethod
    def _validate_reconcile(body: dict[str, Any]) -> tuple[float, str]:
        errors: list[str] = []
        raw = body.get("quantity")
        quantity = coerce_number(raw)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            errors.append("Quantity can't be blank")
        elif quantity is None:
            errors.append("Quantity is not a number")
        elif quantity < 0:
            errors.append("Quantity must be greater than or equal to 0")
        note = body.get("note")
        if not isinstance(note, str) or not note.strip():
            errors.append("Note can't be blank")
        if errors:
            raise ValidationError(", ".join(errors))
        assert quantity is not None and isinstance(note, str)
        return quantity, note

    @staticmethod
    def _note(raw: Any) -> str:
        return raw if isinstance(raw, str) else ("" if raw is None else str(raw))

    @staticmethod
    def _permit(raw: dict[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
        """Strong parameters: unpermitted keys are dropped silently (Rails default)."""
        return {k: v for k, v in raw.items() if k in allowed}

    @staticmethod
    def _api_call(action: Callable[[], Any]) -> Any:
        try:
            return action()
        except ValidationError as exc:
            raise ApiError(422, str(exc)) from exc

    # =========================================================================================
    # list machinery
    # =========================================================================================
    def _list_query(self, request: Request, collection: Collection) -> ListQuery:
        """Read page/per_page/sort/search/filter[...] leniently, never failing the request.

        inferred: 1-based pages; default per_page 25 (the sample value); per_page above the cap is
        clamped and reported in `meta.pagination.per_page`; unusable values fall back to defaults;
        a page past the end is an empty `data` with correct totals.
        """
        args = request.args
        variant = self.variant
        page = coerce_int(args.get("page", ""))
        per_page = coerce_int(args.get("per_page", ""))
        if per_page is None or per_page < 1:
            per_page = variant.per_page_default
        search = args.get("search")
        return ListQuery(
            page=page if page is not None and page >= 1 else 1,
            per_page=min(per_page, variant.per_page_cap),
            sorts=parse_sort(
                args.get("sort"), collection.spec, allow_updated_at=variant.updated_at_sort
            ),
            search=search if search and search.strip() else None,
            conditions=parse_filters(
                args, collection.spec, allow_timestamps=variant.updated_at_filter
            ),
        )

    def _list_response(
        self,
        request: Request,
        collection: Collection,
        scope: tuple[str, int | None],
        *,
        drift: Callable[[], None] | None = None,
        extra_meta: Callable[[list[Record]], dict[str, Any]] | None = None,
    ) -> Response:
        query = self._list_query(request, collection)
        rate = self.faults.config.page_drift_rate
        if drift is not None and query.page >= 2 and self.faults.chance(rate):
            drift()
        matching = self._matching(collection, scope, query)
        start = (query.page - 1) * query.per_page
        data = [
            self._render_list_item(collection, r) for r in matching[start : start + query.per_page]
        ]
        meta: dict[str, Any] = {
            "pagination": {
                "total": len(matching),
                "page": query.page,
                "per_page": query.per_page,
                # inferred: Kaminari's ceil(total / per_page), i.e. 0 for an empty result
                "total_pages": math.ceil(len(matching) / query.per_page),
            },
            "search": query.search,
        }
        if extra_meta is not None:
            meta.update(extra_meta(matching))
        return json_response({"status": "success", "data": data, "meta": meta})

    def _scope_records(self, scope: tuple[str, int | None]) -> list[Record]:
        """The records one list endpoint sees (entity or part scope), before filtering."""
        kind, key = scope
        if kind == "assets":
            return [self._asset_record(m) for m in MACHINES]
        if kind == "wo":
            return [w for w in self.work_orders.values() if w["entity_id"] == key]
        if kind == "req":
            return [r for r in self.requests.values() if r["entity_id"] == key]
        if kind == "parts":
            return [p for p in self.parts.values() if p["entity_id"] == key]
        if kind == "tx":
            return [t for t in self.transactions.values() if t["part_id"] == key]
        raise ValueError(f"unknown list scope {kind}")

    def _matching(
        self, collection: Collection, scope: tuple[str, int | None], q: ListQuery
    ) -> list[Record]:
        """Filtered + sorted records, cached per query and store version so paging stays O(page)."""
        cache_key = (scope, q.conditions, q.sorts, q.search, self._version)
        cached = self._list_cache.get(cache_key)
        if cached is not None:
            self._list_cache.move_to_end(cache_key)
            return cached
        spec = collection.spec
        selected = self._scope_records(scope)
        if q.conditions:
            matches = compile_conditions(q.conditions, spec)
            selected = [r for r in selected if matches(r)]
        if q.search:
            needle = q.search.lower()
            keys = collection.search_keys
            selected = [
                r for r in selected if any(needle in (r.get(k) or "").lower() for k in keys)
            ]
        result = sort_records(selected, q.sorts, spec)
        self._list_cache[cache_key] = result
        while len(self._list_cache) > 8:
            self._list_cache.popitem(last=False)
        return result

    def _render_list_item(self, collection: Collection, record: Record) -> Record:
        """Render a list item; with `malformed_record_rate` one field of the copy is garbage."""
        item = collection.render(record)
        if collection.corruptions and self.faults.chance(self.faults.config.malformed_record_rate):
            field_name, value = self.faults.choice(list(collection.corruptions))
            item[field_name] = value
            self.faults.counts["malformed_record"] += 1
        return item

    def _build_collections(self) -> dict[str, Collection]:
        statuses = self.statuses
        timestamps = [_key("created_at", "datetime"), _key("updated_at", "datetime")]
        wo_spec = dict(
            [
                _key("id", "int"),
                _key("title", "str"),
                _key("description", "str"),
                _key("priority", "str"),
                _key("type", "str"),
                _key("status_id", "int"),
                _key("asset_id", "int"),
                _key("location_id", "int"),
                _key("work_order_request_id", "int"),
                _key("pm_schedule_id", "int"),
                _key("comments_count", "int"),
                _key("due_date", "datetime"),
                _key("completed_at", "datetime"),
                *timestamps,
            ]
        )
        wo_spec["status_name"] = FieldSpec(
            "str", lambda r: statuses.get(r["status_id"], {}).get("name")
        )
        wo_spec["status_is_custom"] = FieldSpec(
            "bool", lambda r: statuses.get(r["status_id"], {}).get("is_custom")
        )
        wo_spec["asset_name"] = FieldSpec("str", lambda r: _asset_name(r.get("asset_id")))
        req_spec = dict(
            [
                _key("id", "int"),
                _key("title", "str"),
                _key("description", "str"),
                _key("status", "str"),
                _key("priority", "str"),
                _key("notify", "bool"),
                _key("work_order_id", "int"),
                _key("asset_id", "int"),
                _key("location_id", "int"),
                _key("comments_count", "int"),
                _key("due_date", "datetime"),
                _key("completed_at", "datetime"),
                *timestamps,
            ]
        )
        part_spec = dict(
            [
                _key("id", "int"),
                _key("name", "str"),
                _key("description", "str"),
                _key("number", "str"),
                _key("area", "str"),
                _key("is_non_stock", "bool"),
                _key("lead_time", "int"),
                _key("on_hand_qty", "float"),
                _key("min_qty", "float"),
                _key("desired_qty", "float"),
                _key("unit_cost", "float"),
                _key("avg_unit_cost", "float"),
                _key("reserved", "float"),
                _key("qr_code", "str"),
                *timestamps,
            ]
        )
        part_spec["available"] = FieldSpec("float", lambda r: r["on_hand_qty"] - r["reserved"])
        for ref in ("part_type", "storeroom", "measurement_unit"):
            part_spec[f"{ref}_id"] = FieldSpec("int", lambda r, _f=ref: (r.get(_f) or {}).get("id"))
        tx_spec = dict(
            [
                _key("id", "int"),
                _key("note", "str"),
                _key("type", "str"),
                _key("work_order_id", "int"),
                _key("cost", "float"),
                _key("quantity", "float"),
                *timestamps,
            ]
        )
        tx_spec["total_cost"] = FieldSpec("float", lambda r: _total_cost(r))
        asset_spec = dict(
            [
                _key("id", "int"),
                _key("name", "str"),
                _key("asset_code", "str"),
                _key("status", "str"),
                _key("location_id", "int"),
                *timestamps,
            ]
        )
        return {
            "work_orders": Collection(
                "work_orders",
                wo_spec,
                ("title", "description"),
                lambda r: self.render_work_order(r, detail=False),
                (
                    ("priority", 42),
                    ("due_date", "31/02/2025"),
                    ("status", None),
                    ("title", None),
                    ("type", "???"),
                ),
            ),
            "requests": Collection(
                "requests",
                req_spec,
                ("title", "description"),
                lambda r: self.render_request(r, detail=False),
                (
                    ("priority", 42),
                    ("due_date", "31/02/2025"),
                    ("status", None),
                    ("title", None),
                    ("work_order_id", "WO-?"),
                ),
            ),
            "parts": Collection(
                "parts",
                part_spec,
                ("name", "number"),
                self.render_part,
                (("on_hand_qty", "many"), ("number", None), ("unit_cost", "26,15"), ("name", None)),
            ),
            "transactions": Collection(
                "transactions",
                tx_spec,
                ("note",),
                self.render_transaction,
                (
                    ("quantity", "2,5"),
                    ("type", "???"),
                    ("created_at", "31/02/2025"),
                    ("work_order_id", "abc"),
                ),
            ),
            "assets": Collection(
                "assets", asset_spec, ("name", "asset_code"), self._render_asset, (("name", None),)
            ),
        }

    # =========================================================================================
    # rendering
    # =========================================================================================
    def _status_ref(self, status_id: int) -> dict[str, Any]:
        return dict(self.statuses[status_id])

    @staticmethod
    def _asset_ref(asset_id: int | None, *, with_status: bool) -> dict[str, Any] | None:
        machine = ASSETS_BY_ID.get(asset_id) if asset_id is not None else None
        if machine is None:
            return None
        ref: dict[str, Any] = {"id": machine.cm_asset_id, "name": machine.name}
        if with_status:
            ref["status"] = "online"
        return ref

    def render_work_order(self, wo: Record, *, detail: bool) -> Record:
        """List items and details carry different fields (reference §8.2 / §8.3).

        Location is write-only: the documented responses never show it.
        """
        head: Record = {
            "id": wo["id"],
            "title": wo["title"],
            "description": wo["description"],
            "priority": wo["priority"],
            "type": wo["type"],
        }
        if detail:
            head["pm_schedule_id"] = wo["pm_schedule_id"]
            head["procedures"] = [dict(p) for p in wo["procedures"]]
            head["status"] = self._status_ref(wo["status_id"])
            head["work_order_request"] = self._request_ref(wo["work_order_request_id"])
        else:
            head["work_order_request_id"] = wo["work_order_request_id"]
            head["pm_schedule_id"] = wo["pm_schedule_id"]
            head["status"] = self._status_ref(wo["status_id"])
            head["comments_count"] = wo["comments_count"]
        head["asset"] = self._asset_ref(wo["asset_id"], with_status=True)
        head["downtime_tracking"] = None  # inferred: no downtime is ever tracked in the sandbox
        head["categories"] = [dict(c) for c in wo["categories"]]
        head["technicians"] = [dict(t) for t in wo["technicians"]]
        head["vendors"] = []
        if detail:
            head["notify_vendors_on_create"] = wo["notify_vendors_on_create"]
            head["notify_vendors_on_update"] = wo["notify_vendors_on_update"]
        head["due_date"] = iso(wo["due_date"])
        head["completed_at"] = iso(wo["completed_at"])
        if detail:
            parts_cost = round(self._wo_parts_cost.get(wo["id"], 0.0), 2)
            head["total_costs"] = {
                "labor": 0,
                "other": 0,
                "parts": num(parts_cost, 2),
                "total": num(parts_cost, 2),
            }
        head["active_timer_current_user"] = {}
        if detail:
            head["images"] = []
            head["documents"] = []
        head.update(self._audit(wo))
        return head

    def _request_ref(self, req_id: int | None) -> dict[str, Any] | None:
        req = self.requests.get(req_id) if req_id is not None else None
        if req is None:
            return None
        return {"id": req["id"], "title": req["title"], "created_at": iso(req["created_at"])}

    @staticmethod
    def _audit(record: Record) -> Record:
        return {
            "created_at": iso(record["created_at"]),
            "updated_at": iso(record["updated_at"]),
            "created_by": user_ref(record["created_by"]),
            "updated_by": user_ref(record["updated_by"]),
        }

    def render_request(self, req: Record, *, detail: bool) -> Record:
        """List items drop notify/images/documents and add comments_count (reference §7.3)."""
        out: Record = {
            "id": req["id"],
            "title": req["title"],
            "description": req["description"],
            "status": req["status"],
        }
        if detail:
            out["notify"] = req["notify"]
        out["priority"] = req["priority"]
        out["work_order_id"] = req["work_order_id"]
        out["asset"] = self._asset_ref(req["asset_id"], with_status=False)
        out["categories"] = [dict(c) for c in req["categories"]]
        out["technicians"] = [dict(t) for t in req["technicians"]]
        out["vendors"] = []
        out["due_date"] = iso(req["due_date"])
        out["completed_at"] = iso(req["completed_at"])
        if detail:
            out["images"] = []
            out["documents"] = []
        else:
            out["comments_count"] = req["comments_count"]
        out.update(self._audit(req))
        return out

    def render_part(self, part: Record) -> Record:
        """The part object exactly as reference §6.1 (list items use the same shape: inferred)."""
        return {
            "id": part["id"],
            "name": part["name"],
            "description": part["description"],
            "is_non_stock": part["is_non_stock"],
            "number": part["number"],
            "area": part["area"],
            "lead_time": part["lead_time"],
            "on_hand_qty": num(part["on_hand_qty"]),
            "min_qty": num(part["min_qty"]),
            "desired_qty": num(part["desired_qty"]),
            "unit_cost": num(part["unit_cost"], 2),
            "avg_unit_cost": num(part["avg_unit_cost"], 2),
            "part_type": dict(part["part_type"]) if part["part_type"] else None,
            "storeroom": dict(part["storeroom"]) if part["storeroom"] else None,
            "measurement_unit": dict(part["measurement_unit"])
            if part["measurement_unit"]
            else None,
            "available": num(part["on_hand_qty"] - part["reserved"]),
            "reserved": num(part["reserved"]),
            "assets": [
                {"id": a, "name": ASSETS_BY_ID[a].name}
                for a in part["asset_ids"]
                if a in ASSETS_BY_ID
            ],
            "qr_code": part["qr_code"],
            "images": [],
            "documents": [],
            **self._audit(part),
        }

    def render_transaction(self, tx: Record) -> Record:
        """Transaction object per reference §6.7; the part is known from the URL (no part_id)."""
        return {
            "id": tx["id"],
            "note": tx["note"],
            "type": tx["type"],
            "work_order_id": tx["work_order_id"],
            "cost": num(tx["cost"], 2),
            "total_cost": num(_total_cost(tx), 2),
            "quantity": num(tx["quantity"]),
            "images": [],
            "documents": [],
            **self._audit(tx),
        }

    @staticmethod
    def _render_asset(asset: Record) -> Record:
        """inferred: shape modelled on the asset-create response (name/code/status/location)."""
        place = LOCATIONS_BY_ID[asset["location_id"]]
        return {
            "id": asset["id"],
            "name": asset["name"],
            "asset_code": asset["asset_code"],
            "status": asset["status"],
            "location": {
                "id": place.cm_location_id,
                "name": place.name,
                "path": location_path(place),
            },
        }

    # =========================================================================================
    # domain: shared validation
    # =========================================================================================
    def _now(self) -> datetime:
        return self.clock.now_seconds()

    def _changed(self) -> None:
        """Invalidate cached list results: any mutation may move records between pages."""
        self._version += 1
        self._list_cache.clear()

    def _next_id(self, kind: str) -> int:
        value = self._next_ids[kind]
        self._next_ids[kind] = value + 1
        return value

    @staticmethod
    def _check_unknown(raw: dict[str, Any], allowed: frozenset[str], what: str) -> None:
        """Direct helpers reject typos loudly; only the HTTP API drops unknown keys silently."""
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise ValidationError(f"unknown {what} field(s): {', '.join(unknown)}")

    @staticmethod
    def _clean_text(
        errors: list[str], label: str, value: Any, *, required: bool, max_len: int
    ) -> str | None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # Rails casts numbers assigned to string columns
        if value is not None and not isinstance(value, str):
            errors.append(f"{label} is invalid")
            return None
        if required and (value is None or not value.strip()):
            errors.append(f"{label} can't be blank")
            return None
        if value is not None and len(value) > max_len:
            errors.append(f"{label} is too long (maximum is {max_len} characters)")
            return None
        return value

    @staticmethod
    def _clean_choice(errors: list[str], label: str, value: Any, choices: Iterable[str]) -> Any:
        if value not in tuple(choices):
            errors.append(f"{label} is not included in the list")
        return value

    @staticmethod
    def _clean_time(errors: list[str], label: str, value: Any) -> datetime | None:
        if value is None or value == "":
            return None
        try:
            return parse_iso(value)
        except (TypeError, ValueError):
            errors.append(f"{label} is invalid")
            return None

    @staticmethod
    def _clean_ref(errors: list[str], label: str, value: Any, exists: Callable[[int], bool]) -> Any:
        """A belongs_to id: nil/"" clears; unknown ids fail with Rails' "must exist"."""
        if value is None or value == "":
            return None
        ref = coerce_int(value)
        if ref is None or not exists(ref):
            errors.append(f"{label} must exist")
            return None
        return ref

    @staticmethod
    def _clean_ids(errors: list[str], label: str, value: Any, known: Iterable[int]) -> list[int]:
        known_set = set(known)
        if value is None:
            return []
        ids = [coerce_int(v) for v in value] if isinstance(value, list) else [None]
        if any(i is None or i not in known_set for i in ids):
            errors.append(f"{label} is invalid")
            return []
        return [i for i in ids if i is not None]

    @staticmethod
    def _clean_count(errors: list[str], label: str, value: Any) -> int:
        count = coerce_int(value)
        if count is None or count < 0:
            errors.append(f"{label} is invalid")
            return 0
        return count

    @staticmethod
    def _raise_if(errors: list[str]) -> None:
        if errors:
            raise ValidationError(", ".join(errors))

    def _user_refs(self, ids: list[int]) -> list[dict[str, Any]]:
        by_id = {u["id"]: u for u in UI_USERS}
        return [dict(by_id[i]) for i in ids]

    @staticmethod
    def _category_refs(ids: list[int]) -> list[dict[str, Any]]:
        return [{"id": i, "name": CATEGORIES[i]} for i in ids]

    def _clean_common(self, raw: dict[str, Any], errors: list[str], entity: int) -> Record:
        """Fields work orders and requests share, cleaned and cast."""
        out: Record = {}
        if "title" in raw:
            out["title"] = self._clean_text(
                errors, "Title", raw["title"], required=True, max_len=MAX_TITLE
            )
        if "description" in raw:
            out["description"] = self._clean_text(
                errors, "Description", raw["description"], required=False, max_len=MAX_DESCRIPTION
            )
        if "priority" in raw:
            out["priority"] = self._clean_choice(errors, "Priority", raw["priority"], PRIORITIES)
        if "due_date" in raw:
            out["due_date"] = self._clean_time(errors, "Due date", raw["due_date"])
        if "completed_at" in raw:
            out["completed_at"] = self._clean_time(errors, "Completed at", raw["completed_at"])
        if "asset_id" in raw:
            out["asset_id"] = self._clean_ref(
                errors, "Asset", raw["asset_id"], lambda i: i in ASSETS_BY_ID
            )
        if "location_id" in raw:
            out["location_id"] = self._clean_ref(
                errors, "Location", raw["location_id"], lambda i: i in LOCATIONS_BY_ID
            )
        if "technician_ids" in raw:
            ids = self._clean_ids(
                errors, "Technicians", raw["technician_ids"], (u["id"] for u in UI_USERS)
            )
            out["technicians"] = self._user_refs(ids)
        if "category_ids" in raw:
            ids = self._clean_ids(errors, "Categories", raw["category_ids"], CATEGORIES)
            out["categories"] = self._category_refs(ids)
        if "comments_count" in raw:
            out["comments_count"] = self._clean_count(
                errors, "Comments count", raw["comments_count"]
            )
        for stamp in ("created_at", "updated_at"):
            if stamp in raw:
                value = self._clean_time(errors, stamp.replace("_", " ").capitalize(), raw[stamp])
                if value is None:
                    errors.append(f"{stamp.replace('_', ' ').capitalize()} can't be blank")
                out[stamp] = value
        return out

    # =========================================================================================
    # domain: work orders
    # =========================================================================================
    def _clean_work_order(self, raw: dict[str, Any], entity: int, *, creating: bool) -> Record:
        errors: list[str] = []
        out = self._clean_common(raw, errors, entity)
        if creating and "title" not in raw:
            errors.append("Title can't be blank")
        if "type" in raw:
            out["type"] = self._clean_choice(errors, "Type", raw["type"], WO_TYPES)
        if "status_id" in raw:
            status_id = coerce_int(raw["status_id"])
            if status_id is None or status_id not in self.statuses:
                errors.append("Status is invalid")
            out["status_id"] = status_id
        if "work_order_request_id" in raw:
            out["work_order_request_id"] = self._clean_ref(
                errors,
                "Work order request",
                raw["work_order_request_id"],
                lambda i: i in self.requests and self.requests[i]["entity_id"] == entity,
            )
        for flag in ("notify_vendors_on_create", "notify_vendors_on_update"):
            if flag in raw:
                label = flag.replace("_", " ").capitalize()
                out[flag] = self._clean_choice(errors, label, raw[flag], YES_NO)
        if "procedure_template_ids" in raw:
            out["procedure_template_ids"] = self._clean_ids(
                errors, "Procedure templates", raw["procedure_template_ids"], PROCEDURE_TEMPLATES
            )
        if "pm_schedule_id" in raw:
            out["pm_schedule_id"] = coerce_int(raw["pm_schedule_id"])
        self._raise_if(errors)
        return out

    def _insert_work_order(
        self, raw: dict[str, Any], entity: int, user: dict[str, Any], *, check_unknown: bool = False
    ) -> Record:
        if check_unknown:
            self._check_unknown(raw, WO_API_FIELDS | WO_UI_FIELDS, "work order")
        clean = self._clean_work_order(raw, entity, creating=True)
        now = self._now()
        created_at = clean.pop("created_at", None) or now
        updated_at = clean.pop("updated_at", None) or created_at
        wo: Record = {
            "id": self._next_id("work_order"),
            "entity_id": entity,
            "title": None,
            "description": None,  # inferred: an omitted description is NULL, not ""
            "type": "reactive",
            "priority": "none",
            "status_id": OPEN_STATUS_ID,
            "due_date": None,
            "completed_at": None,
            "location_id": None,
            "asset_id": None,
            "work_order_request_id": None,
            "pm_schedule_id": None,
            "procedure_template_ids": [],
            "procedures": [],
            "notify_vendors_on_create": "no",  # inferred: default of the yes/no flags
            "notify_vendors_on_update": "no",
            "technicians": [],
            "categories": [],
            "comments_count": 0,
            "created_at": created_at,
            "updated_at": updated_at,
            "created_by": user_ref(user),
            "updated_by": user_ref(user),
        }
        self._apply_work_order(wo, clean, when=created_at, creating=True)
        self.work_orders[wo["id"]] = wo
        self._point_request_at(wo, when=created_at)
        self._changed()
        return wo

    def _point_request_at(self, wo: Record, *, when: datetime) -> None:
        """inferred: one foreign key (`work_orders.work_order_request_id`) relates a request
        and its work order, so a request's `work_order_id` shows the work order that names it,
        and a request that has its work order is not converted again when approved [?]."""
        req = self.requests.get(wo["work_order_request_id"] or -1)
        if req is not None and req["work_order_id"] is None:
            req["work_order_id"] = wo["id"]
            req["updated_at"] = when

    def _apply_work_order(
        self, wo: Record, clean: Record, *, when: datetime, creating: bool
    ) -> None:
        """Assign cleaned fields plus the status side effects on `completed_at`.

        inferred: completing (status 5) without an explicit `completed_at` stamps it with now;
        leaving completed clears it unless the caller sends one.
        """
        old_status = wo["status_id"]
        if "procedure_template_ids" in clean:
            templates = clean.pop("procedure_template_ids")
            if templates != wo["procedure_template_ids"]:
                wo["procedure_template_ids"] = templates
                wo["procedures"] = [
                    {
                        "id": self._next_id("proc"),
                        "name": PROCEDURE_TEMPLATES[t],
                        "procedure_template_id": t,
                        "completed_at": None,
                    }
                    for t in templates
                ]
        wo.update(clean)
        new_status = wo["status_id"]
        if "completed_at" in clean or (not creating and new_status == old_status):
            return
        if new_status == COMPLETED_STATUS_ID:
            if creating or old_status != COMPLETED_STATUS_ID:
                wo["completed_at"] = when
        else:
            wo["completed_at"] = None

    def _modify_work_order(
        self, wo: Record, raw: dict[str, Any], user: dict[str, Any], *, check_unknown: bool = False
    ) -> Record:
        """Partial update; `updated_at` moves only when something really changed (Rails dirty)."""
        if check_unknown:
            self._check_unknown(raw, WO_API_FIELDS | WO_UI_FIELDS, "work order")
        clean = self._clean_work_order(raw, wo["entity_id"], creating=False)
        clean.pop("created_at", None)
        stamp = clean.pop("updated_at", None)
        when = stamp or self._now()
        before = _snapshot(wo)
        self._apply_work_order(wo, clean, when=when, creating=False)
        if _snapshot(wo) != before:
            self._point_request_at(wo, when=when)
            wo["updated_at"] = when
            wo["updated_by"] = user_ref(user)
            self._changed()
        return wo

    def _remove_work_order(self, wo_id: int) -> None:
        """Deleting keeps part transactions (they are facts) but unlinks the origin request.

        inferred: the request's `work_order_id` is nullified and its `updated_at` bumped.
        """
        wo = self.work_orders.pop(wo_id)
        self._wo_parts_cost.pop(wo_id, None)
        req = self.requests.get(wo["work_order_request_id"] or -1)
        if req is not None and req["work_order_id"] == wo_id:
            req["work_order_id"] = None
            req["updated_at"] = self._now()
        self._changed()

    # =========================================================================================
    # domain: requests
    # =========================================================================================
    def _clean_request(self, raw: dict[str, Any], entity: int, *, creating: bool) -> Record:
        errors: list[str] = []
        out = self._clean_common(raw, errors, entity)
        if creating and "title" not in raw:
            errors.append("Title can't be blank")
        if "status" in raw:
            out["status"] = self._clean_choice(errors, "Status", raw["status"], REQUEST_STATUSES)
        if "notify" in raw:
            notify = raw["notify"]
            if isinstance(notify, str):
                try:
                    notify = _parse_bool(notify)
                except ValueError:
                    notify = None
            if not isinstance(notify, bool):
                errors.append("Notify is invalid")
            out["notify"] = notify
        if "work_order_id" in raw:
            out["work_order_id"] = self._clean_ref(
                errors,
                "Work order",
                raw["work_order_id"],
                lambda i: i in self.work_orders and self.work_orders[i]["entity_id"] == entity,
            )
        self._raise_if(errors)
        return out

    def _insert_request(
        self, raw: dict[str, Any], entity: int, user: dict[str, Any], *, check_unknown: bool = False
    ) -> Record:
        if check_unknown:
            self._check_unknown(raw, REQ_API_FIELDS | REQ_UI_FIELDS, "request")
        clean = self._clean_request(raw, entity, creating=True)
        now = self._now()
        created_at = clean.pop("created_at", None) or now
        updated_at = clean.pop("updated_at", None) or created_at
        req: Record = {
            "id": self._next_id("request"),
            "entity_id": entity,
            "title": None,
            "description": None,
            "status": "pending",
            "notify": False,  # inferred default
            "priority": "none",
            "work_order_id": None,
            "asset_id": None,
            "location_id": None,
            "due_date": None,
            "completed_at": None,
            "technicians": [],
            "categories": [],
            "comments_count": 0,
            "created_at": created_at,
            "updated_at": updated_at,
            "created_by": user_ref(user),
            "updated_by": user_ref(user),
        }
        req.update(clean)
        self.requests[req["id"]] = req
        self._maybe_convert(req, user, when=updated_at)
        self._changed()
        return req

    def _modify_request(
        self, req: Record, raw: dict[str, Any], user: dict[str, Any], *, check_unknown: bool = False
    ) -> Record:
        if check_unknown:
            self._check_unknown(raw, REQ_API_FIELDS | REQ_UI_FIELDS, "request")
        clean = self._clean_request(raw, req["entity_id"], creating=False)
        clean.pop("created_at", None)
        when = clean.pop("updated_at", None) or self._now()
        before = _snapshot(req)
        req.update(clean)
        self._maybe_convert(req, user, when=when)
        if _snapshot(req) != before:
            req["updated_at"] = when
            req["updated_by"] = user_ref(user)
            self._changed()
        return req

    def _maybe_convert(self, req: Record, user: dict[str, Any], *, when: datetime) -> None:
        """inferred: approving a request without a work order creates one, as the UI does [H3]."""
        if req["status"] != "approved" or req["work_order_id"] is not None:
            return
        if not self.variant.approve_creates_work_order:
            return
        fields_in: Record = {
            "title": req["title"],
            "description": req["description"],
            "priority": req["priority"],
            "due_date": req["due_date"],
            "asset_id": req["asset_id"],
            "location_id": req["location_id"],
            "work_order_request_id": req["id"],
            "type": "reactive",
            "status_id": OPEN_STATUS_ID,
            "created_at": when,
        }
        wo = self._insert_work_order(fields_in, req["entity_id"], user)
        wo["technicians"] = [dict(t) for t in req["technicians"]]
        wo["categories"] = [dict(c) for c in req["categories"]]
        req["work_order_id"] = wo["id"]

    def _remove_request(self, req_id: int) -> None:
        """inferred: the converted work order survives with `work_order_request_id` nullified."""
        req = self.requests.pop(req_id)
        wo = self.work_orders.get(req["work_order_id"] or -1)
        if wo is not None and wo["work_order_request_id"] == req_id:
            wo["work_order_request_id"] = None
            wo["updated_at"] = self._now()
        self._changed()

    # =========================================================================================
    # domain: parts & transactions
    # =========================================================================================
    def _insert_part(self, raw: dict[str, Any], entity: int, user: dict[str, Any]) -> Record:
        self._check_unknown(raw, PART_FIELDS, "part")
        errors: list[str] = []
        name = self._clean_text(errors, "Name", raw.get("name"), required=True, max_len=MAX_TITLE)
        self._raise_if(errors)
        part_id = coerce_int(raw.get("id")) if raw.get("id") is not None else None
        if part_id is None:
            part_id = self._next_id("part")
        elif part_id in self.parts:
            raise ValidationError(f"Part {part_id} already exists")
        self._next_ids["part"] = max(self._next_ids["part"], part_id + 1)
        now = self._now()
        created_at = parse_iso(raw["created_at"]) if raw.get("created_at") else now
        unit_cost = float(raw.get("unit_cost", 0) or 0)
        part: Record = {
            "id": part_id,
            "entity_id": entity,
            "name": name,
            "description": raw.get("description"),
            "is_non_stock": bool(raw.get("is_non_stock", False)),
            "number": raw.get("number"),
            "area": raw.get("area"),
            "lead_time": raw.get("lead_time"),
            "on_hand_qty": float(raw.get("on_hand_qty", 0) or 0),
            "min_qty": float(raw.get("min_qty", 0) or 0),
            "desired_qty": float(raw.get("desired_qty", 0) or 0),
            "unit_cost": unit_cost,
            "avg_unit_cost": float(raw.get("avg_unit_cost", unit_cost) or 0),
            "part_type": raw.get("part_type"),
            "storeroom": raw.get("storeroom"),
            "measurement_unit": raw.get("measurement_unit"),
            "reserved": float(raw.get("reserved", 0) or 0),
            "asset_ids": list(raw.get("asset_ids", [])),
            "qr_code": raw.get("qr_code"),
            "created_at": created_at,
            "updated_at": parse_iso(raw["updated_at"]) if raw.get("updated_at") else created_at,
            "created_by": user_ref(user),
            "updated_by": user_ref(user),
        }
        self.parts[part_id] = part
        self._changed()
        return part

    def _record_transaction(
        self,
        part: Record,
        tx_type: str,
        quantity: float,
        *,
        work_order_id: int | None = None,
        note: str = "",
        cost: float | None = None,
        user: dict[str, Any],
        created_at: datetime | None = None,
    ) -> Record:
        """Append an immutable transaction and apply its effect on the part's stock or costs."""
        if tx_type not in TRANSACTION_TYPES:
            raise ValidationError("Type is not included in the list")
        if tx_type in WORK_ORDER_TRANSACTIONS:
            wo = self.work_orders.get(work_order_id) if work_order_id is not None else None
            if wo is None or wo["entity_id"] != part["entity_id"]:
                raise ValidationError("Work order must exist")
        if not math.isfinite(quantity):
            raise ValidationError("Quantity is not a number")
        when = created_at or self._now()
        unit = part["unit_cost"] if cost is None else float(cost)
        tx: Record = {
            "id": self._next_id("tx"),
            "part_id": part["id"],
            "entity_id": part["entity_id"],
            "type": tx_type,
            "quantity": round(float(quantity), 4),
            "cost": round(unit, 2),
            "note": note,
            "work_order_id": work_order_id,
            "created_at": when,
            "updated_at": when,  # transactions are immutable: updated_at == created_at
            "created_by": user_ref(user),
            "updated_by": user_ref(user),
        }
        self.transactions[tx["id"]] = tx
        touches_part = self._apply_transaction(part, tx)
        if touches_part or self.variant.part_touch_on_transaction:
            # a backdated (seeded) transaction never moves the part's updated_at backwards
            part["updated_at"] = when if created_at is None else max(part["updated_at"], when)
            part["updated_by"] = user_ref(user)
        self._changed()
        return tx

    def _apply_transaction(self, part: Record, tx: Record) -> bool:
        """Stock / cost effect of one transaction; True when a column of the part itself is set.

        Quantity moves are what `part_touch_on_transaction` governs; cost updates always write
        the part row.  inferred: restocks recompute the average cost (help center H1).
        """
        kind, qty = tx["type"], tx["quantity"]
        if kind == "restock":
            old_qty = part["on_hand_qty"]
            new_qty = old_qty + qty
            if new_qty > 0 and qty > 0:
                part["avg_unit_cost"] = round(
                    (max(old_qty, 0) * part["avg_unit_cost"] + qty * tx["cost"])
                    / (max(old_qty, 0) + qty),
                    2,
                )
            part["on_hand_qty"] = round(new_qty, 4)
            return False
        if kind == "usage":
            part["on_hand_qty"] = round(part["on_hand_qty"] - qty, 4)
            self._book_parts_cost(tx["work_order_id"], qty * tx["cost"])
            return False
        if kind == "return":
            part["on_hand_qty"] = round(part["on_hand_qty"] + qty, 4)
            self._book_parts_cost(tx["work_order_id"], -qty * tx["cost"])
            return False
        if kind == "reconcile":
            part["on_hand_qty"] = round(part["on_hand_qty"] + qty, 4)
            return False
        if kind == "cost_update":
            part["unit_cost"] = tx["cost"]
        else:
            part["avg_unit_cost"] = tx["cost"]
        return True

    def _book_parts_cost(self, wo_id: int | None, amount: float) -> None:
        if wo_id is not None:
            self._wo_parts_cost[wo_id] = self._wo_parts_cost.get(wo_id, 0.0) + amount

    # =========================================================================================
    # direct "UI user" helpers (no HTTP, no rate limit, no faults)
    # =========================================================================================
    def create_work_order(
        self, fields: dict, *, entity_id: int = 1, user: dict | None = None
    ) -> dict:
        """Create as a web-app user would; raises ValidationError (a ValueError) like an API 422."""
        with self.lock:
            wo = self._insert_work_order(fields, entity_id, user or UI_USERS[0], check_unknown=True)
            return self.render_work_order(wo, detail=True)

    def update_work_order(self, wo_id: int, fields: dict, *, user: dict | None = None) -> dict:
        with self.lock:
            wo = self.work_orders.get(wo_id)
            if wo is None:
                raise RecordNotFound(f"work order {wo_id} not found")
            self._modify_work_order(wo, fields, user or UI_USERS[0], check_unknown=True)
            return self.render_work_order(wo, detail=True)

    def delete_work_order(self, wo_id: int) -> None:
        with self.lock:
            if wo_id not in self.work_orders:
                raise RecordNotFound(f"work order {wo_id} not found")
            self._remove_work_order(wo_id)

    def create_request(self, fields: dict, *, entity_id: int = 1, user: dict | None = None) -> dict:
        with self.lock:
            req = self._insert_request(fields, entity_id, user or UI_USERS[0], check_unknown=True)
            return self.render_request(req, detail=True)

    def update_request(self, req_id: int, fields: dict, *, user: dict | None = None) -> dict:
        with self.lock:
            req = self.requests.get(req_id)
            if req is None:
                raise RecordNotFound(f"request {req_id} not found")
            self._modify_request(req, fields, user or UI_USERS[0], check_unknown=True)
            return self.render_request(req, detail=True)

    def delete_request(self, req_id: int) -> None:
        with self.lock:
            if req_id not in self.requests:
                raise RecordNotFound(f"request {req_id} not found")
            self._remove_request(req_id)

    def create_part(self, fields: dict, *, entity_id: int = 1, user: dict | None = None) -> dict:
        """Parts have no documented create endpoint; seeds and tests add them through here."""
        with self.lock:
            return self.render_part(self._insert_part(fields, entity_id, user or UI_USERS[0]))

    def add_transaction(
        self,
        part_id: int,
        type: str,
        quantity: float,
        *,
        work_order_id: int | None = None,
        note: str = "",
        cost: float | None = None,
        user: dict | None = None,
        created_at: datetime | str | None = None,
    ) -> dict:
        """Record stock movement / cost change as the web app does (usage and return need a WO)."""
        with self.lock:
            part = self.parts.get(part_id)
            if part is None:
                raise RecordNotFound(f"part {part_id} not found")
            tx = self._record_transaction(
                part,
                type,
                float(quantity),
                work_order_id=work_order_id,
                note=note,
                cost=cost,
                user=user or UI_USERS[0],
                created_at=parse_iso(created_at) if created_at is not None else None,
            )
            return self.render_transaction(tx)

    def dump(self) -> dict:
        """All state for verification, including what the API never shows (location, entity)."""
        with self.lock:
            work_orders = []
            for wo in sorted(self.work_orders.values(), key=lambda w: w["id"]):
                item = self.render_work_order(wo, detail=True)
                item["_internal"] = {
                    "entity_id": wo["entity_id"],
                    "location_id": wo["location_id"],
                    "asset_id": wo["asset_id"],
                    "status_id": wo["status_id"],
                    "work_order_request_id": wo["work_order_request_id"],
                }
                work_orders.append(item)
            requests = []
            for req in sorted(self.requests.values(), key=lambda r: r["id"]):
                item = self.render_request(req, detail=True)
                item["_internal"] = {
                    "entity_id": req["entity_id"],
                    "location_id": req["location_id"],
                    "asset_id": req["asset_id"],
                }
                requests.append(item)
            parts = []
            for part in sorted(self.parts.values(), key=lambda p: p["id"]):
                item = self.render_part(part)
                item["_internal"] = {"entity_id": part["entity_id"]}
                parts.append(item)
            transactions = []
            for tx in sorted(self.transactions.values(), key=lambda t: t["id"]):
                item = self.render_transaction(tx)
                item["part_id"] = tx["part_id"]
                item["_internal"] = {"entity_id": tx["entity_id"]}
                transactions.append(item)
            return {
                "work_orders": work_orders,
                "requests": requests,
                "parts": parts,
                "transactions": transactions,
            }

    # =========================================================================================
    # faults: page drift
    # =========================================================================================
    def _drift_action(self, candidates: list[int]) -> str:
        action = self.faults.choice(list(_DRIFT_ACTIONS))
        return "insert" if action != "insert" and not candidates else action

    def _count_drift(self, action: str) -> None:
        self.faults.counts[f"page_drift_{action}"] += 1

    def _drift_user(self) -> dict[str, Any]:
        return self.faults.choice(UI_USERS[1:])

    def _drift_work_orders(self, entity: int) -> None:
        """Someone in the web app edits, creates or deletes a work order while syncd pages."""
        ids = [i for i, w in self.work_orders.items() if w["entity_id"] == entity]
        action = self._drift_action(ids)
        user = self._drift_user()
        if action == "insert":
            self._insert_work_order(
                {"title": "Revisión imprevista de equipo", "priority": "medium"}, entity, user
            )
        elif action == "delete":
            self._remove_work_order(self.faults.choice(ids))
        else:
            wo = self.work_orders[self.faults.choice(ids)]
            what = self.faults.choice(["title", "description", "status"])
            if what == "title":
                change: Record = {"title": _toggle_suffix(wo["title"] or "", MAX_TITLE)}
            elif what == "description":
                change = {"description": _toggle_suffix(wo["description"] or "", MAX_DESCRIPTION)}
            else:
                options = [s for s in (1, 2, 3, 7) if s != wo["status_id"]]
                change = {"status_id": self.faults.choice(options)}
            self._modify_work_order(wo, change, user)
        self._count_drift(action)

    def _drift_requests(self, entity: int) -> None:
        ids = [i for i, r in self.requests.items() if r["entity_id"] == entity]
        action = self._drift_action(ids)
        user = self._drift_user()
        if action == "insert":
            self._insert_request({"title": "Solicitud desde el portal"}, entity, user)
        elif action == "delete":
            self._remove_request(self.faults.choice(ids))
        else:
            req = self.requests[self.faults.choice(ids)]
            self._modify_request(
                req, {"title": _toggle_suffix(req["title"] or "", MAX_TITLE)}, user
            )
        self._count_drift(action)

    def _drift_parts(self, entity: int) -> None:
        ids = [i for i, p in self.parts.items() if p["entity_id"] == entity]
        action = self._drift_action(ids)
        user = self._drift_user()
        if action == "insert":
            part_id = self._next_ids["part"]
            self._insert_part(
                {"name": f"Repuesto nuevo {part_id}", "number": f"NEW-{part_id}"}, entity, user
            )
        elif action == "delete":
            del self.parts[self.faults.choice(ids)]
            self._changed()
        else:
            part = self.parts[self.faults.choice(ids)]
            part["min_qty"] = part["min_qty"] + 1
            part["updated_at"] = self._now()
            part["updated_by"] = user_ref(user)
            self._changed()
        self._count_drift(action)

    def _drift_transactions(self, part: Record) -> None:
        """Transactions are immutable and never deleted, so history only drifts by insertion."""
        user = self._drift_user()
        wo_ids = [i for i, w in self.work_orders.items() if w["entity_id"] == part["entity_id"]]
        if wo_ids:
            self._record_transaction(
                part,
                "usage",
                1,
                work_order_id=self.faults.choice(wo_ids),
                note="Consumo",
                user=user,
            )
        else:
            self._record_transaction(part, "restock", 1, note="Reposición", user=user)
        self._count_drift("insert")

    # =========================================================================================
    # control API (/_sim/...)
    # =========================================================================================
    def handle_control(self, request: Request, path: str) -> Response | None:
        try:
            return self._control_route(request, path)
        except RecordNotFound as exc:
            return json_response({"error": str(exc)}, status=404)
        except ValidationError as exc:
            return json_response({"error": str(exc)}, status=422)

    def _control_route(self, request: Request, path: str) -> Response | None:
        method = request.method
        body = request.get_json(silent=True) or {}
        if not isinstance(body, dict):
            raise ValueError("a JSON object body is expected")
        segments = path.split("/")
        if path == "variant":
            if method == "POST":
                with self.lock:
                    self.variant.update(body)
                    self._changed()
            return json_response(asdict(self.variant))
        if path == "dump" and method == "GET":
            return json_response(self.dump())
        if path == "rate-limit/reset" and method == "POST":
            self.reset_rate_limits()
            return json_response({"ok": True})
        if path == "parts" and method == "POST":
            entity = int(body.pop("entity_id", 1))
            return json_response(self.create_part(body, entity_id=entity), status=201)
        if segments[0] in ("work_orders", "requests"):
            return self._control_records(method, segments, body)
        is_tx_route = (
            len(segments) == 3 and segments[0] == "parts" and segments[2] == "transactions"
        )
        if is_tx_route and method == "POST":
            tx = self._control_transaction(int(segments[1]), body)
            return json_response(tx, status=201)
        return None

    def _control_records(self, method: str, segments: list[str], body: dict) -> Response | None:
        is_wo = segments[0] == "work_orders"
        if len(segments) == 1 and method == "POST":
            entity = int(body.pop("entity_id", 1))
            created = (
                self.create_work_order(body, entity_id=entity)
                if is_wo
                else self.create_request(body, entity_id=entity)
            )
            return json_response(created, status=201)
        if len(segments) != 2:
            return None
        record_id = int(segments[1])
        if method == "PATCH":
            updated = (
                self.update_work_order(record_id, body)
                if is_wo
                else self.update_request(record_id, body)
            )
            return json_response(updated)
        if method == "DELETE":
            if is_wo:
                self.delete_work_order(record_id)
            else:
                self.delete_request(record_id)
            return json_response({"ok": True})
        return None

    def _control_transaction(self, part_id: int, body: dict) -> dict:
        quantity = coerce_number(body.get("quantity", 0))
        if quantity is None:
            raise ValidationError("Quantity is not a number")
        return self.add_transaction(
            part_id,
            str(body.get("type", "")),
            quantity,
            work_order_id=coerce_int(body["work_order_id"]) if body.get("work_order_id") else None,
            note=str(body.get("note") or ""),
            cost=coerce_number(body["cost"]) if body.get("cost") is not None else None,
        )


# ---------------------------------------------------------------------------------------------
# module helpers
# ---------------------------------------------------------------------------------------------
def _snapshot(record: Record) -> tuple[Any, ...]:
    """Comparable copy of the mutable state of a record (audit fields excluded)."""
    return tuple((k, repr(v)) for k, v in record.items() if k not in ("updated_at", "updated_by"))


def _toggle_suffix(text: str, max_len: int) -> str:
    if text.endswith(_REV_SUFFIX):
        return text[: -len(_REV_SUFFIX)] or "Revisión"
    return text[: max_len - len(_REV_SUFFIX)] + _REV_SUFFIX


def _total_cost(tx: Record) -> float:
    return round(tx["quantity"] * tx["cost"], 2)


def _asset_name(asset_id: int | None) -> str | None:
    machine = ASSETS_BY_ID.get(asset_id) if asset_id is not None else None
    return machine.name if machine else None
