"""Run the performance measurements and write docs/performance.md (plus PNG figures).

Sections (each can be run alone with `--only`; results are kept in bench/results/perf_report.json,
so a section not re-run keeps its last measurement, with its date and commit):

* machine: cores, CPU model, memory, Python, SQLite, commit;
* initial: initial sync of 1k / 10k (/ 50k with --big) work orders Click Maint -> mantenimiento
  plus a tenth as many OTs the other way: requests per record on each side, wall time, peak
  RSS, ledger size; then the idle cycle at that size;
* parts: bench/part_usage.py (idle cycle for 1k and 10k parts, requests per mirrored
  transaction, exactly-once check);
* converge: N changes each way under Click Maint's real budget shape (300 requests per window,
  the window scaled down), with the daemon (`syncd run`) and with `syncd sync --once`,
  compared with the theoretical minimum;
* ledger: ledger operations per second with synchronous=FULL on this disk;
* pagination, changes: bench/pagination.py and bench/sync_changes.py, re-run.

    .venv/bin/python bench/perf_report.py             # everything but 50k (~25 min on 2 cores)
    .venv/bin/python bench/perf_report.py --big       # also the 50k initial sync (+~15 min)
    .venv/bin/python bench/perf_report.py --quick     # small sizes, prints, writes nothing
    .venv/bin/python bench/perf_report.py --only converge,ledger
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import _support
from _simhost import SimHost, SimOptions
from _support import ROOT, UNTHROTTLED, Worker, in_fresh_process, mib, ratio, table

SECTIONS = (
    "machine",
    "initial",
    "parts",
    "converge",
    "converge_real",
    "ledger",
    "pagination",
    "changes",
)
DATA = ROOT / "bench" / "results" / "perf_report.json"
DOC = ROOT / "docs" / "performance.md"
IMG = ROOT / "docs" / "img"
PY = ".venv/bin/python"
FAST_WINDOW = 300.0
SETUP_AGE = 3600.0  # Click Maint's clock runs this far behind while a setup phase syncs
REAL_LIMIT = 300


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    only = [s for s in (args.only or ",".join(SECTIONS)).split(",") if s]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown section(s): {', '.join(sorted(unknown))}")
    data = {} if args.quick else load(args.data)
    failures: list[str] = []
    if args.render_only:
        only = []
    with tempfile.TemporaryDirectory(prefix="syncd-perf-") as tmp:
        workdir = args.workdir or Path(tmp)
        for name in SECTIONS:
            if name not in only:
                continue
            print(f"\n=== {name} ===", flush=True)
            started = time.perf_counter()
            result = RUNNERS[name](args, workdir / name)
            result["measured_at"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
            result["commit"] = _support.git_commit()
            result["quick"] = args.quick
            result["run_seconds"] = round(time.perf_counter() - started, 1)
            if args.quick and "command" in result:
                result["command"] += " --quick"
            data[name] = merge(data.get(name), result)
            failures += [f"{name}: {f}" for f in result.get("failures", [])]
            if not args.quick:
                save(args.data, data)
    document = render(data, img=args.img if not args.quick else None)
    if args.quick and args.out is None:
        print("\n" + document)
    else:
        out = args.out or DOC
        out.write_text(document)
        print(f"\nwrote {out}")
    if failures:
        print("\nFAIL:\n  " + "\n  ".join(failures))
        return 1
    print("\nPASS: every target met")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes; print, write nothing")
    parser.add_argument("--big", action="store_true", help="include the 50k initial sync")
    parser.add_argument(
        "--initial-sizes",
        default=None,
        help="initial sync sizes (default 1000,10000; 50000 added by --big)",
    )
    parser.add_argument("--only", default=None, help=f"comma-separated: {','.join(SECTIONS)}")
    parser.add_argument("--out", type=Path, default=None, help=f"default {DOC.relative_to(ROOT)}")
    parser.add_argument("--img", type=Path, default=IMG, help="where the PNG figures go")
    parser.add_argument("--data", type=Path, default=DATA, help="the results kept between runs")
    parser.add_argument("--workdir", type=Path, default=None, help="keep run files (debugging)")
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite the document from the kept results"
    )
    return parser.parse_args(argv)


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def save(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def merge(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """Sizes measured by an earlier run and not by this one (the 50k initial sync without
    --big) are kept, each with its own date and commit."""
    for size in new.get("sizes", {}).values():
        size.setdefault("measured_at", new.get("measured_at"))
        size.setdefault("commit", new.get("commit"))
    if old and "sizes" in old and "sizes" in new:
        kept = {
            k: {"measured_at": old.get("measured_at"), "commit": old.get("commit"), **v}
            for k, v in old["sizes"].items()
            if k not in new["sizes"]
        }
        new["sizes"] = dict(sorted({**kept, **new["sizes"]}.items(), key=lambda kv: int(kv[0])))
    return new


def command(*parts: str) -> str:
    return " ".join([PY, *parts])


# ================================================================================================
# machine
# ================================================================================================
def run_machine(args: argparse.Namespace, _workdir: Path) -> dict[str, Any]:
    facts = _support.machine_facts()
    facts["disk"] = _disk_of(Path(tempfile.gettempdir()))
    return {"facts": facts}


def _disk_of(path: Path) -> str:
    """Filesystem and device the ledgers were written to (fsync latency depends on it)."""
    try:
        out = subprocess.run(
            ["df", "--output=source,fstype", str(path)], capture_output=True, text=True
        ).stdout.split("\n")[1]
        return " ".join(out.split())
    except (OSError, IndexError):
        return "unknown"


# ================================================================================================
# initial sync + idle cycle, work orders
# ================================================================================================
def run_initial(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    if args.initial_sizes:
        sizes = [int(n) for n in args.initial_sizes.split(",") if n.strip()]
    else:
        sizes = [300, 3000] if args.quick else [1000, 10000] + ([50000] if args.big else [])
    results = {}
    for size in sizes:
        print(f"initial sync of {size:,} work orders ...", flush=True)
        results[str(size)] = initial_sync(size, workdir / f"initial-{size}")
        print(json.dumps(_initial_summary(results[str(size)])), flush=True)
    return {
        "sizes": results,
        "command": command("bench/perf_report.py --only initial")
        + (f" --initial-sizes {args.initial_sizes}" if args.initial_sizes else "")
        + (" --big" if args.big and not args.initial_sizes else ""),
    }


def initial_sync(size: int, directory: Path) -> dict[str, Any]:
    """Seed `size` work orders and size/10 OTs, sync until quiet (rate limit raised), then let
    an hour pass on Click Maint and run three more cycles: the third is the idle one."""
    options = SimOptions(
        directory=directory,
        work_orders=size,
        ots=size // 10,
        variant={"rate_limit": UNTHROTTLED, "rate_window": FAST_WINDOW},
        cm_skew=-SETUP_AGE,
    )
    with SimHost(options) as sims:
        config = _support.write_bench_config(
            directory, "initial", rate_limit=UNTHROTTLED, window=FAST_WINDOW
        )
        sims.call("reset_logs")
        with Worker(config) as worker:
            cycles = worker.until_quiet("work_orders", max_cycles=6)
            server = _support.server_requests(sims.call("logs"))
            peak = worker.peak_rss_kib()
            files = ledger_files(config)
            links = link_counts(config)
            sims.call("cm_skew", seconds=0.0)  # an hour passes on Click Maint
            sims.call("reset_logs")
            idle = [worker.cycle("work_orders") for _ in range(3)]
            idle_server = _support.server_requests(sims.call("logs"))
    counts: Counter[str] = Counter()
    for cycle in cycles:
        counts.update(cycle["counts"])
    return {
        "size": size,
        "ots": size // 10,
        "cycles": [_cycle_summary(c) for c in cycles],
        "created_mt": counts["created_mt"],
        "created_cm": counts["created_cm"],
        "quiet": bool(cycles)
        and not (cycles[-1]["req"]["cm_write"] + cycles[-1]["req"]["mt_write"]),
        "client": _total(cycles),
        "server": server,
        "seconds": sum(c["seconds"] for c in cycles),
        "peak_kib": peak,
        "ledger_files": files,
        "links": links,
        "idle": [_cycle_summary(c) for c in idle],
        "idle_server": idle_server,
        "routes": dict(sum((Counter(c["routes"]) for c in cycles), Counter()).most_common(12)),
    }


def _cycle_summary(cycle: dict[str, Any]) -> dict[str, Any]:
    keep = ("created_mt", "created_cm", "updated_mt", "updated_cm", "cm_pages", "quarantined")
    return {
        "status": cycle["status"],
        "seconds": round(cycle["seconds"], 2),
        "req": cycle["req"],
        "counts": {k: cycle["counts"][k] for k in keep if cycle["counts"].get(k)},
    }


def _total(cycles: list[dict[str, Any]]) -> dict[str, int]:
    out: Counter[str] = Counter()
    for cycle in cycles:
        out.update(cycle["req"])
    return dict(out)


def _initial_summary(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "size": r["size"],
        "cycles": len(r["cycles"]),
        "seconds": round(r["seconds"], 1),
        "server": r["server"],
        "idle": [c["req"] for c in r["idle"]],
    }


def ledger_files(config_path: Path) -> dict[str, int]:
    path = _support.load_bench_config(config_path).ledger_path
    return {
        suffix or "db": (
            Path(f"{path}{suffix}").stat().st_size if Path(f"{path}{suffix}").exists() else 0
        )
        for suffix in ("", "-wal")
    }


def link_counts(config_path: Path) -> dict[str, int]:
    from syncd.ledger.store import Ledger

    ledger = Ledger.open(_support.load_bench_config(config_path).ledger_path, readonly=True)
    try:
        active = ledger.count_links("work_orders", "active")
        open_ = sum(1 for _ in ledger.iter_links("work_orders", state="active", mt_open=True))
        history = ledger.count_history()
    finally:
        ledger.close()
    return {"active": active, "open": open_, "history": history}


# ================================================================================================
# part_usage
# ================================================================================================
def run_parts(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import part_usage

    argv = ["--quick"] if args.quick else []
    options = part_usage.parse_args([*argv, "--workdir", str(workdir)])
    usages = 50 if args.quick else options.usages
    results = [part_usage.run_size(size, usages, options) for size in (1000, 10000)]
    status = part_usage.verdict(results)
    return {
        "markdown": part_usage.render(results),
        "results": [part_usage.as_dict(r) for r in results],
        "usages": usages,
        "work_orders": options.work_orders,
        "failures": [] if status == 0 else ["see the part_usage tables"],
        "command": command("bench/part_usage.py", *argv),
    }


# ================================================================================================
# convergence under the real budget shape
# ================================================================================================
@dataclass(frozen=True)
class ConvergeSpec:
    size: int  # changes each way
    window: float  # seconds: Click Maint's 5 minutes, scaled down
    limit: int = REAL_LIMIT
    reserve: int = 10  # syncd's default clickmaint.rate_reserve
    per_page: int = 100

    @property
    def interval(self) -> float:
        """The daemon interval keeps production's proportion: 60 s against a 300 s window."""
        return self.window / 5

    @property
    def required(self) -> int:
        """Click Maint requests needed before the last change can have landed: one PATCH per
        record synced to Click Maint, and the pages that read the Click Maint changes."""
        return self.size + math.ceil(self.size / self.per_page)

    @property
    def t_min(self) -> float:
        """Earliest moment the last required request can be sent by any client: the server
        admits `limit` per window, and the run starts with a fresh window."""
        return (self.required - 1) // self.limit * self.window

    @property
    def t_min_reserve(self) -> float:
        """The same for a client that leaves `reserve` requests of each window unused."""
        return (self.required - 1) // (self.limit - self.reserve) * self.window

    @property
    def t_steady(self) -> float:
        """At the budget's sustained rate (no free first window)."""
        return self.required / (self.limit - self.reserve) * self.window


def run_converge(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    spec = ConvergeSpec(size=300, window=10.0) if args.quick else ConvergeSpec(1000, 30.0)
    return _converge(args, workdir, spec, ("daemon", "once"), "converge")


def run_converge_real(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """The daemon alone with Click Maint's real window: 600 changes each way need 606
    requests, three windows' worth, so T_min is two windows (10 minutes)."""
    spec = ConvergeSpec(size=300, window=20.0) if args.quick else ConvergeSpec(600, 300.0)
    return _converge(args, workdir, spec, ("daemon",), "converge_real")


def _converge(
    args: argparse.Namespace,
    workdir: Path,
    spec: ConvergeSpec,
    modes: tuple[str, ...],
    section: str,
) -> dict[str, Any]:
    import sync_changes

    seeds = math.ceil(spec.size * 1.4)
    directory = workdir / "converge"
    options = SimOptions(
        directory=directory,
        work_orders=seeds,
        ots=seeds,
        variant={"rate_limit": UNTHROTTLED, "rate_window": FAST_WINDOW},
        cm_skew=-SETUP_AGE,
    )
    runs = []
    with SimHost(options) as sims:
        config = _support.write_bench_config(
            directory, "setup", rate_limit=UNTHROTTLED, window=FAST_WINDOW
        )
        setup = settle(sims, config, first=True)
        cm_pairs, mt_pairs = sync_changes.pick_pairs(config, spec.size)
        lag_lookback = _lag_lookback(config)
        for mode in modes:
            if runs:
                time.sleep(lag_lookback + 1)  # the previous run's echoes leave the lookback
                settle(sims, config, first=False)
            runs.append(converge_run(sims, config, spec, mode, cm_pairs, mt_pairs))
            print(json.dumps({k: v for k, v in runs[-1].items() if k != "timeline"}), flush=True)
    result = {
        "spec": asdict(spec)
        | {
            "required": spec.required,
            "t_min": spec.t_min,
            "t_min_reserve": spec.t_min_reserve,
            "t_steady": spec.t_steady,
            "interval": spec.interval,
            "seeds": seeds,
        },
        "setup": setup,
        "runs": runs,
        "command": command(f"bench/perf_report.py --only {section}"),
    }
    if not args.quick:
        result["failures"] = [
            f"{r['label']}: ratio {r['ratio']:.2f} > 1.10" for r in runs if r["ratio"] > 1.10
        ]
    result["failures"] = result.get("failures", []) + [
        f"{r['label']}: not every change arrived" for r in runs if not r["complete"]
    ]
    return result


def _lag_lookback(config: Path) -> float:
    cm = _support.load_bench_config(config).clickmaint
    return float(cm.lag_seconds + cm.lookback_seconds)


def settle(sims: SimHost, config: Path, *, first: bool) -> dict[str, Any]:
    """Unthrottled cycles until quiet, then (after the setup) an hour passes on Click Maint
    and two more cycles move the watermark past what the setup wrote: the measured runs then
    read only their own changes."""
    sims.call("cm_variant", rate_limit=UNTHROTTLED, rate_window=FAST_WINDOW)
    with Worker(config) as worker:
        cycles = worker.until_quiet("work_orders", max_cycles=6) if first else []
        if first:
            sims.call("cm_skew", seconds=0.0)
        cycles += [worker.cycle("work_orders") for _ in range(2 if first else 1)]
    return {"cycles": len(cycles), "seconds": round(sum(c["seconds"] for c in cycles), 1)}


def converge_run(
    sims: SimHost,
    config: Path,
    spec: ConvergeSpec,
    mode: str,
    cm_pairs: list[list[int]],
    mt_pairs: list[list[int]],
) -> dict[str, Any]:
    """Edit N records on each side, then start syncd under the real budget shape and poll the
    simulators until every change has arrived."""
    tag = f"conv-{mode}"
    sims.call("change_cm_titles", ids=[cm for cm, _mt in cm_pairs], tag=tag)
    sims.call("change_mt_notes", ids=[mt for _cm, mt in mt_pairs], tag=tag)
    sims.call("cm_variant", rate_limit=spec.limit, rate_window=spec.window)
    time.sleep(_support.load_bench_config(config).clickmaint.lag_seconds + 1)
    sims.call("reset_logs")
    log_path = config.parent / f"{mode}.log"
    argv = (
        [sys.executable, "-m", "syncd", "--log-format", "json", "run"]
        if mode == "daemon"
        else [
            sys.executable,
            "-m",
            "syncd",
            "--log-format",
            "json",
            "sync",
            "--once",
            "--stream",
            "work_orders",
        ]
    )
    started_wall = datetime.now(UTC).isoformat()
    with log_path.open("w") as log:
        started = time.monotonic()
        process = subprocess.Popen(
            argv, env=converge_env(config, spec), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
        )
        poll = Poller(sims, cm_pairs, mt_pairs, tag, process.pid)
        converged, exited = poll.until(
            started, spec.size, process, timeout=max(120.0, 4 * spec.t_steady + 60)
        )
        if mode == "daemon" and process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=300)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        exit_seconds = exited if exited is not None else time.monotonic() - started
    server = sims.call("logs")
    counts = _support.server_requests(server)
    cycles = daemon_cycles(log_path)
    label = "daemon (`syncd run`)" if mode == "daemon" else "`syncd sync --once`"
    seconds = converged if converged is not None else float("nan")
    return {
        "mode": mode,
        "label": label,
        "started": started_wall,
        "complete": converged is not None,
        "converged": seconds,
        "exit_seconds": round(exit_seconds, 1),
        "ratio": ratio(seconds, spec.t_min),
        "ratio_reserve": ratio(seconds, spec.t_min_reserve),
        "ratio_steady": ratio(seconds, spec.t_steady),
        "cm": counts,
        "cm_429": server["cm"]["by_status"].get("429", 0),
        "cm_before_converged": poll.cm_at_convergence,
        "first_request": poll.first_request,
        "budget_idle": poll.budget_idle(spec),
        "peak_rss_kib": poll.peak_rss_kib,
        "cycles": cycles,
        "timeline": poll.timeline,
        "exit_code": process.returncode,
    }


def converge_env(config: Path, spec: ConvergeSpec) -> dict[str, str]:
    """The real budget shape through syncd's own environment overrides; only work_orders runs
    (the other streams would share the budget and blur the comparison)."""
    env = _support.bench_env(config)
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "SYNCD_CLICKMAINT__RATE_LIMIT": str(spec.limit),
            "SYNCD_CLICKMAINT__RATE_WINDOW_SECONDS": str(spec.window),
            "SYNCD_STREAMS__WORK_ORDERS__INTERVAL_SECONDS": str(spec.interval),
            "SYNCD_STREAMS__WORK_ORDERS__JITTER_SECONDS": "0",
            "SYNCD_STREAMS__PART_USAGE__ENABLED": "false",
            "SYNCD_STREAMS__REQUESTS__ENABLED": "false",
        }
    )
    return env


class Poller:
    """Samples the simulators (and the syncd process's RSS) four times a second."""

    PERIOD = 0.25

    def __init__(
        self,
        sims: SimHost,
        cm_pairs: list[list[int]],
        mt_pairs: list[list[int]],
        tag: str,
        pid: int,
    ) -> None:
        self.sims, self.cm_pairs, self.mt_pairs, self.tag = sims, cm_pairs, mt_pairs, tag
        self.timeline: list[list[float]] = []  # [t, CM requests, to CM, to mt]
        self.cm_at_convergence = 0
        self.first_request: float | None = None
        self.peak_rss_kib = 0
        self._process = _psutil_process(pid)

    def until(
        self, started: float, size: int, process: subprocess.Popen[bytes], timeout: float
    ) -> tuple[float | None, float | None]:
        """(seconds until every change arrived, seconds until the process exited)."""
        converged = exited = None
        while time.monotonic() - started < timeout:
            now = time.monotonic() - started
            state = self.sims.call(
                "arrived", cm_changed=self.cm_pairs, mt_changed=self.mt_pairs, tag=self.tag
            )
            self.timeline.append([round(now, 2), state["cm_total"], state["to_cm"], state["to_mt"]])
            self._sample_rss()
            if self.first_request is None and state["cm_total"]:
                self.first_request = round(now, 2)
            if converged is None and state["to_cm"] == size and state["to_mt"] == size:
                converged = round(now, 2)
                self.cm_at_convergence = state["cm_total"]
            if exited is None and process.poll() is not None:
                exited = now
            if converged is not None and (exited is not None or process.args[-1] == "run"):
                break
            if exited is not None and converged is None:
                break  # the one-shot ended without converging
            time.sleep(self.PERIOD)
        return converged, exited

    def _sample_rss(self) -> None:
        if self._process is None:
            return
        try:
            self.peak_rss_kib = max(self.peak_rss_kib, self._process.memory_info().rss // 1024)
        except Exception:  # the process ended between two samples
            self._process = None

    def budget_idle(self, spec: ConvergeSpec) -> float:
        """Seconds before convergence in which syncd sent nothing although the budget (syncd's
        own share, limit - reserve, over the trailing window) had room."""
        usable = spec.limit - spec.reserve
        idle = 0.0
        points = self.timeline
        for (t0, n0, a0, b0), (t1, n1, _a1, _b1) in itertools.pairwise(points):
            if a0 == spec.size and b0 == spec.size:
                break
            past = [n for t, n, _a, _b in points if t <= t0 - spec.window]
            in_window = n0 - (past[-1] if past else 0)
            if n1 == n0 and in_window < usable:
                idle += t1 - t0
        return round(idle, 1)


def _psutil_process(pid: int) -> Any:
    try:
        import psutil

        return psutil.Process(pid)
    except Exception:  # psutil is optional (the `bench` extra)
        return None


def daemon_cycles(log_path: Path) -> list[dict[str, Any]]:
    """cycle.start / cycle.end events of the run's JSON log, in order."""
    cycles: list[dict[str, Any]] = []
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line[line.index("{") :])
        except (ValueError, json.JSONDecodeError):
            continue
        if event.get("event") == "cycle.end":
            cycles.append(
                {
                    "at": event.get("timestamp"),
                    "status": event.get("status"),
                    "seconds": event.get("seconds"),
                    "cm_requests": event.get("cm_requests"),
                    "updated_cm": (event.get("counts") or {}).get("updated_cm", 0),
                    "updated_mt": (event.get("counts") or {}).get("updated_mt", 0),
                }
            )
    return cycles


# ================================================================================================
# ledger operations
# ================================================================================================
def run_ledger(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    n = 300 if args.quick else 2000
    result = in_fresh_process(ledger_ops, str(workdir), n)
    result["command"] = command("bench/perf_report.py --only ledger")
    return result


def ledger_ops(conn: Connection, directory: str, n: int) -> None:
    import traceback

    try:
        conn.send((True, _ledger_ops(Path(directory), n)))
    except Exception:
        conn.send((False, traceback.format_exc()))


def _ledger_ops(directory: Path, n: int) -> dict[str, Any]:
    """Each operation as the engine does it: its own `BEGIN IMMEDIATE ... COMMIT`, so each one
    waits for an fsync (WAL, synchronous=FULL); plus one batched variant for contrast."""
    from syncd.ledger.models import Fact, Link
    from syncd.ledger.store import Ledger

    ledger = Ledger.open(directory / "ledger.db")
    pragmas = {
        key: str(ledger.db.execute(f"PRAGMA {key}").fetchone()[0])
        for key in ("journal_mode", "synchronous")
    }
    snapshot = _snapshot()

    def link(i: int, title: str = "") -> Link:
        snap = {**snapshot, "_id": i, "title": title or snapshot["title"]}
        return Link(
            stream="work_orders",
            cm_id=str(i),
            mt_id=str(100000 + i),
            base_cm=snap,
            base_mt=snap,
            cm_seen=snap,
            mt_seen=snap,
            cm_hash=f"h{i}",
            mt_hash=f"h{i}",
            cm_updated_at="2026-11-23T10:00:00Z",
            origin="cm",
        )

    def fact(i: int) -> Fact:
        return Fact(
            stream="part_usage",
            source_side="cm",
            source_id=str(i),
            kind="usage",
            state="mirrored",
            part_id="102",
            part_number="FL_A",
            quantity="1.0",
            cm_wo_id=str(i),
            mt_ot_id=str(100000 + i),
            target_id=str(i),
            detail={"note": "Consumo en OT", "created_at": "2026-11-23T10:00:00Z"},
        )

    operations: list[tuple[str, Callable[[int], Any]]] = [
        ("link insert (save_link, new)", lambda i: ledger.save_link(link(i))),
        ("link update (save_link, existing)", lambda i: ledger.save_link(link(i, f"T{i}"))),
        (
            "history insert (record)",
            lambda i: ledger.record(
                "work_orders",
                "updated_mt",
                cm_id=str(i),
                mt_id=str(100000 + i),
                run_id="bench",
                fields={"title": "Cambio de rodamientos"},
            ),
        ),
        ("fact upsert (save_fact)", lambda i: ledger.save_fact(fact(i))),
        ("cursor set (set_cursor)", lambda i: ledger.set_cursor("part_usage", f"part:{i}", "x")),
        ("link read (get_link)", lambda i: ledger.get_link("work_orders", cm_id=str(i))),
    ]
    rows = [_timed(name, op, n) for name, op in operations]

    def batched(i: int) -> None:
        with ledger.transaction():
            for j in range(100):
                ledger.save_link(link(i * 100 + j, "B"))

    batch = _timed("link update, 100 per transaction", batched, max(1, n // 100))
    batch["ops_per_s"] *= 100
    batch["p50_ms"] /= 100
    batch["p99_ms"] /= 100
    rows.append(batch)
    ledger.close()
    return {
        "n": n,
        "pragmas": pragmas,
        "rows": rows,
        "fsync": _fsync_latency(directory),
        "ledger_bytes": (directory / "ledger.db").stat().st_size,
    }


def _snapshot() -> dict[str, Any]:
    """A work order snapshot of typical size (the four per link are about this big)."""
    return {
        "title": "Cambio de rodamientos del motor principal de la llenadora",
        "description": "Vibración alta en el rodamiento lado acople; revisar alineación. " * 3,
        "status": "in_progress",
        "priority": "high",
        "due": "2026-11-30",
        "asset": 204,
        "location": 11,
        "assignee": "Juan Pérez",
        "_updated_at": "2026-11-23T10:00:00Z",
        "_type": "reactive",
    }


def _timed(name: str, op: Callable[[int], Any], n: int) -> dict[str, Any]:
    times = []
    for i in range(n):
        started = time.perf_counter()
        op(i)
        times.append(time.perf_counter() - started)
    times.sort()
    return {
        "op": name,
        "n": n,
        "ops_per_s": n / sum(times),
        "p50_ms": statistics.median(times) * 1000,
        "p99_ms": times[min(n - 1, int(n * 0.99))] * 1000,
    }


def _fsync_latency(directory: Path, n: int = 200) -> dict[str, float]:
    """Baseline: append 4 KiB and fsync, n times (what one synchronous=FULL commit waits for)."""
    path = directory / "fsync.probe"
    times = []
    with path.open("ab") as handle:
        for _ in range(n):
            handle.write(b"x" * 4096)
            handle.flush()
            started = time.perf_counter()
            os.fsync(handle.fileno())
            times.append(time.perf_counter() - started)
    path.unlink()
    return {
        "p50_ms": statistics.median(times) * 1000,
        "p99_ms": sorted(times)[int(n * 0.99)] * 1000,
    }


# ================================================================================================
# pagination and sync_changes (the first version of this report)
# ================================================================================================
def run_pagination(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import pagination

    sizes = [200, 2000] if args.quick else [1000, 10000]
    results = [pagination.run_size(size, 100, workdir) for size in sizes]
    status = pagination.verdict(results, 0.10)
    return {
        "markdown": pagination.report(results),
        "failures": [] if status == 0 else ["pagination target missed"],
        "command": command("bench/pagination.py --sizes", ",".join(map(str, sizes))),
    }


def run_changes(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import sync_changes

    variants = (
        [("bulk edit, unthrottled", ["--quick"])]
        if args.quick
        else [
            ("bulk edit, unthrottled", ["--size", "2000"]),
            ("edits spread over 60 s", ["--size", "2000", "--spread", "60"]),
        ]
    )
    out = []
    failures = []
    for label, argv in variants:
        options = sync_changes.parse_args(argv)
        size = 200 if options.quick else options.size
        seeds = math.ceil(size * options.seed_factor)
        budget = sync_changes.Budget(UNTHROTTLED, sync_changes.FAST_WINDOW)
        outcome = sync_changes.run(
            workdir / label.split(",")[0].replace(" ", "-"), size, seeds, budget, options
        )
        markdown = sync_changes.render(outcome, size, budget)
        if sync_changes.verdict(outcome, size):
            failures.append(f"{label}: sync_changes target missed")
        measured = sync_changes.metrics(outcome["measured"])
        arrived = outcome["measured"]["arrived"]
        total = arrived["to_cm"] + arrived["to_mt"]
        out.append(
            {
                "label": label,
                "command": command("bench/sync_changes.py", *argv),
                "markdown": markdown,
                "size": size,
                "cm_get": measured["cm_get"],
                "cm_write": measured["cm_write"],
                "reads_per_record": ratio(measured["cm_get"], total),
                "writes_per_record_to_cm": ratio(measured["cm_write"], arrived["to_cm"]),
                "seconds": outcome["measured"]["seconds"],
                "peak_kib": outcome["measured"]["peak_kib"],
            }
        )
    return {
        "variants": out,
        "failures": failures,
        "command": command("bench/perf_report.py --only changes"),
    }


RUNNERS: dict[str, Callable[[argparse.Namespace, Path], dict[str, Any]]] = {
    "machine": run_machine,
    "initial": run_initial,
    "parts": run_parts,
    "converge": run_converge,
    "converge_real": run_converge_real,
    "ledger": run_ledger,
    "pagination": run_pagination,
    "changes": run_changes,
}


# ================================================================================================
# the document
# ================================================================================================
def render(data: dict[str, Any], *, img: Path | None) -> str:
    """docs/performance.md from the kept results (each section says when it was measured)."""
    figures = draw_figures(data, img) if img is not None else {}
    parts = [
        HEADER,
        render_machine(data.get("machine")),
        render_summary(data),
        render_initial(data.get("initial")),
        render_idle(data, figures.get("idle")),
        render_parts(data.get("parts")),
        render_converge(data.get("converge"), figures.get("converge")),
        render_converge(data.get("converge_real"), figures.get("converge_real"), real=True),
        render_ledger(data.get("ledger")),
        render_pagination(data.get("pagination")),
        render_changes(data.get("changes")),
        FINDINGS,
        EARLIER,
        READING,
    ]
    return "\n\n".join(p.strip("\n") for p in parts if p) + "\n"


def draw_figures(data: dict[str, Any], img: Path) -> dict[str, str]:
    """PNG files next to the document; their paths relative to docs/ for the links."""
    import plots  # here, not at the top: spawned benchmark processes re-import this module,

    # and matplotlib would add ~30 MiB to the peak RSS they measure
    out: dict[str, str] = {}
    idle = idle_points(data)
    made = plots.idle_requests(idle["work_orders"], idle["parts"], img / "idle-requests.png")
    if made:
        out["idle"] = f"img/{made.name}"
    for name, png in (("converge", "convergence.png"), ("converge_real", "convergence-real.png")):
        converge = data.get(name)
        if converge and converge.get("runs"):
            made = plots.convergence(converge["runs"], converge["spec"], img / png)
            if made:
                out[name] = f"img/{made.name}"
    return out


def idle_points(data: dict[str, Any]) -> dict[str, dict[int, dict[str, int]]]:
    """size -> requests of the idle cycle, per stream (work orders: the third cycle after the
    clock jump; parts: cycles 3-4, which are equal when the target is met)."""
    work_orders = {
        int(size): {
            "cm": r["idle"][-1]["req"]["cm_get"] + r["idle"][-1]["req"]["cm_write"],
            "mt": r["idle"][-1]["req"]["mt_get"] + r["idle"][-1]["req"]["mt_write"],
        }
        for size, r in (data.get("initial") or {}).get("sizes", {}).items()
    }
    parts = {
        r["parts"]: {"cm": max(r["idle_cm"]), "mt": max(r["idle_mt"])}
        for r in (data.get("parts") or {}).get("results", [])
    }
    return {"work_orders": work_orders, "parts": parts}


def _demote(markdown: str) -> str:
    """A benchmark's own `## heading` becomes a sub-heading of its report section."""
    return "\n".join(
        "#### " + line[3:] if line.startswith("## ") else line for line in markdown.splitlines()
    )


def _measured(section: dict[str, Any]) -> str:
    """When, at which commit and with which command a section was measured, and any caveat
    recorded with its data (a `note` in bench/results/perf_report.json)."""
    extra = " (quick sizes)" if section.get("quick") else ""
    note = f" **Note:** {section['note']}" if section.get("note") else ""
    return (
        f"*Measured {section.get('measured_at', '?')} at `{section.get('commit', '?')}`{extra}; "
        f"command: `{section.get('command', '?')}`.*{note}"
    )


HEADER = """
# Performance

What syncd costs, measured with the benchmarks in [`bench/`](../bench/README.md): Click Maint
requests first (Click Maint allows **300 requests per 5 minutes** per IP, so requests per
record decide how much syncd can move), then wall time, memory and the ledger's disk cost.
Both servers are the sandbox simulators on loopback sockets, in a process of their own; each
measured syncd runs in a fresh process. **This file is generated** by
`bench/perf_report.py` from `bench/results/perf_report.json`; edit the generator, not this
file.

Reproduce everything (about 30 minutes on 2 cores; `--big` adds the 50,000 work order initial
sync, about 15 minutes more; `--quick` runs small sizes in a few minutes and prints instead of
writing):

```sh
.venv/bin/pip install -e '.[dev,bench]'     # bench: matplotlib for the figures, psutil
.venv/bin/python bench/perf_report.py        # writes docs/performance.md and docs/img/*.png
.venv/bin/python bench/perf_report.py --big --only initial   # the 50k row (kept between runs)
```
"""


def render_machine(section: dict[str, Any] | None) -> str:
    if not section:
        return "**Machine:** not recorded."
    f = section["facts"]
    return (
        "**Machine:** "
        f"{f['cores']} cores ({f['cpu']}), {f['memory']}, {f['os']}, Python {f['python']}, "
        f"SQLite {f['sqlite']}; ledgers on `{f.get('disk', '?')}`. The box is shared with "
        "other work, so wall times vary by 20 % or more between runs; request counts do not "
        f"(fixed seeds). Commit at generation: `{f['commit']}`"
        + (" (`+wip`: uncommitted changes in the work tree)." if "+wip" in f["commit"] else ".")
    )


def render_summary(data: dict[str, Any]) -> str:
    rows = []
    parts = data.get("parts")
    if parts:
        idle = {r["parts"]: sorted(set(r["idle_cm"])) for r in parts["results"]}
        equal = len({tuple(v) for v in idle.values()}) == 1 and all(
            len(v) == 1 for v in idle.values()
        )
        rows.append(
            [
                "Click Maint requests per idle part_usage cycle, 1,000 vs 10,000 parts",
                "equal, ideally 1",
                ", ".join(f"{'/'.join(map(str, v))} for {n:,}" for n, v in idle.items()),
                _met(equal and max(max(v) for v in idle.values()) == 1),
            ]
        )
        once = all(
            s["exactly_once"] == s["transactions"] for r in parts["results"] for s in r["scenarios"]
        )
        rows.append(
            [
                "each mirrored transaction on its OT exactly once",
                "all",
                f"{sum(s['exactly_once'] for r in parts['results'] for s in r['scenarios']):,} of "
                f"{sum(s['transactions'] for r in parts['results'] for s in r['scenarios']):,}"
                f", verify {'ok' if all(r['check_ok'] for r in parts['results']) else 'FAILED'}",
                _met(once and all(r["check_ok"] for r in parts["results"])),
            ]
        )
        per_tx = [
            f"{s['cm'] / s['mirrored']:.3f} ({s['name'].split(' (')[0]})"
            for s in parts["results"][-1]["scenarios"]
            if s["mirrored"]
        ]
        rows.append(
            [
                "Click Maint requests per mirrored transaction "
                f"({parts['results'][-1]['parts']:,} parts, M = {parts['usages']})",
                "(report)",
                ", ".join(per_tx),
                "",
            ]
        )
    initial = (data.get("initial") or {}).get("sizes", {})
    if initial:
        idle_wo = idle_points(data)["work_orders"]
        rows.append(
            [
                "Click Maint requests per idle work_orders cycle, 1k / 10k / 50k",
                "flat",
                " / ".join(f"{v['cm']}" for _s, v in sorted(idle_wo.items())),
                _met(len({v["cm"] for v in idle_wo.values()}) == 1),
            ]
        )
        rows.append(
            [
                "mantenimiento requests per idle work_orders cycle",
                "(report)",
                " / ".join(f"{v['mt']:,}" for _s, v in sorted(idle_wo.items()))
                + " (one per open linked OT, plus the id probe)",
                "grows with open OTs",
            ]
        )
    for converge in (data.get("converge"), data.get("converge_real")):
        if not converge or not converge.get("runs"):
            continue
        window = converge["spec"]["window"]
        shape = "real 5-minute window" if window == 300 else f"window scaled to {window:g} s"
        for run in converge["runs"]:
            rows.append(
                [
                    f"time to converge {converge['spec']['size']:,} changes each way "
                    f"(300 requests per {shape}), {run['label']}, ÷ theoretical minimum",
                    "≤ 1.10",
                    f"{run['ratio']:.2f} ({run['converged']:.0f} s / "
                    f"{converge['spec']['t_min']:.0f} s)",
                    _met(run["ratio"] <= 1.10) if not converge.get("quick") else "(quick run)",
                ]
            )
    ledger = data.get("ledger")
    if ledger:
        by_op = {r["op"].split(" (")[0]: r["ops_per_s"] for r in ledger["rows"]}
        rows.append(
            [
                "ledger writes per second, one commit each (synchronous=FULL)",
                "(report)",
                ", ".join(
                    f"{name} {by_op[name]:,.0f}"
                    for name in ("link update", "history insert", "fact upsert")
                    if name in by_op
                ),
                "",
            ]
        )
    changes = data.get("changes")
    if changes:
        for v in changes["variants"]:
            rows.append(
                [
                    f"Click Maint writes / reads per synced record, 2,000 each way ({v['label']})",
                    "≤ 1.05 / ≤ 0.02",
                    f"{v['writes_per_record_to_cm']:.3f} / {v['reads_per_record']:.4f}",
                    _met(v["writes_per_record_to_cm"] <= 1.05 and v["reads_per_record"] <= 0.02),
                ]
            )
    if not rows:
        return ""
    return "## Summary\n\n" + table(["claim", "target", "measured", ""], rows)


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def render_initial(section: dict[str, Any] | None) -> str:
    if not section:
        return ""
    rows = []
    for size, r in section["sizes"].items():
        c, n = r["client"], r["created_mt"] + r["created_cm"]
        cm = c["cm_get"] + c["cm_write"]
        mt = c["mt_get"] + c["mt_write"]
        files = r["ledger_files"]
        rows.append(
            [
                f"{int(size):,} + {r['ots']:,}",
                f"{r['created_mt']:,} / {r['created_cm']:,}",
                len(r["cycles"]),
                f"{c['cm_get']:,} ({ratio(c['cm_get'], r['created_mt']):.3f})",
                f"{c['cm_write']:,} ({ratio(c['cm_write'], r['created_cm']):.2f})",
                f"{ratio(cm, n):.3f}",
                f"{mt:,} ({ratio(mt, n):.2f})",
                f"{r['seconds']:.0f} s",
                f"{ratio(n, r['seconds']):.0f}",
                mib(r["peak_kib"]),
                f"{files['db'] / 2**20:.1f} + {files['-wal'] / 2**20:.1f} MiB",
                f"{ratio(files['db'], n) / 1024:.1f} KiB",
                f"{r.get('measured_at', '?')} at `{r.get('commit', '?')}`",
            ]
        )
    headers = [
        "work orders + OTs seeded",
        "created in mt / in CM",
        "cycles",
        "CM GET (per WO read)",
        "CM writes (per OT copied)",
        "CM requests per record",
        "mt requests (per record)",
        "wall",
        "records/s",
        "peak RSS",
        "ledger db + WAL",
        "ledger per record",
        "measured",
    ]
    return f"""## 1. Initial sync: 1k / 10k / 50k work orders

Click Maint seeded with N work orders, mantenimiento with N/10 OTs, nothing linked yet; one
syncd process runs work_orders cycles until one writes nothing. **The rate limit is raised to
{UNTHROTTLED:,} requests per {FAST_WINDOW:.0f} s in the simulator and in syncd's budget**: this
measures syncd's own cost, not waiting (under the real budget only the Click Maint side is
limited: reading N work orders takes N/100 requests, about 2 windows for 50,000; every OT copied
to Click Maint is one POST, 290 per 5 minutes). Click Maint's clock runs an hour behind during
the sync, so the idle measurement below starts from "an hour later".

{table(headers, rows)}

- *Per record* divides by the records created on both sides together; in brackets, Click Maint
  GETs per work order read and Click Maint writes per OT copied to Click Maint.
- *ledger db + WAL*: file sizes right after the sync (the WAL is checkpointed but not truncated
  while the process lives). Peak RSS is the syncd process alone.
- Each size keeps the date and commit of the run that measured it (*measured*): a run
  that does not measure a size (the 50k row needs `--big`) keeps the earlier row.
{_route_note(section)}

{_measured(section)}"""


def _route_note(section: dict[str, Any]) -> str:
    """Where the requests of the largest measured initial sync went, by route."""
    sized = [r for r in section["sizes"].values() if r.get("routes")]
    if not sized:
        return ""
    r = max(sized, key=lambda x: x["size"])
    n = r["created_mt"] + r["created_cm"]
    top = ", ".join(f"`{route}` {count / n:.2f}" for route, count in r["routes"].items())
    return f"- Requests per record by route ({r['size']:,} work orders): {top}."


def render_idle(data: dict[str, Any], figure: str | None) -> str:
    initial = (data.get("initial") or {}).get("sizes", {})
    parts = data.get("parts")
    if not (initial or parts):
        return ""
    rows = []
    for size, r in initial.items():
        cycles = r["idle"]
        rows.append(
            [
                "work_orders",
                f"{int(size):,} work orders ({r['links']['open']:,} open linked OTs)",
                " / ".join(str(c["req"]["cm_get"] + c["req"]["cm_write"]) for c in cycles),
                " / ".join(f"{c['req']['mt_get'] + c['req']['mt_write']:,}" for c in cycles),
                f"{cycles[-1]['seconds']:.1f} s",
            ]
        )
    for r in (parts or {}).get("results", []):
        rows.append(
            [
                "part_usage",
                f"{r['parts']:,} parts ({parts['work_orders']} work orders linked)",
                "/".join(map(str, sorted(set(r["idle_cm"])))),
                "/".join(map(str, sorted(set(r["idle_mt"])))),
                "",
            ]
        )
    picture = f"\n![idle cycle requests against data size]({figure})\n" if figure else ""
    return f"""## 2. Idle cycles against data size

An idle cycle is one with nothing to do. work_orders: the three cycles after Click Maint's clock
jumped an hour (section 1's setup); syncd learns Click Maint's time from `Date` headers, so the
first cycle still computes its horizon from the old time and the second one moves the watermark
past the lookback window; the **third is the idle one**. part_usage: cycles 3 and 4 after the
jump (section 3).

{table(IDLE_HEADERS, rows)}
{picture}
- **Click Maint: flat.** One request per idle cycle and stream at every size: the keyset scan
  asks for `updated_at >= watermark - lookback`, sorted, and gets a short (usually empty) page.
  part_usage scans the parts listing the same way and pages a part's history only when the
  part's `updated_at` moved, so 10,000 parts cost what 1,000 do.
- **mantenimiento: grows with the open linked OTs.** It has no change feed and no list
  endpoint, so every work_orders cycle re-reads each open linked OT (one GET each) and probes
  `probe_gap` (20) ids above the high-water id for new OTs; closed OTs are re-read every
  `closed_reread_every` (10) cycles. part_usage adds one GET per open linked OT per cycle
  (`_reverse_direction`: materials recorded in mantenimiento, logged as not mirrored), plus
  one per linked OT whose link changed in the last minute (an OT closed since the last pass:
  its materials are read once more, so what was recorded when the job finished is reported
  too; here every link is younger than a minute, so the 45 closed linked OTs are read in
  each of these back-to-back cycles: 300 instead of 255),
  and every closed linked OT every `closed_reread_every` cycles. With
  N open OTs a quiet minute costs about 2N mantenimiento requests. No rate limit applies, but at
  50 ms per request on a real server 10,000 open OTs take over 8 minutes per work_orders
  cycle, longer than the 60 s interval. `mantenimiento.open_reread_every = K` re-reads the open
  OTs (and part_usage looks at their materials) every K-th cycle instead: an OT edit then
  reaches Click Maint up to K intervals later, and the cost drops to 2N / K per cycle."""


IDLE_HEADERS = [
    "stream",
    "data",
    "Click Maint requests, cycles 1 / 2 / 3",
    "mantenimiento requests, cycles 1 / 2 / 3",
    "wall of the idle cycle",
]


def render_parts(section: dict[str, Any] | None) -> str:
    if not section:
        return ""
    return f"""## 3. part_usage: 1,000 and 10,000 parts (`bench/part_usage.py`)

Click Maint seeded with {section["work_orders"]} work orders (synced to mantenimiento first) and
N parts, each with the restock that first stocked it; then M = {section["usages"]} usage
transactions on linked work orders, twice: on M different parts ("spread", the worst case:
one history page per part that moved) and over the nine catalogue parts that have a
mantenimiento material ("hot parts"). Rate limit raised (this counts requests). Seven
transactions are quarantined by design in every run: the seed's `LAMP-LED-18` has no
mantenimiento material.

{_demote(section["markdown"])}

- **First sync** pages every part's history once: about 1 request per part (plus one listing
  page per 100 parts). With the real budget that is 10,000 / 290 × 5 min ≈ 2.9 hours for
  10,000 parts, paid once; the history cursors are then per part.
- **Per mirrored transaction:** Click Maint reads are one listing page per 100 changed parts
  plus one history page per changed part (per 100 transactions of that part), so between
  about 1.0 (every usage on a different part) and well under 0.1 (usage concentrated on few
  parts). mantenimiento: one POST per transaction, one material search per distinct part per
  cycle, and the fixed per-cycle reverse pass.

{_measured(section)}"""


def render_converge(
    section: dict[str, Any] | None, figure: str | None, *, real: bool = False
) -> str:
    if not section:
        return ""
    spec = section["spec"]
    if real:
        heading = "## 4b. The same with the real 5-minute window (daemon)"
        shape = f"**{spec['limit']} requests per {spec['window']:g} s, the real window**"
        runs_text = "One run: the daemon (`syncd run`), the way syncd is deployed."
    else:
        heading = "## 4. Converging N changes under the real budget shape"
        shape = (
            f"**{spec['limit']} requests per window, the window scaled from 5 minutes to "
            f"{spec['window']:g} s**"
        )
        runs_text = (
            "Two runs on the same data: the daemon (`syncd run`, which runs a cycle cut short "
            "by the budget again as soon as the budget has room) and `syncd sync --once` (one "
            "cycle that waits for the budget as long as needed)."
        )
    rows = []
    for r in section["runs"]:
        statuses = Counter(c["status"] for c in r["cycles"])
        rows.append(
            [
                r["label"],
                f"{r['converged']:.1f} s",
                f"{r['ratio']:.2f}",
                f"{r['ratio_reserve']:.2f}",
                f"{r['ratio_steady']:.2f}",
                f"{r['cm_before_converged']:,} / {r['cm']['cm_get'] + r['cm']['cm_write']:,}",
                f"{r['cm']['cm_write']:,}",
                r["cm_429"],
                f"{r['first_request']:.1f} s" if r["first_request"] is not None else "-",
                f"{r['budget_idle']:.1f} s",
                ", ".join(f"{n} {s}" for s, n in statuses.items()) or "-",
                f"{r['exit_seconds']:.0f} s",
                mib(r["peak_rss_kib"]) if r["peak_rss_kib"] else "-",
            ]
        )
    headers = [
        "run",
        "converged after",
        "÷ T_min",
        "÷ T_min (reserve)",
        "÷ steady rate",
        "CM requests until converged / in all",
        "CM writes",
        "429",
        "first CM request at",
        "budget left idle",
        "cycles",
        "process ended / stopped",
        "peak RSS",
    ]
    picture = (
        f"\n![Click Maint requests over time against the budget]({figure})\n" if figure else ""
    )
    cycles = _cycle_lines(section)
    return f"""{heading}

{spec["size"]:,} linked work orders renamed in Click Maint and the notes of {spec["size"]:,}
*other* linked OTs edited in mantenimiento ({spec["seeds"]:,} records seeded per side, synced
first with the limit raised). Then syncd starts with Click Maint's real budget shape,
{shape}, in the simulator
(`rate_limit={spec["limit"]}, rate_window={spec["window"]:g}`) and in syncd
(`SYNCD_CLICKMAINT__RATE_LIMIT={spec["limit"]}`,
`SYNCD_CLICKMAINT__RATE_WINDOW_SECONDS={spec["window"]:g}`; reserve {spec["reserve"]}).
The daemon interval keeps production's proportion to the window
(60 s : 300 s → {spec["interval"]:g} s); only the work_orders stream runs. The benchmark
polls both simulators four times a second and stops the clock when every change has
arrived. {runs_text}

**Theoretical minimum.** Before the last change can have landed, Click Maint must have
served R = {spec["size"]:,} PATCHes (one per record synced to Click Maint)
+ ⌈{spec["size"]:,} / 100⌉ pages reading the Click Maint changes
= **R = {spec["required"]:,} requests**. Starting with a fresh window, the server admits
L = {spec["limit"]} per window W, so request number R cannot be served before
⌊(R − 1) / L⌋ × W:
**T_min = ⌊{spec["required"] - 1} / {spec["limit"]}⌋ × {spec["window"]:g} s
= {spec["t_min"]:.0f} s**. This counts no processing time at all (the last window's requests
and the work around them are taken as instantaneous), so a ratio of 1.0 is unreachable and
1.10 leaves {0.1 * spec["t_min"]:.0f} s for start-up, the last window's work and everything
else. Also shown: the same bound for syncd's usable share
L − reserve = {spec["limit"] - spec["reserve"]} (T = {spec["t_min_reserve"]:.0f} s) and the
sustained rate R / (L − reserve) × W = {spec["t_steady"]:.0f} s (what a backlog much longer
than one window converges to, since only
the first window comes for free).

{table(headers, rows)}
{picture}
{cycles}

{converge_analysis(section)}

{_measured(section)}"""


def _cycle_lines(section: dict[str, Any]) -> str:
    daemon = next((r for r in section["runs"] if r["mode"] == "daemon"), None)
    if not daemon or not daemon["cycles"]:
        return ""
    start = datetime.fromisoformat(daemon["started"])
    rows = []
    for number, c in enumerate(daemon["cycles"], 1):
        try:
            end = datetime.fromisoformat(str(c["at"]).replace("Z", "+00:00"))
            at = f"{(end - start).total_seconds():.1f} s"
        except ValueError:
            at = "?"
        rows.append(
            [
                number,
                at,
                c["status"],
                f"{c['seconds']} s",
                c["cm_requests"],
                c["updated_cm"],
                c["updated_mt"],
            ]
        )
        if number >= 12:
            rows.append(["…", "", "", "", "", "", ""])
            break
    return "Daemon cycles (from its JSON log):\n\n" + table(
        ["cycle", "ended at", "status", "wall", "CM requests", "updated in CM", "updated in mt"],
        rows,
    )


def converge_analysis(section: dict[str, Any]) -> str:
    """What pushes each run above T_min, from its own numbers."""
    spec = section["spec"]
    usable = spec["limit"] - spec["reserve"]
    rows = []
    for r in section["runs"]:
        sent = r["cm_before_converged"]
        last_window = (sent - 1) // usable
        rows.append(
            [
                r["label"],
                f"{r['first_request'] or 0:.1f} s",
                f"{sent - spec['required']:+,}",
                f"{r['budget_idle']:.1f} s",
                f"{last_window + 1} (opens at {last_window * spec['window']:g} s)",
                f"{r['converged'] - spec['t_min']:+.1f} s",
            ]
        )
    lines = [
        "**Where the time above T_min goes.** The simulator's window is fixed, as Click "
        "Maint's single `X-RateLimit-Reset` timestamp suggests: it starts with a client's "
        "first request and resets W later. While syncd holds a fresh "
        "`X-RateLimit-Remaining/Reset` from the server it sends whenever the server's window "
        "has room (keeping its reserve), so every window opens with a burst; without a fresh "
        "view it falls back to a sliding log of its own sends. What remains above T_min is "
        "start-up, requests beyond R, moments when syncd had budget but nothing ready to "
        "send, and the work of the last window, which runs at syncd's own pace "
        "(mantenimiento reads and writes interleaved with the Click Maint requests):",
        "",
        table(
            [
                "run",
                "first CM request at",
                "CM requests beyond R",
                "budget left idle",
                "window of the last request",
                "converged after T_min",
            ],
            rows,
        ),
        "",
        f"- **The reserve** keeps {spec['reserve']} of each {spec['limit']} unused: it costs a "
        f"whole window only when R falls just above a multiple of {usable} (compare the two "
        "T_min columns).",
        "- **Requests beyond R** are the pages that read syncd's own writes back (a PATCH "
        "bumps `updated_at`, and Click Maint cannot filter by author) and same-second "
        "re-reads; they are budget the changes cannot use.",
        "- **The daemon** ends a cycle when a budget wait would outlast its deadline "
        "(`max(60 s, interval)`), records it as `partial`, and runs the stream again when "
        "the budget has room; the new cycle scans from the checkpoint and re-reads the open "
        "linked OTs before it reaches the ones still pending, which is mantenimiento time "
        "while Click Maint's window is open.",
        "- **Scale.** The excess is an absolute delay of seconds, not a fraction of the "
        "window, so the ratio shrinks as the window grows: compare section 4 (scaled "
        "window) with section 4b (the real 5-minute window).",
    ]
    return "\n".join(lines)


def render_ledger(section: dict[str, Any] | None) -> str:
    if not section:
        return ""
    rows = [
        [r["op"], f"{r['ops_per_s']:,.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}"]
        for r in section["rows"]
    ]
    fsync = section["fsync"]
    pragmas = section["pragmas"]
    sync_name = SYNC_NAMES.get(pragmas["synchronous"], pragmas["synchronous"])
    return f"""## 5. Ledger operations per second

A fresh ledger on this disk, opened by syncd's own `Ledger.open`
(journal_mode={pragmas["journal_mode"]}, synchronous={sync_name}: every commit waits for an
fsync of the WAL). Each
write is its own `BEGIN IMMEDIATE … COMMIT`, as the engine commits per record; {section["n"]:,}
operations each, snapshots of a typical work order (four per link).

{table(["operation", "ops/s", "p50 ms", "p99 ms"], rows)}

Baseline on the same directory: append 4 KiB + `fsync`: p50 {fsync["p50_ms"]:.2f} ms, p99
{fsync["p99_ms"]:.2f} ms. A committed write costs about one fsync; batching 100 writes per
transaction shows what the per-record commit costs (the price of losing at most one record's
work to a crash). Against the network this is small: one Click Maint request on the internet
takes 100 ms or more, and syncd commits at most a few ledger writes per request.

{_measured(section)}"""


SYNC_NAMES = {"0": "OFF", "1": "NORMAL", "2": "FULL", "3": "EXTRA"}


def render_pagination(section: dict[str, Any] | None) -> str:
    if not section:
        return ""
    return f"""## 6. Listing N work orders (`bench/pagination.py`)

`ClickMaintClient.iter_pages` over N work orders with the per-page cap detected (3 GETs, not
counted), items consumed one by one. Rate limit raised. Checks: exactly ⌈N / cap⌉ GETs and
every id once; peak RSS of the 10× larger listing within 10 % of the smaller one.

{_demote(section["markdown"])}

{_measured(section)}"""


def render_changes(section: dict[str, Any] | None) -> str:
    if not section:
        return ""
    blocks = []
    for v in section["variants"]:
        blocks.append(f"### {v['label']} (`{v['command']}`)\n\n{_demote(v['markdown'])}")
    body = "\n\n".join(blocks)
    reads = ", ".join(f"{v['reads_per_record']:.4f} ({v['label']})" for v in section["variants"])
    reads_to_cm = ", ".join(
        f"{v['cm_get'] / (v['cm_write'] or 1):.4f} ({v['label']})" for v in section["variants"]
    )
    return f"""## 7. 2,000 changed work orders each way (`bench/sync_changes.py`)

The first version of this report, re-run: 2,800 records seeded per side and synced (setup,
rate limit raised), then 2,000 linked work orders renamed in Click Maint and 2,000 *other* open
OTs edited in mantenimiento; syncd runs cycles until one writes nothing, and the simulators
confirm every change arrived. Targets: ≤ 1.05 Click Maint writes per record synced to Click
Maint, ≤ 0.02 Click Maint reads per synced record (both directions). See
[`bench/README.md`](../bench/README.md) for every column.

{body}

Writes are at the floor: one PATCH per record synced to Click Maint, and no read per record
(the PATCH answer becomes the new snapshot). Reads per synced record: {reads}, against the
0.02 target and a floor of 0.01 (every change and every own write read once, 100 per page).
The target is read here per synced record, both directions together (4,000); counted per
record synced *to Click Maint* (2,000), as the writes are, reads are {reads_to_cm}, above
0.02 on that basis.
The rest is re-reading: the second cycle reads the echoes of the first cycle's PATCHes
(unavoidable with `updated_at` polling) and, because a scan starts `lookback_seconds` (30 s)
before the horizon stored by the previous cycle (the horizon of that cycle's *start*), it
reads the edited seconds again; syncd writes more than 100 records per second, so those
seconds are read in id order (same-second pages). The first version of this report measured
0.0330 (bulk edit) and 0.0257 (spread), before the same-second read became a single pass and
the lookback went from 120 s to 30 s.

{_measured(section)}"""


FINDINGS = """
## Problems this report found in syncd, since fixed

Its first full run (2026-11-23) found four problems; each is fixed, with a test, and the
sections above are measured on the fixed code:

1. **The first scan of a process took Click Maint's time from the local clock.** A fresh
   process (every `syncd sync --once`, every daemon start) computed the scan horizon before
   the first `Date` header; with the host more than `lag_seconds + lookback_seconds` ahead of
   Click Maint the watermark landed in Click Maint's future and edits made in that gap were
   never synced. The horizon is now fixed right after the scan's first answer
   (`test_fresh_process_with_a_clock_ahead_of_click_maint_misses_nothing`).
2. **A budget-cut daemon cycle was rescheduled after 1 s whatever the wait**, giving a loop of
   empty `partial` cycles (55 in 128 s in one run) until the window refilled. The cycle report
   now carries the budget wait and the daemon runs the stream again when the budget has room
   (`test_partial_cycle_resumes_when_the_budget_has_room`). In the same change the budget
   follows the server's `X-RateLimit-Remaining/Reset` while it is fresh, which took the
   convergence ratio from 1.15 / 1.11 to the values in section 4.
3. **`CycleReport.writes` ignored part_usage's `mirrored` counter**, so a cycle that mirrored
   looked quiet. Fixed.
4. **part_usage re-read the materials of every open linked OT every cycle** with no knob; it
   now follows `mantenimiento.open_reread_every` (`test_materials_pass_follows_open_reread_every`).

Its second run found a flaw in the benchmark itself: `sync_changes.py --spread 60` back-dated
edits to before the idle cycle that settles the setup, so a fifth of them were older than the
watermark minus the lookback (a clock-skew test, not a spread of edits); the benchmark now
waits the spread out after that cycle.
"""

EARLIER = """
## Findings of the first version of this report, since addressed

The first version (from `pagination.py` and `sync_changes.py` only) found four costs; the code
has changed for each, and sections 6 and 7 are re-measured on the current code:

- the same-second re-read (`WorkOrderScan._tie`) always made a second pass: it now stops after
  the first pass during which the second's `total` did not move;
- `lookback_seconds` was 120 s (each change read in two or three cycles): the default is 30 s;
- `Ledger.iter_links` built the whole result list (peak RSS grew about 10 KiB per link): it now
  reads in chunks of 500 rows;
- dropped `debug` lines were rendered before the level check: `filter_by_level` is now the
  first processor.
"""

READING = """
## Reading the numbers

- Request counts are deterministic (fixed seeds) and are what the rate limit sees; times and
  RSS depend on the box and on what else runs on it (it was shared during these runs).
- The simulators answer in about a millisecond. Real servers take 100 ms or more per request,
  so wall times here are syncd's own CPU and disk cost, a lower bound for production; the
  mantenimiento request counts matter more for wall time in production than they seem here.
- Peak RSS includes the interpreter and imports (~60 MiB).
"""


if __name__ == "__main__":
    sys.exit(main())
