"""Typed configuration: TOML file + `SYNCD_<SECTION>__<KEY>` env overrides + credentials.

Every problem is reported as one line (`ConfigError`) and the CLI exits 78 (EX_CONFIG), which
the systemd unit lists in `RestartPreventExitStatus=` so a typo does not become a restart loop.
Secrets never live in the file: the file names a credential, resolved from systemd's
`$CREDENTIALS_DIRECTORY`, a `*_FILE` path, `/etc/syncd/credentials/`, or (development only) an
environment variable.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .redact import register_secret

EX_CONFIG = 78

ESTADOS = ("ESPERA", "PROGRAMADA", "EJECUCION", "REALIZADA", "CANCELADA")
TIPOS = ("PREVENTIVA", "CORRECTIVA", "NO_PROGRAMADA")
PRIORIDADES = ("BAJA", "MEDIA", "ALTA", "CRITICA")
AVISO_ESTADOS = ("ABIERTO", "PROCESO", "CERRADO", "CANCELADO")
CM_TYPES = ("reactive", "preventive")
CM_PRIORITIES = ("none", "low", "medium", "high")
CM_REQUEST_STATUSES = ("pending", "on_hold", "approved", "declined")
POLICIES = ("manual", "clickmaint", "mantenimiento", "newest")
#: names in the vendor's summary that the real server never used, accepted as aliases
VENDOR_ALIASES = {
    "PENDIENTE": "ESPERA",
    "EN_PROGRESO": "EJECUCION",
    "COMPLETADA": "REALIZADA",
}

Policy = Literal["manual", "clickmaint", "mantenimiento", "newest"]
PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]


class ConfigError(Exception):
    """A one-line, operator-facing configuration problem."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}") from None
    return value


def canonical_estado(value: str) -> str:
    upper = value.strip().upper()
    return VENDOR_ALIASES.get(upper, upper)


class GeneralSection(_Section):
    state_dir: Path | None = None
    ledger_file: str = "ledger.db"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    #: `status` reports unhealthy when a stream has had no successful cycle for this many intervals
    unhealthy_after_intervals: PositiveInt = 3
    #: a running cycle that shows no progress for this long is considered hung: the watchdog
    #: pings stop (systemd then restarts the service).  Waiting for the rate budget and retry
    #: back-off count as progress.
    stall_seconds: PositiveFloat = 600.0


class ClickMaintSection(_Section):
    base_url: str
    entity_id: PositiveInt
    api_key_credential: str = "clickmaint-api-key"
    timeout_seconds: PositiveFloat = 30.0
    rate_limit: PositiveInt = 300
    rate_window_seconds: PositiveFloat = 300.0
    rate_reserve: Annotated[int, Field(ge=0)] = 10
    #: never use more than this many requests per window, whatever the server advertises
    rate_limit_ceiling: PositiveInt | None = None
    per_page: PositiveInt = 100
    lookback_seconds: Annotated[int, Field(ge=0)] = 30
    lag_seconds: Annotated[int, Field(ge=0)] = 5
    capability_ttl_hours: PositiveFloat = 24.0
    #: status name -> id, for writes (there is no status list endpoint; see docs/mapping.md)
    statuses: dict[str, int] = Field(
        default_factory=lambda: {
            "open": 1,
            "on_hold": 2,
            "in_progress": 3,
            "completed": 5,
            "cancelled": 6,
        }
    )
    #: the status written when the linked OT is deleted or cancelled in mantenimiento
    cancelled_status: str = "cancelled"
    #: transaction types that mean "used on a work order"
    usage_transaction_types: list[str] = Field(default_factory=lambda: ["usage"])
    #: new transactions are found through the part's `updated_at`; a server that does not move
    #: it needs a sweep of every part's history: `auto` starts one once syncd has seen such a
    #: transaction, `always` from the start, `off` never (docs/clickmaint-capabilities.md)
    part_history_sweep: Literal["auto", "always", "off"] = "auto"
    #: parts whose history one cycle's sweep reads (1 listing request + 1 per part)
    part_sweep_per_cycle: PositiveInt = 10

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _reserve_below_limit(self) -> ClickMaintSection:
        if self.rate_reserve >= self.rate_limit:
            raise ValueError("rate_reserve must be smaller than rate_limit")
        if self.cancelled_status not in self.statuses:
            raise ValueError(f"cancelled_status {self.cancelled_status!r} is not in statuses")
        return self


class MantenimientoSection(_Section):
    base_url: str
    username: str
    password_credential: str = "mantenimiento-password"
    timeout_seconds: PositiveFloat = 30.0
    #: Django TIME_ZONE of the server: naive datetimes we send are read in this zone
    server_timezone: str = "America/Tegucigalpa"
    #: zone of the "dd/mm/YYYY HH:MM" strings the JSON views render (UTC unless localtime'd)
    display_timezone: str = "UTC"
    #: stop probing for new OT ids after this many consecutive missing ids
    probe_gap: PositiveInt = 20
    #: where probing starts on an empty ledger (ids below are ignored)
    first_ot_id: PositiveInt = 1
    #: ubicacion used for OTs created from Click Maint when no location/asset maps to one
    default_ubicacion_id: int | None = None
    #: open linked OTs are re-read every N cycles (1 = every cycle; raise it for very large
    #: installations where one pass over every open OT takes longer than the interval)
    open_reread_every: PositiveInt = 1
    #: closed (REALIZADA/CANCELADA) linked OTs are re-read every N cycles instead of every cycle
    closed_reread_every: PositiveInt = 10

    _zones = field_validator("server_timezone", "display_timezone")(_check_zone)

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")


class StreamSection(_Section):
    enabled: bool = True
    interval_seconds: PositiveFloat = 60.0
    jitter_seconds: Annotated[float, Field(ge=0)] = 5.0
    #: cap on Click Maint requests per cycle (None = as many as the budget allows)
    max_requests_per_cycle: PositiveInt | None = None


class StreamsSection(_Section):
    work_orders: StreamSection = StreamSection()
    part_usage: StreamSection = StreamSection(interval_seconds=300.0)
    requests: StreamSection = StreamSection(interval_seconds=120.0)


class ScopeSection(_Section):
    cm_types: list[str] = Field(default_factory=lambda: list(CM_TYPES))
    mt_tipos: list[str] = Field(default_factory=lambda: list(TIPOS))
    #: preventive OTs further in the future than this are not mirrored yet (None = all)
    preventive_horizon_days: PositiveInt | None = 30
    #: mantenimiento ubicacion ids in scope (empty = all)
    mt_ubicaciones: list[int] = Field(default_factory=list)
    #: records last changed before this instant are left alone (ISO 8601; None = all)
    not_before: str | None = None

    @field_validator("cm_types")
    @classmethod
    def _types(cls, v: list[str]) -> list[str]:
        bad = [t for t in v if t not in CM_TYPES]
        if bad:
            raise ValueError(f"unknown Click Maint type(s) {bad}; known: {list(CM_TYPES)}")
        return v

    @field_validator("mt_tipos")
    @classmethod
    def _tipos(cls, v: list[str]) -> list[str]:
        v = [t.upper() for t in v]
        bad = [t for t in v if t not in TIPOS]
        if bad:
            raise ValueError(f"unknown mantenimiento tipo(s) {bad}; known: {list(TIPOS)}")
        return v


class ConflictsSection(_Section):
    default_policy: Policy = "manual"
    #: per-field policy, e.g. {status = "newest", title = "clickmaint"}
    fields: dict[str, Policy] = Field(default_factory=dict)


class DeletesSection(_Section):
    #: cancel: a record gone on one side cancels its partner; ignore: only log it
    mode: Literal["cancel", "ignore"] = "cancel"
    #: mass-delete guard: refuse to act on more than this share / count of links in one pass
    max_fraction: Annotated[float, Field(gt=0, le=1)] = 0.2
    max_count: PositiveInt = 50
    #: full id reconciliation of Click Maint (finds deletions) runs this often
    reconcile_every_hours: PositiveFloat = 24.0


def _default_status_to_estado() -> dict[str, str]:
    return {
        "open": "PROGRAMADA",
        "on_hold": "ESPERA",
        "in_progress": "EJECUCION",
        "completed": "REALIZADA",
        "cancelled": "CANCELADA",
    }


def _default_estado_to_status() -> dict[str, str]:
    return {
        "ESPERA": "on_hold",
        "PROGRAMADA": "open",
        "EJECUCION": "in_progress",
        "REALIZADA": "completed",
        "CANCELADA": "cancelled",
    }


class VocabulariesSection(_Section):
    status_to_estado: dict[str, str] = Field(default_factory=_default_status_to_estado)
    estado_to_status: dict[str, str] = Field(default_factory=_default_estado_to_status)
    priority_to_prioridad: dict[str, str] = Field(
        default_factory=lambda: {"none": "BAJA", "low": "BAJA", "medium": "MEDIA", "high": "ALTA"}
    )
    prioridad_to_priority: dict[str, str] = Field(
        default_factory=lambda: {
            "BAJA": "low",
            "MEDIA": "medium",
            "ALTA": "high",
            "CRITICA": "high",
        }
    )
    tipo_to_type: dict[str, str] = Field(
        default_factory=lambda: {
            "PREVENTIVA": "preventive",
            "CORRECTIVA": "reactive",
            "NO_PROGRAMADA": "reactive",
        }
    )
    request_status_to_aviso: dict[str, str] = Field(
        default_factory=lambda: {
            "pending": "ABIERTO",
            "on_hold": "ABIERTO",
            "approved": "PROCESO",
            "declined": "CANCELADO",
        }
    )
    aviso_to_request_status: dict[str, str] = Field(
        default_factory=lambda: {
            "ABIERTO": "pending",
            "PROCESO": "approved",
            "CERRADO": "approved",
            "CANCELADO": "declined",
        }
    )

    @model_validator(mode="after")
    def _check_codes(self) -> VocabulariesSection:
        estados = {canonical_estado(v) for v in self.status_to_estado.values()}
        estados |= {canonical_estado(k) for k in self.estado_to_status}
        bad = sorted(e for e in estados if e not in ESTADOS)
        if bad:
            raise ValueError(f"unknown estado(s) {bad}; the server knows {list(ESTADOS)}")
        missing = [
            e for e in ESTADOS if e not in {canonical_estado(k) for k in self.estado_to_status}
        ]
        if missing:
            raise ValueError(f"estado_to_status lacks {missing}")
        for name, table, keys, values in (
            ("priority_to_prioridad", self.priority_to_prioridad, CM_PRIORITIES, PRIORIDADES),
            ("prioridad_to_priority", self.prioridad_to_priority, PRIORIDADES, CM_PRIORITIES),
            ("tipo_to_type", self.tipo_to_type, TIPOS, CM_TYPES),
            (
                "request_status_to_aviso",
                self.request_status_to_aviso,
                CM_REQUEST_STATUSES,
                AVISO_ESTADOS,
            ),
            (
                "aviso_to_request_status",
                self.aviso_to_request_status,
                AVISO_ESTADOS,
                CM_REQUEST_STATUSES,
            ),
        ):
            unknown = [k for k in table if k not in keys] + [
                v for v in table.values() if v not in values
            ]
            if unknown:
                raise ValueError(f"{name}: unknown value(s) {unknown}")
            lacking = [k for k in keys if k not in table]
            if lacking:
                raise ValueError(f"{name} lacks {lacking}")
        return self


class MappingSection(_Section):
    #: Click Maint location id -> mantenimiento ubicacion id
    locations: dict[str, int] = Field(default_factory=dict)
    #: Click Maint asset id -> mantenimiento activo id
    assets: dict[str, int] = Field(default_factory=dict)
    #: Click Maint part number -> mantenimiento Material sku, where they differ
    parts: dict[str, str] = Field(default_factory=dict)

    @field_validator("locations", "assets")
    @classmethod
    def _int_keys(cls, v: dict[str, int]) -> dict[str, int]:
        for key in v:
            if not str(key).isdigit():
                raise ValueError(f"keys must be numeric ids, got {key!r}")
        return v


class Config(_Section):
    syncd: GeneralSection = GeneralSection()
    clickmaint: ClickMaintSection
    mantenimiento: MantenimientoSection
    streams: StreamsSection = StreamsSection()
    scope: ScopeSection = ScopeSection()
    conflicts: ConflictsSection = ConflictsSection()
    deletes: DeletesSection = DeletesSection()
    vocabularies: VocabulariesSection = VocabulariesSection()
    mapping: MappingSection = MappingSection()

    # resolved at load time, excluded from dumps and fingerprints
    clickmaint_api_key: SecretStr | None = Field(default=None, exclude=True)
    mantenimiento_password: SecretStr | None = Field(default=None, exclude=True)
    source: str = Field(default="", exclude=True)

    @model_validator(mode="after")
    def _statuses_known(self) -> Config:
        names = set(self.clickmaint.statuses)
        used = set(self.vocabularies.status_to_estado) | set(
            self.vocabularies.estado_to_status.values()
        )
        unknown = sorted(used - names)
        if unknown:
            raise ValueError(
                f"vocabularies use Click Maint status(es) {unknown} "
                "missing from clickmaint.statuses"
            )
        return self

    @property
    def state_dir(self) -> Path:
        return resolve_state_dir(self.syncd.state_dir)

    @property
    def ledger_path(self) -> Path:
        path = Path(self.syncd.ledger_file)
        return path if path.is_absolute() else self.state_dir / path

    def mapping_fingerprint(self) -> str:
        """Hash of everything that decides *what* a record looks like on the other side.

        Stored in the ledger; when it changes, sync refuses to run until an explicit
        `syncd resync --rebaseline` (a mapping change must never silently rewrite every record).

        `mapping.parts` is left out: it only decides part transactions not decided yet (a
        mirrored or not-mirrored transaction is a fact, never revisited), and adding an entry
        is the documented fix for a quarantined "no Material with sku ..." transaction, which
        must not halt every stream.
        """
        return self._fingerprint(with_parts=False)

    def fingerprint_matches(self, stored: str | None) -> bool:
        """Does a ledger's stored fingerprint accept this configuration?

        Also accepts the fingerprint as computed before `mapping.parts` was left out, so that
        upgrading does not halt an installation that has `[mapping.parts]` entries.
        """
        return stored is None or stored in (
            self.mapping_fingerprint(),
            self._fingerprint(with_parts=True),
        )

    def _fingerprint(self, *, with_parts: bool) -> str:
        mapping = self.mapping.model_dump(mode="json")
        if not with_parts:
            mapping["parts"] = {}  # kept as an empty table: fingerprints without parts persist
        material = {
            "version": 1,
            "vocabularies": self.vocabularies.model_dump(mode="json"),
            "mapping": mapping,
            "scope": self.scope.model_dump(mode="json"),
            "statuses": self.clickmaint.statuses,
            "zones": [self.mantenimiento.server_timezone, self.mantenimiento.display_timezone],
        }
        blob = json.dumps(material, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def resolve_state_dir(configured: Path | None) -> Path:
    if configured is not None:
        return configured
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    if Path("/var/lib/syncd").is_dir() and os.access("/var/lib/syncd", os.W_OK):
        return Path("/var/lib/syncd")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "syncd"


def find_config_file(explicit: str | os.PathLike[str] | None) -> Path:
    candidates: list[Path] = []
    if explicit:
        return Path(explicit)
    if os.environ.get("SYNCD_CONFIG"):
        return Path(os.environ["SYNCD_CONFIG"])
    if os.environ.get("CONFIGURATION_DIRECTORY"):
        candidates.append(Path(os.environ["CONFIGURATION_DIRECTORY"].split(":")[0]) / "config.toml")
    candidates.append(Path("/etc/syncd/config.toml"))
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    candidates.append(Path(xdg) / "syncd" / "config.toml")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ConfigError(
        "no config file found (tried --config, $SYNCD_CONFIG, "
        + ", ".join(str(c) for c in candidates)
        + ")"
    )


def _env_overrides(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """`SYNCD_CLICKMAINT__ENTITY_ID=3` -> {"clickmaint": {"entity_id": 3}} (TOML value syntax)."""
    out: dict[str, dict[str, Any]] = {}
    for key, raw in env.items():
        if not key.startswith("SYNCD_") or "__" not in key:
            continue
        section, _, name = key[len("SYNCD_") :].lower().partition("__")
        if not section or not name:
            continue
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        node = out.setdefault(section, {})
        parts = name.split("__")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def _describe(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    kind = first["type"]
    if kind == "extra_forbidden":
        return f"{source}: unknown key {loc}"
    if kind == "missing":
        return f"{source}: missing required key {loc}"
    msg = first["msg"].removeprefix("Value error, ")
    if "input" in first and kind not in ("value_error", "assertion_error"):
        shown = repr(first["input"])
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return f"{source}: {loc}: {msg} (got {shown})"
    return f"{source}: {loc}: {msg}"


def read_credential(name: str, env: dict[str, str] | None = None) -> str:
    """Resolve a named secret; raises ConfigError (never echoing the value) when unreadable."""
    env = dict(os.environ) if env is None else env
    upper = name.upper().replace("-", "_").replace(".", "_")
    tried: list[str] = []
    paths: list[Path] = []
    if env.get("CREDENTIALS_DIRECTORY"):
        paths.append(Path(env["CREDENTIALS_DIRECTORY"]) / name)
    if env.get(f"SYNCD_{upper}_FILE"):
        paths.append(Path(env[f"SYNCD_{upper}_FILE"]))
    paths.append(Path("/etc/syncd/credentials") / name)
    for path in paths:
        tried.append(str(path))
        if not path.exists():
            continue
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"credential {name!r} at {path} is unreadable ({exc.strerror})"
            ) from None
        if not value:
            raise ConfigError(f"credential {name!r} at {path} is empty")
        return value
    if env.get(f"SYNCD_{upper}"):
        return env[f"SYNCD_{upper}"]
    raise ConfigError(
        f"credential {name!r} not found (tried {', '.join(tried)} and ${'SYNCD_' + upper})"
    )


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    require_secrets: bool = True,
    env: dict[str, str] | None = None,
) -> Config:
    env = dict(os.environ) if env is None else env
    file = find_config_file(path)
    source = str(file)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{source}: file not found") from None
    except PermissionError:
        raise ConfigError(f"{source}: permission denied") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    raw = _merge(raw, _env_overrides(env))
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
    updates: dict[str, Any] = {"source": source}
    if require_secrets:
        api_key = read_credential(config.clickmaint.api_key_credential, env)
        password = read_credential(config.mantenimiento.password_credential, env)
        register_secret(api_key)
        register_secret(password)
        updates["clickmaint_api_key"] = SecretStr(api_key)
        updates["mantenimiento_password"] = SecretStr(password)
    return config.model_copy(update=updates)
