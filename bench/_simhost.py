"""Both simulators in a process of their own, driven by the benchmark over a pipe.

Why a separate process: the benchmarks measure syncd's peak RSS and wall time.  Simulators
holding thousands of records in the same interpreter would inflate the RSS and compete with
syncd for the GIL, which the real servers never do.  The simulators still serve real loopback
sockets (`start_sandbox`); the pipe only carries the "UI user" actions (edits made directly in
the simulator, no HTTP) and the server-side request counters.
"""

from __future__ import annotations

import random
import re
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import _support  # also makes `syncd` importable in the spawned child


@dataclass(frozen=True)
class SimOptions:
    directory: Path
    work_orders: int
    ots: int
    #: ClickMaintVariant fields (per_page_cap, rate_limit, rate_window, ...)
    variant: dict[str, Any]
    #: Click Maint clock skew in seconds at start (negative = stamps in the past)
    cm_skew: float = 0.0


class SimHost(_support.PipeProcess):
    """Parent-side handle: `call(command, **args)` runs one command in the simulator process."""

    label = "simulator process"

    def __init__(self, options: SimOptions) -> None:
        super().__init__(_serve, options, name="simulators")
        self.options = options
        self.info: dict[str, Any] = {}


# -- the simulator process ------------------------------------------------------------------
def _serve(conn: Connection, options: SimOptions) -> None:
    from syncd.sandbox.clickmaint_sim import ClickMaintVariant
    from syncd.sandbox.launch import start_sandbox

    try:
        box = start_sandbox(
            directory=options.directory,
            work_orders=options.work_orders,
            ots=options.ots,
            avisos=0,
            requests=0,
            variant=ClickMaintVariant(**options.variant),
        )
        box.cm.clock.set_skew(options.cm_skew)
    except Exception:
        conn.send((False, traceback.format_exc()))
        return
    handlers = _handlers(box)
    conn.send((True, {"cm_url": box.cm_url, "mt_url": box.mt_url}))
    try:
        while True:
            command, args = conn.recv()
            if command == "stop":
                conn.send((True, None))
                return
            try:
                conn.send((True, handlers[command](**args)))
            except Exception:
                conn.send((False, traceback.format_exc()))
    except EOFError:
        return  # the parent went away
    finally:
        box.stop()


def _handlers(box: Any) -> dict[str, Callable[..., Any]]:
    cm, mt = box.cm, box.mt

    def cm_variant(**values: Any) -> dict[str, Any]:
        cm.variant.update(values)
        cm.reset_rate_limits()
        return {k: getattr(cm.variant, k) for k in values}

    def cm_skew(seconds: float) -> None:
        cm.clock.set_skew(seconds)

    def reset_logs() -> None:
        cm.log.reset()
        mt.log.reset()
        cm.reset_rate_limits()

    def logs() -> dict[str, Any]:
        out = {}
        for name, sim in (("cm", cm), ("mt", mt)):
            snap = sim.log.snapshot()
            snap.pop("recent", None)
            out[name] = snap
        return out

    def work_order_ids() -> dict[str, int]:
        """Count and sum of entity 1's ids: lets the pager prove it saw each one exactly once."""
        with cm.lock:
            ids = [w["id"] for w in cm.work_orders.values() if w["entity_id"] == 1]
        return {"count": len(ids), "sum": sum(ids)}

    def change_cm_titles(ids: list[int], tag: str, spread: float = 0.0) -> int:
        """A planner renames work orders in the Click Maint web app.

        With `spread`, the edits are stamped evenly over the last `spread` seconds (by skewing
        the simulator's clock per edit) instead of all within the same second or two.
        """
        for index, wo_id in enumerate(ids):
            if spread:
                cm.clock.set_skew(-spread * (1 - index / len(ids)))
            title = cm.work_orders[wo_id]["title"]
            cm.update_work_order(wo_id, {"title": f"{title[:60]} [{tag}]"})
        cm.clock.set_skew(0.0)
        return len(ids)

    def change_mt_notes(ids: list[int], tag: str) -> int:
        """A technician edits the notes of OTs in mantenimiento's admin."""
        for ot_id in ids:
            mt.update_ot(ot_id, notas=f"Revisado en planta [{tag}]")
        return len(ids)

    def verify(cm_changed: list[list[int]], mt_changed: list[list[int]], tag: str) -> dict:
        """How many changes arrived on the other side (pairs are [cm_id, mt_id])."""
        with cm.lock, mt.lock:
            to_mt = sum(
                f"[{tag}]" in (mt.render_detail(mt.ots[ot_id])["descripcion"] or "")
                for _wo_id, ot_id in cm_changed
            )
            to_cm = sum(
                f"[{tag}]" in (cm.work_orders[wo_id].get("description") or "")
                for wo_id, _ot_id in mt_changed
            )
        return {"to_mt": to_mt, "to_cm": to_cm}

    return {
        "cm_variant": cm_variant,
        "cm_skew": cm_skew,
        "reset_logs": reset_logs,
        "logs": logs,
        "work_order_ids": work_order_ids,
        "change_cm_titles": change_cm_titles,
        "change_mt_notes": change_mt_notes,
        "verify": verify,
        **_part_handlers(box),
    }


_TX_MARKER = re.compile(r"⟦syncd tx:(\d+) t:")


def _part_handlers(box: Any) -> dict[str, Callable[..., Any]]:
    """Parts, transactions and the Click Maint clock (bench/part_usage.py)."""
    cm, mt = box.cm, box.mt

    def cm_advance(seconds: float) -> dict[str, Any]:
        """Time passes on Click Maint (stamps and `Date` headers move together)."""
        cm.clock.advance(seconds)
        return cm.clock.state()

    def add_parts(total: int, seed: int = 7) -> dict[str, int]:
        """Grow entity 1's catalogue to `total` parts, each with the restock that first stocked
        it, 31 to 90 days ago (a part without history is not realistic, and paging a history
        is what the first sync pays per part)."""
        rng = random.Random(seed)
        now = cm.clock.now_seconds()
        with cm.lock:
            have = sum(1 for p in cm.parts.values() if p["entity_id"] == 1)
        for index in range(have, total):
            number = f"BN-{index:05d}"
            created = now - timedelta(days=rng.uniform(31, 90))
            part = cm.create_part(
                {
                    "name": f"Repuesto {number}",
                    "number": number,
                    "unit_cost": 2.5,
                    "created_at": created,
                }
            )
            cm.add_transaction(
                part["id"], "restock", 20, note="Inventario inicial", cost=2.5, created_at=created
            )
        with cm.lock:
            parts = [p for p in cm.parts.values() if p["entity_id"] == 1]
            return {"parts": len(parts), "transactions": len(cm.transactions)}

    def part_ids(with_material: bool = True) -> list[int]:
        """Entity 1's part ids; by default only those whose number has a mantenimiento material
        (usage on them can be mirrored without an administrator creating one first)."""
        mapping = box_part_mapping()
        with cm.lock, mt.lock:
            known = {str(m["sku"]) for m in mt.materials.values()}
            return sorted(
                p["id"]
                for p in cm.parts.values()
                if p["entity_id"] == 1
                and (not with_material or mapping.get(str(p["number"]), str(p["number"])) in known)
            )

    def box_part_mapping() -> dict[str, str]:
        from syncd.sandbox.catalog import PARTS

        return {s.number: s.sku for s in PARTS if s.sku}

    def add_usages(pairs: list[list[int]], quantity: float = 1.0) -> list[int]:
        """A technician books parts on work orders in the web app: one usage per
        [work order id, part id] pair.  Parts without a material in mantenimiento get one (an
        administrator creates it), so every usage can be mirrored."""
        with cm.lock:
            numbers = {pid: str(cm.parts[pid]["number"]) for _wo, pid in pairs}
        mapping = box_part_mapping()
        with mt.lock:
            known = {str(m["sku"]) for m in mt.materials.values()}
        for number in sorted(set(numbers.values())):
            sku = mapping.get(number, number)
            if sku not in known:
                mt.add_material(f"Material {sku}", sku)
                known.add(sku)
        return [
            cm.add_transaction(pid, "usage", quantity, work_order_id=wo, note="bench")["id"]
            for wo, pid in pairs
        ]

    def usage_on_ots(expected: dict[str, int]) -> dict[str, Any]:
        """For each transaction id -> the OT it must be on: how often it is there, and elsewhere."""
        with mt.lock:
            where: dict[str, Counter[int]] = {}
            for record in mt.materiales_utilizados.values():
                match = _TX_MARKER.search(str(record.get("comentario") or ""))
                if match:
                    where.setdefault(match.group(1), Counter())[int(record["ot_id"])] += 1
        once = sum(1 for tx, ot in expected.items() if where.get(tx) == Counter({ot: 1}))
        missing = [tx for tx in expected if tx not in where]
        wrong = [tx for tx, ot in expected.items() if tx in where and where[tx] != Counter({ot: 1})]
        return {
            "expected": len(expected),
            "exactly_once": once,
            "missing": missing[:10],
            "wrong": wrong[:10],
        }

    def verify_all(config_path: str) -> dict[str, Any]:
        """syncd's own end-state check (syncd/sandbox/verify.py) against both simulators."""
        import os

        from syncd.config import load_config
        from syncd.sandbox.verify import verify as full_verify

        env = dict(os.environ)
        env["CREDENTIALS_DIRECTORY"] = str(Path(config_path).parent / "credentials")
        verdict = full_verify(load_config(config_path, env=env), cm, mt)
        return {"ok": verdict.ok, **verdict.summary()}

    def arrived(cm_changed: list[list[int]], mt_changed: list[list[int]], tag: str) -> dict:
        """Like `verify`, but cheap enough to poll several times a second while syncd runs:
        raw fields only, no rendering (the simulator process must keep serving syncd)."""
        needle = f"[{tag}]"
        with cm.lock, mt.lock:
            to_mt = sum(
                any(isinstance(v, str) and needle in v for v in mt.ots[ot_id].values())
                for _wo_id, ot_id in cm_changed
            )
            to_cm = sum(
                needle in (cm.work_orders[wo_id].get("description") or "")
                for wo_id, _ot_id in mt_changed
            )
        return {"to_mt": to_mt, "to_cm": to_cm, "cm_total": cm.log.total}

    return {
        "arrived": arrived,
        "cm_advance": cm_advance,
        "add_parts": add_parts,
        "part_ids": part_ids,
        "add_usages": add_usages,
        "usage_on_ots": usage_on_ots,
        "verify_all": verify_all,
    }
