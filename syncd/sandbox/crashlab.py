"""Crash trials: kill syncd with SIGKILL, restart, and check the invariants.

A trial starts both simulators (real loopback sockets) with a small plant (work orders, OTs,
parts with history, requests, avisos), optionally syncs and then edits both sides, runs syncd
in a subprocess that dies either at a named crash point (`SYNCD_CRASH_AT`, see
`syncd/faultpoints.py`) or after a delay, then runs syncd again until a round writes nothing
and compares everything (`verify.py`).  The process killed is `syncd sync --once` (every
stream, one after the other) or, with `daemon=True`, the daemon itself (`syncd run`, every
stream on its own schedule, side by side, while a user keeps editing Click Maint so that every
cycle has something to write).

Whether a kill hit work in flight is read from the ledger and the crash-point trace, not
assumed: a cycle whose run row is still `running` after the kill was interrupted (`in_flight`),
and if a crash point (each sits right after a remote write) was passed after that cycle
started, the kill interrupted a cycle that was writing (`writing`).  `measure` times an
uncrashed run of a phase, so random instants can be drawn inside its work.

Used by `tests/engine/test_crash.py` (short) and `bench/crash_matrix.py` (long).
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..config import load_config
from ..ledger.store import Ledger
from .launch import Sandbox, child_env, start_sandbox
from .verify import Verdict, verify

STREAMS = ("work_orders", "part_usage", "requests")
PHASES = ("initial", "edits", "closes")
#: the catalogue part with no mantenimiento material: its usage is quarantined by design
KNOWN_BAD_PART = "LAMP-LED-18"
#: latency injected on both servers for random-instant trials: every request takes a few ms, so
#: a run lasts long enough for a random instant to fall inside it (and often inside a request)
RANDOM_LATENCY_MS = (5, 25)


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
    #: the kill left a cycle unfinished (its ledger run still `running`)
    in_flight: bool = False
    #: ... and that cycle had written something remotely (a crash point passed after it began)
    writing: bool = False
    #: crash points the killed process passed, by name
    points: dict[str, int] = field(default_factory=dict)
    #: random instants: the delay drawn (after the first cycle began; for the daemon, after
    #: its first work_orders cycle began), and when the kill came after the process started
    kill_after: float | None = None
    killed_at: float | None = None

    @property
    def ok(self) -> bool:
        return self.recovered and self.verdict.ok and not self.set_aside


def syncd_env(
    box: Sandbox, crash_at: str | None = None, trace: Path | None = None
) -> dict[str, str]:
    env = child_env()
    env.update(box.env())
    env["SYNCD_CLICKMAINT__LAG_SECONDS"] = "0"
    for stream in STREAMS:  # for the daemon: every stream every second, no jitter
        env[f"SYNCD_STREAMS__{stream.upper()}__INTERVAL_SECONDS"] = "1"
        env[f"SYNCD_STREAMS__{stream.upper()}__JITTER_SECONDS"] = "0"
    env.pop("SYNCD_CRASH_AT", None)
    env.pop("SYNCD_CRASH_TRACE", None)
    if crash_at:
        env["SYNCD_CRASH_AT"] = crash_at
    if trace is not None:
        env["SYNCD_CRASH_TRACE"] = str(trace)
    return env


def command(*, daemon: bool = False, log_json: bool = False) -> list[str]:
    args = [sys.executable, "-m", "syncd"]
    args += (
        ["--log-format", "json", "--log-level", "info"] if log_json else ["--log-level", "warning"]
    )
    if daemon:
        return [*args, "run"]
    args += ["sync", "--once", "--json"]
    for stream in STREAMS:
        args += ["--stream", stream]
    return args


def run_once(
    box: Sandbox, crash_at: str | None = None, timeout: float = 180, trace: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(),
        env=syncd_env(box, crash_at, trace),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class Kill:
    crashed: bool  #: the process was still running when the kill came
    pid: int
    anchor: float | None  #: seconds from the start of the process to the anchoring cycle.start
    at: float | None  #: seconds from the start of the process to the kill


def run_and_kill(
    box: Sandbox,
    delay: float,
    *,
    daemon: bool = False,
    trace: Path | None = None,
    anchor_stream: str | None = None,
) -> Kill:
    """Start a run (or the daemon) and SIGKILL it `delay` seconds after its first cycle began
    (with `anchor_stream`, that stream's first cycle), as its JSON log says: the time the
    interpreter takes to start varies with the load and is not part of the work."""
    env = syncd_env(box, trace=trace)
    env["PYTHONUNBUFFERED"] = "1"
    started = time.monotonic()
    proc = subprocess.Popen(
        command(daemon=daemon, log_json=True),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # `sync --once --json` logs to stderr, the daemon to stdout
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    anchored = threading.Event()
    anchor: list[float] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if anchored.is_set() or '"cycle.start"' not in line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if anchor_stream in (None, event.get("stream")):
                anchor.append(time.monotonic() - started)
                anchored.set()

    reader = threading.Thread(target=read, name="crashlab-log", daemon=True)
    reader.start()
    try:
        while not anchored.wait(0.05):  # until the first cycle starts, or the run ends
            if proc.poll() is not None:
                return Kill(False, proc.pid, None, None)
            if time.monotonic() - started > 120:
                raise RuntimeError("syncd started no cycle within 120 s")
        try:
            proc.wait(timeout=delay)
            return Kill(False, proc.pid, anchor[0], None)
        except subprocess.TimeoutExpired:
            at = time.monotonic() - started
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return Kill(True, proc.pid, anchor[0], at)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)


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


def _open_links(box: Sandbox) -> list[Any]:
    config = load_config(box.config_path, env=syncd_env(box))
    ledger = Ledger.open(config.ledger_path)
    try:
        return list(ledger.iter_links("work_orders", mt_open=True))
    finally:
        ledger.close()


def _close_in_mt(box: Sandbox, ot_id: int) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    box.mt.close_ot(
        ot_id,
        fecha_inicio=now - timedelta(hours=1),
        fecha_fin=now,
        comentarios="Cerrada por el técnico",
    )


def close_both_sides(box: Sandbox) -> set[str]:
    """Only two closes: a work order completed in Click Maint and an OT closed (`cerrar-ot`)
    in mantenimiento, on different pairs.  The next sync writes exactly one close each way,
    so `pair.written_cm:1` is the mantenimiento → Click Maint close and
    `close.before>pair.written_mt` the Click Maint → mantenimiento one, both after the remote
    write and before the ledger commit.  Returns the Click Maint ids touched."""
    links = _open_links(box)
    box.cm.update_work_order(int(links[0].cm_id), {"status_id": 5})
    _close_in_mt(box, int(links[1].mt_id))
    return {links[0].cm_id, links[1].cm_id}


def edit_both_sides(box: Sandbox) -> set[str]:
    """Edits on different linked records on each side, a close on each side, a deletion, new
    records and new part usage.  Returns the Click Maint ids of the pairs touched."""
    config = load_config(box.config_path, env=syncd_env(box))
    open_links = _open_links(box)
    cm_side, mt_side = open_links[0::2], open_links[1::2]
    for n, link in enumerate(cm_side[:2]):
        change = {"status_id": 5} if n == 0 else {"title": f"CM edit {n} ✓", "status_id": 3}
        box.cm.update_work_order(int(link.cm_id), change)
    for n, link in enumerate(mt_side[:2]):
        box.mt.update_ot(int(link.mt_id), descripcion_corta=f"MT edit {n} ✓", notas=f"nota {n}")
    _close_in_mt(box, int(mt_side[2].mt_id))  # the mantenimiento → Click Maint close
    touched = cm_side[:2] + mt_side[:3]
    edited = {link.mt_id for link in touched}
    spare = [link for link in open_links if link.mt_id not in edited]
    if spare:
        box.mt.delete_ot(int(spare[-1].mt_id))  # its work order must be cancelled, not lost
        touched.append(spare[-1])
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
    return {link.cm_id for link in touched}


class ClickMaintUser(threading.Thread):
    """Keeps the daemon busy during a daemon trial: every `pace` seconds a Click Maint user
    edits a title, books part usage, opens a work order or a request.  Only Click Maint is
    edited, and never a pair the phase touched, so the users make no conflict."""

    def __init__(self, box: Sandbox, avoid: set[str], seed: int, pace: float = 0.15) -> None:
        super().__init__(name="crashlab-user", daemon=True)
        self.box, self.avoid, self.pace = box, {int(i) for i in avoid}, pace
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.actions = 0

    def run(self) -> None:
        cm = self.box.cm
        parts = sorted(cm.parts)
        while not self.stop.wait(self.pace):
            with cm.lock:
                ids = [
                    i
                    for i, wo in cm.work_orders.items()
                    if i not in self.avoid and wo["status_id"] in (1, 2, 3)
                ]
            if not ids:
                continue
            wo = self.rng.choice(ids)
            action = self.rng.choice(("title", "title", "usage", "usage", "new_wo", "request"))
            n = self.actions
            if action == "title":
                cm.update_work_order(wo, {"title": f"Editada mientras corre {n}"})
            elif action == "usage":
                part = self.rng.choice(parts)
                cm.add_transaction(part, "usage", self.rng.randint(1, 3), work_order_id=wo)
            elif action == "new_wo":
                cm.create_work_order({"title": f"Nueva mientras corre {n}"})
            else:
                cm.create_request({"title": f"Solicitud mientras corre {n}", "priority": "low"})
            self.actions += 1


def prepare(
    phase: str, seed: int, directory: Path | None, notes: list[str]
) -> tuple[Sandbox, set[str]]:
    """The plant, and for `edits` / `closes` a first sync and the phase's edits."""
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}")
    tmp = Path(tempfile.mkdtemp(prefix="syncd-crash-", dir=directory))
    box = start_sandbox(directory=tmp, work_orders=10, ots=10, avisos=6, requests=6, seed=seed)
    touched: set[str] = set()
    try:
        if phase != "initial":
            if not until_quiet(box):
                notes.append("initial sync did not settle")
            touched = edit_both_sides(box) if phase == "edits" else close_both_sides(box)
    except BaseException:
        box.stop()
        raise
    return box, touched


def _latency(box: Sandbox, latency_ms: tuple[int, int] | None, seed: int) -> None:
    if latency_ms is None:
        return
    for n, sim in enumerate((box.cm, box.mt)):
        sim.faults.configure(
            {"latency_ms_min": latency_ms[0], "latency_ms_max": latency_ms[1], "seed": seed + n}
        )


def _runs_of(box: Sandbox, pid: int) -> list[Any]:
    config = load_config(box.config_path, env=syncd_env(box))
    ledger = Ledger.open(config.ledger_path)
    try:
        return [r for r in ledger.recent_runs(limit=10_000) if r.pid == pid]
    finally:
        ledger.close()


def _stamp(text: str) -> float:
    """A ledger timestamp as unix time."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _trace(path: Path) -> list[tuple[float, str, str]]:
    """(unix time, point, run id of the cycle) for every crash point passed."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        moment, name, run_id = line.split(" ")
        out.append((float(moment), name, run_id))
    return out


def interrupted(box: Sandbox, pid: int, trace: Path) -> tuple[bool, bool, dict[str, int]]:
    """After a kill: (a cycle was left unfinished, it had written something, points passed)."""
    passed = _trace(trace)
    running = {r.run_id for r in _runs_of(box, pid) if r.status == "running"}
    writing = any(run_id in running for _, _, run_id in passed)
    return bool(running), writing, dict(Counter(name for _, name, _ in passed))


@dataclass(frozen=True)
class Window:
    """How long an uncrashed `sync --once` of a phase works: from its first cycle's start to
    its last cycle's end (the ledger's runs), and which crash points it passes."""

    phase: str
    span: float
    seconds: float  #: the whole process, interpreter start included
    points: dict[str, int]

    def draw(self, rng: random.Random, margin: float = 0.0) -> float:
        """A delay after the first cycle's start, inside the work (`margin`: a fraction of the
        span kept free at the end, for a run a little faster than the measured one)."""
        return rng.uniform(0.0, self.span * (1.0 - margin))


def measure(
    phase: str,
    *,
    seed: int = 7,
    latency_ms: tuple[int, int] | None = RANDOM_LATENCY_MS,
    directory: Path | None = None,
) -> Window:
    """Run `sync --once` of `phase` without a crash and time its cycles (the ledger's runs)."""
    notes: list[str] = []
    box, _ = prepare(phase, seed, directory, notes)
    try:
        _latency(box, latency_ms, seed)
        trace = Path(box.directory or ".") / "measure.trace"
        started = time.monotonic()
        proc = subprocess.Popen(
            command(),
            env=syncd_env(box, trace=trace),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        code = proc.wait(timeout=180)
        seconds = time.monotonic() - started
        runs = _runs_of(box, proc.pid)
        if code != 0 or not runs or notes:
            raise RuntimeError(f"measuring {phase}: exit {code}, {len(runs)} runs, {notes}")
        first = min(_stamp(r.started_at) for r in runs)
        last = max(_stamp(r.ended_at or r.started_at) for r in runs)
        points = dict(Counter(name for _, name, _ in _trace(trace)))
        return Window(phase, span=last - first, seconds=seconds, points=points)
    finally:
        box.stop()


def trial(
    name: str,
    *,
    crash_at: str | None = None,
    kill_after: float | None = None,
    daemon: bool = False,
    phase: str = "initial",
    seed: int = 7,
    latency_ms: tuple[int, int] | None = None,
    directory: Path | None = None,
) -> TrialResult:
    started = time.monotonic()
    notes: list[str] = []
    box, touched = prepare(phase, seed, directory, notes)
    trace = Path(box.directory or ".") / "killed.trace"
    in_flight = writing = False
    killed_at: float | None = None
    points: dict[str, int] = {}
    try:
        _latency(box, latency_ms, seed)
        if crash_at is not None:
            done = run_once(box, crash_at=crash_at, trace=trace)
            crashed = done.returncode == -signal.SIGKILL
            if not crashed:
                notes.append(f"crash point {crash_at} not reached (rc={done.returncode})")
            points = dict(Counter(n for _, n, _ in _trace(trace)))
            in_flight = writing = crashed
        else:
            user = ClickMaintUser(box, touched, seed) if daemon else None
            if user is not None:
                user.start()
            try:
                kill = run_and_kill(
                    box,
                    kill_after or 0.0,
                    daemon=daemon,
                    trace=trace,
                    anchor_stream="work_orders" if daemon else None,
                )
            finally:
                if user is not None:
                    user.stop.set()
                    user.join()
            crashed, killed_at = kill.crashed, kill.at
            in_flight, writing, points = interrupted(box, kill.pid, trace)
        box.cm.faults.clear()
        box.mt.faults.clear()
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
        return TrialResult(
            name,
            crashed,
            recovered,
            verdict,
            seconds,
            notes,
            set_aside,
            in_flight=in_flight,
            writing=writing,
            points=points,
            kill_after=kill_after,
            killed_at=killed_at,
        )
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
    ("edits", "close.before>pair.written_mt:1"),
    ("edits", "create.remote:1"),
    ("edits", "create.remote:2"),
    ("edits", "tx.remote:1"),
    ("edits", "delete.cancelled:1"),
    ("edits", "request.written:1"),
    ("edits", "request.remote:1"),
    # one close each way and nothing else: the only CM write is the mantenimiento close
    ("closes", "close.before:1"),
    ("closes", "close.before>pair.written_mt:1"),
    ("closes", "pair.written_cm:1"),
]


def describe(result: TrialResult) -> dict[str, Any]:
    return {
        "trial": result.name,
        "crashed": result.crashed,
        "in_flight": result.in_flight,
        "writing": result.writing,
        "kill_after": None if result.kill_after is None else round(result.kill_after, 3),
        "killed_at": None if result.killed_at is None else round(result.killed_at, 3),
        "points_passed": result.points,
        "recovered": result.recovered,
        "ok": result.ok,
        "seconds": round(result.seconds, 1),
        **result.verdict.summary(),
        "set_aside": result.set_aside,
        "notes": result.notes,
    }
