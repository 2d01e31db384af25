"""Click Maint work order ⇄ canonical snapshot ⇄ mantenimiento OT, field by field.

Reading turns a server record into a snapshot (raising `MappingError`, which quarantines the
record, when it cannot be understood).  Translation answers "what is this value on the other
side" (raising `Untranslatable` when the configured tables have no answer: that one field is
reported as not mirrorable, the rest of the record still syncs).  Writing builds the request
bodies.  docs/mapping.md is the prose version of this module.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ..config import (
    CM_PRIORITIES,
    CM_TYPES,
    ESTADOS,
    PRIORIDADES,
    TIPOS,
    Config,
    ConfigError,
    canonical_estado,
)
from .records import Marker, Snapshot, find_marker, strip_marker

MT_TITLE_MAX = 200  # descripcion_corta is a CharField(200); update-ajax truncates to it
MT_DATE_FORMAT = "%d/%m/%Y %H:%M"
DEFAULT_DURATION = timedelta(hours=2)  # what crear-no-programada assumes without dates


_AVISO_RUTINA = re.compile(r"^Aviso #(\d+)$")


def _aviso_of(rutina: Any) -> int | None:
    """The OT detail names an OT created from an aviso `Aviso #<id>` in its `rutina` field."""
    match = _AVISO_RUTINA.match(rutina) if isinstance(rutina, str) else None
    return int(match.group(1)) if match else None


class MappingError(Exception):
    """The record cannot be understood: it is quarantined with this reason."""


class Untranslatable(Exception):
    """This value has no counterpart on the other side (e.g. an asset without a mapping)."""


def with_marker(text: str, marker: str) -> str:
    """`text` with the link's marker as its last line (the marker survives later writes)."""
    if not marker:
        return text
    return f"{text}\n\n{marker}" if text else marker


def parse_iso(value: Any, what: str) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise MappingError(f"{what}: expected an ISO timestamp, got {type(value).__name__}")
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise MappingError(f"{what}: not an ISO timestamp: {value[:40]!r}") from None
    if moment.tzinfo is None:
        raise MappingError(f"{what}: timestamp without a zone: {value[:40]!r}")
    return moment.astimezone(UTC)


def iso_z(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _invert(table: dict[str, int], what: str) -> dict[int, int]:
    inverse: dict[int, int] = {}
    for cm_id, mt_id in table.items():
        if mt_id in inverse:
            raise ConfigError(
                f"mapping.{what}: mantenimiento id {mt_id} is mapped from two Click Maint ids "
                f"({inverse[mt_id]} and {cm_id}); the mapping must be one-to-one"
            )
        inverse[mt_id] = int(cm_id)
    return inverse


class WorkOrderMapping:
    def __init__(self, config: Config) -> None:
        vocab = config.vocabularies
        self.status_to_estado = {k: canonical_estado(v) for k, v in vocab.status_to_estado.items()}
        self.estado_to_status = {canonical_estado(k): v for k, v in vocab.estado_to_status.items()}
        self.priority_to_prioridad = dict(vocab.priority_to_prioridad)
        self.prioridad_to_priority = dict(vocab.prioridad_to_priority)
        self.tipo_to_type = dict(vocab.tipo_to_type)
        self.status_ids = dict(config.clickmaint.statuses)
        self.display_tz = ZoneInfo(config.mantenimiento.display_timezone)
        self.server_tz = ZoneInfo(config.mantenimiento.server_timezone)
        self.default_ubicacion = config.mantenimiento.default_ubicacion_id
        self.asset_to_mt = {int(k): v for k, v in config.mapping.assets.items()}
        self.asset_to_cm = _invert(config.mapping.assets, "assets")
        self.location_to_mt = {int(k): v for k, v in config.mapping.locations.items()}
        self.location_to_cm = _invert(config.mapping.locations, "locations")

    # -- reading ------------------------------------------------------------------------
    def from_cm(self, record: dict[str, Any]) -> Snapshot:
        """A Click Maint work order (list item or detail) as a snapshot."""
        if not isinstance(record, dict) or not isinstance(record.get("id"), int):
            raise MappingError("work order without an integer id")
        title = record.get("title")
        if not isinstance(title, str) or not title.strip():
            raise MappingError("title missing or not text")
        description = record.get("description")
        if description is None:
            description = ""
        if not isinstance(description, str):
            raise MappingError("description is not text")
        status = record.get("status")
        name = status.get("name") if isinstance(status, dict) else None
        if not isinstance(name, str):
            raise MappingError(f"status missing or malformed: {status!r:.60}")
        if name not in self.status_to_estado:
            raise MappingError(
                f"status {name!r} is not in vocabularies.status_to_estado (add it to the config)"
            )
        priority = record.get("priority") or "none"
        if priority not in CM_PRIORITIES:
            raise MappingError(f"unknown priority {priority!r}")
        wo_type = record.get("type") or "reactive"
        if wo_type not in CM_TYPES:
            raise MappingError(f"unknown type {wo_type!r}")
        asset = record.get("asset")
        asset_id = asset.get("id") if isinstance(asset, dict) else None
        if asset is not None and not isinstance(asset_id, int):
            raise MappingError("asset reference malformed")
        updated = parse_iso(record.get("updated_at"), "updated_at")
        if updated is None:
            raise MappingError("updated_at missing")
        request = record.get("work_order_request_id")
        if request is None and isinstance(record.get("work_order_request"), dict):
            request = record["work_order_request"].get("id")
        marker = find_marker(description)
        return {
            "title": title,
            "description": strip_marker(description).rstrip(),
            "status": name,
            "priority": priority,
            "type": wo_type,
            "due": iso_z(parse_iso(record.get("due_date"), "due_date")),
            "asset": asset_id,
            "location": None,  # Click Maint never shows a work order's location (write-only)
            "_id": record["id"],
            "_updated_at": iso_z(updated),
            "_completed_at": iso_z(parse_iso(record.get("completed_at"), "completed_at")),
            "_request_id": request if isinstance(request, int) else None,
            "_marker": marker.__dict__ if marker else None,
        }

    def _mt_date(self, value: Any, what: str) -> str | None:
        if value in (None, "", "Sin fecha"):
            return None
        if not isinstance(value, str):
            raise MappingError(f"{what}: expected 'dd/mm/YYYY HH:MM', got {type(value).__name__}")
        try:
            local = datetime.strptime(value.strip(), MT_DATE_FORMAT)
        except ValueError:
            raise MappingError(f"{what}: not 'dd/mm/YYYY HH:MM': {value[:40]!r}") from None
        return iso_z(local.replace(tzinfo=self.display_tz))

    def from_mt(self, ot: dict[str, Any]) -> Snapshot:
        """A mantenimiento OT detail (`api/ot/<pk>/detalle/`) as a snapshot."""
        if not isinstance(ot, dict) or not isinstance(ot.get("id"), int):
            raise MappingError("OT without an integer id")
        raw_status = ot.get("raw_status")
        if not isinstance(raw_status, str):
            raise MappingError("raw_status missing")
        estado = canonical_estado(raw_status)
        if estado not in ESTADOS:
            raise MappingError(f"unknown estado {raw_status!r}")
        prioridad = ot.get("prioridad_raw")
        if prioridad not in PRIORIDADES:
            raise MappingError(f"unknown prioridad {prioridad!r}")
        tipo = ot.get("tipo_raw")
        if tipo not in TIPOS:
            raise MappingError(f"unknown tipo {tipo!r}")
        descripcion = ot.get("descripcion") or ""
        notas = ot.get("notas") or ""
        if not isinstance(descripcion, str) or not isinstance(notas, str):
            raise MappingError("descripcion/notas are not text")
        codigo = ot.get("codigo") or f"OT #{ot['id']}"
        # a create carries its marker in the title; afterwards syncd keeps it in notas
        title_marker = find_marker(descripcion)
        marker = title_marker or find_marker(notas)
        title = strip_marker(descripcion) or str(codigo)
        activos = ot.get("activos") or []
        if not isinstance(activos, list):
            raise MappingError("activos is not a list")
        activo_ids = sorted(
            a["id"] for a in activos if isinstance(a, dict) and isinstance(a.get("id"), int)
        )
        ubicacion = ot.get("ubicacion_id")
        if ubicacion is not None and not isinstance(ubicacion, int):
            raise MappingError("ubicacion_id is not an integer")
        return {
            "title": title,
            "description": strip_marker(notas).rstrip(),
            "status": estado,
            "priority": prioridad,
            "type": tipo,
            "due": self._mt_date(ot.get("fin"), "fin"),
            "asset": activo_ids[0] if activo_ids else None,
            "location": ubicacion,
            "_id": ot["id"],
            "_start": self._mt_date(ot.get("inicio"), "inicio"),
            "_codigo": codigo,
            "_aviso_id": _aviso_of(ot.get("rutina")),
            "_marker": marker.__dict__ if marker else None,
            "_title_marker": title_marker is not None,
        }

    # -- translation --------------------------------------------------------------------
    def to_mt(self, field: str, value: Any) -> Any:
        """A Click Maint value as mantenimiento would hold it."""
        if field == "title":
            return str(value)[:MT_TITLE_MAX]
        if field == "description":
            return value
        if field == "status":
            return self.status_to_estado[value]
        if field == "priority":
            return self.priority_to_prioridad[value]
        if field == "type":
            return "PREVENTIVA" if value == "preventive" else "NO_PROGRAMADA"
        if field == "due":
            if value is None:
                raise Untranslatable("mantenimiento requires a planned end date (fin_programado)")
            return value[:16] + ":00Z"
        if field == "asset":
            if value is None:
                return None
            if value not in self.asset_to_mt:
                raise Untranslatable(f"Click Maint asset {value} has no entry in mapping.assets")
            return self.asset_to_mt[value]
        if field == "location":
            if value is None:
                return None
            if value not in self.location_to_mt:
                raise Untranslatable(f"location {value} has no entry in mapping.locations")
            return self.location_to_mt[value]
        raise KeyError(field)

    def to_cm(self, field: str, value: Any) -> Any:
        """A mantenimiento value as Click Maint would hold it."""
        if field in ("title", "description", "due"):
            return value
        if field == "status":
            name = self.estado_to_status[value]
            if name not in self.status_ids:
                raise Untranslatable(f"status {name!r} has no id in clickmaint.statuses")
            return name
        if field == "priority":
            return self.prioridad_to_priority[value]
        if field == "type":
            return self.tipo_to_type[value]
        if field == "asset":
            if value is None:
                return None
            if value not in self.asset_to_cm:
                raise Untranslatable(f"activo {value} has no entry in mapping.assets")
            return self.asset_to_cm[value]
        if field == "location":
            if value is None:
                return None
            if value not in self.location_to_cm:
                raise Untranslatable(f"ubicacion {value} has no entry in mapping.locations")
            return self.location_to_cm[value]
        raise KeyError(field)

    def agree(self, field: str, cm_value: Any, mt_value: Any) -> bool:
        """Do the two sides hold the same thing (within what each side can represent)?"""
        if field == "title":
            return str(cm_value)[:MT_TITLE_MAX] == mt_value
        if field == "description":
            return cm_value == mt_value
        if field == "status":
            return (
                self.status_to_estado.get(cm_value) == mt_value
                or self.estado_to_status.get(mt_value) == cm_value
            )
        if field == "priority":
            return (
                self.priority_to_prioridad.get(cm_value) == mt_value
                or self.prioridad_to_priority.get(mt_value) == cm_value
            )
        if field == "type":
            return self.tipo_to_type.get(mt_value) == cm_value
        if field == "due":
            if cm_value is None or mt_value is None:
                return cm_value is None and mt_value is None
            return str(cm_value)[:16] == str(mt_value)[:16]  # mantenimiento shows minutes
        if field == "asset":
            if cm_value is None or mt_value is None:
                return cm_value is None and mt_value is None
            return self.asset_to_mt.get(cm_value) == mt_value
        if field == "location":
            if cm_value is None:  # never observable on Click Maint
                return mt_value is None
            return self.location_to_mt.get(cm_value) == mt_value
        raise KeyError(field)

    # -- writing: Click Maint ---------------------------------------------------------------
    def cm_fields(self, changes: dict[str, Any]) -> dict[str, Any]:
        """PATCH body fields for Click Maint values."""
        body: dict[str, Any] = {}
        for field, value in changes.items():
            if field == "title":
                body["title"] = value
            elif field == "description":
                body["description"] = value
            elif field == "status":
                body["status_id"] = self.status_ids[value]
            elif field == "priority":
                body["priority"] = value
            elif field == "due":
                body["due_date"] = value
            elif field == "asset":
                body["asset_id"] = value
            elif field == "location":
                body["location_id"] = value
            else:
                raise KeyError(field)
        return body

    def cm_create_fields(self, mt: Snapshot, marker: Marker) -> dict[str, Any]:
        """POST body for a Click Maint work order mirroring an OT (marker in the description)."""
        description = mt["description"]
        description = f"{description}\n\n{marker.text()}" if description else marker.text()
        body: dict[str, Any] = {
            "title": mt["title"],
            "description": description,
            "type": self.tipo_to_type[mt["type"]],
        }
        for field in ("status", "priority", "due", "asset", "location"):
            try:
                value = self.to_cm(field, mt[field])
            except Untranslatable:
                continue
            if value is not None:
                body.update(self.cm_fields({field: value}))
        return body

    # -- writing: mantenimiento -------------------------------------------------------------
    def _mt_local(self, iso_value: str) -> str:
        moment = parse_iso(iso_value, "date")
        assert moment is not None
        return moment.astimezone(self.server_tz).strftime("%Y-%m-%dT%H:%M")

    def mt_create_form(self, cm: Snapshot, marker: Marker) -> dict[str, Any]:
        """crear-no-programada form for an OT mirroring a work order (marker in descripcion)."""
        form: dict[str, Any] = {
            "descripcion": f"{cm['title'][: MT_TITLE_MAX - 40]} {marker.text()}",
            "prioridad": self.priority_to_prioridad[cm["priority"]],
        }
        if self.default_ubicacion is not None:
            form["ubicacion"] = self.default_ubicacion
        try:
            activo = self.to_mt("asset", cm["asset"])
        except Untranslatable:
            activo = None
        if activo is not None:
            form["activo"] = activo
        if cm.get("due"):
            end = parse_iso(cm["due"], "due")
            assert end is not None
            form["fin_programado"] = self._mt_local(iso_z(end) or "")
            form["inicio_programado"] = self._mt_local(iso_z(end - DEFAULT_DURATION) or "")
        return form

    def mt_field_form(self, changes: dict[str, Any], current: Snapshot) -> dict[str, Any]:
        """update-ajax form for title / due / location (absent fields are left unchanged)."""
        form: dict[str, Any] = {}
        if "title" in changes:
            form["descripcion_detallada"] = changes["title"]
        if "due" in changes:
            end = parse_iso(changes["due"], "due")
            assert end is not None
            form["fin_programado"] = self._mt_local(changes["due"])
            start = parse_iso(current.get("_start"), "start") if current.get("_start") else None
            if start is None or start > end:
                # keep the OT well-formed: the start moves with the end, keeping the duration
                old_end = parse_iso(current.get("due"), "due") if current.get("due") else None
                duration = (old_end - start) if (old_end and start and old_end > start) else None
                new_start = end - (duration or DEFAULT_DURATION)
                form["inicio_programado"] = self._mt_local(iso_z(new_start) or "")
        if "location" in changes and changes["location"] is not None:
            form["ubicacion"] = changes["location"]
        return form

    def mt_close_dates(self, cm: Snapshot, mt: Snapshot) -> tuple[str, str]:
        """fecha_inicio / fecha_fin for cerrar-ot (naive, server zone, minutes)."""
        end = parse_iso(cm.get("_completed_at"), "completed_at") or datetime.now(UTC)
        start = parse_iso(mt.get("_start"), "start") if mt.get("_start") else None
        if start is None or start > end:
            start = end
        return self._mt_local(iso_z(start) or ""), self._mt_local(iso_z(end) or "")


class RequestMapping:
    """Click Maint work-order request ⇄ mantenimiento aviso.

    An aviso has one text (`descripcion`) where a request has a title and a description: the
    first line is the title, the rest (after a blank line) the description.  After creation
    mantenimiento only lets the API change an aviso's estado (`avisos/api/update/`), so text
    and priority flow from mantenimiento to Click Maint only.
    """

    def __init__(self, config: Config) -> None:
        vocab = config.vocabularies
        self.status_to_estado = dict(vocab.request_status_to_aviso)
        self.estado_to_status = dict(vocab.aviso_to_request_status)
        self.priority_to_prioridad = dict(vocab.priority_to_prioridad)
        self.prioridad_to_priority = dict(vocab.prioridad_to_priority)

    def from_cm(self, record: dict[str, Any]) -> Snapshot:
        if not isinstance(record, dict) or not isinstance(record.get("id"), int):
            raise MappingError("request without an integer id")
        title = record.get("title")
        if not isinstance(title, str) or not title.strip():
            raise MappingError("title missing or not text")
        description = record.get("description") or ""
        if not isinstance(description, str):
            raise MappingError("description is not text")
        status = record.get("status")
        if status not in self.status_to_estado:
            raise MappingError(
                f"request status {status!r} is not in vocabularies.request_status_to_aviso"
            )
        priority = record.get("priority") or "none"
        if priority not in self.priority_to_prioridad:
            raise MappingError(f"unknown priority {priority!r}")
        updated = parse_iso(record.get("updated_at"), "updated_at")
        marker = find_marker(description)
        return {
            "title": title.strip().splitlines()[0],
            "description": strip_marker(description).strip(),
            "status": status,
            "priority": priority,
            "_id": record["id"],
            "_updated_at": iso_z(updated),
            "_work_order_id": record.get("work_order_id"),
            "_marker": marker.__dict__ if marker else None,
        }

    def from_mt(self, aviso: dict[str, Any]) -> Snapshot:
        if not isinstance(aviso, dict) or not isinstance(aviso.get("id"), int):
            raise MappingError("aviso without an integer id")
        text = aviso.get("descripcion")
        if not isinstance(text, str):
            raise MappingError("descripcion is not text")
        estado = aviso.get("estado")
        if estado not in self.estado_to_status:
            raise MappingError(f"unknown aviso estado {estado!r}")
        prioridad = aviso.get("prioridad")
        if prioridad not in self.prioridad_to_priority:
            raise MappingError(f"unknown prioridad {prioridad!r}")
        marker = find_marker(text)
        clean = strip_marker(text).strip()
        title, _, rest = clean.partition("\n")
        return {
            "title": title.strip() or str(aviso.get("titulo") or f"AV-{aviso['id']}"),
            "description": rest.strip(),
            "status": estado,
            "priority": prioridad,
            "_id": aviso["id"],
            "_ot_id": aviso.get("ot_id"),
            "_marker": marker.__dict__ if marker else None,
        }

    def to_mt(self, field: str, value: Any) -> Any:
        if field == "status":
            return self.status_to_estado[value]
        if field == "priority":
            return self.priority_to_prioridad[value]
        return value

    def to_cm(self, field: str, value: Any) -> Any:
        if field == "status":
            return self.estado_to_status[value]
        if field == "priority":
            return self.prioridad_to_priority[value]
        return value

    def agree(self, field: str, cm_value: Any, mt_value: Any) -> bool:
        if field == "status":
            return (
                self.status_to_estado.get(cm_value) == mt_value
                or self.estado_to_status.get(mt_value) == cm_value
            )
        if field == "priority":
            return (
                self.priority_to_prioridad.get(cm_value) == mt_value
                or self.prioridad_to_priority.get(mt_value) == cm_value
            )
        return bool(cm_value == mt_value)

    def aviso_text(self, cm: Snapshot, marker: Marker) -> str:
        text = cm["title"]
        if cm.get("description"):
            text += "\n\n" + cm["description"]
        return f"{text}\n{marker.text()}"

    def cm_create_fields(self, mt: Snapshot, marker: Marker) -> dict[str, Any]:
        description = mt["description"]
        return {
            "title": mt["title"][:255],
            "description": f"{description}\n\n{marker.text()}" if description else marker.text(),
            "status": self.estado_to_status[mt["status"]],
            "priority": self.prioridad_to_priority[mt["priority"]],
        }
