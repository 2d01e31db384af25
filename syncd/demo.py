"""`syncd demo`: both simulators, the real daemon and a driver editing both sides, live.

Everything runs in this one process, on loopback sockets: `start_sandbox` serves the Click Maint
and mantenimiento simulators, the `Daemon` (exactly what `syncd run` runs) syncs them every
`interval` seconds (all three streams), and a driver thread plays the users: every `interval`
seconds it makes `edits` random edits on each side (title, description, status; now and then a
new record, or parts booked on a work order in Click Maint) with the simulators' own helper
methods.  The feed on stdout shows what the driver changed and what syncd propagated (read
from the daemon's structured log events); the full JSON log goes to `<dir>/syncd.log`.

At the end (after `duration` seconds, or on Ctrl-C) the driver stops, the daemon stops, one
last `sync --once` of every stream lets the final edits land, and `sandbox.verify` reads both
servers back: every linked pair field by field, no record without its partner, every mirrored
transaction on its OT exactly once.  Exit code 0 means all of that held.

The driver never edits one pair on both sides within a few cycles (that would be a genuine
conflict, which the default `manual` policy leaves for a person to decide) and never edits OTs
that are already closed (mantenimiento re-reads those only every few cycles).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import shutil
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

MARKER_FILE = ".syncd-demo"
SEED_WORK_ORDERS = 40
SEED_OTS = 40
#: both-ways fields every pair must agree on at the end
COMPARED = ("title", "description", "status", "due")
#: rounds during which a pair edited on one side is not edited on the other
COOLDOWN_ROUNDS = 3
STREAMS = ("work_orders", "part_usage", "requests")
#: what each stream's records are called on each side (for the feed)
NOUNS = {"work_orders": ("WO", "OT"), "requests": ("request", "aviso")}
RECORD_LINES_PER_CYCLE = 6

CM_OPEN_STATUSES = ("open", "on_hold", "in_progress")
MT_OPEN_ESTADOS = ("PROGRAMADA", "ESPERA", "EJECUCION")
NOTES = (
    "Checked on the night shift.",
    "Repuesto solicitado a bodega.",
    "Waiting for the supplier's technician.",
    "Se cambió la pieza; probar mañana.",
    "Vibration back to normal after tightening.",
    "Operador confirma que el equipo arranca bien.",
    "Needs a second look by electrical.",
)
NEW_TITLES = (
    "Inspect conveyor guard",
    "Revisar fuga en válvula",
    "Replace worn coupling",
    "Limpieza de filtros de aire",
    "Check emergency lighting",
    "Ajustar sensor de nivel",
)
_REV = re.compile(r" · rev \d+$")


# =============================================================================================
# entry point
# =============================================================================================
def run_demo(
    *, duration: float, interval: float, edits: int, directory: Path, seed: int | None = None
) -> int:
    """Run the demo; 0 when the final comparison finds no differences.

    The driver's edits are random; the seed is printed so that a run that ends in a
    difference can be replayed with `--seed` (timing still varies, the edits do not)."""
    out = sys.stdout
    if interval <= 0 or duration < 0 or edits < 0:
        print("syncd demo: --interval must be > 0, --duration and --edits ≥ 0", file=sys.stderr)
        return 2
    try:
        from .sandbox.launch import start_sandbox
    except ImportError as exc:  # werkzeug is an optional dependency
        print(
            f"syncd demo needs the simulators ({exc.name} is missing): "
            "pip install 'syncd[sandbox]'",
            file=sys.stderr,
        )
        return 1
    directory = directory.expanduser().resolve()
    problem = _prepare(directory)
    if problem:
        print(f"syncd demo: {problem}", file=sys.stderr)
        return 2

    box = start_sandbox(directory=directory, work_orders=SEED_WORK_ORDERS, ots=SEED_OTS, seed=1)
    log_file = (directory / "syncd.log").open("w", encoding="utf-8")
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    feed: Feed | None = None
    try:
        assert box.config_path is not None and box.credentials_dir is not None
        _tune_config(box.config_path, interval)
        config = _load(box.config_path, box.credentials_dir)
        if seed is None:
            seed = random.randrange(1_000_000)
        feed = Feed(out, box)
        _configure_logging(log_file, feed)
        _say(
            out,
            f"syncd demo: Click Maint {box.cm_url}  ⇄  mantenimiento {box.mt_url}\n"
            f"  {SEED_WORK_ORDERS} work orders and {SEED_OTS} OTs seeded; a sync cycle every "
            f"{interval:g}s; {edits} edit(s) per side every {interval:g}s; "
            + (f"{duration:g}s" if duration else "until Ctrl-C")
            + f" (driver seed {seed})\n"
            f"  full JSON log: {directory / 'syncd.log'}\n",
        )
        return _run(box, config, feed, duration=duration, interval=interval, edits=edits, seed=seed)
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        box.stop()
        log_file.close()


def _run(
    box: Any,
    config: Any,
    feed: Feed,
    *,
    duration: float,
    interval: float,
    edits: int,
    seed: int,
) -> int:
    from .service import Daemon, LockHeld, run_once

    out = feed.out
    daemon = Daemon(config)
    driver = Driver(box, config, feed, edits=edits, interval=interval, seed=seed)
    driver_thread = threading.Thread(target=driver.run, name="demo-driver", daemon=True)
    timer: threading.Timer | None = None
    if duration:
        timer = threading.Timer(duration, daemon.request_stop, args=("demo duration reached",))
        timer.daemon = True
    driver_thread.start()
    if timer is not None:
        timer.start()
    started = time.monotonic()
    try:
        code = daemon.run()  # returns on Ctrl-C / SIGTERM or when the timer fires
    except LockHeld as exc:
        print(f"syncd demo: {exc}", file=sys.stderr)
        return 75
    finally:
        driver.stop.set()
        if timer is not None:
            timer.cancel()
        driver_thread.join(timeout=10)
    elapsed = time.monotonic() - started
    if code != 0:
        print(f"syncd demo: the daemon exited with {code}", file=sys.stderr)
        return code

    _say(
        out, "\nstopping: the driver and the daemon are stopped; one last sync for the final edits"
    )
    for _ in range(4):
        reports = run_once(config, streams=list(STREAMS))
        if not any(r.writes for r in reports if r.status in ("ok", "partial")):
            break
    from .sandbox.verify import verify

    verdict = verify(config, box.cm, box.mt)
    _summary(out, feed, driver, elapsed, verdict, box, config)
    return 0 if verdict.pairs and verdict.ok else 1


# =============================================================================================
# preparation
# =============================================================================================
def _prepare(directory: Path) -> str | None:
    """A fresh demo every time: new simulators need a new ledger.  Only a directory the demo
    created itself (it carries a marker file) is ever cleaned."""
    marker = directory / MARKER_FILE
    if directory.exists() and any(directory.iterdir()) and not marker.exists():
        return (
            f"{directory} is not empty and was not created by `syncd demo`; "
            "choose another --dir (or an empty one)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    marker.write_text("created by `syncd demo`; the demo clears state/ here on every run\n")
    shutil.rmtree(directory / "state", ignore_errors=True)
    return None


def _tune_config(path: Path, interval: float) -> None:
    """Make the written config self-contained for the demo (so `syncd status` etc. work on it
    afterwards): every stream runs at the demo's interval, without jitter."""
    text = path.read_text(encoding="utf-8")
    for stream in STREAMS:
        text = re.sub(
            rf"\[streams\.{stream}\]\n(?:[a-z_]+ = [^\n]*\n)*",
            f"[streams.{stream}]\ninterval_seconds = {interval:g}\njitter_seconds = 0\n",
            text,
        )
    path.write_text(text, encoding="utf-8")


def _load(config_path: Path, credentials_dir: Path) -> Any:
    from .config import load_config

    # only the sandbox's own settings: nothing from the caller's SYNCD_* environment (which
    # may well point at real servers) reaches the demo
    return load_config(config_path, env={"CREDENTIALS_DIRECTORY": str(credentials_dir)})


def _configure_logging(log_file: TextIO, feed: Feed) -> None:
    from .logging import configure_logging

    configure_logging("info", "json", stream=log_file, journal_prefix=False)
    logging.getLogger().addHandler(feed)


def _say(out: TextIO, text: str) -> None:
    """Print a line; a reader that went away (`syncd demo | head`) silences the rest."""
    try:
        out.write(text + "\n")
        out.flush()
    except BrokenPipeError:
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, out.fileno())  # also keeps the interpreter's exit flush quiet


# =============================================================================================
# the feed: what the driver did and what syncd propagated
# =============================================================================================
class Feed(logging.Handler):
    """Turns the daemon's structured log events into readable lines (and counts them)."""

    def __init__(self, out: TextIO, box: Any) -> None:
        super().__init__(level=logging.INFO)
        self.out = out
        self.box = box
        self.started = time.monotonic()
        self.first_cycle = threading.Event()
        #: counts of every finished cycle, per stream
        self.totals: dict[str, Counter[str]] = {name: Counter() for name in STREAMS}
        self.cycles: Counter[str] = Counter()
        self.failed_cycles = 0
        #: record lines of a running cycle, by run id: (kind, text)
        self._pending: dict[str, list[tuple[str, str]]] = {}
        self._print_lock = threading.Lock()

    # -- output ---------------------------------------------------------------------------
    def line(self, who: str, text: str) -> None:
        stamp = f"{time.monotonic() - self.started:6.1f}s"
        with self._print_lock:
            _say(self.out, f"{stamp}  {who:<6} {text}")

    # -- logging.Handler ------------------------------------------------------------------
    def emit(self, record: logging.LogRecord) -> None:
        try:
            event = record.msg if isinstance(record.msg, dict) else None
            if event is None:
                if record.levelno >= logging.ERROR:
                    self.line("!", record.getMessage()[:160])
                return
            self._event(event, record.levelno)
        except Exception:  # pragma: no cover - never let the feed break the daemon
            self.handleError(record)

    def _event(self, event: dict[str, Any], level: int) -> None:
        name = str(event.get("event"))
        run = str(event.get("run_id") or "")
        stream = str(event.get("stream") or "work_orders")
        cm_noun, mt_noun = NOUNS.get(stream, NOUNS["work_orders"])
        cm_id, mt_id = event.get("cm_id"), event.get("mt_id")
        if name == "record.created":
            if event.get("side") == "mantenimiento":
                kind = "create_mt"
                title = self._cm_title(cm_id) if stream == "work_orders" else ""
                text = f"created {mt_noun} {mt_id} in mantenimiento  ← {cm_noun} {cm_id} {title}"
            else:
                kind = "create_cm"
                title = self._mt_title(mt_id) if stream == "work_orders" else ""
                text = f"created {cm_noun} {cm_id} in Click Maint    ← {mt_noun} {mt_id} {title}"
            self._pending.setdefault(run, []).append((kind, text.rstrip()))
        elif name == "record.synced":
            parts = []
            if event.get("to_mt"):
                parts.append(f"{cm_noun} {cm_id} → {mt_noun} {mt_id}: {', '.join(event['to_mt'])}")
            if event.get("to_cm"):
                parts.append(f"{mt_noun} {mt_id} → {cm_noun} {cm_id}: {', '.join(event['to_cm'])}")
            kind = "to_mt" if event.get("to_mt") else "to_cm"
            self._pending.setdefault(run, []).append((kind, "; ".join(parts)))
        elif name == "transaction.mirrored":
            text = (
                f"part transaction {event.get('tx')} ({event.get('part')} × "
                f"{event.get('quantity')}) on WO {cm_id} → material used on OT {mt_id}"
            )
            self._pending.setdefault(run, []).append(("tx", text))
        elif name == "cycle.end":
            self._cycle_end(run, stream, event)
        elif name in ("daemon.ready", "daemon.stopped"):
            self.line("syncd", name.split(".")[1])
        elif level >= logging.WARNING and name not in ("job.still_running",):
            detail = event.get("error") or event.get("reason") or event.get("detail") or ""
            self.line("!", f"{name} {detail}"[:160])

    def _cycle_end(self, run: str, stream: str, event: dict[str, Any]) -> None:
        counts: dict[str, int] = event.get("counts") or {}
        totals = self.totals.setdefault(stream, Counter())
        for key, value in counts.items():
            totals[key] += int(value)
        self.cycles[stream] += 1
        status = event.get("status")
        if status == "failed":
            self.failed_cycles += 1
        lines = self._pending.pop(run, [])
        for text in _sample(lines, RECORD_LINES_PER_CYCLE):
            self.line("syncd", text)
        if len(lines) > RECORD_LINES_PER_CYCLE:
            self.line("syncd", f"… and {len(lines) - RECORD_LINES_PER_CYCLE} more")
        what = _describe_counts(counts, stream)
        seconds = event.get("seconds", 0)
        self.line("cycle", f"{stream} #{self.cycles[stream]} {status} in {seconds:.1f}s: {what}")
        if stream == "work_orders":
            self.first_cycle.set()

    def _cm_title(self, cm_id: Any) -> str:
        wo = self.box.cm.work_orders.get(_int(cm_id))
        return repr(wo["title"]) if wo else ""

    def _mt_title(self, mt_id: Any) -> str:
        ot = self.box.mt.ots.get(_int(mt_id))
        return repr(ot["descripcion_corta"]) if ot else ""


def _sample(lines: list[tuple[str, str]], limit: int) -> list[str]:
    """At most `limit` lines, taking each kind in turn (a big first cycle shows both ways)."""
    if len(lines) <= limit:
        return [text for _, text in lines]
    by_kind: dict[str, list[str]] = {}
    for kind, text in lines:
        by_kind.setdefault(kind, []).append(text)
    picked: list[str] = []
    while len(picked) < limit:
        for texts in by_kind.values():
            if texts and len(picked) < limit:
                picked.append(texts.pop(0))
    return picked


def _describe_counts(counts: dict[str, int], stream: str = "work_orders") -> str:
    cm_noun, mt_noun = {"requests": ("request", "aviso")}.get(stream, ("WO", "OT"))
    labels = (
        ("created_mt", f"{mt_noun}s created in mantenimiento"),
        ("created_cm", f"{cm_noun}s created in Click Maint"),
        ("updated_mt", "updated in mantenimiento"),
        ("updated_cm", "updated in Click Maint"),
        ("mirrored", "transaction(s) mirrored to OTs"),
        ("not_mirrored", "transaction(s) not mirrored (reason in `syncd history`)"),
        ("waiting", "transaction(s) waiting for their work order's OT"),
        ("conflicts", "conflict(s) left for a person"),
        ("conflicts_auto", "conflict(s) settled by policy"),
        ("quarantined", "quarantined"),
    )
    said = [f"{counts[k]} {label}" for k, label in labels if counts.get(k)]
    return ", ".join(said) or "both sides in step, nothing to do"


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


# =============================================================================================
# the driver: users editing both systems
# =============================================================================================
@dataclass
class Driver:
    box: Any
    config: Any
    feed: Feed
    edits: int
    interval: float
    seed: int
    stop: threading.Event = field(default_factory=threading.Event)
    counts: Counter[str] = field(default_factory=Counter)
    _round: int = 0
    #: pair (cm_id, mt_id) -> (side edited, round)
    _touched: dict[tuple[int, int], tuple[str, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.status_ids: dict[str, int] = dict(self.config.clickmaint.statuses)

    def run(self) -> None:
        # users start once syncd has linked the two systems (the first cycle)
        while not self.feed.first_cycle.wait(0.2):
            if self.stop.is_set():
                return
        while not self.stop.wait(self.interval):
            self._round += 1
            try:
                self.one_round()
            except Exception as exc:  # pragma: no cover - a demo driver must not die silently
                self.feed.line("!", f"driver: {type(exc).__name__}: {exc}")

    def one_round(self) -> None:
        pairs = self._pairs()
        if not pairs:
            return
        for side in ("cm", "mt"):
            for _ in range(self.edits):
                if self.stop.is_set():
                    return
                if self.rng.random() < 0.1:
                    self._create(side)
                    continue
                pair = self._pick(pairs, side)
                if pair is None:
                    continue
                if side == "cm" and self.rng.random() < 0.15:
                    self._use_part(pair)
                elif side == "cm":
                    self._edit_cm(pair)
                else:
                    self._edit_mt(pair)

    # -- choosing ---------------------------------------------------------------------------
    def _pairs(self) -> list[tuple[int, int]]:
        from .ledger.store import Ledger

        try:
            ledger = Ledger.open(self.config.ledger_path, readonly=True)
        except Exception:
            return []
        try:
            return [(int(k.cm_id), int(k.mt_id)) for k in ledger.iter_links("work_orders")]
        finally:
            ledger.close()

    def _pick(self, pairs: list[tuple[int, int]], side: str) -> tuple[int, int] | None:
        candidates = []
        for pair in pairs:
            touched = self._touched.get(pair)
            if touched and touched[0] != side and self._round - touched[1] < COOLDOWN_ROUNDS:
                continue  # the other side's edit may not have crossed over yet
            ot = self.box.mt.ots.get(pair[1])
            wo = self.box.cm.work_orders.get(pair[0])
            if ot is None or wo is None or ot["estado"] not in MT_OPEN_ESTADOS:
                continue
            candidates.append(pair)
        if not candidates:
            return None
        pair = self.rng.choice(candidates)
        self._touched[pair] = (side, self._round)
        return pair

    # -- Click Maint ------------------------------------------------------------------------
    def _edit_cm(self, pair: tuple[int, int]) -> None:
        cm = self.box.cm
        with cm.lock:
            wo = cm.render_work_order(cm.work_orders[pair[0]], detail=True)
        kind = self.rng.choice(["title", "description", "status", "status"])
        if kind == "title":
            new = self._revise(wo["title"])
            cm.update_work_order(pair[0], {"title": new})
            what = f"title → {new!r}"
        elif kind == "description":
            new = _keep_marker(wo.get("description"), self.rng.choice(NOTES))
            cm.update_work_order(pair[0], {"description": new})
            what = f"description → {_first_line(_strip(new))!r}"
        else:
            current = wo["status"]["name"]
            choices = [s for s in CM_OPEN_STATUSES if s != current and s in self.status_ids]
            if self.rng.random() < 0.1 and "completed" in self.status_ids:
                choices = ["completed"]
            new = self.rng.choice(choices)
            fields: dict[str, Any] = {"status_id": self.status_ids[new]}
            if new == "completed":
                fields["completed_at"] = datetime.now(UTC).isoformat()
            cm.update_work_order(pair[0], fields)
            what = f"status {current} → {new}"
        self.counts["cm_edits"] += 1
        self.feed.line("user", f"Click Maint   WO {pair[0]}: {what}")

    def _use_part(self, pair: tuple[int, int]) -> None:
        """A technician books parts against the work order in Click Maint."""
        from .sandbox.catalog import PARTS

        stock = self.rng.choice([p for p in PARTS if p.sku is not None])
        quantity = self.rng.choice([1, 2, 0.5, 1.25])
        self.box.cm.add_transaction(stock.cm_part_id, "usage", quantity, work_order_id=pair[0])
        self.counts["cm_usage"] += 1
        self.feed.line("user", f"Click Maint   WO {pair[0]}: used {quantity} × {stock.number}")

    def _create(self, side: str) -> None:
        title = f"{self.rng.choice(NEW_TITLES)} #{self.rng.randrange(100, 999)}"
        note = self.rng.choice(NOTES)
        if side == "cm":
            wo = self.box.cm.create_work_order(
                {
                    "title": title,
                    "description": note,
                    "priority": self.rng.choice(["low", "medium", "high"]),
                    "type": "reactive",
                    "due_date": (datetime.now(UTC) + timedelta(days=2)).isoformat(),
                }
            )
            self.counts["cm_creates"] += 1
            self.feed.line("user", f"Click Maint   new WO {wo['id']} {title!r}")
            return
        from .sandbox.catalog import planned_ot_fields

        ot = self.box.mt.create_ot(**planned_ot_fields(self.rng, title, note))
        self.counts["mt_creates"] += 1
        self.feed.line("user", f"mantenimiento new OT {ot['id']} {title!r}")

    # -- mantenimiento ----------------------------------------------------------------------
    def _edit_mt(self, pair: tuple[int, int]) -> None:
        mt = self.box.mt
        with mt.lock:
            ot = dict(mt.ots[pair[1]])
        kind = self.rng.choice(["title", "description", "status", "status"])
        if kind == "title":
            new = _keep_marker(
                ot["descripcion_corta"], self._revise(_strip(ot["descripcion_corta"]))
            )
            mt.update_ot(pair[1], descripcion_corta=new)
            what = f"descripción → {_strip(new)!r}"
        elif kind == "description":
            new = self.rng.choice(NOTES)
            mt.update_ot(pair[1], notas=new)
            what = f"notas → {new!r}"
        else:
            current = ot["estado"]
            new = self.rng.choice([e for e in MT_OPEN_ESTADOS if e != current])
            mt.update_ot(pair[1], estado=new)
            what = f"estado {current} → {new}"
        self.counts["mt_edits"] += 1
        self.feed.line("user", f"mantenimiento OT {pair[1]}: {what}")

    def _revise(self, title: str) -> str:
        base = _REV.sub("", _strip(title or ""))[:150]
        return f"{base} · rev {self.rng.randrange(2, 99)}"


def _strip(text: str | None) -> str:
    from .engine.records import strip_marker

    return strip_marker(text or "")


def _keep_marker(old: str | None, new: str) -> str:
    """A user editing the text keeps syncd's outbox marker if one is still there."""
    from .engine.records import find_marker

    marker = find_marker(old)
    return f"{new} {marker.text()}" if marker else new


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


# =============================================================================================
# the final comparison and the summary
# =============================================================================================
def _summary(
    out: TextIO,
    feed: Feed,
    driver: Driver,
    elapsed: float,
    verdict: Any,
    box: Any,
    config: Any,
) -> None:
    """What happened, then the proof: both servers read back and checked (sandbox.verify)."""
    from .ledger.store import Ledger

    wo, rq = feed.totals["work_orders"], feed.totals["requests"]
    d = driver.counts
    conflicts = wo["conflicts"] + wo["conflicts_auto"]
    ledger = Ledger.open(config.ledger_path, readonly=True)
    try:
        request_pairs = ledger.count_links("requests")
        facts = ledger.fact_counts("part_usage")
    finally:
        ledger.close()
    problems = verdict.summary()["examples"]
    lines = [
        "",
        f"summary after {elapsed:.0f}s, {sum(feed.cycles.values())} cycles"
        + (f" ({feed.failed_cycles} failed)" if feed.failed_cycles else ""),
        f"  work orders ⇄ OTs     {verdict.pairs} linked",
        f"    created             Click Maint → mantenimiento {wo['created_mt']:>4}"
        f"    mantenimiento → Click Maint {wo['created_cm']:>4}",
        f"    updated             Click Maint → mantenimiento {wo['updated_mt']:>4}"
        f"    mantenimiento → Click Maint {wo['updated_cm']:>4}",
        f"    conflicts           {conflicts} ({wo['conflicts_auto']} settled by policy, "
        f"{wo['conflicts']} left open)",
        f"  requests ⇄ avisos     {request_pairs} linked "
        f"({rq['created_mt']} avisos and {rq['created_cm']} requests created, "
        f"{rq['updated_mt'] + rq['updated_cm']} updated)",
        f"  part transactions     {facts.get('mirrored', 0)} mirrored onto OTs, "
        f"{facts.get('not_mirrored', 0)} not mirrored with a reason, "
        f"{facts.get('waiting', 0)} waiting, {facts.get('quarantined', 0)} quarantined",
        f"  user actions          Click Maint {d['cm_edits']} edits (+{d['cm_creates']} new, "
        f"{d['cm_usage']} part usages), mantenimiento {d['mt_edits']} edits "
        f"(+{d['mt_creates']} new)",
        f"  final comparison      {verdict.pairs} pairs compared ({', '.join(COMPARED)}), "
        f"{len(verdict.divergences)} differences; "
        f"{len(verdict.unlinked_cm) + len(verdict.unlinked_mt)} records without a partner; "
        f"transactions on their OT exactly once: "
        + (
            "yes"
            if not (
                verdict.duplicated_transactions
                or verdict.missing_transactions
                or verdict.transaction_problems
            )
            else "NO"
        ),
    ]
    lines += [f"    {problem}" for problem in problems]
    if box.config_path is not None:
        lines.append(
            f"\nlook around: SYNCD_CONFIG={box.config_path} "
            f"CREDENTIALS_DIRECTORY={box.credentials_dir} syncd status"
        )
    _say(out, "\n".join(lines))
