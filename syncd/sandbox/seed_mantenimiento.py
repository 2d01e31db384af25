"""Deterministic seed data for `MantenimientoSim`, drawn from the shared plant catalogue.

The same `seed` always yields the same records relative to the simulator clock: locations, assets
and parts come from `catalog` (so the sandbox config can map them to Click Maint), and the work
orders look like a plant's last and next month: preventive OTs from routines, corrective ones
from avisos, unscheduled ones from the app, every estado, some closures, some material usage and
a few id gaps left by deleted OTs (the server never reuses ids).
"""

from __future__ import annotations

import random
import unicodedata
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from .catalog import DESCRIPTIONS, MACHINES, PARTS, PLACES, TECHNICIANS, TITLES
from .mantenimiento_sim import MantenimientoSim

FIRST_OT_ID = 1000
FIRST_MATERIAL_ID = 301
SUPERVISOR_ID = 30
TECH_USER_FIRST_ID = 20

RUTINAS = (
    "Mantenimiento preventivo mensual de compresores",
    "Limpieza de condensadores y evaporadores",
    "Inspección termográfica de tableros",
    "Lubricación de rodamientos",
    "Revisión semanal de caldera",
    "Rutina trimestral de llenadora",
)
EXTRA_MATERIALS: tuple[tuple[str, str, str, str], ...] = (
    ("Guantes de nitrilo (caja)", "EPP-GN-100", "caja", "EPP"),
    ("Cinta aislante 3M Super 33+", "ELE-CINTA-33", "rollo", "CONSUMIBLE"),
    ("Limpiador dieléctrico en aerosol", "QUI-DIEL-400", "lata", "INSUMO"),
    ("Contactor 3P 40 A", "ELE-CONT-40A", "itm", "REPUESTO"),
    ("Relé térmico 25-32 A", "ELE-RT-32", "itm", "REPUESTO"),
    ("Filtro de aceite compresor", "CMP-FO-37", "itm", "REPUESTO"),
    ("Separador aire/aceite", "CMP-SEP-37", "itm", "REPUESTO"),
    ("Termostato digital", "REF-TERM-DIG", "itm", "REPUESTO"),
    ("Válvula de expansión termostática", "REF-VET-05", "itm", "REPUESTO"),
    ("Trapo industrial", "INS-TRAPO-KG", "kg", "INSUMO"),
    ("Desengrasante biodegradable", "QUI-DESENG-GL", "gal", "INSUMO"),
    ('Llave ajustable 12"', "HER-LLAVE-12", "itm", "HERRAMIENTA"),
    ("Lentes de seguridad", "EPP-LENTES", "itm", "EPP"),
    ("Sensor de presión 0-10 bar", "INS-SP-10B", "itm", "REPUESTO"),
    ('Empaque de caucho 2"', "SEL-EMP-2IN", "itm", "REPUESTO"),
)
PUESTOS = ("Técnico Electromecánico", "Técnico de Refrigeración", "Electricista")
EMPRESAS = (
    "Servicios Eléctricos Cruz S. de R.L.",
    "Refrigeración Industrial Hondureña",
    "Mantenimientos Álvarez",
)
DEPARTAMENTOS = ("Mantenimiento", "Producción", "Calidad")
FALLAS = ("Fuga", "Ruido anormal", "Sobrecalentamiento", "Falla eléctrica", "Vibración")
COMENTARIOS_MATERIAL = ("", "Cambio preventivo", "Reemplazo por desgaste", "Stock de bodega")


def seed_mantenimiento(
    sim: MantenimientoSim, *, ots: int = 300, avisos: int = 40, seed: int = 1
) -> None:
    """Fill `sim` with `ots` OTs (ids from 1000, with gaps) and `avisos` avisos."""
    rng = random.Random(seed)
    with sim.lock:
        now = sim.clock.now().replace(microsecond=0)
        _seed_catalogue(sim)
        people = _seed_people(sim)
        if not sim.ots:
            sim._bump_sequence("ot", FIRST_OT_ID - 1)  # every seeded OT id is >= 1000
        from_avisos = min(ots, round(avisos * 0.3))
        _seed_ots(sim, rng, now, people, ots - from_avisos)
        _seed_avisos(sim, rng, now, people, avisos, from_avisos)
        _seed_material_usage(sim, rng, now, people)
        _seed_notifications(sim, now)


# ---------------------------------------------------------------------------------------------
# Catalogue and people
# ---------------------------------------------------------------------------------------------
def _seed_catalogue(sim: MantenimientoSim) -> None:
    parents = {p.parent_mt_id for p in PLACES if p.parent_mt_id is not None}
    for place in PLACES:
        tipo = "EDIFICIO" if place.mt_ubicacion_id in parents else "AREA"
        if "Bodega" in place.name:
            tipo = "BODEGA"
        sim.add_ubicacion(
            place.name, id=place.mt_ubicacion_id, parent_id=place.parent_mt_id, tipo=tipo
        )
    for machine in MACHINES:
        sim.add_activo(
            machine.name,
            id=machine.mt_activo_id,
            codigo_interno=machine.code,
            ubicacion_id=PLACES[machine.place].mt_ubicacion_id,
        )
    bodega = next(p.name for p in PLACES if "Bodega" in p.name)
    next_id = FIRST_MATERIAL_ID
    for index, part in enumerate(p for p in PARTS if p.sku is not None):
        stock = float(5 + (index * 7) % 40)
        sim.add_material(
            part.name,
            part.sku,
            id=next_id,
            unidad=part.unit,
            precio_estimado=part.cost,
            stock=stock,
            categoria="Repuestos",
            categoria_id=1,
            tipo_material="REPUESTO" if part.unit in ("itm", "kit") else "INSUMO",
            bodegas=[bodega],
        )
        next_id += 1
    for index, (nombre, sku, unidad, tipo) in enumerate(EXTRA_MATERIALS):
        sim.add_material(
            nombre,
            sku,
            id=next_id,
            unidad=unidad,
            precio_estimado=round(2.5 + index * 3.35, 2),
            stock=float(index % 4) * 6,
            categoria="Suministros" if tipo != "REPUESTO" else "Repuestos",
            categoria_id=2 if tipo != "REPUESTO" else 1,
            tipo_material=tipo,
            descripcion=f"{nombre} — uso general en planta" if index % 3 == 0 else None,
            bodegas=[bodega] if index % 4 else [],
        )
        next_id += 1
    for nombre in EMPRESAS:
        sim.add_empresa(nombre)
    for nombre in DEPARTAMENTOS:
        sim.add_departamento(nombre)
    for nombre in FALLAS:
        sim.add_falla(nombre)
    for nombre in RUTINAS:
        sim.ensure_rutina(nombre)


def _slug(first: str, last: str) -> str:
    raw = (first[0] + last).lower().replace("'", "").replace(" ", "")
    return unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode()


def _seed_people(sim: MantenimientoSim) -> dict[str, list[int]]:
    """Technician users (3 with a login, 2 contractors without), a supervisor, puestos."""
    tech_users: list[int] = []
    puestos: list[int] = []
    empresa_ids = sorted(sim.empresas)
    for index, (first, last) in enumerate(TECHNICIANS):
        user_id = None
        if index < 3:
            user = sim.add_user(
                _slug(first, last),
                id=TECH_USER_FIRST_ID + index,
                password=f"{_slug(first, last)}-sandbox-pass",
                groups=["Tecnicos"],
                sections=["tareas_hoy", "crear_aviso", "mis_avisos"],
                first_name=first,
                last_name=last,
            )
            user_id = user["id"]
            tech_users.append(user_id)
        puesto = sim.add_tecnico_puesto(
            first,
            last,
            user_id=user_id,
            puesto=PUESTOS[index % len(PUESTOS)],
            empresa_id=empresa_ids[index % len(empresa_ids)] if user_id is None else None,
        )
        puestos.append(puesto["id"])
    sim.add_user(
        "supervisor",
        id=SUPERVISOR_ID,
        password="supervisor-sandbox-pass",
        is_staff=True,
        groups=["Supervisor"],
        sections=["tareas_hoy", "mis_avisos"],
        first_name="Lucía",
        last_name="Paz",
    )
    requesters = [u for u in (7, 8, 1) if sim.user_by_id(u) is not None] + tech_users
    return {"tech_users": tech_users, "puestos": puestos, "requesters": requesters}


# ---------------------------------------------------------------------------------------------
# Work orders
# ---------------------------------------------------------------------------------------------
def _slot(sim: MantenimientoSim, rng: random.Random, now: datetime) -> datetime:
    """A start time within +-30 days, on the half hour of the plant's wall clock."""
    when = (now + timedelta(minutes=rng.randint(-30 * 24 * 60, 30 * 24 * 60))).astimezone(
        sim.server_tz
    )
    when = when.replace(minute=30 if when.minute >= 30 else 0, second=0, microsecond=0)
    return when.astimezone(now.tzinfo)


def _estado_for(rng: random.Random, inicio: datetime, now: datetime) -> str:
    if inicio < now:
        weights = {"REALIZADA": 55, "CANCELADA": 8, "EJECUCION": 12, "PROGRAMADA": 15, "ESPERA": 10}
    else:
        weights = {"ESPERA": 40, "PROGRAMADA": 48, "EJECUCION": 4, "CANCELADA": 8}
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _ot_fields(
    sim: MantenimientoSim, rng: random.Random, now: datetime, people: dict[str, list[int]]
) -> dict[str, Any]:
    tipo = rng.choices(["PREVENTIVA", "CORRECTIVA", "NO_PROGRAMADA"], weights=[55, 25, 20])[0]
    inicio = _slot(sim, rng, now)
    machine = rng.choice(MACHINES)
    with_asset = rng.random() < 0.9
    fields: dict[str, Any] = {
        "tipo": tipo,
        "prioridad": rng.choices(["BAJA", "MEDIA", "ALTA", "CRITICA"], weights=[20, 50, 22, 8])[0],
        "estado": _estado_for(rng, inicio, now),
        "ubicacion_id": PLACES[machine.place].mt_ubicacion_id,
        "activos": [machine.mt_activo_id] if with_asset else [],
        "inicio_programado": inicio,
        "fin_programado": inicio + timedelta(minutes=30 * rng.randint(2, 8)),
        "descripcion_corta": rng.choice(TITLES),
        "descripcion_detallada": rng.choice(DESCRIPTIONS) or None,
        "equipo_parado": rng.random() < 0.1,
    }
    if tipo == "PREVENTIVA":
        fields["rutina"] = rng.choice(RUTINAS)
    if rng.random() < 0.3:
        fields["notas"] = rng.choice(["Revisar antes del turno B.", "Pendiente repuesto.", "OK ✔"])
    if rng.random() < 0.7:
        puesto_id = rng.choice(people["puestos"])
        fields["tecnico_puesto_id"] = puesto_id
        fields["tecnico_id"] = sim.tecnicos_puesto[puesto_id]["user_id"]
    if rng.random() < 0.5:
        fields["supervisor_id"] = SUPERVISOR_ID
    if rng.random() < 0.15:
        fields["empresa_responsable"] = rng.choice(sorted(sim.empresas))
    ahead = (
        timedelta(days=rng.randint(1, 15))
        if tipo == "PREVENTIVA"
        else timedelta(hours=rng.randint(0, 72))
    )
    creado = min(inicio, now) - ahead
    fields["creado_en"] = creado
    fields["actualizado_en"] = creado + (now - creado) * rng.random()
    if fields["estado"] in ("EJECUCION", "REALIZADA"):
        fields["fecha_ejecucion"] = min(inicio + timedelta(minutes=rng.randint(0, 45)), now)
    return fields


def _close(sim: MantenimientoSim, rng: random.Random, now: datetime, ot: dict[str, Any]) -> None:
    """Close through the closure record, like the app does (REALIZADA, fecha_ejecucion)."""
    start = min(ot["inicio_programado"] + timedelta(minutes=rng.randint(0, 40)), now)
    end = min(start + timedelta(minutes=30 * rng.randint(1, 6)), now)
    sim.close_ot(
        ot["id"],
        fecha_inicio=start,
        fecha_fin=end,
        comentarios=rng.choice(["Trabajo completado sin novedad.", "Se cambió pieza dañada.", ""]),
        horas_hombre=round((end - start).total_seconds() / 3600 * rng.choice([1, 2]), 2),
        tecnico_id=ot["tecnico_id"] or 7,
    )


def _seed_ots(
    sim: MantenimientoSim,
    rng: random.Random,
    now: datetime,
    people: dict[str, list[int]],
    count: int,
) -> None:
    """`count` OTs from id 1000; ~3 % more are created and deleted again to leave id gaps."""
    gaps = round(count * 0.03) if count >= 10 else 0
    created: list[int] = []
    for index in range(count + gaps):
        fields = _ot_fields(sim, rng, now, people)
        if index == 0 and (not sim.ots or max(sim.ots) < FIRST_OT_ID):
            fields["id"] = FIRST_OT_ID
        # most REALIZADA OTs got there through a closure record (api/cerrar-ot)
        with_closure = fields["estado"] == "REALIZADA" and rng.random() < 0.65
        if with_closure:
            fields["estado"] = "EJECUCION"
        ot = sim.create_ot(**fields)
        created.append(ot["id"])
        if with_closure:
            _close(sim, rng, now, ot)
    for ot_id in rng.sample(created[1:], gaps):
        sim.delete_ot(ot_id)


# ---------------------------------------------------------------------------------------------
# Avisos, material usage, notifications
# ---------------------------------------------------------------------------------------------
def _seed_avisos(
    sim: MantenimientoSim,
    rng: random.Random,
    now: datetime,
    people: dict[str, list[int]],
    count: int,
    with_ot: int,
) -> None:
    for index in range(count):
        machine = rng.choice(MACHINES)
        creado = now - timedelta(minutes=rng.randint(30, 30 * 24 * 60))
        descripcion = rng.choice([d for d in DESCRIPTIONS if d] + list(TITLES))
        needs_ot = index < with_ot
        estado = (
            rng.choice(["PROCESO", "CERRADO"])
            if needs_ot
            else rng.choices(["ABIERTO", "PROCESO", "CERRADO", "CANCELADO"], [50, 15, 25, 10])[0]
        )
        aviso = sim.create_aviso(
            descripcion=descripcion,
            estado="PROCESO" if needs_ot else estado,
            prioridad=rng.choices(["BAJA", "MEDIA", "ALTA", "CRITICA"], weights=[20, 50, 22, 8])[0],
            tipo=rng.choice(["AVERIA", "SOLICITUD", "MEJORA", "LEGAL", "MAL_USO"]),
            ubicacion_id=PLACES[machine.place].mt_ubicacion_id,
            activo_id=machine.mt_activo_id if rng.random() < 0.8 else None,
            solicitante_id=rng.choice(people["requesters"]),
            responsable_id=rng.choice(people["tech_users"]) if rng.random() < 0.4 else None,
            departamento_id=rng.choice(sorted(sim.departamentos)) if rng.random() < 0.6 else None,
            falla_id=rng.choice(sorted(sim.fallas)) if rng.random() < 0.3 else None,
            equipo_parado=rng.random() < 0.15,
            creado_en=creado,
            fecha_cierre=creado + (now - creado) / 2
            if estado == "CERRADO" and not needs_ot
            else None,
            actualizado_en=creado + (now - creado) * rng.random(),
        )
        if needs_ot:
            _ot_from_aviso(sim, rng, now, aviso, closed=estado == "CERRADO")


def _ot_from_aviso(
    sim: MantenimientoSim,
    rng: random.Random,
    now: datetime,
    aviso: dict[str, Any],
    *,
    closed: bool,
) -> None:
    """What `avisos/api/create-ot/` leaves behind, maybe closed since (closing the aviso too)."""
    inicio = aviso["creado_en"] + timedelta(hours=rng.randint(1, 48))
    inicio = min(inicio, now - timedelta(hours=3)) if closed else inicio
    ot = sim.create_ot(
        aviso_id=aviso["id"],
        tipo="CORRECTIVA",
        prioridad=aviso["prioridad"],
        estado="EJECUCION" if closed else rng.choice(["PROGRAMADA", "ESPERA", "EJECUCION"]),
        ubicacion_id=aviso["ubicacion_id"],
        activos=[aviso["activo_id"]] if aviso["activo_id"] is not None else [],
        tecnico_id=aviso["responsable_id"],
        inicio_programado=inicio,
        fin_programado=inicio + timedelta(hours=2),
        descripcion_corta=f"Corr.: {aviso['descripcion'][:50]}...",
        creado_en=min(aviso["creado_en"] + timedelta(minutes=20), now),
        actualizado_en=min(aviso["creado_en"] + timedelta(minutes=20), now),
    )
    if closed:
        start = min(inicio + timedelta(minutes=15), now)
        sim.close_ot(
            ot["id"],
            fecha_inicio=start,
            fecha_fin=min(start + timedelta(hours=1), now),
            comentarios="Falla corregida.",
            horas_hombre=1.0,
            tecnico_id=aviso["responsable_id"] or 7,
        )


def _seed_material_usage(
    sim: MantenimientoSim, rng: random.Random, now: datetime, people: dict[str, list[int]]
) -> None:
    material_ids = sorted(sim.materials)
    registrars = people["tech_users"] + [7]
    for ot_id in sorted(sim.ots):
        ot = sim.ots[ot_id]
        if ot["estado"] == "CANCELADA" or rng.random() >= 0.12:
            continue
        for _ in range(rng.randint(1, 3)):
            cantidad = rng.choice(["1", "2", "0.5", "1.25", "3", "0.75", "10"])
            activo_id = rng.choice(ot["activos"]) if ot["activos"] and rng.random() < 0.7 else None
            sim.add_material_usage(
                ot_id,
                rng.choice(material_ids),
                Decimal(cantidad),
                comentario=rng.choice(COMENTARIOS_MATERIAL),
                activo_id=activo_id,
                registrado_por=rng.choice(registrars),
                fecha_registro=ot["creado_en"] + (now - ot["creado_en"]) * rng.random(),
            )


def _seed_notifications(sim: MantenimientoSim, now: datetime) -> None:
    if sim.user_by_id(7) is None:
        return
    for mensaje, tipo in (
        ("Se generaron 12 órdenes preventivas para la próxima semana.", "INFO"),
        ("La OT OT-000001003 tiene fecha vencida.", "WARNING"),
        ("Importación de rutinas completada.", "SUCCESS"),
    ):
        sim.add_notification(7, mensaje, tipo)
    first = min(n for n, rec in sim.notifications.items() if rec["user_id"] == 7)
    sim.notifications[first]["leida"] = True
