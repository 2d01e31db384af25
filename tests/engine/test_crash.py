"""Crash safety with real `kill -9`: a `syncd sync --once` process is killed at named steps
(between each remote write and the ledger commit that records it), then syncd runs again.
Afterwards nothing is duplicated, nothing is lost, and both sides agree."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syncd.config import load_config
from syncd.engine.mapping import WorkOrderMapping
from syncd.engine.records import WORK_ORDER_FIELDS
from syncd.ledger.store import Ledger
from syncd.sandbox.launch import Sandbox, start_sandbox

pytestmark = pytest.mark.e2e
BOTH_WAYS = [f.name for f in WORK_ORDER_FIELDS if f.cm_writable and f.mt_writable]


def run_syncd(box: Sandbox, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update(box.env())
    env["SYNCD_STREAMS__PART_USAGE__ENABLED"] = "false"
    env["SYNCD_STREAMS__REQUESTS__ENABLED"] = "false"
    env["SYNCD_CLICKMAINT__LAG_SECONDS"] = "0"
    env.pop("SYNCD_CRASH_AT", None)
    if crash_at:
        env["SYNCD_CRASH_AT"] = crash_at
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "syncd",
            "--log-level",
            "warning",
            "sync",
            "--once",
            "--json",
            "--stream",
            "work_orders",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def sync_until_quiet(box: Sandbox) -> None:
    for _ in range(5):
        done = run_syncd(box)
        assert done.returncode == 0, done.stderr[-2000:]
        reports = json.loads(done.stdout)
        counts = reports[0]["counts"]
        if not any(k.startswith(("created_", "updated_", "adopted", "cancelled_")) for k in counts):
            return
    raise AssertionError("no quiet round")


def check_invariants(box: Sandbox, expected: dict[str, str]) -> None:
    config = load_config(box.config_path, env={**os.environ, **box.env()})
    mapping = WorkOrderMapping(config)
    ledger = Ledger.open(config.ledger_path)
    try:
        links = list(ledger.iter_links("work_orders", state=None))
        quarantined = {(q.side, q.record_id) for q in ledger.list_quarantine()}
        out_of_scope = {
            mt
            for mt in box.mt.ots
            if (ledger.mt_index_get(mt) or {}).get("status") == "out_of_scope"
        }
    finally:
        ledger.close()
    linked_cm = {int(link.cm_id) for link in links}
    linked_mt = {int(link.mt_id) for link in links}
    assert len(linked_cm) == len(links) == len(linked_mt)
    unlinked_cm = {
        i for i in box.cm.work_orders if i not in linked_cm and ("cm", str(i)) not in quarantined
    }
    unlinked_mt = {
        i
        for i in box.mt.ots
        if i not in linked_mt and ("mt", str(i)) not in quarantined and i not in out_of_scope
    }
    assert not unlinked_cm, (
        f"work orders without partner (lost or duplicated): {sorted(unlinked_cm)}"
    )
    assert not unlinked_mt, f"OTs without partner (lost or duplicated): {sorted(unlinked_mt)}"
    for link in links:
        if link.state != "active":
            continue
        cm = mapping.from_cm(
            box.cm.render_work_order(box.cm.work_orders[int(link.cm_id)], detail=True)
        )
        mt = mapping.from_mt(box.mt.render_detail(box.mt.ots[int(link.mt_id)]))
        for name in BOTH_WAYS:
            if name == "due" and cm[name] is None:
                continue
            assert mapping.agree(name, cm[name], mt[name]), (
                link.cm_id,
                link.mt_id,
                name,
                cm[name],
                mt[name],
            )
    titles = {wo["title"] for wo in box.cm.work_orders.values()}
    for key, value in expected.items():
        assert value in titles, f"edit {key} -> {value!r} was lost"


def _linked_cm_of(ledger: Ledger, box: Sandbox) -> set[int]:
    """OTs whose work order the Click Maint side of the edit touches (avoid conflicts)."""
    touched = sorted(box.cm.work_orders)[:3]
    return {
        int(link.mt_id) for wo in touched if (link := ledger.get_link("work_orders", cm_id=str(wo)))
    }


def edit_both_sides(box: Sandbox) -> dict[str, str]:
    """Edits on different records on each side (no conflicts), plus new records."""
    expected = {}
    for n, wo in enumerate(sorted(box.cm.work_orders)[:3]):
        title = f"CM edit {n} ✓"
        box.cm.update_work_order(wo, {"title": title, "status_id": 5 if n == 2 else 3})
        expected[f"cm{wo}"] = title
    ledger_path = load_config(box.config_path, env={**os.environ, **box.env()}).ledger_path
    ledger = Ledger.open(ledger_path)
    # open OTs: closed ones are re-read on a slower schedule (closed_reread_every cycles)
    linked = [int(link.mt_id) for link in ledger.iter_links("work_orders", mt_open=True)]
    linked = [i for i in linked if int(i) not in _linked_cm_of(ledger, box)][-3:]
    ledger.close()
    for n, ot in enumerate(linked):
        title = f"MT edit {n} ✓"
        box.mt.update_ot(ot, descripcion_corta=title, estado="REALIZADA")
        expected[f"mt{ot}"] = title
    box.cm.create_work_order({"title": "Nueva tras el reinicio"})
    start = datetime.now(UTC) + timedelta(days=1)
    box.mt.create_ot(
        descripcion_corta="OT nueva tras el reinicio",
        tipo="CORRECTIVA",
        prioridad="ALTA",
        ubicacion_id=12,
        inicio_programado=start,
        fin_programado=start + timedelta(hours=1),
    )
    expected["new_cm"] = "Nueva tras el reinicio"
    expected["new_mt"] = "OT nueva tras el reinicio"
    return expected


CRASH_POINTS = [
    ("initial", "create.intent:2"),
    ("initial", "create.sent:3"),
    ("initial", "create.remote:1"),
    ("initial", "create.remote:6"),
    ("initial", "create.linked:4"),
    ("initial", "pair.written_mt:2"),
    ("initial", "scan.batch:1"),
    ("edits", "pair.written_mt:1"),
    ("edits", "pair.written_cm:1"),
    ("edits", "close.before:1"),
    ("edits", "create.remote:1"),
    ("edits", "create.remote:2"),
]


@pytest.mark.parametrize(("phase", "point"), CRASH_POINTS)
def test_kill_9_at_each_step(tmp_path: Path, phase: str, point: str) -> None:
    box = start_sandbox(directory=tmp_path, work_orders=6, ots=6, avisos=0, requests=0, seed=7)
    try:
        expected: dict[str, str] = {}
        if phase == "edits":
            sync_until_quiet(box)
            expected = edit_both_sides(box)
        crashed = run_syncd(box, crash_at=point)
        assert crashed.returncode == -signal.SIGKILL, (
            f"the crash point {point} was never reached (rc={crashed.returncode})"
        )
        sync_until_quiet(box)
        check_invariants(box, expected)
    finally:
        box.stop()
