"""Chaos soak: the real daemon against both simulators with every fault on, users on both sides.

    .venv/bin/python bench/soak.py --quick            # CI-sized: 150 operations, ~1-2 min
    .venv/bin/python bench/soak.py --ops 2000 --duration 900 --seed 7
    .venv/bin/python bench/soak.py --quick --json     # the report as JSON (tests/test_soak.py)

What it does (docs/soak.md has the long version):

1. Both simulators start on loopback with a realistic plant (150 work orders, 150 OTs, parts
   with transaction history, requests and avisos) and every fault mode on: latency, 5xx, answers
   held past syncd's timeout after the request was applied, 429 bursts, truncated JSON, HTML
   error pages, page drift, session expiry and a few garbage fields in served records.  Click
   Maint enforces its published limit shape (300 requests per window) with the window scaled
   from 5 minutes to 10 seconds, and syncd is told the same.
2. `syncd run` runs as a subprocess with short intervals; all three streams are on.
3. A driver thread plays the users for `--ops` operations spread over `--duration` seconds:
   edits (title, description, status, due), closes, rare deletes, new records, part usage on
   linked work orders, requests and avisos.  Each linked pair is *owned* by one side, so the
   driver alone never makes a conflict; a known number of conflicts are injected on purpose
   (stream lock taken, same field edited on both sides to disagreeing values, lock released).
4. Faults stop, the driver stops; quarantined records are made due (the operator's "retry
   now"), the injected conflicts are resolved for Click Maint, and the soak waits until two
   consecutive cycles of every stream write nothing.  SIGTERM must end the daemon with 0, and
   one more `syncd sync --once` must write nothing.
5. Everything is compared; the process exits 1 if any invariant fails.

Drift edits and garbage fields are third-party edits syncd cannot tell from a user's, so they
are traced (which record and field they touched) and used only to *explain* a conflict or a
changed value, never to excuse a duplicate, a loss or a divergence.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import _support
from _support import machine, table

from syncd.config import Config, load_config
from syncd.demo import NOTES
from syncd.engine.mapping import MappingError, RequestMapping, WorkOrderMapping, iso_z
from syncd.engine.records import find_marker, strip_marker
from syncd.ledger.models import Link
from syncd.ledger.store import Ledger
from syncd.locks import stream_lock
from syncd.sandbox.catalog import PARTS, PLACES, planned_ot_fields
from syncd.sandbox.clickmaint_sim import ClickMaintVariant
from syncd.sandbox.faults import FaultConfig
from syncd.sandbox.launch import Sandbox, child_env, start_sandbox
from syncd.sandbox.verify import verify

STREAMS = ("work_orders", "part_usage", "requests")
RESULTS = _support.ROOT / "bench" / "results" / "soak.json"
#: Click Maint publishes 300 requests per 5 minutes (1 a second); the soak scales the window to
#: 10 s so it takes minutes, not hours, and allows 60 in it (6 a second): low enough that the
#: routine's burst of creates (and the initial sync) run at syncd's budget, high enough that
#: the users' edits do not queue for minutes
RATE_LIMIT = 60
RATE_WINDOW = 10.0
CLIENT_TIMEOUT = 2.0  # syncd's per-request timeout in the soak ...
HELD_ANSWER = 2.5  # ... shorter than a held answer: the request is applied, the reply is lost
INTERVALS = {"work_orders": 2, "part_usage": 3, "requests": 3}
WRITE_KEYS = ("created_", "updated_", "cancelled_", "mirrored", "adopted")
CM_OPEN = ("open", "on_hold", "in_progress", "waiting_for_parts")
CM_CLOSED = ("completed", "cancelled")
MT_OPEN = ("PROGRAMADA", "ESPERA", "EJECUCION")
MT_CLOSED = ("REALIZADA", "CANCELADA")
EDIT_FIELDS = ("title", "description", "status", "due")
#: (operation, weight): what the simulated users do, and how often
OPERATIONS: tuple[tuple[str, int], ...] = (
    ("edit_cm", 26),
    ("edit_mt", 26),
    ("create_cm", 5),
    ("create_mt", 5),
    ("close_cm", 2),
    ("close_mt", 2),
    ("delete_cm", 1),
    ("delete_mt", 1),
    ("usage", 14),
    ("request_cm", 4),
    ("aviso_mt", 4),
    ("request_status", 3),
    ("aviso_status", 3),
    ("aviso_text", 2),
)


# =============================================================================================
# options
# =============================================================================================
@dataclass(frozen=True)
class Options:
    ops: int
    duration: float
    seed: int
    conflicts: int
    work_orders: int
    ots: int
    workdir: Path | None
    as_json: bool
    converge_timeout: float
    keep: bool
    #: faults start only after the initial sync (quick: the steady state under chaos)
    calm_start: bool
    #: Click Maint's limit per (scaled) window, in the simulator and in syncd's config
    rate_limit: int
    #: OTs a preventive routine generates at once in mantenimiento after the users' phase,
    #: with Click Maint's faults still on: each needs a Click Maint create, so the budget binds
    burst: int
    #: where the JSON report is also written (the documented long run: bench/results/soak.json)
    out: Path | None
    #: print the docs' table of a saved report instead of running
    render: Path | None


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=None, help="user operations (default 600)")
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds the users keep editing (300)"
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seeds data, faults and the users (7; quick 1)"
    )
    parser.add_argument("--quick", action="store_true", help="CI size: 150 operations in 30 s")
    parser.add_argument(
        "--conflicts", type=int, default=None, help="deliberate conflicts (default ops/50, >=3)"
    )
    parser.add_argument(
        "--work-orders", type=int, default=None, help="seeded work orders (150; quick 40)"
    )
    parser.add_argument("--ots", type=int, default=None, help="seeded OTs (150; quick 40)")
    parser.add_argument(
        "--calm-start",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="faults on only after the initial sync (default: on with --quick)",
    )
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=RATE_LIMIT,
        help=f"Click Maint requests per {RATE_WINDOW:g} s window, simulator and syncd "
        f"({RATE_LIMIT}: syncd's budget binds)",
    )
    parser.add_argument(
        "--burst",
        type=int,
        default=None,
        help="OTs a routine generates at once after the users' phase (default: twice the rate "
        "limit, so at least one whole window runs at syncd's budget)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--render",
        type=Path,
        default=None,
        metavar="RESULTS",
        help="print the docs/soak.md results table of a saved report and exit",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="also write the JSON report here (default: bench/results/soak.json for the "
        "documented long run, i.e. without --quick and with the default size)",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="keep the run's files here")
    parser.add_argument(
        "--converge-timeout",
        type=float,
        default=None,
        help="max seconds from the end of the edits to two quiet rounds (240; quick 120)",
    )
    args = parser.parse_args(argv)
    sizes = (args.ops, args.duration, args.seed, args.work_orders, args.ots, args.burst)
    documented = (
        not args.quick
        and all(v is None for v in (*sizes, args.calm_start))
        and args.rate_limit == RATE_LIMIT
    )
    ops = args.ops if args.ops is not None else (150 if args.quick else 600)
    duration = args.duration if args.duration is not None else (30.0 if args.quick else 300.0)
    conflicts = args.conflicts if args.conflicts is not None else max(3, ops // 50)
    if ops < 1 or duration <= 0 or conflicts < 0 or conflicts > ops:
        parser.error("--ops >= 1, --duration > 0, 0 <= --conflicts <= --ops")
    return Options(
        ops=ops,
        duration=duration,
        seed=args.seed if args.seed is not None else (1 if args.quick else 7),
        conflicts=conflicts,
        work_orders=args.work_orders or (40 if args.quick else 150),
        ots=args.ots or (40 if args.quick else 150),
        workdir=args.workdir,
        as_json=args.json,
        converge_timeout=args.converge_timeout or (120.0 if args.quick else 240.0),
        keep=args.workdir is not None,
        calm_start=args.quick if args.calm_start is None else args.calm_start,
        rate_limit=args.rate_limit,
        burst=args.burst if args.burst is not None else 2 * args.rate_limit,
        out=args.out if args.out is not None else (RESULTS if documented else None),
        render=args.render,
    )


def soak_faults(seed: int, server: str) -> FaultConfig:
    """`chaos_all` plus answers held past syncd's timeout and a few garbage fields.

    The held answer is longer than syncd's client timeout on purpose: the server applies the
    request and the client never learns it, the case the outbox exists for.  Click Maint
    answers about a tenth as many requests as mantenimiento (its rate limit, no per-OT
    re-reads), so its rarer modes are more frequent there; on both, the modes tests/test_soak.py
    requires of a `--quick` soak fire about ten times in one.  Page drift needs a second page,
    which only a longer listing has.
    """
    cfg = FaultConfig.chaos_all(seed)
    cfg.update(
        {
            "latency_ms_max": 40,
            "timeout_delay": HELD_ANSWER,
            "session_expiry_rate": 0.03,
            "malformed_record_rate": 0.01,
        }
    )
    if server == "cm":
        cfg.update(
            {
                "burst_429_rate": 0.02,
                "timeout_rate": 0.04,
                "malformed_json_rate": 0.08,
                "html_error_rate": 0.05,
                "page_drift_rate": 0.5,
            }
        )
    else:
        cfg.update({"burst_429_rate": 0.02, "html_error_rate": 0.03})
    return cfg


def count_latency(box: Sandbox) -> None:
    """The fault counters count every mode but latency: count the requests each server
    delayed (`latency` in faults_cm / faults_mt)."""
    for sim in (box.cm, box.mt):
        faults = sim.faults
        decide = faults.decide

        def counted(method: str, faults: Any = faults, decide: Any = decide) -> Any:
            decision = decide(method)
            if decision.latency > 0:
                faults.counts["latency"] += 1
            return decision

        faults.decide = counted  # type: ignore[method-assign]


# =============================================================================================
# tracing third-party edits (page drift, garbage fields)
# =============================================================================================
@dataclass
class Touches:
    """Who touched which (stream, Click Maint id, field) from which side, for attribution.

    Keys use the Click Maint id of the pair where one exists; drift and garbage are recorded by
    their own record id and mapped to pairs at the end (`pair_key`)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    #: (stream, side, record id on that side, field) -> list of (monotonic time, actor)
    events: dict[tuple[str, str, int, str], list[tuple[float, str]]] = field(default_factory=dict)

    def add(self, stream: str, side: str, record: int, name: str, actor: str) -> None:
        with self.lock:
            self.events.setdefault((stream, side, record, name), []).append(
                (time.monotonic(), actor)
            )

    def actors(self, stream: str, side: str, record: int, name: str) -> list[str]:
        with self.lock:
            return [a for _, a in self.events.get((stream, side, record, name), [])]

    def last(self, stream: str, side: str, record: int, name: str) -> float | None:
        """Monotonic time of the latest third-party touch, or None."""
        with self.lock:
            items = self.events.get((stream, side, record, name), [])
            return max((t for t, _ in items), default=None)

    def by(self, actor_prefix: str) -> Counter[str]:
        with self.lock:
            return Counter(
                a for items in self.events.values() for _, a in items if a.startswith(actor_prefix)
            )


_WO_DRIFT_FIELDS = {"title": "title", "description": "description", "status_id": "status"}
_MT_GARBAGE_FIELDS = {"raw_status": "status", "codigo": "title", "fin": "due"}


def trace_third_parties(box: Sandbox, touches: Touches) -> None:
    """Wrap the simulators' drift and garbage hooks so every edit they make is recorded.

    The hooks are instance attributes looked up at call time, so wrapping them here changes
    nothing in what the servers answer."""
    cm, mt = box.cm, box.mt
    drift_wo = cm._drift_work_orders
    drift_req = cm._drift_requests
    render_item = cm._render_list_item
    corrupt_detail = mt._maybe_corrupt_detail

    def traced_wo(entity: int) -> None:
        before = {i: dict(w) for i, w in cm.work_orders.items()}
        drift_wo(entity)
        for wo_id, old in before.items():
            new = cm.work_orders.get(wo_id)
            if new is None:
                touches.add("work_orders", "cm", wo_id, "deleted", "drift")
                continue
            for key, name in _WO_DRIFT_FIELDS.items():
                if new.get(key) != old.get(key):
                    touches.add("work_orders", "cm", wo_id, name, "drift")
        for wo_id in set(cm.work_orders) - set(before):
            touches.add("work_orders", "cm", wo_id, "created", "drift")

    def traced_req(entity: int) -> None:
        before = {i: dict(r) for i, r in cm.requests.items()}
        drift_req(entity)
        for req_id, old in before.items():
            new = cm.requests.get(req_id)
            if new is None:
                touches.add("requests", "cm", req_id, "deleted", "drift")
            elif new.get("title") != old.get("title"):
                touches.add("requests", "cm", req_id, "title", "drift")
        for req_id in set(cm.requests) - set(before):
            touches.add("requests", "cm", req_id, "created", "drift")

    def traced_render(collection: Any, record: dict[str, Any]) -> dict[str, Any]:
        out = render_item(collection, record)
        clean = collection.render(record)
        for key in out:
            if out.get(key) != clean.get(key) and isinstance(record.get("id"), int):
                stream = {"work_orders": "work_orders", "requests": "requests"}.get(
                    collection.name, "part_usage"
                )
                touches.add(stream, "cm", record["id"], f"garbage:{key}", "garbage")
        return out

    def traced_corrupt(detail: dict[str, Any]) -> dict[str, Any]:
        out = corrupt_detail(detail)
        for key, value in out.items():
            if detail.get(key) != value and isinstance(detail.get("id"), int):
                name = _MT_GARBAGE_FIELDS.get(key, f"garbage:{key}")
                touches.add("work_orders", "mt", detail["id"], name, "garbage")
        return out

    cm._drift_work_orders = traced_wo  # type: ignore[method-assign]
    cm._drift_requests = traced_req  # type: ignore[method-assign]
    cm._render_list_item = traced_render  # type: ignore[method-assign]
    mt._maybe_corrupt_detail = traced_corrupt  # type: ignore[method-assign]


# =============================================================================================
# the daemon, as a subprocess
# =============================================================================================
def syncd_env(box: Sandbox) -> dict[str, str]:
    """Short intervals, a scaled rate window, a client timeout shorter than a held answer,
    deletions reconciled every ~4 s instead of daily; nothing from the caller's SYNCD_*."""
    env = child_env(keep_syncd=False)
    env.update(box.env())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_support.ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    for stream, seconds in INTERVALS.items():
        prefix = f"SYNCD_STREAMS__{stream.upper()}__"
        env[prefix + "ENABLED"] = "true"
        env[prefix + "INTERVAL_SECONDS"] = str(seconds)
        env[prefix + "JITTER_SECONDS"] = "0.5"
    limit = int(box.extra.get("rate_limit", RATE_LIMIT))
    env["SYNCD_CLICKMAINT__RATE_LIMIT"] = str(limit)
    env["SYNCD_CLICKMAINT__RATE_WINDOW_SECONDS"] = str(RATE_WINDOW)
    env["SYNCD_CLICKMAINT__RATE_RESERVE"] = str(rate_reserve(limit))
    env["SYNCD_CLICKMAINT__LAG_SECONDS"] = "1"
    env["SYNCD_CLICKMAINT__LOOKBACK_SECONDS"] = "3"
    env["SYNCD_CLICKMAINT__PER_PAGE"] = "25"  # several pages per listing: page drift bites
    env["SYNCD_CLICKMAINT__TIMEOUT_SECONDS"] = str(CLIENT_TIMEOUT)
    env["SYNCD_MANTENIMIENTO__TIMEOUT_SECONDS"] = str(CLIENT_TIMEOUT)
    env["SYNCD_DELETES__RECONCILE_EVERY_HOURS"] = "0.001"  # every ~4 s instead of daily
    return env


def rate_reserve(limit: int) -> int:
    """syncd's default reserve is 10 of 300 (for adoption look-ups and `syncd check`)."""
    return max(2, limit // 30)


def load_soak_config(box: Sandbox) -> Config:
    assert box.config_path is not None
    return load_config(box.config_path, env=syncd_env(box))


class DaemonProcess:
    """`syncd run` with its JSON log parsed as it arrives (and copied to a file)."""

    KEEP = ("cycle.start", "cycle.end", "cycle.crashed", "cycle.skipped", "record.duplicate")

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_file = log_path.open("w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "syncd", "--log-format", "json", "--log-level", "info", "run"],
            env=env,
            cwd=_support.ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self.lock = threading.Lock()
        self.events: list[dict[str, Any]] = []
        self.levels: Counter[str] = Counter()
        self.names: Counter[str] = Counter()
        self.errors: list[str] = []
        self.other: list[str] = []
        self._reader = threading.Thread(target=self._read, name="daemon-log", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log_file.write(line)
            try:
                event = json.loads(line)
            except ValueError:
                with self.lock:
                    self.other.append(line.rstrip())  # a traceback or a stray print
                continue
            if not isinstance(event, dict):
                continue
            self._keep(event)
        self.log_file.flush()

    def _keep(self, event: dict[str, Any]) -> None:
        name = str(event.get("event"))
        level = str(event.get("level") or "")
        with self.lock:
            self.names[name] += 1
            self.levels[level] += 1
            if level in ("error", "critical"):
                self.errors.append(f"{name}: {event.get('error') or event.get('reason') or ''}")
            if name in self.KEEP:
                event["_at"] = time.monotonic()
                self.events.append(event)

    def mark(self) -> int:
        with self.lock:
            return len(self.events)

    def cycles(self, after: int = 0) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.events[after:] if e.get("event") == "cycle.end"]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait: the daemon must finish the record in hand and exit 0."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            code = -9
        self._reader.join(timeout=10)
        self.log_file.close()
        return code


def writes(counts: dict[str, Any]) -> int:
    return sum(int(v) for k, v in counts.items() if k.startswith(WRITE_KEYS))


# =============================================================================================
# the driver: users on both sides
# =============================================================================================
@dataclass
class Edit:
    side: str
    value: Any
    at: float


@dataclass
class DriverLog:
    """What the users did: the soak's side of every comparison."""

    ops: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    #: (stream, cm id, field) -> the last user edit of that field of that pair
    last_edit: dict[tuple[str, str, str], Edit] = field(default_factory=dict)
    #: (stream, cm id, field) -> sides a user edited it on
    sides: dict[tuple[str, str, str], set[str]] = field(default_factory=dict)
    #: (cm id, field) of the deliberate conflicts -> (Click Maint value, mantenimiento value)
    injected: dict[tuple[str, str], tuple[Any, Any]] = field(default_factory=dict)
    #: (cm id, field) -> wall-clock time of the injection (to read the daemon's log against)
    injected_at: dict[tuple[str, str], str] = field(default_factory=dict)
    deleted_cm: set[int] = field(default_factory=set)
    deleted_mt: set[int] = field(default_factory=set)
    usage: int = 0
    #: OTs the routine generated at once
    burst: int = 0

    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, name: str, done: bool) -> None:
        with self.lock:
            (self.ops if done else self.skipped)[name] += 1

    def edited(self, stream: str, cm_id: str, name: str, side: str, value: Any) -> None:
        self.last_edit[(stream, cm_id, name)] = Edit(side, value, time.monotonic())
        self.sides.setdefault((stream, cm_id, name), set()).add(side)


def owner(cm_id: str) -> str:
    """Which side's users may edit a linked pair: one side only, so the users alone never make
    a conflict; every tenth pair is kept for the deliberate conflicts."""
    number = int(cm_id)
    if number % 10 == 0:
        return "conflict"
    return "cm" if number % 2 else "mt"


class Driver:
    """The users.  One instance plays the day-to-day edits; a second one, on its own thread,
    injects the deliberate conflicts (each may wait for a running cycle to release the stream
    lock, which must not hold up everybody else's edits)."""

    def __init__(
        self,
        box: Sandbox,
        config: Config,
        options: Options,
        log: DriverLog,
        stop: threading.Event,
        *,
        role: int = 1,
    ) -> None:
        self.box = box
        self.config = config
        self.options = options
        self.log = log
        self.stop = stop
        self.rng = random.Random(options.seed * 7919 + role)
        self.conflicts: queue.Queue[int | None] = queue.Queue()
        self.mapping = WorkOrderMapping(config)
        self.status_ids = dict(config.clickmaint.statuses)
        self._links: list[Link] = []
        self._request_links: list[Link] = []
        self._links_at = 0.0
        self._serial = 0
        spread = options.ops / max(1, options.conflicts)
        self.conflict_slots = (
            {int(spread * (k + 0.5)) for k in range(options.conflicts)}
            if options.conflicts
            else set()
        )
        self.done = threading.Event()

    # -- loop ---------------------------------------------------------------------------------
    def run(self) -> None:
        started = time.monotonic()
        pace = self.options.duration / self.options.ops
        try:
            for index in range(self.options.ops):
                if self.stop.wait(max(0.0, started + index * pace - time.monotonic())):
                    return
                if index in self.conflict_slots:
                    self.conflicts.put(index)  # for the injector thread
                    continue
                self.perform(self._pick())
        finally:
            self.conflicts.put(None)
            self.done.set()

    def perform(self, name: str) -> None:
        try:
            done = getattr(self, f"op_{name}")()
        except Exception as exc:  # a user action the server refused: counted, reported
            self.log.failures.append(f"{name}: {type(exc).__name__}: {exc}")
            done = False
        self.log.count(name, done)

    def inject_from(self, requests: queue.Queue[int | None]) -> None:
        """The injector's loop: one deliberate conflict per request, until the users stop."""
        while requests.get() is not None:
            if not self.stop.is_set():
                self.perform("conflict")

    def _pick(self) -> str:
        names = [n for n, _ in OPERATIONS]
        weights = [w for _, w in OPERATIONS]
        return self.rng.choices(names, weights)[0]

    # -- choosing records ---------------------------------------------------------------------
    def links(self, stream: str = "work_orders") -> list[Link]:
        """Active links, re-read from the ledger at most once a second."""
        if time.monotonic() - self._links_at > 1.0:
            try:
                ledger = Ledger.open(self.config.ledger_path, readonly=True)
            except Exception:
                return []
            try:
                self._links = list(ledger.iter_links("work_orders"))
                self._request_links = list(ledger.iter_links("requests"))
            finally:
                ledger.close()
            self._links_at = time.monotonic()
        return self._links if stream == "work_orders" else self._request_links

    def open_pair(self, side: str) -> Link | None:
        """A linked pair owned by `side` (or the conflict pool) that is open on both servers."""
        cm, mt = self.box.cm, self.box.mt
        candidates = []
        for link in self.links():
            if owner(link.cm_id) != side:
                continue
            with cm.lock:
                wo = cm.work_orders.get(int(link.cm_id))
                status = cm.statuses[wo["status_id"]]["name"] if wo else None
            with mt.lock:
                ot = mt.ots.get(int(link.mt_id))
                estado = ot["estado"] if ot else None
            if status in CM_OPEN and estado in MT_OPEN:
                candidates.append(link)
        return self.rng.choice(candidates) if candidates else None

    def serial(self) -> int:
        self._serial += 1
        return self._serial

    # -- work orders: Click Maint users ---------------------------------------------------------
    def op_edit_cm(self) -> bool:
        link = self.open_pair("cm")
        if link is None:
            return False
        name = self.rng.choice(EDIT_FIELDS)
        value = self.cm_value(name, int(link.cm_id), f"soak {self.serial()}")
        self.write_cm(int(link.cm_id), name, value)
        self.log.edited("work_orders", link.cm_id, name, "cm", value)
        return True

    def cm_value(self, name: str, cm_id: int, tag: str, avoid: Any = None) -> Any:
        if name == "title":
            return f"WO {tag}"
        if name == "description":
            return f"{self.rng.choice(NOTES)} ({tag})"
        if name == "status":
            with self.box.cm.lock:
                current = self.box.cm.statuses[self.box.cm.work_orders[cm_id]["status_id"]]["name"]
            choices = [s for s in CM_OPEN if s not in (current, avoid)]
            return self.rng.choice(choices)
        day = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        return iso_z(day + timedelta(days=self.rng.randint(2, 40), hours=self.rng.randint(0, 9)))

    def write_cm(self, cm_id: int, name: str, value: Any) -> None:
        if name == "title":
            fields: dict[str, Any] = {"title": value}
        elif name == "description":
            with self.box.cm.lock:
                old = self.box.cm.work_orders[cm_id].get("description")
            fields = {"description": keep_marker(old, value)}
        elif name == "status":
            fields = {"status_id": self.status_ids[value]}
            if value == "completed":
                fields["completed_at"] = datetime.now(UTC).isoformat()
        else:
            fields = {"due_date": value}
        self.box.cm.update_work_order(cm_id, fields)

    def op_create_cm(self) -> bool:
        n = self.serial()
        self.box.cm.create_work_order(
            {
                "title": f"Soak new WO {n}",
                "description": self.rng.choice(NOTES),
                "priority": self.rng.choice(["low", "medium", "high"]),
                "type": "reactive",
                "due_date": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
            }
        )
        return True

    def op_close_cm(self) -> bool:
        link = self.open_pair("cm")
        if link is None:
            return False
        self.write_cm(int(link.cm_id), "status", "completed")
        self.log.edited("work_orders", link.cm_id, "status", "cm", "completed")
        return True

    def op_delete_cm(self) -> bool:
        link = self.open_pair("cm")
        if link is None:
            return False
        self.box.cm.delete_work_order(int(link.cm_id))
        self.log.deleted_cm.add(int(link.cm_id))
        return True

    # -- work orders: mantenimiento users ---------------------------------------------------------
    def op_edit_mt(self) -> bool:
        link = self.open_pair("mt")
        if link is None:
            return False
        name = self.rng.choice(EDIT_FIELDS)
        value = self.mt_value(name, int(link.mt_id), f"soak {self.serial()}")
        self.write_mt(int(link.mt_id), name, value)
        self.log.edited("work_orders", link.cm_id, name, "mt", value)
        return True

    def mt_value(self, name: str, mt_id: int, tag: str, avoid: Any = None) -> Any:
        if name == "title":
            return f"OT {tag}"
        if name == "description":
            return f"{self.rng.choice(NOTES)} ({tag})"
        if name == "status":
            with self.box.mt.lock:
                current = self.box.mt.ots[mt_id]["estado"]
            return self.rng.choice([e for e in MT_OPEN if e not in (current, avoid)])
        day = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        return iso_z(day + timedelta(days=self.rng.randint(2, 40), hours=self.rng.randint(10, 20)))

    def write_mt(self, mt_id: int, name: str, value: Any) -> None:
        mt = self.box.mt
        with mt.lock:
            ot = dict(mt.ots[mt_id])
        if name == "title":
            mt.update_ot(mt_id, descripcion_corta=keep_marker(ot["descripcion_corta"], value))
        elif name == "description":
            mt.update_ot(mt_id, notas=keep_marker(ot["notas"], value))
        elif name == "status":
            mt.update_ot(mt_id, estado=value)
        else:
            end = datetime.fromisoformat(value.replace("Z", "+00:00"))
            mt.update_ot(mt_id, inicio_programado=end - timedelta(hours=2), fin_programado=end)

    def op_create_mt(self) -> bool:
        n = self.serial()
        note = self.rng.choice(NOTES)
        self.box.mt.create_ot(**planned_ot_fields(self.rng, f"Soak new OT {n}", note))
        return True

    def op_close_mt(self) -> bool:
        link = self.open_pair("mt")
        if link is None:
            return False
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        self.box.mt.close_ot(
            int(link.mt_id),
            fecha_inicio=now - timedelta(hours=1),
            fecha_fin=now,
            comentarios="Cerrada en la prueba de resistencia",
        )
        self.log.edited("work_orders", link.cm_id, "status", "mt", "REALIZADA")
        return True

    def op_delete_mt(self) -> bool:
        link = self.open_pair("mt")
        if link is None:
            return False
        self.box.mt.delete_ot(int(link.mt_id))
        self.log.deleted_mt.add(int(link.mt_id))
        return True

    # -- part usage ----------------------------------------------------------------------------
    def op_usage(self) -> bool:
        links = [k for k in self.links() if int(k.cm_id) in self.box.cm.work_orders]
        if not links:
            return False
        link = self.rng.choice(links)
        part = self.rng.choice(PARTS)
        quantity = self.rng.choice([1, 2, 3]) if part.unit == "itm" else self.rng.choice([0.5, 1.5])
        self.box.cm.add_transaction(
            part.cm_part_id, "usage", quantity, work_order_id=int(link.cm_id), note="Soak usage"
        )
        self.log.usage += 1
        return True

    # -- requests and avisos -------------------------------------------------------------------
    def op_request_cm(self) -> bool:
        n = self.serial()
        self.box.cm.create_request(
            {
                "title": f"Soak request {n}",
                "description": self.rng.choice(NOTES),
                "priority": self.rng.choice(["low", "medium", "high"]),
            }
        )
        return True

    def op_aviso_mt(self) -> bool:
        n = self.serial()
        self.box.mt.create_aviso(
            descripcion=f"Soak aviso {n}\n\n{self.rng.choice(NOTES)}",
            ubicacion_id=self.rng.choice(PLACES).mt_ubicacion_id,
            prioridad=self.rng.choice(["BAJA", "MEDIA", "ALTA"]),
            tipo="AVERIA",
            estado="ABIERTO",
        )
        return True

    def request_pair(self, side: str) -> Link | None:
        candidates = []
        for link in self.links("requests"):
            if owner(link.cm_id) != side:
                continue
            req = self.box.cm.requests.get(int(link.cm_id))
            aviso = self.box.mt.avisos.get(int(link.mt_id))
            if (
                req
                and aviso
                and req["status"] in ("pending", "on_hold")
                and aviso["estado"] in ("ABIERTO",)
            ):
                candidates.append(link)
        return self.rng.choice(candidates) if candidates else None

    def op_request_status(self) -> bool:
        """A Click Maint user parks, declines or approves a request (approval makes a WO)."""
        link = self.request_pair("cm")
        if link is None:
            return False
        current = self.box.cm.requests[int(link.cm_id)]["status"]
        status = self.rng.choice(
            [s for s in ("pending", "on_hold", "declined", "approved") if s != current]
        )
        self.box.cm.update_request(int(link.cm_id), {"status": status})
        self.log.edited("requests", link.cm_id, "status", "cm", status)
        return True

    def op_aviso_status(self) -> bool:
        link = self.request_pair("mt")
        if link is None:
            return False
        estado = self.rng.choice(["PROCESO", "CANCELADO"])
        self.box.mt.update_aviso(int(link.mt_id), estado=estado)
        self.log.edited("requests", link.cm_id, "status", "mt", estado)
        return True

    def op_aviso_text(self) -> bool:
        """The aviso's text is edited in mantenimiento (flows to the request's title)."""
        link = self.request_pair("mt")
        if link is None:
            return False
        n = self.serial()
        with self.box.mt.lock:
            old = self.box.mt.avisos[int(link.mt_id)]["descripcion"]
        title = f"Aviso editado {n}"
        self.box.mt.update_aviso(
            int(link.mt_id), descripcion=keep_marker(old, f"{title}\n\n{self.rng.choice(NOTES)}")
        )
        self.log.edited("requests", link.cm_id, "title", "mt", title)
        return True

    # -- the deliberate conflicts ------------------------------------------------------------------
    def op_conflict(self) -> bool:
        """Edit one field of one pair on both sides while syncd is kept off the stream.

        Holding `stream-work_orders.lock` makes the daemon skip its work_orders cycles, so
        neither edit can be synced before the other is made: the next cycle must see both and
        log a conflict (the default policy is `manual`)."""
        slots = [
            (link, name)
            for link in self.links()
            if owner(link.cm_id) == "conflict"
            for name in EDIT_FIELDS
            if (link.cm_id, name) not in self.log.injected
        ]
        self.rng.shuffle(slots)
        lock = stream_lock(self.config.state_dir, "work_orders")
        for link, name in slots:
            if not self._both_open(link):
                continue
            lock.acquire(wait=300, stop=self.stop)
            try:
                self._inject(link, name)
            finally:
                lock.release()
            return True
        return False

    def _both_open(self, link: Link) -> bool:
        wo = self.box.cm.work_orders.get(int(link.cm_id))
        ot = self.box.mt.ots.get(int(link.mt_id))
        if wo is None or ot is None:
            return False
        return self.box.cm.statuses[wo["status_id"]]["name"] in CM_OPEN and ot["estado"] in MT_OPEN

    def _inject(self, link: Link, name: str) -> None:
        tag = f"conflict {len(self.log.injected) + 1}"
        cm_value = self.cm_value(name, int(link.cm_id), f"{tag} cm")
        mt_value = self.mt_value(name, int(link.mt_id), f"{tag} mt")
        for _ in range(20):  # disagreeing values (a CM status may map onto the MT estado)
            if not self.mapping.agree(name, cm_value, mt_value):
                break
            mt_value = self.mt_value(name, int(link.mt_id), f"{tag} mt")
        self.write_cm(int(link.cm_id), name, cm_value)
        self.write_mt(int(link.mt_id), name, mt_value)
        self.log.injected[(link.cm_id, name)] = (cm_value, mt_value)
        self.log.injected_at[(link.cm_id, name)] = datetime.now(UTC).strftime("%H:%M:%S.%f")[:12]
        self.log.edited("work_orders", link.cm_id, name, "cm", cm_value)
        self.log.edited("work_orders", link.cm_id, name, "mt", mt_value)


def keep_marker(old: str | None, new: str) -> str:
    """A user editing a text keeps syncd's outbox marker where there is one (as people do with
    a line of text they do not understand)."""
    marker = find_marker(old)
    return f"{new} {marker.text()}" if marker else new


# =============================================================================================
# convergence
# =============================================================================================
@dataclass
class Phase:
    name: str
    seconds: float
    note: str = ""


def wait_for(predicate: Callable[[], bool], timeout: float, poll: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return predicate()


def wait_initial_sync(daemon: DaemonProcess, timeout: float) -> bool:
    """The users start once syncd has linked the two systems: a work_orders cycle that ended
    ok without creating anything."""

    def linked() -> bool:
        return (
            any(
                e.get("stream") == "work_orders"
                and e.get("status") == "ok"
                and not any(
                    str(k).startswith("created_") and v for k, v in (e.get("counts") or {}).items()
                )
                for e in daemon.cycles()
            )
            or not daemon.alive()
        )

    return wait_for(linked, timeout) and daemon.alive()


def full_cycles_since(daemon: DaemonProcess, mark: int) -> dict[str, list[dict[str, Any]]]:
    """cycle.end events of cycles that *started* after `mark`, by stream."""
    with daemon.lock:
        events = daemon.events[mark:]
    started: set[str] = set()
    out: dict[str, list[dict[str, Any]]] = {s: [] for s in STREAMS}
    for event in events:
        run = str(event.get("run_id"))
        if event.get("event") == "cycle.start":
            started.add(run)
        elif event.get("event") == "cycle.end" and run in started:
            out.setdefault(str(event.get("stream")), []).append(event)
    return out


def quiet(daemon: DaemonProcess, mark: int, rounds: int = 2) -> bool:
    """Every stream's last `rounds` complete cycles ended ok and wrote nothing."""
    by_stream = full_cycles_since(daemon, mark)
    for stream in STREAMS:
        tail = by_stream.get(stream, [])[-rounds:]
        if len(tail) < rounds:
            return False
        if any(e.get("status") != "ok" or writes(e.get("counts") or {}) for e in tail):
            return False
    return True


def one_round(daemon: DaemonProcess, mark: int) -> bool:
    by_stream = full_cycles_since(daemon, mark)
    return all(by_stream.get(s) for s in STREAMS)


def make_quarantine_due(env: dict[str, str]) -> int:
    """The operator's `syncd quarantine retry`: with faults off, every record set aside is
    retried on the next cycle instead of after its back-off (5 min and doubling), so a short
    soak can tell transient quarantines from records that are still bad."""
    done = subprocess.run(
        [sys.executable, "-m", "syncd", "--log-level", "error", "quarantine", "retry"],
        env=env,
        cwd=_support.ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(done.stdout.split()[0])


def logged_conflicts(config: Config) -> list[Any]:
    ledger = Ledger.open(config.ledger_path, readonly=True)
    try:
        return ledger.list_conflicts(status=None, limit=100_000)
    finally:
        ledger.close()


def resolve_open_conflicts(config: Config) -> int:
    """The operator settles every open conflict for Click Maint (`syncd conflicts resolve
    ID --take clickmaint`); the next cycle writes the decisions."""
    ledger = Ledger.open(config.ledger_path)
    try:
        open_ = ledger.list_conflicts(status="open", limit=100_000)
        for conflict in open_:
            ledger.resolve_conflict(conflict.id, resolution="clickmaint", value=None, by="soak")
        return len(open_)
    finally:
        ledger.close()


def run_once_json(env: dict[str, str], timeout: float = 300) -> tuple[int, list[dict[str, Any]]]:
    """`syncd sync --once --json`; its log lines share stdout with the report, so the report
    is the JSON array at the end."""
    done = subprocess.run(
        [sys.executable, "-m", "syncd", "--log-level", "error", "sync", "--once", "--json"],
        env=env,
        cwd=_support.ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    text = done.stdout
    start = text.find("[\n") if text.startswith("[") else text.rfind("\n[\n") + 1
    try:
        reports = json.loads(text[start:]) if start >= 0 else []
    except ValueError:
        reports = []
    return done.returncode, reports


# =============================================================================================
# verification
# =============================================================================================
@dataclass
class Check:
    name: str
    ok: bool
    value: Any
    detail: list[str] = field(default_factory=list)


def pair_sides(stream: str, link: Link, log: DriverLog, touches: Touches, name: str) -> set[str]:
    """Every side on which someone other than syncd changed this field of this pair."""
    sides = set(log.sides.get((stream, link.cm_id, name), set()))
    if touches.actors(stream, "cm", int(link.cm_id), name):
        sides.add("cm")
    if touches.actors(stream, "mt", int(link.mt_id), name):
        sides.add("mt")
    return sides


def touched_since(stream: str, link: Link, touches: Touches, name: str, since: float) -> bool:
    """Did drift or a garbage field touch this field of this pair after `since`?"""
    moments = [
        touches.last(stream, "cm", int(link.cm_id), name),
        touches.last(stream, "mt", int(link.mt_id), name),
    ]
    return any(m is not None and m >= since for m in moments)


def check_conflicts(config: Config, log: DriverLog, touches: Touches) -> Check:
    """Every injected (work order, field) is in the conflict log; any other logged conflict
    must be explained by a third party (drift, a garbage field) editing the other side."""
    logged = logged_conflicts(config)
    links = _links(config)
    keys = {(c.stream, c.cm_id, c.field) for c in logged}
    expected = {("work_orders", cm_id, name) for cm_id, name in log.injected}
    missing = sorted(expected - keys)
    explained, unexplained = [], []
    for stream, cm_id, name in sorted(keys - expected):
        link = links.get((stream, cm_id))
        sides = pair_sides(stream, link, log, touches, name) if link else set()
        text = f"{stream} cm:{cm_id} {name} (edited on: {', '.join(sorted(sides)) or 'nobody'})"
        (explained if sides >= {"cm", "mt"} else unexplained).append(text)
    detail = [
        f"missing: {stream} cm:{cm} {f} injected at {log.injected_at.get((cm, f))} "
        f"values {log.injected.get((cm, f))}; syncd did: {pair_history(config, cm)}"
        for stream, cm, f in missing
    ]
    detail += [f"unexplained: {t}" for t in unexplained]
    detail += [f"explained by a third party: {t}" for t in explained]
    value = {
        "expected": len(expected),
        "logged": len(keys),
        "missing": len(missing),
        "explained_extra": len(explained),
        "unexplained": len(unexplained),
        "open_after_resolution": sum(1 for c in logged_conflicts(config) if c.status == "open"),
    }
    return Check("conflicts logged == expected", not missing and not unexplained, value, detail)


def pair_history(config: Config, cm_id: str) -> str:
    """What syncd recorded for one work order (for a conflict that was not logged)."""
    ledger = Ledger.open(config.ledger_path, readonly=True)
    try:
        entries = [e for e in ledger.history(cm_id=cm_id) if e.stream == "work_orders"]
    finally:
        ledger.close()
    return "; ".join(
        f"{e.at[11:23]} {e.action} {e.detail.get('fields') or e.detail.get('field') or ''}"
        for e in entries[-8:]
    )


def _links(config: Config) -> dict[tuple[str, str], Link]:
    ledger = Ledger.open(config.ledger_path, readonly=True)
    try:
        return {
            (stream, link.cm_id): link
            for stream in ("work_orders", "requests")
            for link in ledger.iter_links(stream, state=None)
        }
    finally:
        ledger.close()


def check_lost_edits(box: Sandbox, config: Config, log: DriverLog, touches: Touches) -> Check:
    """A user's last edit of a field must still be there at the end, on the side it was made
    (the other side is covered by the pair comparison), unless someone else touched that
    field of that pair afterwards (the other side's users, drift, a garbage field)."""
    links = _links(config)
    lost, checked, excused = [], 0, 0
    for (stream, cm_id, name), edit in sorted(log.last_edit.items()):
        link = links.get((stream, cm_id))
        if stream != "work_orders" or link is None or link.state != "active":
            continue
        if (cm_id, name) in log.injected:
            continue  # settled by the operator's resolution
        if pair_sides(stream, link, log, touches, name) != {edit.side} or touched_since(
            stream, link, touches, name, edit.at
        ):
            excused += 1  # another hand changed it too: the pair comparison covers the end state
            continue
        if int(link.cm_id) in log.deleted_cm or int(link.mt_id) in log.deleted_mt:
            continue  # deleted later: the deletes check covers it
        now = final_value(box, link, name, edit.side)
        checked += 1
        if not same_value(name, edit.value, now):
            lost.append(
                f"wo {cm_id}/ot {link.mt_id} {name} on {edit.side}: {edit.value!r} -> {now!r}"
            )
    value = {"checked": checked, "excused": excused, "lost": len(lost)}
    return Check("user edits kept", not lost, value, lost)


def final_value(box: Sandbox, link: Link, name: str, side: str) -> Any:
    if side == "cm":
        with box.cm.lock:
            wo = box.cm.work_orders.get(int(link.cm_id))
            if wo is None:
                return None
            raw = box.cm.render_work_order(wo, detail=True)
        return {
            "title": raw.get("title"),
            "description": strip_marker(raw.get("description") or "").rstrip(),
            "status": (raw.get("status") or {}).get("name"),
            "due": _iso_minutes(raw.get("due_date")),
        }[name]
    with box.mt.lock:
        ot = box.mt.ots.get(int(link.mt_id))
        if ot is None:
            return None
        return {
            "title": strip_marker(ot["descripcion_corta"] or ""),
            "description": strip_marker(ot["notas"] or "").rstrip(),
            "status": ot["estado"],
            "due": _iso_minutes(ot["fin_programado"]),
        }[name]


def _iso_minutes(value: Any) -> str | None:
    if value in (None, ""):
        return None
    moment = (
        value
        if isinstance(value, datetime)
        else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    )
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def same_value(name: str, expected: Any, actual: Any) -> bool:
    if name == "due":
        return _iso_minutes(expected) == actual
    if name == "description":
        return strip_marker(str(expected)).rstrip() == actual
    return bool(expected == actual)


def check_requests(box: Sandbox, config: Config) -> Check:
    """Requests ⇄ avisos: every one linked (or quarantined for a lasting reason), and linked
    pairs agree on status (the only field both servers can write)."""
    mapping = RequestMapping(config)
    links = [k for k in _links(config).values() if k.stream == "requests"]
    linked_cm = {int(k.cm_id) for k in links}
    linked_mt = {int(k.mt_id) for k in links}
    problems: list[str] = []
    with box.cm.lock:
        requests = {i: box.cm.render_request(r, detail=True) for i, r in box.cm.requests.items()}
    with box.mt.lock:
        avisos = {i: dict(a) for i, a in box.mt.avisos.items()}
    problems += [f"request {i} not linked" for i in sorted(set(requests) - linked_cm)]
    problems += [f"aviso {i} not linked" for i in sorted(set(avisos) - linked_mt)]
    pairs = 0
    for link in links:
        if link.state != "active":
            continue
        req, aviso = requests.get(int(link.cm_id)), avisos.get(int(link.mt_id))
        if req is None or aviso is None:
            continue
        pairs += 1
        if not mapping.agree("status", req.get("status"), aviso.get("estado")):
            problems.append(
                f"request {link.cm_id}/aviso {link.mt_id} status: "
                f"{req.get('status')!r} != {aviso.get('estado')!r}"
            )
    value = {"pairs": pairs, "problems": len(problems)}
    return Check("requests ⇄ avisos", not problems, value, problems)


def check_deletes(box: Sandbox, config: Config) -> Check:
    """A record deleted on one side cancels its partner (never deletes it)."""
    problems, seen = [], 0
    for link in _links(config).values():
        if link.stream != "work_orders":
            continue
        if link.state == "cm_deleted":
            seen += 1
            ot = box.mt.ots.get(int(link.mt_id))
            if ot is not None and ot["estado"] != "CANCELADA":
                problems.append(f"wo {link.cm_id} deleted, ot {link.mt_id} is {ot['estado']}")
        elif link.state == "mt_deleted":
            seen += 1
            wo = box.cm.work_orders.get(int(link.cm_id))
            status = box.cm.statuses[wo["status_id"]]["name"] if wo else None
            if wo is not None and status != config.clickmaint.cancelled_status:
                problems.append(f"ot {link.mt_id} deleted, wo {link.cm_id} is {status}")
        elif link.state == "active":
            if int(link.cm_id) not in box.cm.work_orders:
                problems.append(f"wo {link.cm_id} deleted, link still active")
            if int(link.mt_id) not in box.mt.ots:
                problems.append(f"ot {link.mt_id} deleted, link still active")
    return Check("deletes cancel the partner", not problems, {"deletions": seen}, problems)


def check_quarantine(box: Sandbox, config: Config) -> tuple[Check, list[dict[str, Any]]]:
    """What is still quarantined after faults stopped and every record was retried: each
    must still be bad when read cleanly now; one that reads fine is a stuck record."""
    ledger = Ledger.open(config.ledger_path, readonly=True)
    try:
        items = ledger.list_quarantine()
        facts = {
            f.source_id: f
            for state in ("quarantined",)
            for f in ledger.facts_in_state("part_usage", state, limit=10**9)
        }
    finally:
        ledger.close()
    listing, stuck = [], []
    for item in items:
        still = still_bad(box, config, item, facts.get(item.record_id))
        listing.append(
            {
                "stream": item.stream,
                "side": item.side,
                "record": item.record_id,
                "reason": item.reason,
                "attempts": item.attempts,
                "still_bad": still,
            }
        )
        if still is None:
            stuck.append(f"{item.stream} {item.side}:{item.record_id}: {item.reason}")
    check = Check("quarantine holds only bad records", not stuck, len(items), stuck)
    return check, listing


def still_bad(box: Sandbox, config: Config, item: Any, fact: Any) -> str | None:
    """Why the record is still unusable when read without faults (None: it is fine now)."""
    try:
        if item.stream == "work_orders" and item.side == "cm":
            with box.cm.lock:
                wo = box.cm.work_orders.get(int(item.record_id))
                raw = box.cm.render_work_order(wo, detail=True) if wo else None
            if raw is None:
                return "deleted"
            WorkOrderMapping(config).from_cm(raw)
        elif item.stream == "work_orders":
            with box.mt.lock:
                ot = box.mt.ots.get(int(item.record_id))
                raw = box.mt.render_detail(ot) if ot else None
            if raw is None:
                return "deleted"
            WorkOrderMapping(config).from_mt(raw)
        elif item.stream == "requests" and item.side == "cm":
            with box.cm.lock:
                req = box.cm.requests.get(int(item.record_id))
                raw = box.cm.render_request(req, detail=True) if req else None
            if raw is None:
                return "deleted"
            RequestMapping(config).from_cm(raw)
        elif item.stream == "part_usage":
            return tx_still_bad(box, config, item.record_id)
        return None
    except MappingError as exc:
        return str(exc)


def tx_still_bad(box: Sandbox, config: Config, record_id: str) -> str | None:
    if not record_id.isdigit():
        return "no transaction id"
    with box.cm.lock:
        tx = box.cm.transactions.get(int(record_id))
        part = box.cm.parts.get(tx["part_id"]) if tx else None
    if tx is None or part is None:
        return "transaction or part gone"
    link = _links(config).get(("work_orders", str(tx.get("work_order_id"))))
    if link is None or link.state != "active" or int(link.mt_id) not in box.mt.ots:
        return f"work order {tx.get('work_order_id')} has no live OT (deleted on one side)"
    sku = config.mapping.parts.get(part["number"], part["number"])
    if not any(m["sku"] == sku for m in box.mt.materials.values()):
        return f"no material with sku {sku!r}"
    quantity = Decimal(str(tx["quantity"]))
    if quantity <= 0 or quantity != quantity.quantize(Decimal("0.01")):
        return f"quantity {quantity}"
    return None


def check_pressure(rate: dict[str, Any]) -> Check:
    """The budget bound while faults were on: in at least one rate window syncd sent all it
    allows itself (limit minus reserve), so the 0 limiter 429s were earned at the limit."""
    under_faults = {k: v for k, v in rate["by_phase"].items() if "faults on" in k}
    at_budget = sum(v["at_budget"] for v in under_faults.values())
    value = {
        "budget": rate["budget"],
        "peak_per_window": rate["peak_per_window"],
        "windows_at_budget": rate["windows_at_budget"],
        "at_budget_with_faults_on": at_budget,
    }
    return Check("rate budget bound with faults on", at_budget > 0, value)


class RateTrace:
    """Every request Click Maint's limiter counted: per fixed window (the limiter's own, per
    client) how many, and in which soak phase the window began; and the time of each, for the
    busiest sliding window.  syncd is the only API client of the simulator (the users edit
    through its direct helpers), so these are syncd's requests, 429s included."""

    def __init__(self, box: Sandbox) -> None:
        self.limit = box.cm.variant.rate_limit
        self.reserve = rate_reserve(self.limit)
        self.phase = "start"
        self.lock = threading.Lock()
        self.times: list[float] = []
        #: [window start (monotonic), requests counted in it, phase it began in]
        self.windows: list[list[Any]] = []
        limiter = box.cm.limiter
        original = limiter.hit

        def hit(client: str, limit: int, window: float) -> tuple[bool, int, float]:
            answer = original(client, limit, window)
            with limiter._lock:
                start, count = limiter._windows[client]
            with self.lock:
                self.times.append(time.monotonic())
                if self.windows and self.windows[-1][0] == start:
                    self.windows[-1][1] = max(self.windows[-1][1], count)
                else:
                    self.windows.append([start, count, self.phase])
            return answer

        limiter.hit = hit  # type: ignore[method-assign]

    def summary(self) -> dict[str, Any]:
        """`budget` is what syncd allows itself per window outside its reserve; a window at
        the budget is one where the budget, not the work, decided how fast syncd went."""
        budget = self.limit - self.reserve
        with self.lock:
            windows = [list(w) for w in self.windows]
            times = list(self.times)
        sliding, first = 0, 0
        for last, moment in enumerate(times):
            while moment - times[first] >= RATE_WINDOW:
                first += 1
            sliding = max(sliding, last - first + 1)
        phases: dict[str, dict[str, int]] = {}
        for _, count, phase in windows:
            row = phases.setdefault(phase, {"windows": 0, "peak": 0, "at_budget": 0})
            row["windows"] += 1
            row["peak"] = max(row["peak"], count)
            row["at_budget"] += count >= budget
        return {
            "limit": self.limit,
            "window_seconds": RATE_WINDOW,
            "reserve": self.reserve,
            "budget": budget,
            "requests": len(times),
            "windows": len(windows),
            "peak_per_window": max((w[1] for w in windows), default=0),
            "peak_sliding_window": sliding,
            "windows_at_budget": sum(1 for w in windows if w[1] >= budget),
            "by_phase": phases,
        }


def check_rate_limit(box: Sandbox) -> tuple[Check, dict[str, int]]:
    """429s from Click Maint's limiter (the budget's failure) apart from injected bursts."""
    all_429 = box.cm.log.by_status.get(429, 0)
    injected = box.cm.faults.counts.get("force_429", 0)
    limiter = all_429 - injected
    numbers = {
        "cm_requests": box.cm.log.total,
        "mt_requests": box.mt.log.total,
        "cm_429_total": all_429,
        "cm_429_injected": injected,
        "cm_429_limiter": limiter,
        "mt_429_injected": box.mt.faults.counts.get("force_429", 0),
    }
    return Check("no 429 from the rate limiter", limiter == 0, limiter), numbers


# =============================================================================================
# the run
# =============================================================================================
@dataclass
class Outcome:
    options: Options
    checks: list[Check] = field(default_factory=list)
    phases: list[Phase] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    directory: str = ""
    rate: RateTrace | None = None
    #: when, where and how: the command line, start time, commit, machine
    run: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


@contextlib.contextmanager
def timed(outcome: Outcome, name: str) -> Iterator[Phase]:
    phase = Phase(name, 0.0)
    started = time.monotonic()
    if outcome.rate is not None:
        outcome.rate.phase = name
    try:
        yield phase
    finally:
        phase.seconds = round(time.monotonic() - started, 1)
        outcome.phases.append(phase)


def soak(options: Options, directory: Path) -> Outcome:
    outcome = Outcome(options, directory=str(directory))
    touches = Touches()
    box = start_sandbox(
        directory=directory,
        work_orders=options.work_orders,
        ots=options.ots,
        avisos=max(8, options.work_orders // 8),
        requests=max(8, options.work_orders // 8),
        seed=options.seed,
        chaos=None,
        variant=ClickMaintVariant(rate_limit=options.rate_limit, rate_window=RATE_WINDOW),
    )
    box.extra["rate_limit"] = options.rate_limit
    outcome.rate = RateTrace(box)
    try:
        if not options.calm_start:
            faults_on(box, options.seed)
        trace_third_parties(box, touches)
        count_latency(box)
        run_with_sandbox(box, options, outcome, touches)
    finally:
        box.stop()
    return outcome


def faults_on(box: Sandbox, seed: int) -> None:
    box.cm.faults.configure(soak_faults(seed, "cm"))
    box.mt.faults.configure(soak_faults(seed + 1, "mt"))


def run_with_sandbox(box: Sandbox, options: Options, outcome: Outcome, touches: Touches) -> None:
    env = syncd_env(box)
    config = load_soak_config(box)
    daemon = DaemonProcess(env, Path(outcome.directory) / "syncd.log")
    log = DriverLog()
    stop = threading.Event()
    code = -1
    try:
        calm = "faults off" if options.calm_start else "faults on"
        with timed(outcome, f"initial sync ({calm})") as phase:
            # under every fault a mantenimiento request costs ~0.15 s on average (timeouts held
            # 2.5 s, back-off after 5xx) and a create takes several: 2-3 s per record in all
            budget = 60 + (0 if options.calm_start else 4.0) * (options.work_orders + options.ots)
            if not wait_initial_sync(daemon, timeout=budget):
                phase.note = "the initial sync did not finish"
                outcome.checks.append(Check("initial sync", False, None, [phase.note]))
                return
        faults_on(box, options.seed)
        with timed(outcome, "users editing (faults on)"):
            drive(box, config, options, log, stop, daemon)
        if options.burst:
            with timed(outcome, "routine burst (Click Maint faults on)") as phase:
                linked = routine(box, config, options, log)
            outcome.checks.append(
                Check(
                    "routine burst linked at the budget",
                    linked,
                    {"ots": log.burst, "seconds": phase.seconds},
                    [] if linked else ["not every OT of the routine was linked in time"],
                )
            )
        converge(box, config, options, outcome, daemon, log)
        with timed(outcome, "SIGTERM"):
            code = daemon.stop()
    finally:
        stop.set()
        if daemon.alive():
            code = daemon.stop()
    outcome.checks.append(Check("daemon exits 0 on SIGTERM", code == 0, code))
    with timed(outcome, "sync --once after the daemon"):
        rc, reports = run_once_json(env)
    late = {r["stream"]: writes(r.get("counts") or {}) for r in reports}
    outcome.checks.append(
        Check(
            "one more sync --once writes nothing",
            rc == 0 and len(reports) == len(STREAMS) and not any(late.values()),
            late,
            [f"{r['stream']}: {r['status']} {r.get('counts')}" for r in reports]
            + ([f"exit code {rc}"] if rc else []),
        )
    )
    verify_all(box, config, outcome, daemon, log, touches)


def routine(box: Sandbox, config: Config, options: Options, log: DriverLog) -> bool:
    """A preventive routine generates `options.burst` OTs at once in mantenimiento (as its
    rutinas do).  mantenimiento's faults stop, Click Maint's stay on: syncd's work is now
    Click Maint creates, more than one rate window allows, so its budget decides the pace.
    True once every one of them is linked (in any state)."""
    box.mt.faults.clear()
    rng = random.Random(options.seed * 7919 + 3)
    ids = set()
    for n in range(options.burst):
        fields = planned_ot_fields(rng, f"Rutina semanal {n + 1}", rng.choice(NOTES))
        ids.add(str(box.mt.create_ot(**fields)["id"]))
        log.burst += 1

    def linked() -> bool:
        # any state: page drift may delete a new work order in Click Maint, and then its OT's
        # link is `cm_deleted` (the OT cancelled), which the deletes check covers
        ledger = Ledger.open(config.ledger_path, readonly=True)
        try:
            return ids <= {link.mt_id for link in ledger.iter_links("work_orders", state=None)}
        finally:
            ledger.close()

    # the budget's pace (limit - reserve per window) plus a margin for the faults' retries
    pace = RATE_WINDOW / max(1, options.rate_limit - rate_reserve(options.rate_limit))
    return wait_for(linked, 60 + 3 * pace * options.burst, poll=1.0)


def drive(
    box: Sandbox,
    config: Config,
    options: Options,
    log: DriverLog,
    stop: threading.Event,
    daemon: DaemonProcess,
) -> None:
    driver = Driver(box, config, options, log, stop)
    injector = Driver(box, config, options, log, stop, role=2)
    threads = [
        threading.Thread(target=driver.run, name="soak-users", daemon=True),
        threading.Thread(
            target=injector.inject_from, args=(driver.conflicts,), name="soak-conflicts"
        ),
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + options.duration + 600  # a conflict may wait for a cycle
    while any(t.is_alive() for t in threads):
        threads[-1].join(timeout=1.0)
        if not daemon.alive() or time.monotonic() > deadline:
            stop.set()
            driver.conflicts.put(None)
    for thread in threads:
        thread.join(timeout=30)


def converge(
    box: Sandbox,
    config: Config,
    options: Options,
    outcome: Outcome,
    daemon: DaemonProcess,
    log: DriverLog,
) -> None:
    """Faults off, quarantine retried, injected conflicts seen and resolved, then quiet."""
    deadline = time.monotonic() + options.converge_timeout
    with timed(outcome, "faults off: one full round"):
        box.cm.faults.clear()
        box.mt.faults.clear()
        mark = daemon.mark()
        wait_for(lambda: one_round(daemon, mark), deadline - time.monotonic())
    with timed(outcome, "quarantine retried, conflicts seen") as phase:
        outcome.numbers["quarantine_made_due"] = make_quarantine_due(syncd_env(box))
        mark = daemon.mark()
        wait_for(lambda: one_round(daemon, mark), deadline - time.monotonic())
        wanted = set(log.injected)

        def all_logged() -> bool:
            return wanted <= {(c.cm_id, c.field) for c in logged_conflicts(config)}

        if not wait_for(all_logged, min(60.0, max(0.0, deadline - time.monotonic()))):
            phase.note = "not every injected conflict was logged"
    with timed(outcome, "conflicts resolved, until quiet") as phase:
        outcome.numbers["conflicts_resolved"] = resolve_open_conflicts(config)
        mark = daemon.mark()
        if not wait_for(lambda: quiet(daemon, mark), max(0.0, deadline - time.monotonic())):
            phase.note = "no two quiet rounds before the deadline"
    outcome.checks.append(
        Check("quiet after faults stop", not phase.note, phase.note or "2 quiet rounds")
    )
    failed = [
        f"{e.get('stream')}: {e.get('status')}"
        for e in daemon.cycles(mark)
        if e.get("status") not in ("ok", "partial")
    ]
    outcome.checks.append(Check("no failed cycle without faults", not failed, len(failed), failed))


def verify_all(
    box: Sandbox,
    config: Config,
    outcome: Outcome,
    daemon: DaemonProcess,
    log: DriverLog,
    touches: Touches,
) -> None:
    verdict = verify(config, box.cm, box.mt)
    summary = verdict.summary()
    outcome.checks += [
        Check(
            "linked pairs agree field by field",
            not verdict.divergences,
            {"pairs": verdict.pairs, "fields": verdict.fields_compared},
            verdict.divergences[:20],
        ),
        Check(
            "no duplicates or losses",
            not (verdict.unlinked_cm or verdict.unlinked_mt),
            len(verdict.unlinked_cm) + len(verdict.unlinked_mt),
            [describe_wo(box, i) for i in verdict.unlinked_cm]
            + [describe_ot(box, i) for i in verdict.unlinked_mt],
        ),
        Check(
            "transactions: none twice, none missing (ledger view)",
            not (verdict.duplicated_transactions or verdict.missing_transactions),
            summary["transactions_duplicated"] + summary["transactions_missing"],
            verdict.duplicated_transactions + verdict.missing_transactions,
        ),
        Check(
            "transactions exactly once",
            not verdict.transaction_problems,
            {
                "expected": verdict.transactions_expected,
                "written": verdict.transactions_written,
                "problems": len(verdict.transaction_problems),
            },
            verdict.transaction_problems,
        ),
        check_conflicts(config, log, touches),
        check_lost_edits(box, config, log, touches),
        check_deletes(box, config),
        check_requests(box, config),
    ]
    quarantine_check, outcome.quarantine = check_quarantine(box, config)
    rate_check, rate_numbers = check_rate_limit(box)
    outcome.checks += [quarantine_check, rate_check]
    if outcome.rate is not None:
        outcome.numbers["rate"] = rate = outcome.rate.summary()
        outcome.checks.append(check_pressure(rate))
    with daemon.lock:
        crashed = daemon.names.get("cycle.crashed", 0) + daemon.names.get("job.error", 0)
        duplicates = daemon.names.get("record.duplicate", 0)
        errors = list(daemon.errors)
        other = list(daemon.other)
    outcome.checks += [
        Check("no crashed cycle", crashed == 0, crashed, [e for e in errors if "crash" in e]),
        Check("no duplicate detected by syncd", duplicates == 0, duplicates),
    ]
    outcome.numbers.update(
        numbers(box, daemon, log, touches, rate_numbers, verdict.pairs, errors, other)
    )


def describe_wo(box: Sandbox, wo_id: int) -> str:
    """An unlinked work order with what explains where it came from (marker, request)."""
    with box.cm.lock:
        wo = dict(box.cm.work_orders.get(wo_id) or {})
    marker = find_marker(wo.get("description"))
    return (
        f"unlinked wo {wo_id} {wo.get('title')!r} marker={marker.text() if marker else None} "
        f"request={wo.get('work_order_request_id')}"
    )


def describe_ot(box: Sandbox, ot_id: int) -> str:
    with box.mt.lock:
        ot = dict(box.mt.ots.get(ot_id) or {})
    marker = find_marker(ot.get("descripcion_corta")) or find_marker(ot.get("notas"))
    return (
        f"unlinked ot {ot_id} {ot.get('descripcion_corta')!r} tipo={ot.get('tipo')} "
        f"estado={ot.get('estado')} marker={marker.text() if marker else None} "
        f"aviso={ot.get('aviso_id')}"
    )


def numbers(
    box: Sandbox,
    daemon: DaemonProcess,
    log: DriverLog,
    touches: Touches,
    rate: dict[str, int],
    pairs: int,
    errors: list[str],
    other: list[str],
) -> dict[str, Any]:
    cycles: dict[str, Counter[str]] = {s: Counter() for s in STREAMS}
    totals: Counter[str] = Counter()
    for event in daemon.cycles():
        cycles.setdefault(str(event.get("stream")), Counter())[str(event.get("status"))] += 1
        for key, value in (event.get("counts") or {}).items():
            if str(key).startswith((*WRITE_KEYS, "conflicts", "quarantined", "outcome_unknown")):
                totals[f"{event.get('stream')}.{key}"] += int(value)
    return {
        "operations": dict(log.ops),
        "operations_skipped": dict(log.skipped),
        "operation_failures": log.failures[:20],
        "usage_transactions_added": log.usage,
        "routine_ots": log.burst,
        "conflicts_injected": len(log.injected),
        "pairs_compared": pairs,
        "cycles": {s: dict(c) for s, c in cycles.items()},
        "syncd_totals": dict(sorted(totals.items())),
        "faults_cm": dict(box.cm.faults.counts),
        "faults_mt": dict(box.mt.faults.counts),
        "third_party_edits": dict(touches.by("")),
        "requests": rate,
        "error_log_lines": Counter(e.split(":")[0] for e in errors).most_common(15),
        "non_json_output": other[:20],
    }


# =============================================================================================
# report
# =============================================================================================
def render(outcome: Outcome) -> str:
    o = outcome.options
    lines = [
        f"syncd chaos soak: {o.ops} operations over {o.duration:g} s, seed {o.seed}, "
        f"{o.conflicts} deliberate conflicts",
        f"machine: {machine()}",
        f"Click Maint limit {o.rate_limit} requests / {RATE_WINDOW:g} s (5 min scaled); "
        f"files: {outcome.directory}",
        "",
        table(["phase", "seconds", "note"], [(p.name, p.seconds, p.note) for p in outcome.phases]),
        "",
        table(
            ["invariant", "ok", "value"],
            [(c.name, "yes" if c.ok else "NO", _short(c.value)) for c in outcome.checks],
        ),
    ]
    for check in outcome.checks:
        if check.detail and (not check.ok or check.name.startswith("conflicts")):
            lines.append(f"\n{check.name}:")
            lines += [f"  - {d}" for d in check.detail[:15]]
            if len(check.detail) > 15:
                lines.append(f"  … and {len(check.detail) - 15} more")
    n = outcome.numbers
    if n:
        lines += ["", "numbers:"]
        for key in (
            "operations",
            "operations_skipped",
            "cycles",
            "syncd_totals",
            "requests",
            "rate",
            "faults_cm",
            "faults_mt",
            "third_party_edits",
        ):
            lines.append(f"  {key}: {_short(n.get(key))}")
        if n.get("operation_failures"):
            lines.append(f"  operation_failures: {n['operation_failures'][:5]}")
    if outcome.quarantine:
        lines += ["", "still quarantined (after faults stopped and every record was retried):"]
        lines.append(
            table(
                ["stream", "record", "reason", "still bad when read cleanly"],
                [
                    (q["stream"], f"{q['side']}:{q['record']}", q["reason"][:70], q["still_bad"])
                    for q in outcome.quarantine
                ],
            )
        )
    lines += ["", "RESULT: " + ("PASS" if outcome.ok else "FAIL")]
    return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_short(v)}" for k, v in value.items())
    return str(value)


def as_json(outcome: Outcome) -> dict[str, Any]:
    return {
        "ok": outcome.ok,
        "options": {
            "ops": outcome.options.ops,
            "duration": outcome.options.duration,
            "seed": outcome.options.seed,
            "conflicts": outcome.options.conflicts,
            "work_orders": outcome.options.work_orders,
            "ots": outcome.options.ots,
            "calm_start": outcome.options.calm_start,
            "rate_limit": outcome.options.rate_limit,
            "rate_window": RATE_WINDOW,
        },
        "run": outcome.run,
        "directory": outcome.directory,
        "phases": [p.__dict__ for p in outcome.phases],
        "invariants": {
            c.name: {"ok": c.ok, "value": c.value, "detail": c.detail[:50]} for c in outcome.checks
        },
        "numbers": outcome.numbers,
        "quarantine": outcome.quarantine,
    }


def render_doc(report: dict[str, Any]) -> str:
    """The long run's results in docs/soak.md, from a saved report (`--render`)."""
    o, run, n, inv = (
        report["options"],
        report.get("run", {}),
        report["numbers"],
        report["invariants"],
    )

    def value(name: str) -> Any:
        return inv.get(name, {}).get("value")

    def faults(counts: dict[str, int]) -> str:
        drift = sum(v for k, v in counts.items() if k.startswith("page_drift"))
        named = {
            "delayed (latency)": counts.get("latency", 0),
            "session expiries": counts.get("expire_session", 0),
            "5xx": sum(v for k, v in counts.items() if k.startswith("error_5")),
            "held answers": counts.get("timeout", 0),
            "429s": counts.get("force_429", 0),
            "truncated JSON": counts.get("malformed_json", 0),
            "HTML error pages": counts.get("html_error", 0),
            "page drifts": drift,
            "garbage fields": counts.get("malformed_record", 0),
        }
        total = sum(v for k, v in named.items() if k != "delayed (latency)")
        return f"{total:,} (" + ", ".join(f"{v:,} {k}" for k, v in named.items()) + ")"

    ops = n["operations"]
    rate = n.get("rate") or {}
    window = float(rate.get("window_seconds") or 0)
    pressure = value("rate budget bound with faults on") or {}
    phases = "; ".join(f"{p['name']} {p['seconds']:g} s" for p in report["phases"])
    pairs, tx, conflicts = (
        value("linked pairs agree field by field") or {},
        value("transactions exactly once") or {},
        value("conflicts logged == expected") or {},
    )
    edits, requests = value("user edits kept") or {}, value("requests ⇄ avisos") or {}
    failed = [k for k, v in inv.items() if not v["ok"]]
    still = report.get("quarantine") or []
    rows = [
        ("command", f"`{run.get('command', '?')}`"),
        (
            "when, where",
            f"{run.get('started', '?')}, commit `{run.get('commit', '?')}`, "
            f"{run.get('machine', '?')}",
        ),
        (
            "size",
            f"{o['work_orders']} work orders and {o['ots']} OTs seeded, {o['ops']} "
            f"operations over {o['duration']:g} s, seed {o['seed']}, faults "
            f"{'after' if o.get('calm_start') else 'before'} the initial sync",
        ),
        ("phases", phases),
        (
            "operations",
            f"{sum(ops.values()):,}: "
            + ", ".join(f"{v} {k}" for k, v in sorted(ops.items()))
            + f"; skipped {sum(n['operations_skipped'].values())}",
        ),
        ("routine burst", f"{n.get('routine_ots', 0)} OTs at once, Click Maint faults on"),
        ("faults injected, Click Maint", faults(n["faults_cm"])),
        ("faults injected, mantenimiento", faults(n["faults_mt"])),
        (
            "requests",
            f"Click Maint {n['requests']['cm_requests']:,} "
            f"({n['requests']['cm_429_limiter']} refused by its limiter; "
            f"{n['requests']['cm_429_injected']} injected 429s), "
            f"mantenimiento {n['requests']['mt_requests']:,}",
        ),
        (
            "rate budget",
            f"limit {rate.get('limit')} per {window:g} s, syncd's budget {rate.get('budget')} "
            f"(reserve {rate.get('reserve')}); peak {rate.get('peak_per_window')} in one "
            f"limiter window ({rate.get('peak_sliding_window')} in any {window:g} s); "
            f"{rate.get('windows_at_budget')} of {rate.get('windows')} windows at the budget, "
            f"{pressure.get('at_budget_with_faults_on')} of them with faults on",
        ),
        (
            "compared",
            f"{pairs.get('pairs', 0):,} linked pairs, {pairs.get('fields', 0):,} "
            f"fields: {len(inv['linked pairs agree field by field']['detail'])} divergences; "
            f"{value('no duplicates or losses')} duplicates or losses",
        ),
        (
            "transactions",
            f"{tx.get('expected', 0)} usage transactions in Click Maint's data "
            f"due on a live OT, {tx.get('problems', 0)} problems (missing, twice, wrong OT); "
            f"{tx.get('written', 0)} written in all",
        ),
        (
            "conflicts",
            f"{conflicts.get('expected')} injected, {conflicts.get('logged')} logged "
            f"({conflicts.get('explained_extra')} more explained by a traced third-party edit), "
            f"{conflicts.get('missing')} missing, {conflicts.get('unexplained')} unexplained",
        ),
        (
            "user edits",
            f"{edits.get('checked')} checked, {edits.get('lost')} lost "
            f"({edits.get('excused')} excused)",
        ),
        (
            "deletes",
            f"{(value('deletes cancel the partner') or {}).get('deletions')}, each "
            "cancelled its partner"
            if inv["deletes cancel the partner"]["ok"]
            else "FAILED",
        ),
        (
            "requests ⇄ avisos",
            f"{requests.get('pairs')} pairs, {requests.get('problems')} problems",
        ),
        (
            "cycles",
            ", ".join(
                f"{s} " + " + ".join(f"{v} {k}" for k, v in c.items())
                for s, c in n["cycles"].items()
            ),
        ),
        (
            "still quarantined",
            f"{len(still)}, all still bad when read without faults"
            if inv["quarantine holds only bad records"]["ok"]
            else "FAILED",
        ),
        ("invariants", "every invariant held" if not failed else "FAILED: " + ", ".join(failed)),
    ]
    return "\n".join(["| measure | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows])


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    if options.render is not None:
        print(render_doc(json.loads(options.render.read_text(encoding="utf-8"))))
        return 0
    started = time.monotonic()
    run = {
        "command": "python bench/soak.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _support.git_commit(),
        "machine": machine(),
    }
    with tempfile.TemporaryDirectory(prefix="syncd-soak-") as tmp:
        directory = (options.workdir or Path(tmp)) / f"soak-{options.seed}"
        if directory.exists() and any(directory.iterdir()):
            print(f"soak: {directory} is not empty", file=sys.stderr)
            return 2
        outcome = soak(options, directory)
        outcome.run = run
        outcome.numbers["wall_seconds"] = round(time.monotonic() - started, 1)
        if options.out is not None:
            report = json.dumps(as_json(outcome), indent=1, ensure_ascii=False, default=str)
            options.out.parent.mkdir(parents=True, exist_ok=True)
            options.out.write_text(report + "\n", encoding="utf-8")
        if options.as_json:
            print(json.dumps(as_json(outcome), indent=2, ensure_ascii=False, default=str))
        else:
            print(render(outcome))
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
