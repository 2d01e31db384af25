"""The plant both simulated servers describe: one catalogue, two vocabularies.

Seed data of both simulators is drawn from here so that the sandbox config can map locations,
assets and parts between them exactly like an operator would for a real plant.  Ids differ on
purpose between the two systems (a real deployment never has matching ids).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class Place:
    cm_location_id: int
    mt_ubicacion_id: int
    name: str
    parent_mt_id: int | None = None


@dataclass(frozen=True)
class Machine:
    cm_asset_id: int
    mt_activo_id: int
    name: str
    code: str
    place: int  # index into PLACES


@dataclass(frozen=True)
class Stock:
    cm_part_id: int
    number: str  # Click Maint part `number`
    sku: str | None  # mantenimiento Material `sku` (None: no matching material exists)
    name: str
    unit: str
    cost: float


PLACES: list[Place] = [
    Place(101, 11, "Edificio Principal"),
    Place(102, 12, "Sala de Máquinas", parent_mt_id=11),
    Place(103, 13, "Línea de Envasado 1", parent_mt_id=11),
    Place(104, 14, "Línea de Envasado 2", parent_mt_id=11),
    Place(105, 15, "Cuarto Frío", parent_mt_id=11),
    Place(106, 16, "Bodega de Repuestos"),
    Place(107, 17, "Planta de Tratamiento de Agua"),
    Place(108, 18, "Subestación Eléctrica"),
]

MACHINES: list[Machine] = [
    Machine(45, 201, "Freezer Cámara 2", "CF-002", 4),
    Machine(46, 202, "Compresor Atlas Copco GA37", "CMP-001", 1),
    Machine(47, 203, "Caldera Pirotubular 150 BHP", "CAL-001", 1),
    Machine(48, 204, "Llenadora Krones", "LLN-101", 2),
    Machine(49, 205, "Etiquetadora", "ETQ-102", 2),
    Machine(50, 206, "Paletizadora", "PAL-201", 3),
    Machine(51, 207, "Air Purifier 1", "AP-001", 0),
    Machine(52, 208, "Air Purifier 2", "AP-002", 0),
    Machine(53, 209, "Bomba Centrífuga 5HP", "BMB-005", 6),
    Machine(54, 210, "Transformador 500 kVA", "TRF-500", 7),
    Machine(55, 211, "Chiller York", "CHL-001", 4),
    Machine(56, 212, "Montacargas Toyota 8FGU25", "MTC-003", 5),
]

PARTS: list[Stock] = [
    Stock(102, "FL_A", "FL_A", "Air Filter / Filtro de aire", "itm", 26.15),
    Stock(103, "BRG-6204", "BRG-6204", "Rodamiento 6204-2RS", "itm", 4.80),
    Stock(104, "BELT-A42", "BELT-A42", "Correa en V A42", "itm", 12.50),
    Stock(105, "OIL-ISO68", "OIL-ISO68", "Aceite hidráulico ISO 68", "L", 6.35),
    Stock(106, "GRS-EP2", "GRS-EP2", "Grasa EP2 (cartucho)", "itm", 3.90),
    Stock(107, "FUSE-30A", "FUSE-30A", "Fusible 30 A", "itm", 1.25),
    Stock(108, "SEAL-KIT-B", "SEAL-KIT-B", "Kit de sellos bomba", "kit", 48.00),
    Stock(109, "REF-R404A", "R404A", "Refrigerante R-404A", "kg", 18.75),
    Stock(110, "CABLE-12AWG", "CBL-12", "Cable THHN 12 AWG", "m", 0.85),
    Stock(111, "LAMP-LED-18", None, "Tubo LED 18 W (sin equivalente)", "itm", 5.10),
]

TECHNICIANS = [
    ("Ana", "Martínez"),
    ("José", "Núñez"),
    ("María José", "Peña"),
    ("Luis", "O'Connor"),
    ("Carlos", "Zúñiga"),
]

TITLES = [
    "Cambio de filtros",
    "Fix water leakage in Freezer",
    "Revisión de rodamientos",
    "Lubricación general",
    "Inspección eléctrica del tablero",
    "Replace V-belt",
    "Calibración de sensores de presión",
    "Fuga de aceite en compresor",
    "Mantenimiento preventivo mensual",
    "Ruido anormal en motor",
    "Limpieza de condensador",
    "Cambio de sellos mecánicos",
    "Ajuste de tensión de correas",
    "Revisión de válvulas de seguridad",
    "Emergency stop not working",
    "Termografía de tableros",
]

DESCRIPTIONS = [
    "Se detectó vibración excesiva durante la inspección de rutina.",
    "Water leakage due to blocked defrost drain.",
    "Verificar nivel de aceite y reponer según manual del fabricante.",
    "Operador reporta olor a quemado cerca del tablero principal; revisar conexiones.",
    "Cambiar pieza dañada y registrar lecturas antes/después.",
    "Check alignment after replacing the belt; señalizar el área.",
    "",
    "Ñandú test: acentos á é í ó ú ü ñ — comillas «» y símbolos ½ °C.",
]


def planned_ot_fields(rng: random.Random, title: str, note: str) -> dict[str, Any]:
    """A corrective OT a planner would book on a random machine, two hours from now (the
    demo's and the soak's mantenimiento users)."""
    machine = rng.choice(MACHINES)
    start = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(hours=2)
    return {
        "tipo": "CORRECTIVA",
        "prioridad": rng.choice(["BAJA", "MEDIA", "ALTA"]),
        "estado": "PROGRAMADA",
        "ubicacion_id": PLACES[machine.place].mt_ubicacion_id,
        "activos": [machine.mt_activo_id],
        "inicio_programado": start,
        "fin_programado": start + timedelta(hours=2),
        "descripcion_corta": title,
        "notas": note,
    }
