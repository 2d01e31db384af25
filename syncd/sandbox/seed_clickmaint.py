"""Deterministic, realistic seed data for the Click Maint simulator.

The data looks like two months of a real plant: work orders created over the last 60 days with
due dates around today, a few completed or cancelled, requests in every state (approved ones
linked to the work order they became), and every catalogue part with a restock/usage history
in mixed units (decimal litres, kilograms, metres).  Everything goes through the simulator's
direct helpers so seeding never touches the rate limiter or the fault injector.
"""

from __future__ import annotations

import bisect
import random
import string
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .catalog import DESCRIPTIONS, MACHINES, PARTS, PLACES, TITLES, Machine, Stock
from .clickmaint_sim import CATEGORIES, UI_USERS, ClickMaintSim

HORIZON = timedelta(days=60)
DECIMAL_UNITS = frozenset({"L", "kg", "m"})
MEASUREMENT_UNITS: dict[str, dict[str, Any]] = {
    "itm": {"id": 2, "name": "Item", "short_name": "itm"},
    "L": {"id": 3, "name": "Liter", "short_name": "L"},
    "kg": {"id": 4, "name": "Kilogram", "short_name": "kg"},
    "m": {"id": 5, "name": "Meter", "short_name": "m"},
    "kit": {"id": 6, "name": "Kit", "short_name": "kit"},
}
STOREROOMS = [{"id": 1, "name": "Main Warehouse"}, {"id": 2, "name": "Bodega de Repuestos"}]
#: part number prefix -> part type
PART_TYPES: dict[str, dict[str, Any]] = {
    "FL": {"id": 3, "name": "Filters"},
    "BRG": {"id": 4, "name": "Rodamientos"},
    "BELT": {"id": 5, "name": "Correas"},
    "OIL": {"id": 6, "name": "Lubricantes"},
    "GRS": {"id": 6, "name": "Lubricantes"},
    "FUSE": {"id": 7, "name": "Eléctricos"},
    "CABLE": {"id": 7, "name": "Eléctricos"},
    "LAMP": {"id": 7, "name": "Eléctricos"},
    "SEAL": {"id": 8, "name": "Sellos"},
    "REF": {"id": 9, "name": "Refrigerantes"},
}
#: (weight, transaction type) after the initial restock of each part
TX_MIX: list[tuple[float, str]] = [
    (0.55, "usage"),
    (0.20, "restock"),
    (0.08, "return"),
    (0.07, "cost_update"),
    (0.05, "reconcile"),
    (0.05, "average_cost_update"),
]


@dataclass
class _WorkOrderIndex:
    """Seeded work orders in creation order, so usages only reference work orders that exist."""

    created: list[datetime] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)

    def add(self, created_at: datetime, wo_id: int) -> None:
        self.created.append(created_at)
        self.ids.append(wo_id)

    def pick_before(self, rng: random.Random, when: datetime) -> int | None:
        count = bisect.bisect_right(self.created, when)
        return self.ids[rng.randrange(count)] if count else None


def seed_clickmaint(
    sim: ClickMaintSim,
    *,
    work_orders: int = 300,
    requests: int = 40,
    transactions_per_part: tuple[int, int] = (5, 20),
    seed: int = 1,
) -> None:
    """Fill `sim` (entity 1) with `work_orders` work orders, `requests` requests and part history.

    Approved requests' work orders count towards `work_orders`, so the totals are exact.
    """
    rng = random.Random(seed)
    now = sim.clock.now_seconds()
    _seed_parts(sim, rng, now)
    approvals = _seed_requests(sim, rng, now, requests, max_approved=work_orders)
    index = _seed_work_orders(sim, rng, now, work_orders, approvals)
    _seed_transactions(sim, rng, now, index, transactions_per_part)


# ---------------------------------------------------------------------------------------------
# time helpers
# ---------------------------------------------------------------------------------------------
def _past(rng: random.Random, now: datetime, horizon: timedelta = HORIZON) -> datetime:
    return now - timedelta(seconds=rng.randint(0, int(horizon.total_seconds())))


def _later(rng: random.Random, start: datetime, now: datetime, max_days: float) -> datetime:
    """A moment after `start`, at most `max_days` later and never after `now`."""
    room = max(0, int(min((now - start).total_seconds(), max_days * 86400)))
    return start + timedelta(seconds=rng.randint(0, room))


def _due_date(rng: random.Random, now: datetime) -> str | None:
    if rng.random() < 0.1:
        return None
    day = now + timedelta(days=rng.randint(-30, 30))
    return day.replace(hour=rng.choice([8, 12, 17]), minute=0, second=0).isoformat()


# ---------------------------------------------------------------------------------------------
# content helpers
# ---------------------------------------------------------------------------------------------
def _machine(rng: random.Random, null_rate: float = 0.2) -> Machine | None:
    return None if rng.random() < null_rate else rng.choice(MACHINES)


def _location_id(rng: random.Random, machine: Machine | None) -> int:
    place = PLACES[machine.place] if machine else rng.choice(PLACES)
    return place.cm_location_id


def _title(rng: random.Random, machine: Machine | None) -> str:
    title = rng.choice(TITLES)
    return f"{title} – {machine.name}" if machine and rng.random() < 0.5 else title


def _description(rng: random.Random) -> str | None:
    return None if rng.random() < 0.05 else rng.choice(DESCRIPTIONS)


def _priority(rng: random.Random) -> str:
    return rng.choices(["none", "low", "medium", "high"], weights=[2, 3, 4, 2])[0]


def _people(rng: random.Random) -> dict[str, Any]:
    return {
        "technician_ids": rng.sample([u["id"] for u in UI_USERS], k=rng.choice([0, 1, 1, 2])),
        "category_ids": rng.sample(sorted(CATEGORIES), k=rng.choice([0, 1, 1])),
        "comments_count": rng.choice([0, 0, 1, 2, 3]),
    }


def _status_id(rng: random.Random) -> int:
    """~10% completed, ~5% cancelled (custom), the rest spread over the open states."""
    roll = rng.random()
    for threshold, status_id in ((0.10, 5), (0.15, 6), (0.55, 1), (0.75, 3), (0.90, 2)):
        if roll < threshold:
            return status_id
    return 7


# ---------------------------------------------------------------------------------------------
# parts
# ---------------------------------------------------------------------------------------------
def _seed_parts(sim: ClickMaintSim, rng: random.Random, now: datetime) -> None:
    created = now - HORIZON - timedelta(days=30)
    for stock in PARTS:
        decimal = stock.unit in DECIMAL_UNITS
        sim.create_part(
            {
                "id": stock.cm_part_id,
                "name": stock.name,
                "description": f"{stock.name} ({stock.number})",
                "number": stock.number,
                "area": f"Estante {rng.choice('ABCD')}-{rng.randint(1, 9)}",
                "lead_time": rng.randint(2, 21),
                "min_qty": 5.0 if decimal else rng.randint(2, 6),
                "desired_qty": 20.0 if decimal else rng.randint(8, 15),
                "unit_cost": stock.cost,
                "avg_unit_cost": stock.cost,
                "part_type": dict(_part_type(stock)),
                "storeroom": dict(rng.choice(STOREROOMS)),
                "measurement_unit": dict(MEASUREMENT_UNITS[stock.unit]),
                "reserved": 0 if decimal else rng.randint(0, 2),
                "asset_ids": [m.cm_asset_id for m in rng.sample(MACHINES, k=rng.randint(0, 2))],
                "qr_code": "".join(rng.choices(string.ascii_letters + string.digits, k=26)),
                "created_at": created,
            }
        )


def _part_type(stock: Stock) -> dict[str, Any]:
    prefix = stock.number.split("-")[0].split("_")[0]
    return PART_TYPES.get(prefix, {"id": 10, "name": "General"})


# ---------------------------------------------------------------------------------------------
# requests
# ---------------------------------------------------------------------------------------------
def _seed_requests(
    sim: ClickMaintSim, rng: random.Random, now: datetime, count: int, *, max_approved: int
) -> list[tuple[datetime, int]]:
    """Create requests in time order; returns (approval time, request id) for approved ones."""
    approvals: list[tuple[datetime, int]] = []
    for created_at in sorted(_past(rng, now) for _ in range(count)):
        machine = _machine(rng, null_rate=0.3)
        status = rng.choices(["pending", "on_hold", "declined", "approved"], [5, 2, 1, 3])[0]
        if status == "approved" and len(approvals) >= max_approved:
            status = "pending"
        fields: dict[str, Any] = {
            "title": _title(rng, machine),
            "description": _description(rng),
            "priority": _priority(rng),
            "notify": rng.random() < 0.5,
            "asset_id": machine.cm_asset_id if machine else None,
            "location_id": _location_id(rng, machine),
            "due_date": _due_date(rng, now),
            "created_at": created_at,
            "comments_count": rng.choice([0, 0, 1, 2]),
        }
        if status in ("on_hold", "declined"):
            fields["status"] = status
            fields["updated_at"] = _later(rng, created_at, now, max_days=3)
        req = sim.create_request(fields, user=rng.choice(UI_USERS))
        if status == "approved":
            approvals.append((_later(rng, created_at, now, max_days=2), req["id"]))
    return approvals


# ---------------------------------------------------------------------------------------------
# work orders
# ---------------------------------------------------------------------------------------------
def _seed_work_orders(
    sim: ClickMaintSim,
    rng: random.Random,
    now: datetime,
    count: int,
    approvals: list[tuple[datetime, int]],
) -> _WorkOrderIndex:
    """Create work orders in creation-time order so ids grow with `created_at`, as in a real DB."""
    events: list[tuple[datetime, int | None]] = [(t, req_id) for t, req_id in approvals]
    events += [(_past(rng, now), None) for _ in range(max(0, count - len(approvals)))]
    events.sort(key=lambda e: (e[0], e[1] or 0))
    index = _WorkOrderIndex()
    for created_at, req_id in events:
        fields = _work_order_fields(rng, now, created_at)
        if req_id is not None:
            fields.update(_fields_from_request(sim, req_id))
            fields.pop("pm_schedule_id", None)  # converted requests are reactive, never PM
        wo = sim.create_work_order(fields, user=rng.choice(UI_USERS))
        if req_id is not None:
            sim.update_request(
                req_id,
                {"status": "approved", "work_order_id": wo["id"], "updated_at": created_at},
            )
        index.add(created_at, wo["id"])
    return index


def _work_order_fields(rng: random.Random, now: datetime, created_at: datetime) -> dict[str, Any]:
    machine = _machine(rng)
    updated_at = _later(rng, created_at, now, max_days=5)
    status_id = _status_id(rng)
    preventive = rng.random() < 0.25
    fields: dict[str, Any] = {
        "title": _title(rng, machine),
        "description": _description(rng),
        "type": "preventive" if preventive else "reactive",
        "priority": _priority(rng),
        "status_id": status_id,
        "due_date": _due_date(rng, now),
        "asset_id": machine.cm_asset_id if machine else None,
        "location_id": _location_id(rng, machine),
        "created_at": created_at,
        "updated_at": updated_at,
        **_people(rng),
    }
    if preventive:
        fields["pm_schedule_id"] = rng.randint(70, 90)
    if status_id == 5:
        fields["completed_at"] = updated_at
    return fields


def _fields_from_request(sim: ClickMaintSim, req_id: int) -> dict[str, Any]:
    """What the web app copies from a request when it is approved into a work order."""
    with sim.lock:
        req = sim.requests[req_id]
        return {
            "title": req["title"],
            "description": req["description"],
            "priority": req["priority"],
            "due_date": req["due_date"],
            "asset_id": req["asset_id"],
            "location_id": req["location_id"],
            "work_order_request_id": req_id,
            "type": "reactive",
        }


# ---------------------------------------------------------------------------------------------
# part transactions
# ---------------------------------------------------------------------------------------------
@dataclass
class _Stock:
    """Running stock of one part while its history is generated."""

    part_id: int
    decimal: bool
    unit_cost: float
    on_hand: float = 0.0
    used: list[tuple[int, float]] = field(default_factory=list)  # (work order, quantity)


def _seed_transactions(
    sim: ClickMaintSim,
    rng: random.Random,
    now: datetime,
    index: _WorkOrderIndex,
    per_part: tuple[int, int],
) -> None:
    low, high = per_part
    for stock in PARTS:
        state = _Stock(stock.cm_part_id, stock.unit in DECIMAL_UNITS, stock.cost)
        count = rng.randint(low, high)
        moments = sorted(_past(rng, now) for _ in range(count))
        for number, when in enumerate(moments):
            kind = "restock" if number == 0 else _pick_type(rng)
            _add_transaction(sim, rng, state, kind, when, index)


def _pick_type(rng: random.Random) -> str:
    return rng.choices([t for _, t in TX_MIX], weights=[w for w, _ in TX_MIX])[0]


def _quantity(rng: random.Random, state: _Stock, low: float, high: float) -> float:
    if state.decimal:
        return round(rng.uniform(low, high), 1)
    return float(rng.randint(max(1, int(low)), max(1, int(high))))


def _add_transaction(
    sim: ClickMaintSim,
    rng: random.Random,
    state: _Stock,
    kind: str,
    when: datetime,
    index: _WorkOrderIndex,
) -> None:
    """Add one plausible transaction; impossible moves (usage without stock) become restocks."""
    wo_id = index.pick_before(rng, when)
    quantity = 0.0
    cost: float | None = None
    note = ""
    if kind == "usage":
        quantity = min(_quantity(rng, state, 0.5, 6), state.on_hand)
        if wo_id is None or quantity <= 0:
            kind = "restock"
        else:
            note = f"Consumo en OT #{wo_id}"
    if kind == "return":
        if not state.used:
            kind = "restock"
        else:
            wo_id, used = rng.choice(state.used)
            quantity = max(0.1, round(used / 2, 1)) if state.decimal else 1.0
            note = "Devolución de sobrante"
    if kind == "restock":
        wo_id = None
        quantity = _quantity(rng, state, 10, 40)
        cost = round(state.unit_cost * rng.uniform(0.95, 1.05), 2)
        note = f"Orden de compra PO-{rng.randint(10000, 99999)} recibida"
    elif kind in ("cost_update", "average_cost_update"):
        wo_id = None
        cost = round(state.unit_cost * rng.uniform(0.95, 1.1), 2)
        note = "Actualización de precio del proveedor"
    elif kind == "reconcile":
        wo_id = None
        quantity = -min(state.on_hand, 1.0) if rng.random() < 0.6 else 1.0
        note = "Conteo físico mensual"
    tx = sim.add_transaction(
        state.part_id,
        kind,
        quantity,
        work_order_id=wo_id if kind in ("usage", "return") else None,
        note=note,
        cost=cost,
        user=rng.choice(UI_USERS),
        created_at=when,
    )
    _track(state, kind, quantity, wo_id, tx)


def _track(
    state: _Stock, kind: str, quantity: float, wo_id: int | None, tx: dict[str, Any]
) -> None:
    if kind in ("restock", "return", "reconcile"):
        state.on_hand = round(state.on_hand + quantity, 4)
    elif kind == "usage":
        state.on_hand = round(state.on_hand - quantity, 4)
        if wo_id is not None:
            state.used.append((wo_id, quantity))
    elif kind == "cost_update":
        state.unit_cost = float(tx["cost"])
