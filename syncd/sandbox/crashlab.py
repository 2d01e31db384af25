"""Crash trials: kill syncd with SIGKILL, restart, and check the invariants.

A trial starts both simulators (real loopback sockets) with a small plant (work orders, OTs,
parts with history, requests, avisos), optionally syncs and then edits both sides, runs syncd
in a subprocess that dies either at a named crash point (`SYNCD_CRASH_AT`, see
`syncd/faultpoints.py`) or after a random delay, then runs syncd again until a round writes
nothing and compares everything (`verify.py`).  The process killed is `syncd sync --once`
(every stream, one after the other) or, with `daemon=True`, the daemon itself (`syncd run`,
every stream on its own schedule, side by side).  Used by `tests/engine/test_crash.py`
(short) and `bench/crash_matrix.py` (long).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..config import load_config
from ..ledger.store import Ledger
from .launch import Sandbox, child_env, start_sandbox
from .verify import Verdict, verify

STREAMS = ("work_orders", "part_usage", "requests")
#: the catalogue part with no mantenimiento material: its usage is quarantined by design
KNOWN_BAD_PART = "LAMP-LED-18"


@dataclass
class TrialResult:
    name: str
    crashed: bool
    recovered: bool
    verdict: Verdict
    seconds: float
    notes: list[str] = field(default_factory=list)
    #: records quarantined after recovery other than the plant's known-bad part usage: the
    #: verifier does not count quarantined records as lost, so a crash must not put any there
    set_aside: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.recovered and self.verdict.ok and not self.set_aside


def syncd_env(box: Sandbox, crash_at: str | None = None) -> dict[str, str]:
    env = child_env()
    env.update(box.env())
    env["SYNCD_CLICKMAINT__LAG_SECONDS"] = "0"
    for stream in STREAMS:  # for the daemon: every stream every second, no jitter
        env[f"SYNCD_STREAMS__{stream.upper()}__INTERVAL_SECONDS"] = "1"
        env[f"SYNCD_STREAMS__{stream.upper()}__JITTER_SECONDS"] = "0"
    env.pop("SYNCD_CRASH_AT", None)
    if crash_at:
        env["SYNCD_CRASH_AT"] = crash_at
    return env


def command(*, daemon: bool = False) -> list[str]:
    args = [sys.executable, "-m", "syncd", "--log-level", "warning"]
    if daemon:
        return [*args, "run"]
    args += ["sync", "--once", "--json"]
    for stream in STREAMS:
        args += ["--stream", stream]
    return args


def run_once(
    box: Sandbox, crash_at: str | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(), env=syncd_env(box, crash_at), capture_output=True, text=True, timeout=timeout
    )


def run_and_kill(box: Sandbox, delay: float, *, daemon: bool = False) -> bool:
    """Start a run (or the daemon) and SIGKILL it after `delay` seconds; True if it was still
    running (a daemon always is)."""
    proc = subprocess.Popen(
        command(daemon=daemon),
        env=syncd_env(box),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True


def until_quiet(box: Sandbox, rounds: int = 6) -> bool:
    for _ in range(rounds):
        done = run_once(box)
        if done.returncode != 0:
            return False
        reports = json.loads(done.stdout)
        wrote = any(
            k.startswith(("created_", "updated_", "adopted", "cancelled_", "mirrored"))
            for report in reports
            for k in report["counts"]
        )
        if not wrote:
            return True
    return False


def edit_both_sides(box: Sandbox) -> None:
    """Edits on different linked records on each side, a close, a deletion, new records and
    new part usage."""
    config = load_config(box.config_path, env=syncd_env(box))
    ledger = Ledger.open(config.ledger_path)
    try:
        open_links = list(ledger.iter_links("work_orders", mt_open=True))
    finally:
        ledger.close()
    cm_side, mt_side = open_links[0::2], open_links[1::2]
    for n, link in enumerate(cm_side[:2]):
        change = {"status_id": 5} if n == 0 else {"title": f"CM edit {n} ✓", "status_id": 3}
        box.cm.update_work_order(int(link.cm_id), change)
    for n, link in enumerate(mt_side[:2]):
        box.mt.update_ot(int(link.mt_id), descripcion_corta=f"MT edit {n} ✓", notas=f"nota {n}")
    edited = {link.mt_id for link in cm_side[:2] + mt_side[:2]}
    spare = [link for link in open_links if link.mt_id not in edited]
    if spare:
        box.mt.delete_ot(int(spare[-1].mt_id))  # its work order must be cancelled, not lost
    wo = box.cm.create_work_order({"title": "Nueva tras el reinicio"})["id"]
    start = datetime.now(UTC) + timedelta(days=1)
    box.mt.create_ot(
        descripcion_corta="OT nueva tras el reinicio",
        tipo="CORRECTIVA",
        prioridad="ALTA",
        ubicacion_id=12,
        inicio_programado=start,
        fin_programado=start + timedelta(hours=1),
    )
    parts = sorted(box.cm.parts)
    for n, link in enumerate(open_links[:4]):
        box.cm.add_transaction(parts[n % len(parts)], "usage", 1 + n, work_order_id=int(link.cm_id))
    box.cm.add_transaction(parts[0], "usage", 2, work_order_id=wo)
    # requests and avisos: a status change on each side, a new one on each side
    ledger = Ledger.open(config.ledger_path)
    try:
        request_links = list(ledger.iter_links("requests"))
    finally:
        ledger.close()
    if request_links:
        box.cm.update_request(int(request_links[0].cm_id), {"status": "on_hold"})
        box.mt.update_aviso(int(request_links[-1].mt_id), estado="PROCESO")
    box.cm.create_request({"title": "Solicitud tras el reinicio", "priority": "medium"})
    box.mt.create_aviso(
        descripcion="Aviso tras el reinicio\n\nGotea el techo", ubicacion_id=12, prioridad="ALTA"
    )


def trial(
    name: str,
    *,
    crash_at: str | None = None,
    kill_after: float | None = None,
    daemon: bool = False,
    phase: str = "initial",
    seed: int = 7,
    directory: Path | None = None,
) -> TrialResult:
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="syncd-crash-", dir=directory))
    box = start_sandbox(directory=tmp, work_orders=10, ots=10, avisos=6, requests=6, seed=seed)
    notes: list[str] = []
    try:
        if phase == "edits":
            if not until_quiet(box):
                notes.append("initial sync did not settle")
            edit_both_sides(box)
        if crash_at is not None:
            done = run_once(box, crash_at=crash_at)
            crashed = done.returncode == -signal.SIGKILL
            if not crashed:
                notes.append(f"crash point {crash_at} not reached (rc={done.returncode})")
        else:
            crashed = run_and_kill(box, kill_after or 0.0, daemon=daemon)
        recovered = until_quiet(box)
        config = load_config(box.config_path, env=syncd_env(box))
        verdict = verify(config, box.cm, box.mt)
        ledger = Ledger.open(config.ledger_path)
        try:
            set_aside = [
                f"{q.stream} {q.side}:{q.record_id}: {q.reason}"
                for q in ledger.list_quarantine()
                if not (q.stream == "part_usage" and KNOWN_BAD_PART in q.reason)
            ]
        finally:
            ledger.close()
        seconds = time.monotonic() - started
        return TrialResult(name, crashed, recovered, verdict, seconds, notes, set_aside)
    finally:
        box.stop()


NAMED_POINTS: list[tuple[str, str]] = [
    ("initial", "create.intent:2"),
    ("initial", "create.sent:3"),
    ("initial", "create.remote:1"),
    ("initial", "create.remote:6"),
    ("initial", "create.linked:4"),
    ("initial", "pair.written_mt:2"),
    ("initial", "scan.batch:1"),
    ("initial", "tx.sent:1"),
    ("initial", "tx.remote:2"),
    ("initial", "tx.done:3"),
    ("initial", "request.remote:1"),
    ("initial", "request.remote:4"),
    ("initial", "request.linked:2"),
    ("edits", "pair.written_mt:1"),
    ("edits", "pair.written_cm:1"),
    ("edits", "close.before:1"),
    ("edits", "create.remote:1"),
    ("edits", "create.remote:2"),
    ("edits", "tx.remote:1"),
    ("edits", "delete.cancelled:1"),
    ("edits", "request.written:1"),
    ("edits", "request.remote:1"),
]


def describe(result: TrialResult) -> dict[str, Any]:
    return {
        "trial": result.name,
        "crashed": result.crashed,
        "recovered": result.recovered,
        "ok": result.ok,
        "seconds": round(result.seconds, 1),
        **result.verdict.summary(),
        "set_aside": result.set_aside,
        "notes": result.notes,
    }
